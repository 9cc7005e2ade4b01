//! Zero-copy chunk transmission on a blocking-pool thread: resolve the chunk (registry, index
//! cache, data file opened now and closed right after), write the frame header, then `sendfile`
//! the data-file segment straight from the page cache to the socket.
//!
//! The socket is non-blocking (owned by tokio); when its buffer is full we `poll` for
//! writability on this blocking thread, never on a reactor thread. Disk reads inside `sendfile`
//! therefore never stall the reactor that serves RPCs.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::index_cache::IndexError;
use crate::metrics::ErrorKind;
use crate::resolver::ResolveError;
use crate::server::Shared;
use crate::streams::{ChunkRef, ChunkWhat};

/// Why a chunk could not be sent before anything was written (answered with a failure frame).
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("Failed to open data file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("index file {index} points past the end of data file {data}: segment [{offset}, {end}) but the file has {size} bytes")]
    PastEof {
        index: PathBuf,
        data: PathBuf,
        offset: u64,
        end: u64,
        size: u64,
    },
    #[error("RDD block file {path} does not exist")]
    RddMissing { path: PathBuf },
    #[error("RDD block fetching is disabled (spark.shuffle.service.fetch.rdd.enabled=false)")]
    RddDisabled,
}

impl ChunkError {
    /// The `croupier_shuffle_errors` kind: missing things are `unknown_block`, unreadable or
    /// inconsistent files `io`.
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            ChunkError::Resolve(_) | ChunkError::RddMissing { .. } => ErrorKind::UnknownBlock,
            ChunkError::Index(IndexError::OutOfRange { .. }) => ErrorKind::UnknownBlock,
            ChunkError::Index(IndexError::Io { source, .. }) | ChunkError::Open { source, .. }
                if source.kind() == io::ErrorKind::NotFound =>
            {
                ErrorKind::UnknownBlock
            }
            ChunkError::Index(_) | ChunkError::Open { .. } | ChunkError::PastEof { .. } => {
                ErrorKind::Io
            }
            ChunkError::RddDisabled => ErrorKind::BadRequest,
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            ChunkError::Resolve(e) => e.is_retryable(),
            ChunkError::Index(e) => e.is_retryable(),
            ChunkError::Open { .. } => true,
            _ => false,
        }
    }
}

/// A resolved segment, file open.
pub struct Segment {
    pub file: File,
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    /// Reduce partitions covered (for the blockTransferRate metric).
    pub blocks: u64,
}

/// Resolves a chunk to an open data-file segment. Blocking.
pub fn resolve(shared: &Shared, chunk: &ChunkRef) -> Result<Segment, ChunkError> {
    let exec = shared.registry.get(&chunk.app_id, &chunk.exec_id)?;
    match chunk.what {
        ChunkWhat::Shuffle { shuffle_id, range } => {
            let index_path = exec.index_path(shuffle_id, range.map_id);
            let index = shared.index_cache.get(&index_path)?;
            let (offset, len) = index.segment(&index_path, range.start, range.end)?;
            let path = exec.data_path(shuffle_id, range.map_id);
            let file = File::open(&path).map_err(|source| ChunkError::Open {
                path: path.clone(),
                source,
            })?;
            let size = file
                .metadata()
                .map_err(|source| ChunkError::Open {
                    path: path.clone(),
                    source,
                })?
                .len();
            if offset.saturating_add(len) > size {
                return Err(ChunkError::PastEof {
                    index: index_path,
                    data: path,
                    offset,
                    end: offset + len,
                    size,
                });
            }
            Ok(Segment {
                file,
                path,
                offset,
                len,
                blocks: (range.end - range.start) as u64,
            })
        }
        ChunkWhat::Rdd { rdd_id, split } => {
            if !shared.config.fetch_rdd_enabled {
                return Err(ChunkError::RddDisabled);
            }
            let path = exec.rdd_path(rdd_id, split);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(ChunkError::RddMissing { path })
                }
                Err(source) => return Err(ChunkError::Open { path, source }),
            };
            let len = file
                .metadata()
                .map_err(|source| ChunkError::Open {
                    path: path.clone(),
                    source,
                })?
                .len();
            Ok(Segment {
                file,
                path,
                offset: 0,
                len,
                blocks: 1,
            })
        }
    }
}

