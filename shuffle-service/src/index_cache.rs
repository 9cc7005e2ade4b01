//! A byte-bounded LRU cache of resolved map outputs (`spark.shuffle.service.index.cache.size`):
//! the parsed index file plus the index and data file paths, so that serving a chunk builds no
//! path and hashes no string.
//!
//! Entries are keyed by `(registered executor, shuffle id, map id)`: the executor is the
//! registry's `Arc<Executor>`, identified by address and kept alive by the entry itself, so a
//! re-registered executor (a new `Arc`) never sees a stale entry and an address is never reused
//! while a key holds it. Entries are weighed like Spark's `ShuffleIndexInformation` (8 bytes per
//! offset plus a fixed overhead) plus the two paths. Loading reads and validates the file on the
//! caller's thread, which is always a blocking-pool thread.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::resolver::Executor;

/// Per-entry bookkeeping overhead counted against the budget (Spark uses 176).
const ENTRY_OVERHEAD: u64 = 176;
/// Index files larger than this are refused (2^25 reduce partitions), before reading them.
pub const MAX_INDEX_FILE: u64 = 8 << 25;

/// Why an index file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("Failed to open file: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("index file {path} is {len} bytes: {reason}")]
    BadSize {
        path: PathBuf,
        len: u64,
        reason: &'static str,
    },
    #[error("index file {path} is not monotonic: offset[{at}]={next} < offset[{prev_at}]={prev}")]
    NotMonotonic {
        path: PathBuf,
        at: usize,
        next: i64,
        prev_at: usize,
        prev: i64,
    },
    #[error("index file {path} has a negative first offset {first}")]
    Negative { path: PathBuf, first: i64 },
    #[error(
        "reduce range [{start}, {end}) is outside index file {path} ({partitions} partitions)"
    )]
    OutOfRange {
        path: PathBuf,
        start: i32,
        end: i32,
        partitions: usize,
    },
}

impl IndexError {
    /// I/O errors can be transient; a malformed file stays malformed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, IndexError::Io { .. })
    }
}

/// A validated index: `partitions + 1` non-decreasing offsets starting at >= 0.
#[derive(Debug)]
pub struct Index {
    offsets: Box<[i64]>,
}

