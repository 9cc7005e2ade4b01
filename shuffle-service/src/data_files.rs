//! A small, bounded table of open shuffle data files, so that serving a chunk costs no
//! `openat`/`statx`/`close` when its map output was served a moment ago (every reducer of a
//! shuffle reads one block of every map output, so the same data files are read over and over).
//!
//! Entries are keyed by the index cache's resolved [`MapOutput`] (its address, kept alive by
//! the entry): a map output whose index was reloaded (evicted, or invalidated after
//! RemoveBlocks) is a new key, so a data file is only ever paired with the index read with it.
//! Bounds: at most [`MAX_OPEN`] files open, each reused for at most [`MAX_AGE`] after it was
//! opened (its size, read once at open, is at most that old). Expired entries are closed by
//! the next miss of any map output and by [`DataFiles::close_expired`], which the server runs
//! every [`MAX_AGE`], so no file stays open much past twice that, busy or idle;
//! [`DataFiles::forget`] and [`DataFiles::clear`] close them at once when blocks or an
//! application's files are deleted. Files are opened by the executor's own opener
//! (link-free under `spark.authenticate`), on the caller's thread, which is always a
//! blocking-pool thread ([`DataFiles::peek`], which never opens, is the reactor's). Failures are
//! never cached.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::index_cache::MapOutput;
use crate::resolver::Executor;

/// Most data files held open at once.
pub const MAX_OPEN: usize = 256;
/// How long one `open` (and the size read with it) is reused.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// An open data file and its size when it was opened.
#[derive(Clone)]
pub struct DataFile {
    pub file: Arc<File>,
    pub size: u64,
}

struct Entry {
    /// Keeps the key's address from being reused while the entry exists.
    output: Arc<MapOutput>,
    data: DataFile,
    opened: Instant,
}

#[derive(Default)]
pub struct DataFiles {
    map: Mutex<HashMap<usize, Entry>>,
}

impl DataFiles {
    /// The open data file of `output`, opening it with `open` (blocking) when no fresh one is
    /// held.
    pub fn get<E>(
        &self,
        output: &Arc<MapOutput>,
        open: impl FnOnce() -> Result<(File, u64), E>,
    ) -> Result<DataFile, E> {
        if let Some(d) = self.peek(output) {
            return Ok(d);
        }
        let key = Arc::as_ptr(output) as usize;
        let (file, size) = open()?;
        let data = DataFile {
            file: Arc::new(file),
            size,
        };
        let now = Instant::now();
        // Files closed by this miss are dropped after the lock is released.
        let mut closed = Vec::new();
        {
            let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = m.remove(&key) {
                closed.push(old);
            }
            // Every miss closes the expired files (a miss happens about once per map output
            // and MAX_AGE under load, so the scan of at most MAX_OPEN entries is rare).
            let expired: Vec<usize> = m
                .iter()
                .filter(|(_, e)| now.duration_since(e.opened) >= MAX_AGE)
                .map(|(k, _)| *k)
                .collect();
            closed.extend(expired.iter().filter_map(|k| m.remove(k)));
            if m.len() >= MAX_OPEN {
                // Still full of fresh files: close the oldest.
                if let Some(k) = m.iter().min_by_key(|(_, e)| e.opened).map(|(k, _)| *k) {
                    closed.extend(m.remove(&k));
                }
            }
            m.insert(
                key,
                Entry {
                    output: output.clone(),
                    data: data.clone(),
                    opened: now,
                },
            );
        }
        drop(closed);
        Ok(data)
    }

