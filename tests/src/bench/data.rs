//! The benchmark data set: one shuffle per block size, `maps × reduces` blocks of exactly
//! `block_size` bytes, written as Spark executors write them (`shuffle_<s>_<m>_0.data` plus an
//! index of `reduces + 1` big-endian offsets) under `localDirs[h % n]/%02x/` with Java
//! `String.hashCode` placement.
//!
//! Content is deterministic, so a receiver can check every byte without reading the files:
//! block `(s, m, r)` starts with a 16-byte tag `CRPB s m r` and continues with a slice of a
//! seeded pseudo-random pattern at an offset derived from `(s, m, r)`.
//!
//! The path hashing is our own implementation, deliberately independent of the service's
//! resolver: a disagreement shows up as a fetch failure instead of being masked.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The application and executor every data set is registered under.
pub const APP_ID: &str = "app-20261123000000-0001";
pub const EXEC_ID: &str = "0";
pub const SHUFFLE_MANAGER: &str = "org.apache.spark.shuffle.sort.SortShuffleManager";
/// Local dirs per executor (two, so `hash % n` placement is exercised) and sub-dirs per dir.
pub const LOCAL_DIRS: usize = 2;
pub const SUB_DIRS: i32 = 64;
/// Distinct pattern start offsets.
const PATTERN_SPAN: usize = 1 << 20;
const TAG_LEN: usize = 16;

/// Why a data set could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read data set manifest {path}: {source} (create it with `croupier-shuffle-bench gen`)")]
    ReadManifest { path: PathBuf, source: io::Error },
    #[error("data set manifest {path} is malformed: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("invalid data set shape: {0}")]
    Shape(String),
}

impl DataError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Java's `String.hashCode` (wrapping i32 over UTF-16 code units).
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// `ExecutorDiskUtils.getFilePath` placement for `name`.
pub fn spark_path(local_dirs: &[PathBuf], sub_dirs: i32, name: &str) -> PathBuf {
    let h = java_hash(name);
    let h = if h == i32::MIN {
        0u64
    } else {
        u64::from(h.unsigned_abs())
    };
    let n = local_dirs.len() as u64;
    let dir = &local_dirs[(h % n) as usize];
    dir.join(format!("{:02x}", (h / n) % sub_dirs as u64))
        .join(name)
}

/// One shuffle of the data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub shuffle_id: i32,
    pub maps: u32,
    pub reduces: u32,
    pub block_size: u64,
    pub seed: u64,
}

impl Shape {
    pub fn validate(&self) -> Result<(), DataError> {
        if self.maps == 0 || self.reduces == 0 {
            return Err(DataError::Shape(
                "maps and reduces must be at least 1".into(),
            ));
        }
        if self.block_size > 64 << 20 {
            return Err(DataError::Shape(format!(
                "block size {} is above the 64 MiB limit",
                self.block_size
            )));
        }
        if self.shuffle_id < 0 {
            return Err(DataError::Shape("shuffle id must be non-negative".into()));
        }
        Ok(())
    }

    pub fn total_bytes(&self) -> u64 {
        u64::from(self.maps) * u64::from(self.reduces) * self.block_size
    }

    fn manifest_text(&self) -> String {
        format!(
            "shuffle_id={} maps={} reduces={} block_size={} seed={}\n",
            self.shuffle_id, self.maps, self.reduces, self.block_size, self.seed
        )
    }

    fn parse_manifest(path: &Path, text: &str) -> Result<Shape, DataError> {
        let bad = |reason: String| DataError::BadManifest {
            path: path.to_owned(),
            reason,
        };
        let get = |key: &str| -> Result<u64, DataError> {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .ok_or_else(|| bad(format!("missing {key}")))?
                .parse::<u64>()
                .map_err(|e| bad(format!("{key}: {e}")))
        };
        let shape = Shape {
            shuffle_id: get("shuffle_id")? as i32,
            maps: get("maps")? as u32,
            reduces: get("reduces")? as u32,
            block_size: get("block_size")?,
            seed: get("seed")?,
        };
        shape.validate().map_err(|e| bad(e.to_string()))?;
        Ok(shape)
    }
}