impl Index {
    pub fn parse(path: &Path, raw: &[u8]) -> Result<Index, IndexError> {
        let len = raw.len() as u64;
        if len & 7 != 0 {
            return Err(IndexError::BadSize {
                path: path.into(),
                len,
                reason: "not a multiple of 8",
            });
        }
        if len < 16 {
            return Err(IndexError::BadSize {
                path: path.into(),
                len,
                reason: "shorter than 2 offsets",
            });
        }
        let offsets: Box<[i64]> = raw
            .chunks_exact(8)
            .map(|c| i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        if offsets[0] < 0 {
            return Err(IndexError::Negative {
                path: path.into(),
                first: offsets[0],
            });
        }
        for i in 1..offsets.len() {
            if offsets[i] < offsets[i - 1] {
                return Err(IndexError::NotMonotonic {
                    path: path.into(),
                    at: i,
                    next: offsets[i],
                    prev_at: i - 1,
                    prev: offsets[i - 1],
                });
            }
        }
        Ok(Index { offsets })
    }

    pub fn partitions(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The data-file segment `(offset, length)` of reduce partitions `[start, end)`.
    pub fn segment(&self, path: &Path, start: i32, end: i32) -> Result<(u64, u64), IndexError> {
        let n = self.partitions();
        if start < 0 || end < start || end as usize > n {
            return Err(IndexError::OutOfRange {
                path: path.into(),
                start,
                end,
                partitions: n,
            });
        }
        let (a, b) = (self.offsets[start as usize], self.offsets[end as usize]);
        Ok((a as u64, (b - a) as u64))
    }
}

/// One map output of a registered executor, resolved.
#[derive(Debug)]
pub struct MapOutput {
    /// The registration the paths were computed from (also keeps the key's address alive).
    pub exec: Arc<Executor>,
    pub shuffle_id: i32,
    pub map_id: i64,
    pub index: Index,
    pub index_path: PathBuf,
    pub data_path: PathBuf,
}

impl MapOutput {
    fn weight(&self) -> u64 {
        8 * self.index.offsets.len() as u64
            + ENTRY_OVERHEAD
            + self.index_path.as_os_str().len() as u64
            + self.data_path.as_os_str().len() as u64
    }
}

/// `(address of the registry's Arc<Executor>, shuffle id, map id)`.
type Key = (usize, i32, i64);

fn key(exec: &Arc<Executor>, shuffle_id: i32, map_id: i64) -> Key {
    (Arc::as_ptr(exec) as usize, shuffle_id, map_id)
}

/// A multiply-rotate hasher for the small integer keys (FxHash's mixing step): the keys are
/// not attacker-chosen strings (an address and ids of files that exist), so SipHash's
/// flooding resistance buys nothing here.
#[derive(Default)]
struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }
    fn write_i32(&mut self, v: i32) {
        self.add(v as u32 as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn write_i64(&mut self, v: i64) {
        self.add(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

struct Entry {
    output: Arc<MapOutput>,
    tick: u64,
    weight: u64,
}

#[derive(Default)]
struct State {
    map: HashMap<Key, Entry, BuildHasherDefault<KeyHasher>>,
    lru: BTreeMap<u64, Key>,
    tick: u64,
    bytes: u64,
}

/// The cache. `capacity` 0 disables caching (every lookup reads the file).
pub struct IndexCache {
    capacity: u64,
    state: Mutex<State>,
}

impl IndexCache {
    pub fn new(capacity: u64) -> Self {
        IndexCache {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// Returns map output `(shuffle_id, map_id)` of `exec`, reading its index file (blocking)
    /// on a miss.
    pub fn get(
        &self,
        exec: &Arc<Executor>,
        shuffle_id: i32,
        map_id: i64,
    ) -> Result<Arc<MapOutput>, IndexError> {
        if let Some(output) = self.peek(exec, shuffle_id, map_id) {
            return Ok(output);
        }
        let k = key(exec, shuffle_id, map_id);
        let index_path = exec.index_path(shuffle_id, map_id);
        let index = load(exec, &index_path)?;
        let output = Arc::new(MapOutput {
            exec: exec.clone(),
            shuffle_id,
            map_id,
            index,
            index_path,
            data_path: exec.data_path(shuffle_id, map_id),
        });
        self.insert(k, output.clone());
        Ok(output)
    }

    /// Map output `(shuffle_id, map_id)` of `exec` if the cache holds it; never reads a file
    /// (for the reactor thread).
    pub fn peek(
        &self,
        exec: &Arc<Executor>,
        shuffle_id: i32,
        map_id: i64,
    ) -> Option<Arc<MapOutput>> {
        let k = key(exec, shuffle_id, map_id);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.tick += 1;
        let tick = s.tick;
        let e = s.map.get_mut(&k)?;
        let old = std::mem::replace(&mut e.tick, tick);
        let output = e.output.clone();
        s.lru.remove(&old);
        s.lru.insert(tick, k);
        Some(output)
    }

    fn insert(&self, k: Key, output: Arc<MapOutput>) {
        let weight = output.weight();
        if weight > self.capacity {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.tick += 1;
        let tick = s.tick;
        if let Some(old) = s.map.insert(
            k,
            Entry {
                output,
                tick,
                weight,
            },
        ) {
            s.lru.remove(&old.tick);
            s.bytes -= old.weight;
        }
        s.lru.insert(tick, k);
        s.bytes += weight;
        while s.bytes > self.capacity {
            let Some((_, victim)) = s.lru.pop_first() else {
                break;
            };
            if let Some(e) = s.map.remove(&victim) {
                s.bytes -= e.weight;
            }
        }
    }

    /// Forgets a map output (after its index file was deleted through RemoveBlocks).
    pub fn invalidate(&self, exec: &Arc<Executor>, shuffle_id: i32, map_id: i64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = s.map.remove(&key(exec, shuffle_id, map_id)) {
            s.lru.remove(&e.tick);
            s.bytes -= e.weight;
        }
    }

    /// Bytes currently accounted.
    pub fn weight(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn load(exec: &Executor, path: &Path) -> Result<Index, IndexError> {
    use std::io::Read;
    let io = |source| IndexError::Io {
        path: path.into(),
        source,
    };
    let f = exec.open(path).map_err(io)?;
    if let Some(e) = crate::faults::injected("index::read", path) {
        return Err(io(e));
    }
    let len = f.metadata().map_err(io)?.len();
    if len > MAX_INDEX_FILE {
        return Err(IndexError::BadSize {
            path: path.into(),
            len,
            reason: "larger than 256 MiB",
        });
    }
    let mut raw = Vec::with_capacity(len as usize);
    f.take(MAX_INDEX_FILE).read_to_end(&mut raw).map_err(io)?;
    Index::parse(path, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ExecutorShuffleInfo;

    /// An executor with one local dir and one sub-dir: files live in `<dir>/00/`.
    fn executor(dir: &Path) -> Arc<Executor> {
        std::fs::create_dir_all(dir.join("00")).unwrap();
        Arc::new(Executor {
            info: ExecutorShuffleInfo {
                local_dirs: vec![dir.to_str().unwrap().to_owned()],
                sub_dirs_per_local_dir: 1,
                shuffle_manager: "sort".into(),
            },
            canonical: None,
        })
    }

    fn write_index(exec: &Executor, map_id: i64, offs: &[i64]) -> PathBuf {
        let p = exec.index_path(0, map_id);
        let raw: Vec<u8> = offs.iter().flat_map(|o| o.to_be_bytes()).collect();
        std::fs::write(&p, raw).unwrap();
        p
    }

    #[test]
    fn validates_and_segments() {
        let d = tempfile::tempdir().unwrap();
        let e = executor(d.path());
        let c = IndexCache::new(1 << 20);
        let p = write_index(&e, 1, &[0, 10, 10, 30]);
        let o = c.get(&e, 0, 1).unwrap();
        assert_eq!(o.index_path, p);
        assert_eq!(o.data_path, d.path().join("00/shuffle_0_1_0.data"));
        let i = &o.index;
        assert_eq!(i.segment(&p, 0, 1).unwrap(), (0, 10));
        assert_eq!(i.segment(&p, 1, 2).unwrap(), (10, 0));
        assert_eq!(i.segment(&p, 0, 3).unwrap(), (0, 30));
        assert!(i.segment(&p, 2, 4).is_err());
        write_index(&e, 2, &[0, 10, 5]);
        assert!(matches!(
            c.get(&e, 0, 2),
            Err(IndexError::NotMonotonic { .. })
        ));
        std::fs::write(e.index_path(0, 3), [0u8; 12]).unwrap();
        assert!(matches!(c.get(&e, 0, 3), Err(IndexError::BadSize { .. })));
        assert!(matches!(c.get(&e, 0, 4), Err(IndexError::Io { .. })));
    }

    #[test]
    fn bounded_by_bytes() {
        let d = tempfile::tempdir().unwrap();
        let e = executor(d.path());
        let offs: Vec<i64> = (0..=100).collect();
        let one = 8 * 101 + ENTRY_OVERHEAD;
        let c = IndexCache::new(3 * (one + 200));
        for i in 0..10 {
            write_index(&e, i, &offs);
            c.get(&e, 0, i).unwrap();
            assert!(c.weight() <= 3 * (one + 200));
        }
        assert_eq!(c.len(), 3);
        // Most recently used survive.
        std::fs::remove_file(e.index_path(0, 9)).unwrap();
        c.get(&e, 0, 9).unwrap();
        // Until invalidated.
        c.invalidate(&e, 0, 9);
        assert!(c.get(&e, 0, 9).is_err());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_new_registration_never_sees_old_entries() {
        let d0 = tempfile::tempdir().unwrap();
        let d1 = tempfile::tempdir().unwrap();
        let (old, new) = (executor(d0.path()), executor(d1.path()));
        write_index(&old, 1, &[0, 3]);
        write_index(&new, 1, &[0, 7]);
        let c = IndexCache::new(1 << 20);
        assert_eq!(c.get(&old, 0, 1).unwrap().index.partitions(), 1);
        let o = c.get(&new, 0, 1).unwrap();
        assert_eq!(o.index_path, new.index_path(0, 1));
        assert_eq!(o.index.segment(&o.index_path, 0, 1).unwrap(), (0, 7));
        assert_eq!(c.len(), 2);
    }
}