    /// The open data file of `output` if a fresh one is held; never opens one (for the
    /// reactor thread).
    pub fn peek(&self, output: &Arc<MapOutput>) -> Option<DataFile> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(Arc::as_ptr(output) as usize))
            .filter(|e| e.opened.elapsed() < MAX_AGE)
            .map(|e| e.data.clone())
    }

    /// Closes the file of map output `(shuffle_id, map_id)` of `exec` (its blocks were deleted).
    pub fn forget(&self, exec: &Arc<Executor>, shuffle_id: i32, map_id: i64) {
        let gone: Vec<Entry> = {
            let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<usize> = m
                .iter()
                .filter(|(_, e)| {
                    Arc::ptr_eq(&e.output.exec, exec)
                        && e.output.shuffle_id == shuffle_id
                        && e.output.map_id == map_id
                })
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| m.remove(k)).collect()
        };
        drop(gone);
    }

    /// Closes the files held for [`MAX_AGE`] or longer (blocking: run it off the reactor).
    pub fn close_expired(&self) {
        self.close_expired_at(Instant::now());
    }

    fn close_expired_at(&self, now: Instant) {
        let gone: Vec<Entry> = {
            let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<usize> = m
                .iter()
                .filter(|(_, e)| now.duration_since(e.opened) >= MAX_AGE)
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| m.remove(k)).collect()
        };
        drop(gone);
    }

    /// Closes every held file (an application's files are being deleted).
    pub fn clear(&self) {
        let gone = std::mem::take(&mut *self.map.lock().unwrap_or_else(|p| p.into_inner()));
        drop(gone);
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index_cache::Index;
    use crate::protocol::ExecutorShuffleInfo;
    use std::cell::Cell;
    use std::convert::Infallible;

    fn output(exec: &Arc<Executor>, map_id: i64) -> Arc<MapOutput> {
        let raw: Vec<u8> = [0i64, 3].iter().flat_map(|o| o.to_be_bytes()).collect();
        Arc::new(MapOutput {
            exec: exec.clone(),
            shuffle_id: 1,
            map_id,
            index: Index::parse(std::path::Path::new("i"), &raw).unwrap(),
            index_path: "i".into(),
            data_path: "d".into(),
        })
    }

    fn executor() -> Arc<Executor> {
        Arc::new(Executor {
            info: ExecutorShuffleInfo {
                local_dirs: vec!["/nonexistent".into()],
                sub_dirs_per_local_dir: 1,
                shuffle_manager: "sort".into(),
            },
            canonical: None,
        })
    }

    #[test]
    fn opens_once_forgets_and_stays_bounded() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        std::fs::write(&path, b"abc").unwrap();
        let opens = Cell::new(0);
        let open = || {
            opens.set(opens.get() + 1);
            Ok::<_, Infallible>((File::open(&path).unwrap(), 3))
        };
        let t = DataFiles::default();
        let e = executor();
        let m = output(&e, 7);
        assert_eq!(t.get(&m, open).unwrap().size, 3);
        assert_eq!(t.get(&m, open).unwrap().size, 3);
        assert_eq!(opens.get(), 1, "a fresh file is reused");
        // A failed open is not kept.
        let m2 = output(&e, 8);
        assert!(t.get(&m2, || Err("EIO")).is_err());
        assert_eq!(t.len(), 1);
        // RemoveBlocks of that map output closes it.
        t.forget(&e, 1, 7);
        assert!(t.is_empty());
        t.get(&m, open).unwrap();
        assert_eq!(opens.get(), 2);
        // Never more than MAX_OPEN.
        let many: Vec<_> = (0..MAX_OPEN as i64 + 10).map(|i| output(&e, i)).collect();
        for m in &many {
            t.get(m, open).unwrap();
        }
        assert_eq!(t.len(), MAX_OPEN);
        t.clear();
        assert!(t.is_empty());
    }

    #[test]
    fn the_sweep_closes_only_expired_files() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        std::fs::write(&path, b"abc").unwrap();
        let open = || Ok::<_, Infallible>((File::open(&path).unwrap(), 3));
        let t = DataFiles::default();
        let e = executor();
        let (a, b) = (output(&e, 1), output(&e, 2));
        t.get(&a, open).unwrap();
        t.get(&b, open).unwrap();
        t.close_expired();
        assert_eq!(t.len(), 2, "fresh files stay open");
        t.close_expired_at(Instant::now() + MAX_AGE);
        assert!(
            t.is_empty(),
            "expired files are closed with no fetch coming"
        );
    }
}