/// Where a resolved chunk's bytes are: `offset..offset+len` of [`Sender`]'s open file.
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    pub offset: u64,
    pub len: u64,
    /// Reduce partitions covered (for the blockTransferRate metric).
    pub blocks: u64,
}

/// Resolves and sends the chunks of one blocking job, holding at most one data file open.
pub struct Sender<'a> {
    shared: &'a Shared,
    cur: Option<Segment>,
}

impl<'a> Sender<'a> {
    pub fn new(shared: &'a Shared) -> Self {
        Sender { shared, cur: None }
    }

    /// Resolves `chunk` and leaves its data file open for [`Sender::send`]. Blocking.
    pub fn resolve(&mut self, chunk: &ChunkRef) -> Result<Seg, ChunkError> {
        self.cur = None;
        let seg = resolve(self.shared, chunk)?;
        let r = Seg {
            offset: seg.offset,
            len: seg.len,
            blocks: seg.blocks,
        };
        self.cur = Some(seg);
        Ok(r)
    }

    /// The path of the file last resolved (for messages).
    pub fn path(&self) -> &Path {
        self.cur
            .as_ref()
            .map_or(Path::new(""), |s| s.path.as_path())
    }

    /// `sendfile`s `seg` from the file last resolved. Blocking.
    pub fn send(&self, sock: BorrowedFd<'_>, seg: &Seg) -> io::Result<()> {
        match &self.cur {
            Some(open) => send_range(sock, &open.file, &open.path, seg.offset, seg.len),
            None => Err(io::Error::other("no data file open")),
        }
    }
}

/// Waits until `fd` is writable (or errored). Returns an error on poll failure.
fn wait_writable(fd: RawFd) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: `p` is a valid pollfd for the duration of the call; nfds is 1.
        let r = unsafe { libc::poll(&mut p, 1, 1000) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r > 0 {
            return Ok(());
        }
    }
}

/// Writes all of `buf` to the (non-blocking) socket. Blocking. With `more`, the kernel is told
/// that data follows (`MSG_MORE`), so a small header and its `sendfile`d body share packets.
pub fn write_all(sock: BorrowedFd<'_>, mut buf: &[u8], more: bool) -> io::Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    // nix has no MSG_MORE constant; it is a plain Linux send(2) flag. MSG_NOSIGNAL: a peer
    // that went away is an EPIPE error here, never a signal.
    let more_flag = if more {
        MsgFlags::from_bits_retain(libc::MSG_MORE)
    } else {
        MsgFlags::empty()
    };
    let flags = more_flag | MsgFlags::MSG_NOSIGNAL;
    while !buf.is_empty() {
        match send(sock_raw(sock), buf, flags) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket accepted no bytes",
                ))
            }
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EAGAIN) => wait_writable(sock_raw(sock))?,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn sock_raw(sock: BorrowedFd<'_>) -> RawFd {
    use std::os::fd::AsRawFd;
    sock.as_raw_fd()
}

/// `sendfile`s `len` bytes of `file` from `offset`. A short file (truncated while we send) is an
/// error: the frame header already promised `len` bytes, so the caller must close the connection.
fn send_range(
    sock: BorrowedFd<'_>,
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let mut off = offset as i64;
    let end = (offset + len) as i64;
    while off < end {
        let want = ((end - off) as usize).min(1 << 30);
        match nix::sys::sendfile::sendfile64(sock, file.as_fd(), Some(&mut off), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "data file {} ended at byte {off} while sending up to {end}",
                        path.display()
                    ),
                ))
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EAGAIN) => wait_writable(sock_raw(sock))?,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
