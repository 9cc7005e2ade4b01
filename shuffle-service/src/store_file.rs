//! The registration store's file, as redb sees it: redb's own file backend, with the test
//! failpoints of [`crate::faults`] (debug builds only) in front of the calls that change the
//! file: `store_file::write`, `store_file::sync`, `store_file::set_len`.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, Database, DatabaseError, StorageBackend};

/// Opens (or creates) the redb database at `path` through [`StoreFile`].
pub fn open_database(path: &Path) -> Result<Database, DatabaseError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let backend = StoreFile::new(path, file)?;
    let armed = backend.armed.clone();
    let db = Database::builder().create_with_backend(backend)?;
    armed.store(true, Ordering::Relaxed);
    Ok(db)
}

/// redb's file backend with test failpoints in front of the calls that change the file.
#[derive(Debug)]
pub struct StoreFile {
    inner: FileBackend,
    /// Set once redb has opened the file: failpoints act on the store's own writes, not on
    /// redb's open-time header update or repair (start-up failures have tests of their own).
    armed: Arc<AtomicBool>,
    path: PathBuf,
}

impl StoreFile {
    fn new(path: &Path, file: File) -> Result<StoreFile, DatabaseError> {
        Ok(StoreFile {
            inner: FileBackend::new(file)?,
            armed: Arc::new(AtomicBool::new(false)),
            path: path.to_owned(),
        })
    }

    /// The error a failpoint injects into this file, once redb has opened it.
    fn injected(&self, point: &str) -> Option<io::Error> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        crate::faults::injected(point, &self.path)
    }
}

impl StorageBackend for StoreFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        if let Some(e) = self.injected("store_file::set_len") {
            return Err(e);
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        if let Some(e) = self.injected("store_file::sync") {
            return Err(e);
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        if let Some(e) = self.injected("store_file::write") {
            return Err(e);
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
