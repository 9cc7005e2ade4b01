//! Zero-copy chunk transmission on a blocking-pool thread: resolve the chunk (registry, index
//! cache, data file opened now and closed right after its chunks are sent), write the frame
//! header, then `sendfile` the data-file segment straight from the page cache to the socket.
//!
//! The socket is non-blocking (owned by tokio); when its buffer is full we `poll` for
//! writability on this blocking thread, never on a reactor thread. Disk reads inside `sendfile`
//! therefore never stall the reactor that serves RPCs.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::auth::channel::Outbound;
use crate::index_cache::{IndexError, MapOutput};
use crate::metrics::ErrorKind;
use crate::resolver::{Executor, ResolveError};
use crate::state::Shared;
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

/// Bytes read and encrypted at a time for an encrypted connection.
pub const SEAL_BATCH: usize = 1 << 20;

/// Where a resolved chunk's bytes are: `offset..offset+len` of [`Sender`]'s open file.
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    pub offset: u64,
    pub len: u64,
    /// Reduce partitions covered (for the blockTransferRate metric).
    pub blocks: u64,
}

/// The data file a [`Sender`] holds open.
struct Open {
    file: File,
    /// Its size when opened.
    size: u64,
    what: OpenWhat,
}

enum OpenWhat {
    Shuffle(Arc<MapOutput>),
    Rdd(PathBuf),
}

impl Open {
    fn path(&self) -> &Path {
        match &self.what {
            OpenWhat::Shuffle(m) => &m.data_path,
            OpenWhat::Rdd(p) => p,
        }
    }
}

/// Resolves and sends the chunks of one blocking job. It holds at most one data file open:
/// consecutive chunks of the same map output share one `open`; the file is closed when the
/// next chunk needs another one, or when the job ends (the sender is dropped). Executor
/// lookups are reused across the chunks of one stream.
pub struct Sender<'a> {
    shared: &'a Shared,
    /// The last `(appId, execId)` looked up (the stream's own `Arc`s) and its registration.
    exec: Option<(Arc<str>, Arc<str>, Arc<Executor>)>,
    open: Option<Open>,
}

impl<'a> Sender<'a> {
    pub fn new(shared: &'a Shared) -> Self {
        Sender {
            shared,
            exec: None,
            open: None,
        }
    }

    fn executor(&mut self, chunk: &ChunkRef) -> Result<Arc<Executor>, ResolveError> {
        if let Some((app, ex, e)) = &self.exec {
            if Arc::ptr_eq(app, &chunk.app_id) && Arc::ptr_eq(ex, &chunk.exec_id) {
                return Ok(e.clone());
            }
        }
        let e = self.shared.registry.get(&chunk.app_id, &chunk.exec_id)?;
        self.exec = Some((chunk.app_id.clone(), chunk.exec_id.clone(), e.clone()));
        Ok(e)
    }

    /// Resolves `chunk` and leaves its data file open for [`Sender::send`]. Blocking.
    pub fn resolve(&mut self, chunk: &ChunkRef) -> Result<Seg, ChunkError> {
        let exec = self.executor(chunk)?;
        match chunk.what {
            ChunkWhat::Shuffle { shuffle_id, range } => {
                let (m, size) = match &self.open {
                    // Same map output as the previous chunk: its file is already open.
                    Some(Open {
                        size,
                        what: OpenWhat::Shuffle(m),
                        ..
                    }) if m.map_id == range.map_id
                        && m.shuffle_id == shuffle_id
                        && Arc::ptr_eq(&m.exec, &exec) =>
                    {
                        (m.clone(), *size)
                    }
                    _ => {
                        self.open = None;
                        let m = self
                            .shared
                            .index_cache
                            .get(&exec, shuffle_id, range.map_id)?;
                        let (file, size) = open(&m.data_path)?;
                        self.open = Some(Open {
                            file,
                            size,
                            what: OpenWhat::Shuffle(m.clone()),
                        });
                        (m, size)
                    }
                };
                let (offset, len) = m.index.segment(&m.index_path, range.start, range.end)?;
                if offset.saturating_add(len) > size {
                    return Err(ChunkError::PastEof {
                        index: m.index_path.clone(),
                        data: m.data_path.clone(),
                        offset,
                        end: offset + len,
                        size,
                    });
                }
                Ok(Seg {
                    offset,
                    len,
                    blocks: (range.end - range.start) as u64,
                })
            }
            ChunkWhat::Rdd { rdd_id, split } => {
                self.open = None;
                if !self.shared.config.fetch_rdd_enabled {
                    return Err(ChunkError::RddDisabled);
                }
                let path = exec.rdd_path(rdd_id, split);
                let (file, size) = match open(&path) {
                    Ok(f) => f,
                    Err(ChunkError::Open { path, source })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        return Err(ChunkError::RddMissing { path })
                    }
                    Err(e) => return Err(e),
                };
                self.open = Some(Open {
                    file,
                    size,
                    what: OpenWhat::Rdd(path),
                });
                Ok(Seg {
                    offset: 0,
                    len: size,
                    blocks: 1,
                })
            }
        }
    }

    /// The file last resolved, if it opened.
    pub fn file(&self) -> Option<&File> {
        self.open.as_ref().map(|o| &o.file)
    }

    /// The path of the file last resolved (for messages).
    pub fn path(&self) -> &Path {
        self.open.as_ref().map_or(Path::new(""), Open::path)
    }

    /// For an encrypted connection: sends `header` and then `seg` of the file last resolved,
    /// read in batches of [`SEAL_BATCH`] bytes and sealed with `cipher` (no zero-copy). Blocking.
    pub fn send_sealed(
        &self,
        sock: BorrowedFd<'_>,
        header: Vec<u8>,
        seg: &Seg,
        cipher: &mut Outbound,
    ) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let open = self
            .open
            .as_ref()
            .ok_or_else(|| io::Error::other("no data file open"))?;
        let mut buf = header;
        buf.reserve(SEAL_BATCH.min(seg.len as usize));
        let mut scratch = Vec::new();
        let (mut off, end) = (seg.offset, seg.offset + seg.len);
        loop {
            let at = buf.len();
            let want = ((end - off) as usize).min(SEAL_BATCH);
            buf.resize(at + want, 0);
            open.file.read_exact_at(&mut buf[at..], off).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "reading {} bytes at {off} of {}: {e}",
                        want,
                        open.path().display()
                    ),
                )
            })?;
            off += want as u64;
            let sealed = cipher.seal_buf(&mut buf, &mut scratch);
            write_all(sock, sealed, off < end)?;
            buf.clear();
            if off >= end {
                return Ok(());
            }
        }
    }

    /// `sendfile`s `seg` from the file last resolved. Blocking.
    pub fn send(&self, sock: BorrowedFd<'_>, seg: &Seg) -> io::Result<()> {
        match &self.open {
            Some(open) => send_range(sock, &open.file, open.path(), seg.offset, seg.len),
            None => Err(io::Error::other("no data file open")),
        }
    }
}

/// Opens a data file and reads its size.
fn open(path: &Path) -> Result<(File, u64), ChunkError> {
    let err = |source| ChunkError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    let size = file.metadata().map_err(err)?.len();
    Ok((file, size))
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
