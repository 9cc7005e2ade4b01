//! The registration store's file, as redb sees it: redb's own file backend, plus failpoints
//! (the `fail` crate's registry) compiled into debug builds only (the tests' builds; the
//! `failpoints` feature adds them to a release build), so tests can make a write, a sync or a
//! resize fail with EIO or ENOSPC, in-process (`fail::cfg`) or in a spawned service binary
//! (`CROUPIER_FAILPOINTS`). Release builds, which the packages ship, have none.
//!
//! A failpoint's action is `return(ERRNO:PATH_PART)`, e.g. `1*return(ENOSPC:/tmp/.tmpX)`: the
//! error is injected only into a file whose path contains `PATH_PART` (tests run in parallel
//! in one process, each with its own directory). Failpoints: `store_file::write`,
//! `store_file::sync`, `store_file::set_len`.

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
    #[cfg_attr(not(any(debug_assertions, feature = "failpoints")), allow(dead_code))]
    armed: Arc<AtomicBool>,
    #[cfg_attr(not(any(debug_assertions, feature = "failpoints")), allow(dead_code))]
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

    /// The error a failpoint injects for this file, if one is configured for it. Release
    /// builds (the packages) compile this to `None`.
    #[cfg(any(debug_assertions, feature = "failpoints"))]
    fn injected(&self, point: &str) -> Option<io::Error> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        let arg = fail::eval(point, |arg| arg)??;
        let (errno, part) = arg.split_once(':')?;
        if !self.path.to_string_lossy().contains(part) {
            return None;
        }
        let code = match errno {
            "ENOSPC" => libc::ENOSPC,
            _ => libc::EIO,
        };
        Some(io::Error::from_raw_os_error(code))
    }

    #[cfg(not(any(debug_assertions, feature = "failpoints")))]
    fn injected(&self, _point: &str) -> Option<io::Error> {
        None
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

/// Test hook: `CROUPIER_FAILPOINTS="name=actions;name=actions"` configures failpoints in a
/// spawned debug-build service binary. A malformed entry is logged and skipped, never fatal.
/// Release builds ignore the variable.
#[cfg(not(any(debug_assertions, feature = "failpoints")))]
pub fn configure_failpoints_from_env() {}

/// See the release-build twin above.
#[cfg(any(debug_assertions, feature = "failpoints"))]
pub fn configure_failpoints_from_env() {
    let Ok(spec) = std::env::var("CROUPIER_FAILPOINTS") else {
        return;
    };
    for item in spec.split(';').filter(|s| !s.trim().is_empty()) {
        match item.split_once('=') {
            Some((name, actions)) => match fail::cfg(name.trim(), actions.trim()) {
                Ok(()) => tracing::warn!("CROUPIER_FAILPOINTS: failpoint {name} set to {actions}"),
                Err(e) => tracing::error!("CROUPIER_FAILPOINTS: {item:?} ignored: {e}"),
            },
            None => tracing::error!("CROUPIER_FAILPOINTS: {item:?} ignored: expected name=actions"),
        }
    }
}
