//! A byte-bounded LRU cache of parsed index files (`spark.shuffle.service.index.cache.size`).
//!
//! Entries are weighed like Spark's `ShuffleIndexInformation` (8 bytes per offset plus a fixed
//! overhead) plus the key. Loading reads and validates the file on the caller's thread, which is
//! always a blocking-pool thread.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

    fn weight(&self, key: &Path) -> u64 {
        8 * self.offsets.len() as u64 + ENTRY_OVERHEAD + key.as_os_str().len() as u64
    }
}

struct Entry {
    index: Arc<Index>,
    tick: u64,
    weight: u64,
}

#[derive(Default)]
struct State {
    map: HashMap<PathBuf, Entry>,
    lru: BTreeMap<u64, PathBuf>,
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

    /// Returns the index at `path`, reading it (blocking) on a miss.
    pub fn get(&self, path: &Path) -> Result<Arc<Index>, IndexError> {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.tick += 1;
            let tick = s.tick;
            if let Some(e) = s.map.get_mut(path) {
                let old = std::mem::replace(&mut e.tick, tick);
                let index = e.index.clone();
                s.lru.remove(&old);
                s.lru.insert(tick, path.to_owned());
                return Ok(index);
            }
        }
        let index = Arc::new(load(path)?);
        self.insert(path, index.clone());
        Ok(index)
    }

    fn insert(&self, path: &Path, index: Arc<Index>) {
        let weight = index.weight(path);
        if weight > self.capacity {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.tick += 1;
        let tick = s.tick;
        if let Some(old) = s.map.insert(
            path.to_owned(),
            Entry {
                index,
                tick,
                weight,
            },
        ) {
            s.lru.remove(&old.tick);
            s.bytes -= old.weight;
        }
        s.lru.insert(tick, path.to_owned());
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

    /// Forgets `path` (after its file was deleted through RemoveBlocks).
    pub fn invalidate(&self, path: &Path) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = s.map.remove(path) {
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

fn load(path: &Path) -> Result<Index, IndexError> {
    use std::io::Read;
    let io = |source| IndexError::Io {
        path: path.into(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
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

    fn write_index(dir: &Path, name: &str, offs: &[i64]) -> PathBuf {
        let p = dir.join(name);
        let raw: Vec<u8> = offs.iter().flat_map(|o| o.to_be_bytes()).collect();
        std::fs::write(&p, raw).unwrap();
        p
    }

    #[test]
    fn validates_and_segments() {
        let d = tempfile::tempdir().unwrap();
        let c = IndexCache::new(1 << 20);
        let p = write_index(d.path(), "a", &[0, 10, 10, 30]);
        let i = c.get(&p).unwrap();
        assert_eq!(i.segment(&p, 0, 1).unwrap(), (0, 10));
        assert_eq!(i.segment(&p, 1, 2).unwrap(), (10, 0));
        assert_eq!(i.segment(&p, 0, 3).unwrap(), (0, 30));
        assert!(i.segment(&p, 2, 4).is_err());
        let bad = write_index(d.path(), "b", &[0, 10, 5]);
        assert!(matches!(c.get(&bad), Err(IndexError::NotMonotonic { .. })));
        let short = d.path().join("c");
        std::fs::write(&short, [0u8; 12]).unwrap();
        assert!(matches!(c.get(&short), Err(IndexError::BadSize { .. })));
        assert!(matches!(
            c.get(&d.path().join("missing")),
            Err(IndexError::Io { .. })
        ));
    }

    #[test]
    fn bounded_by_bytes() {
        let d = tempfile::tempdir().unwrap();
        let offs: Vec<i64> = (0..=100).collect();
        let one = 8 * 101 + ENTRY_OVERHEAD;
        let c = IndexCache::new(3 * (one + 200));
        for i in 0..10 {
            let p = write_index(d.path(), &format!("f{i}"), &offs);
            c.get(&p).unwrap();
            assert!(c.weight() <= 3 * (one + 200));
        }
        assert_eq!(c.len(), 3);
        // Most recently used survive.
        let p9 = d.path().join("f9");
        std::fs::remove_file(&p9).unwrap();
        c.get(&p9).unwrap();
    }
}