/// A data set root: `<root>/blockmgr-<i>` local dirs plus one manifest per shuffle.
#[derive(Debug, Clone)]
pub struct DataSet {
    pub root: PathBuf,
    pub local_dirs: Vec<PathBuf>,
}

impl DataSet {
    /// `root` is made absolute (executors register absolute local dirs).
    pub fn at(root: &Path) -> Result<DataSet, DataError> {
        let root = std::path::absolute(root).map_err(|source| DataError::Write {
            path: root.to_owned(),
            source,
        })?;
        let local_dirs = (0..LOCAL_DIRS)
            .map(|i| root.join(format!("blockmgr-{i}")))
            .collect();
        Ok(DataSet { root, local_dirs })
    }

    pub fn local_dir_strings(&self) -> Vec<String> {
        self.local_dirs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    fn manifest_path(&self, shuffle_id: i32) -> PathBuf {
        self.root
            .join(format!("bench-shuffle-{shuffle_id}.manifest"))
    }

    pub fn data_path(&self, shuffle_id: i32, map: u32) -> PathBuf {
        spark_path(
            &self.local_dirs,
            SUB_DIRS,
            &format!("shuffle_{shuffle_id}_{map}_0.data"),
        )
    }

    pub fn index_path(&self, shuffle_id: i32, map: u32) -> PathBuf {
        spark_path(
            &self.local_dirs,
            SUB_DIRS,
            &format!("shuffle_{shuffle_id}_{map}_0.index"),
        )
    }

    /// The shapes of all shuffles present.
    pub fn shapes(&self) -> Result<Vec<Shape>, DataError> {
        let rd = fs::read_dir(&self.root).map_err(|source| DataError::ReadManifest {
            path: self.root.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_prefix("bench-shuffle-")
                .and_then(|n| n.strip_suffix(".manifest"))
            {
                if let Ok(id) = id.parse::<i32>() {
                    out.push(self.load(id)?);
                }
            }
        }
        out.sort_by_key(|s| s.shuffle_id);
        Ok(out)
    }

    pub fn load(&self, shuffle_id: i32) -> Result<Shape, DataError> {
        let path = self.manifest_path(shuffle_id);
        let text = fs::read_to_string(&path).map_err(|source| DataError::ReadManifest {
            path: path.clone(),
            source,
        })?;
        Shape::parse_manifest(&path, &text)
    }

    /// Writes the shuffle unless an identical one is already there. Returns whether it wrote.
    pub fn create(&self, shape: &Shape) -> Result<bool, DataError> {
        shape.validate()?;
        if self.load(shape.shuffle_id).ok().as_ref() == Some(shape) {
            return Ok(false);
        }
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| DataError::Write { path, source }
        };
        let manifest = self.manifest_path(shape.shuffle_id);
        let _ = fs::remove_file(&manifest);
        let content = Content::new(shape);
        let mut block = vec![0u8; shape.block_size as usize];
        for m in 0..shape.maps {
            let data = self.data_path(shape.shuffle_id, m);
            let index = self.index_path(shape.shuffle_id, m);
            for p in [&data, &index] {
                if let Some(dir) = p.parent() {
                    fs::create_dir_all(dir).map_err(werr(dir))?;
                }
            }
            let mut w =
                BufWriter::with_capacity(1 << 20, fs::File::create(&data).map_err(werr(&data))?);
            let mut offsets = Vec::with_capacity(shape.reduces as usize + 1);
            let mut off = 0u64;
            offsets.push(0u64);
            for r in 0..shape.reduces {
                content.fill(m, r, &mut block);
                w.write_all(&block).map_err(werr(&data))?;
                off += shape.block_size;
                offsets.push(off);
            }
            w.flush().map_err(werr(&data))?;
            let idx: Vec<u8> = offsets.iter().flat_map(|o| o.to_be_bytes()).collect();
            fs::write(&index, idx).map_err(werr(&index))?;
        }
        fs::write(&manifest, shape.manifest_text()).map_err(werr(&manifest))?;
        Ok(true)
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The expected bytes of every block of one shuffle.
pub struct Content {
    shuffle_id: i32,
    seed: u64,
    block_size: usize,
    pattern: Vec<u8>,
}

impl Content {
    pub fn new(shape: &Shape) -> Content {
        let len = PATTERN_SPAN + shape.block_size as usize;
        let mut pattern = Vec::with_capacity(len + 8);
        let mut x = shape.seed;
        while pattern.len() < len {
            x = splitmix64(x);
            pattern.extend_from_slice(&x.to_le_bytes());
        }
        pattern.truncate(len);
        Content {
            shuffle_id: shape.shuffle_id,
            seed: shape.seed,
            block_size: shape.block_size as usize,
            pattern,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    fn tag(&self, map: u32, reduce: u32) -> [u8; TAG_LEN] {
        let mut t = [0u8; TAG_LEN];
        t[..4].copy_from_slice(b"CRPB");
        t[4..8].copy_from_slice(&(self.shuffle_id as u32).to_be_bytes());
        t[8..12].copy_from_slice(&map.to_be_bytes());
        t[12..16].copy_from_slice(&reduce.to_be_bytes());
        t
    }

    fn start(&self, map: u32, reduce: u32) -> usize {
        let k = self.seed
            ^ ((self.shuffle_id as u64) << 48)
            ^ (u64::from(map) << 24)
            ^ u64::from(reduce);
        (splitmix64(k) % PATTERN_SPAN as u64) as usize
    }

    /// Writes block `(map, reduce)` into `out` (whose length is the block size).
    pub fn fill(&self, map: u32, reduce: u32, out: &mut [u8]) {
        let start = self.start(map, reduce);
        out.copy_from_slice(&self.pattern[start..start + out.len()]);
        let n = TAG_LEN.min(out.len());
        out[..n].copy_from_slice(&self.tag(map, reduce)[..n]);
    }

    /// Whether `got` is exactly block `(map, reduce)`.
    pub fn matches(&self, map: u32, reduce: u32, got: &[u8]) -> bool {
        if got.len() != self.block_size {
            return false;
        }
        let n = TAG_LEN.min(got.len());
        let start = self.start(map, reduce);
        got[..n] == self.tag(map, reduce)[..n]
            && got[n..] == self.pattern[start + n..start + got.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_matches_spark_vectors() {
        // Test vectors from the protocol digest (observed with Spark's executors).
        assert_eq!(java_hash("shuffle_0_5_0.data"), 705928743);
        assert_eq!(java_hash("shuffle_0_0_0.checksum.ADLER32"), -103986100);
        let one = [PathBuf::from("/d0")];
        let two = [PathBuf::from("/d0"), PathBuf::from("/d1")];
        assert_eq!(
            spark_path(&one, 64, "shuffle_0_5_0.data"),
            Path::new("/d0/27/shuffle_0_5_0.data")
        );
        assert_eq!(
            spark_path(&two, 64, "shuffle_0_5_0.index"),
            Path::new("/d1/3a/shuffle_0_5_0.index")
        );
        assert_eq!(spark_path(&two, 64, "rdd_3_7"), Path::new("/d0/2f/rdd_3_7"));
        assert_eq!(
            spark_path(&one, 64, "shuffle_12_34567_0.data"),
            Path::new("/d0/0a/shuffle_12_34567_0.data")
        );
    }

    #[test]
    fn content_is_distinct_and_checkable() {
        let shape = Shape {
            shuffle_id: 3,
            maps: 2,
            reduces: 2,
            block_size: 100,
            seed: 7,
        };
        let c = Content::new(&shape);
        let (mut a, mut b) = (vec![0u8; 100], vec![0u8; 100]);
        c.fill(0, 1, &mut a);
        c.fill(1, 0, &mut b);
        assert_ne!(a, b);
        assert!(c.matches(0, 1, &a));
        assert!(!c.matches(1, 0, &a));
        a[99] ^= 1;
        assert!(!c.matches(0, 1, &a));
        let tiny = Shape {
            block_size: 5,
            ..shape
        };
        let c = Content::new(&tiny);
        let mut t = vec![0u8; 5];
        c.fill(1, 1, &mut t);
        assert_eq!(&t, b"CRPB\0");
        assert!(c.matches(1, 1, &t));
    }
}
