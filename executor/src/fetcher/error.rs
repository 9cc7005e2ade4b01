//! The fetcher's error: which URI failed, why, and whether trying again may help.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why one URI could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchErrorKind {
    #[error("invalid URI: {0}")]
    InvalidUri(String),
    #[error("unsupported URI scheme '{0}' (supported: http, https, file, hdfs, s3, s3a, s3n, or an absolute path)")]
    UnsupportedScheme(String),
    #[error("HTTP status {status} from {url} (only 200 is accepted)")]
    HttpStatus { status: u16, url: String },
    #[error("DNS resolution failed: {0}")]
    Dns(String),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("download stalled: no data received for {0:?}")]
    Stalled(Duration),
    #[error("truncated body: received {got} bytes, expected {expected}{}", cause_suffix(.cause))]
    Truncated {
        got: u64,
        expected: u64,
        /// What ended the stream early, when the transport said (a reset, a checksum error, a
        /// DataNode gone); `None` when the body simply ended short.
        cause: Option<String>,
    },
    #[error("transfer failed: {0}")]
    Transfer(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("disk full while writing {}", .0.display())]
    DiskFull(PathBuf),
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad archive {}: {reason}", .path.display())]
    BadArchive { path: PathBuf, reason: String },
    #[error("unsafe archive {}: entry {entry:?} {reason}", .path.display())]
    UnsafeArchive {
        path: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("remote store error: {0}")]
    Remote(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn cause_suffix(cause: &Option<String>) -> String {
    match cause {
        Some(c) => format!(" ({c})"),
        None => String::new(),
    }
}

/// A failed URI: `Display` reads `failed to fetch '<uri>': <cause>`.
#[derive(Debug, thiserror::Error)]
#[error("failed to fetch '{uri}': {kind}")]
pub struct FetchError {
    pub uri: String,
    #[source]
    pub kind: FetchErrorKind,
}

impl FetchError {
    pub fn new(uri: impl Into<String>, kind: FetchErrorKind) -> Self {
        FetchError {
            uri: uri.into(),
            kind,
        }
    }

    /// True when the same fetch may succeed later (network trouble, 5xx, a full disk);
    /// false for a bad URI, a 404, a bad archive or a refused path.
    pub fn retryable(&self) -> bool {
        use FetchErrorKind::*;
        match &self.kind {
            HttpStatus { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Dns(_)
            | Connect(_)
            | Stalled(_)
            | Truncated { .. }
            | Transfer(_)
            | DiskFull(_)
            | Remote(_) => true,
            Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            InvalidUri(_)
            | UnsupportedScheme(_)
            | NotFound(_)
            | PermissionDenied(_)
            | BadArchive { .. }
            | UnsafeArchive { .. }
            | Internal(_) => false,
        }
    }
}

/// Maps an I/O error on `path` to a kind, recognising a full disk or quota.
pub(crate) fn io_kind(path: &Path, e: std::io::Error) -> FetchErrorKind {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => FetchErrorKind::DiskFull(path.to_path_buf()),
        _ => match e.kind() {
            std::io::ErrorKind::NotFound => FetchErrorKind::NotFound(path.display().to_string()),
            std::io::ErrorKind::PermissionDenied => {
                FetchErrorKind::PermissionDenied(path.display().to_string())
            }
            _ => FetchErrorKind::Io {
                path: path.to_path_buf(),
                source: e,
            },
        },
    }
}
