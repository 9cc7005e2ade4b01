//! Putting a cache entry into a sandbox: reflink (FICLONE) where the file system supports it,
//! else an in-kernel copy (`copy_file_range` via `std::io::copy`), or a hardlink when the
//! operator opted in. Blocking: call from `spawn_blocking`.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::error::{io_kind, FetchErrorKind};

/// How an entry reached the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Reflink,
    Copy,
    Hardlink,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Reflink => "reflink",
            Method::Copy => "copy",
            Method::Hardlink => "hardlink",
        })
    }
}

/// Unlinks whatever non-directory is at `dst` (a file, a hardlink to a cache entry, a
/// symlink), so that the caller can create a new file there with `O_EXCL`; a directory is an
/// error.
pub(crate) fn remove_existing(dst: &Path) -> Result<(), FetchErrorKind> {
    match fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => Err(FetchErrorKind::InvalidUri(format!(
            "destination {} is a directory",
            dst.display()
        ))),
        Ok(_) => fs::remove_file(dst).map_err(|e| io_kind(dst, e)),
        Err(_) => Ok(()),
    }
}

/// Copies `src` to a new file `dst` (replacing a file there): reflink first, else
/// `copy_file_range`. The new file is independent of `src`.
pub fn copy_out(src: &Path, dst: &Path) -> Result<Method, FetchErrorKind> {
    use std::os::unix::fs::OpenOptionsExt;
    remove_existing(dst)?;
    let mut from = fs::File::open(src).map_err(|e| io_kind(src, e))?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dst)
        .map_err(|e| io_kind(dst, e))?;
    // SAFETY: FICLONE takes the source descriptor as its argument; both descriptors are open
    // for the duration of the call.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
    if rc == 0 {
        return Ok(Method::Reflink);
    }
    std::io::copy(&mut from, &mut to).map_err(|e| io_kind(dst, e))?;
    Ok(Method::Copy)
}

/// Hardlinks `src` to `dst`; falls back to [`copy_out`] across file systems.
pub fn link_out(src: &Path, dst: &Path) -> Result<Method, FetchErrorKind> {
    remove_existing(dst)?;
    match fs::hard_link(src, dst) {
        Ok(()) => Ok(Method::Hardlink),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::EPERM)) => {
            copy_out(src, dst)
        }
        Err(e) => Err(io_kind(dst, e)),
    }
}
