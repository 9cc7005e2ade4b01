//! Chunk transmission, mostly on a blocking-pool thread: resolve the chunk (registry, index cache,
//! data file from [`crate::data_files`], opened there at most every couple of seconds per map
//! output; an RDD block file opened now and closed after it is sent), write the frame header,
//! then `sendfile` the data-file segment straight from the page cache to the socket. Small
//! chunks of a plaintext connection ([`SMALL_CHUNK`]) are instead gathered with `pread` into a
//! [`Batch`] sent whole: one send for many chunks.
//!
//! The socket is non-blocking (owned by tokio). A blocking thread never waits for it: when its
//! buffer is full, the item being sent stops where it is and comes back as a [`Partial`]; the
//! connection's writer then waits for writability on the reactor (with Spark's
//! `spark.shuffle.io.connectionTimeout` as the no-progress deadline) and hands the rest to a
//! blocking thread again. A client that never reads therefore holds no blocking thread, and
//! disk reads inside `sendfile` never stall the reactor that serves RPCs.
//!
//! One exception to the blocking threads: a burst of small chunks whose registration, index
//! and open data file are all in memory ([`Sender::resolve_cached`]) is gathered and sent from
//! the reactor, each body read with `RWF_NOWAIT` (the page cache or nothing); a chunk that
//! would wait for the disk goes back to a blocking thread (see `server.rs`, `in_memory`).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::auth::channel::Outbound;
use crate::data_files::DataFile;
use crate::index_cache::{IndexError, MapOutput};
use crate::metrics::ErrorKind;
use crate::resolver::{Executor, ResolveError};
use crate::state::Shared;
use crate::streams::{BlockRange, ChunkRef, ChunkWhat};

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
    file: Arc<File>,
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

/// What a [`Sender`] resolved, without its borrow of the shared state.
pub struct Resolved {
    exec: Option<(Arc<str>, Arc<str>, Arc<Executor>)>,
    open: Option<Open>,
}

/// Resolves and sends the chunks of one burst (a blocking job, or a burst on the reactor,
/// which resolves only from memory: [`Sender::resolve_cached`]). It holds at most one file of
/// its own: consecutive chunks of the same map output skip even the shared table's lookup;
/// shuffle data files are shared with [`crate::data_files`], an RDD block file is closed when
/// the next chunk needs another file, or when the burst ends (the sender is dropped). Executor
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

    /// What this sender has looked up and opened, to hand to a sender on another thread
    /// ([`Sender::resume`]): the work of resolving is not done twice.
    pub fn into_resolved(self) -> Resolved {
        Resolved {
            exec: self.exec,
            open: self.open,
        }
    }

    /// A sender that starts with what another one resolved.
    pub fn resume(shared: &'a Shared, resolved: Resolved) -> Self {
        Sender {
            shared,
            exec: resolved.exec,
            open: resolved.open,
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

    /// Resolves `chunk` and leaves its data file open for [`Batch::send`]. Blocking.
    pub fn resolve(&mut self, chunk: &ChunkRef) -> Result<Seg, ChunkError> {
        let exec = self.executor(chunk)?;
        match chunk.what {
            ChunkWhat::Shuffle { shuffle_id, range } => {
                let (m, size) = match self.still_open(&exec, shuffle_id, range.map_id) {
                    Some(open) => open,
                    None => {
                        self.open = None;
                        let m = self
                            .shared
                            .index_cache
                            .get(&exec, shuffle_id, range.map_id)?;
                        // Held open across chunks and requests (bounded in count and age).
                        let d = self
                            .shared
                            .data_files
                            .get(&m, || open(&m.exec, &m.data_path))?;
                        self.keep_open(m, d)
                    }
                };
                segment(&m, size, range)
            }
            ChunkWhat::Rdd { rdd_id, split } => {
                self.open = None;
                if !self.shared.config.fetch_rdd_enabled {
                    return Err(ChunkError::RddDisabled);
                }
                let path = exec.rdd_path(rdd_id, split);
                let (file, size) = match open(&exec, &path) {
                    Ok(f) => f,
                    Err(ChunkError::Open { path, source })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        return Err(ChunkError::RddMissing { path })
                    }
                    Err(e) => return Err(e),
                };
                self.open = Some(Open {
                    file: Arc::new(file),
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

    /// Resolves a shuffle chunk from what is in memory (the registration, the index cache, the
    /// open data files) and leaves its data file open, as [`Sender::resolve`] does, which then
    /// finds it open; `None`, having read no file, when that is not enough (a miss, an expired
    /// file, an RDD block, an error: the blocking path resolves it then, and answers a
    /// failure). For the reactor thread.
    pub fn resolve_cached(&mut self, chunk: &ChunkRef) -> Option<Seg> {
        let ChunkWhat::Shuffle { shuffle_id, range } = chunk.what else {
            return None;
        };
        let exec = self.executor(chunk).ok()?;
        let (m, size) = match self.still_open(&exec, shuffle_id, range.map_id) {
            Some(open) => open,
            None => {
                self.open = None;
                let m = self
                    .shared
                    .index_cache
                    .peek(&exec, shuffle_id, range.map_id)?;
                let d = self.shared.data_files.peek(&m)?;
                self.keep_open(m, d)
            }
        };
        segment(&m, size, range).ok()
    }

    /// The map output this sender holds open, when it is `(shuffle_id, map_id)` of `exec`:
    /// consecutive chunks of one map output skip even the shared tables' lookups.
    fn still_open(
        &self,
        exec: &Arc<Executor>,
        shuffle_id: i32,
        map_id: i64,
    ) -> Option<(Arc<MapOutput>, u64)> {
        match &self.open {
            Some(Open {
                size,
                what: OpenWhat::Shuffle(m),
                ..
            }) if m.map_id == map_id
                && m.shuffle_id == shuffle_id
                && Arc::ptr_eq(&m.exec, exec) =>
            {
                Some((m.clone(), *size))
            }
            _ => None,
        }
    }

    fn keep_open(&mut self, m: Arc<MapOutput>, d: DataFile) -> (Arc<MapOutput>, u64) {
        self.open = Some(Open {
            file: d.file,
            size: d.size,
            what: OpenWhat::Shuffle(m.clone()),
        });
        (m, d.size)
    }

    /// Would dropping this sender close its file? True when it holds the only reference left:
    /// the data-file table let go of the file meanwhile (its blocks were deleted, or the
    /// application's files), so the close may free a large file's blocks on this thread.
    pub fn holds_last_file(&self) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| Arc::strong_count(&o.file) == 1)
    }

    /// The file last resolved, if it opened.
    pub fn file(&self) -> Option<&File> {
        self.open.as_ref().map(|o| &*o.file)
    }

    /// The path of the file last resolved (for messages).
    pub fn path(&self) -> &Path {
        self.open.as_ref().map_or(Path::new(""), Open::path)
    }

    /// Starts sending `header` and then `seg` of the file last resolved: zero-copy
    /// (`sendfile`) on a plain connection; with a `cipher`, read in batches of [`SEAL_BATCH`]
    /// bytes and sealed (the header is sealed with the first batch). Never waits for the
    /// socket. Blocking (disk).
    pub fn start(
        &self,
        sock: &TcpStream,
        header: Vec<u8>,
        seg: &Seg,
        mut cipher: Option<&mut Outbound>,
    ) -> io::Result<Sent> {
        let open = self
            .open
            .as_ref()
            .ok_or_else(|| io::Error::other("no data file open"))?;
        let body = Body {
            file: open.file.clone(),
            path: open.path().to_owned(),
            off: seg.offset,
            end: seg.offset + seg.len,
        };
        let partial = match cipher.as_deref_mut() {
            None => Partial {
                out: header,
                at: 0,
                prefix: Vec::new(),
                body: (seg.len > 0).then_some(body),
            },
            Some(c) if seg.len == 0 => Partial::bytes(c.seal(header)),
            Some(_) => Partial {
                out: Vec::new(),
                at: 0,
                prefix: header,
                body: Some(body),
            },
        };
        partial.resume(sock, cipher)
    }
}

/// Chunks of at most this many bytes are gathered into a [`Batch`] on a plaintext connection
/// instead of a header `send` plus a `sendfile` each (and, when in memory, sent from the
/// reactor: `server.rs`). Measured with `bench/shuffle-ab.sh` (blocks/s against `sendfile` per
/// chunk): gathering gained 2.1x at 4 KiB and 1.8x at 8 KiB from blocking threads, where it lost
/// at 16 KiB (0.98x); since bursts in memory go from the reactor, 16 KiB gains 1.32–1.48x at
/// 16–256 connections (CPU per block −26–37%), while 32 KiB gains 5–9% for 2–8% more CPU per
/// block and a p99 up 16–46%: copying the bodies through user space costs about what it saves.
pub const SMALL_CHUNK: u64 = 16 << 10;

/// The most bytes (headers and bodies) one [`Batch`] holds: its buffer's bound, per blocking
/// job. A batch always takes one chunk, so one of [`SMALL_CHUNK`] bytes fits whatever this is.
pub const BATCH_BYTES: usize = 256 << 10;

/// Consecutive small chunks of a plaintext connection, gathered into one buffer: each frame
/// header followed by its body, read with one `pread` per chunk, then written with one `send`
/// for the whole batch (about one system call per chunk instead of two or more).
#[derive(Default)]
pub struct Batch {
    buf: Vec<u8>,
    /// What this batch may grow to, measured on the socket ([`Batch::fit_to`]): the room left
    /// in its buffer, so that a connection whose peer stopped reading holds about one chunk
    /// while it waits, not a whole batch. `None` until measured for the chunks now gathered
    /// ([`BATCH_BYTES`] then): the room (two system calls) is measured only when a second
    /// item is considered, since a lone chunk always fits and a chunk too large to gather goes
    /// to `sendfile` without it.
    limit: Option<usize>,
}

/// Why a chunk was not added to a [`Batch`].
#[derive(Debug)]
pub enum PushError {
    /// Its bytes are not in the page cache (the batch already holds chunks): send those first
    /// rather than keep them waiting on the disk.
    NotCached,
    /// The read failed, or the data file ends before the segment does.
    Read(io::Error),
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    /// Limits the batch to the room left in `sock`'s send buffer (its size less what is
    /// queued in it), between one small chunk and [`BATCH_BYTES`].
    pub fn fit_to(&mut self, sock: &TcpStream) {
        let fd = sock.as_raw_fd();
        let size = nix::sys::socket::getsockopt(&sock.as_fd(), nix::sys::socket::sockopt::SndBuf)
            .unwrap_or(BATCH_BYTES * 2);
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one c_int, the bytes not yet sent or acknowledged, into
        // the valid, exclusively borrowed `queued`.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
        let queued = if rc == 0 { queued.max(0) as usize } else { 0 };
        self.limit = Some(
            size.saturating_sub(queued)
                .clamp(SMALL_CHUNK as usize, BATCH_BYTES),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes gathered.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether a chunk of `header_len` + `body_len` bytes still fits under the batch's limit
    /// (always, in an empty batch; `fits(0, 0)`: whether the batch is still within it).
    pub fn fits(&self, header_len: usize, body_len: u64) -> bool {
        self.buf.is_empty()
            || (self.buf.len() as u64)
                .saturating_add(header_len as u64)
                .saturating_add(body_len)
                <= self.limit.unwrap_or(BATCH_BYTES) as u64
    }

    /// [`Batch::fits`], the limit measured on `sock` ([`Batch::fit_to`]) the first time it is
    /// asked with chunks gathered.
    pub fn fits_on(&mut self, sock: &TcpStream, header_len: usize, body_len: u64) -> bool {
        if !self.buf.is_empty() && self.limit.is_none() {
            self.fit_to(sock);
        }
        self.fits(header_len, body_len)
    }

    /// Appends `header` and the `seg` bytes of `file` (named `path` in errors). Blocking (disk),
    /// unless `never_wait`.
    /// On an error, a data file that ends before the segment's end included, the batch is left
    /// as it was: the chunk is to be sent some other way (which will report it).
    ///
    /// When the batch already holds chunks, or with `never_wait` (on the reactor), the bytes
    /// are read only if the page cache has them all, without waiting for the disk (`preadv2`
    /// with `RWF_NOWAIT`); otherwise [`PushError::NotCached`], so that the chunks gathered go
    /// out before this one waits on the disk, on a blocking thread.
    pub fn push(
        &mut self,
        header: &[u8],
        file: &File,
        path: &Path,
        seg: &Seg,
        never_wait: bool,
    ) -> Result<(), PushError> {
        use std::os::unix::fs::FileExt;
        let at = self.buf.len();
        let len = usize::try_from(seg.len).map_err(|e| PushError::Read(io::Error::other(e)))?;
        self.buf.extend_from_slice(header);
        let body = self.buf.len();
        self.buf.resize(body + len, 0);
        let read = if (at > 0 || never_wait) && len > 0 {
            if !read_if_cached(file, &mut self.buf[body..], seg.offset) {
                self.buf.truncate(at);
                return Err(PushError::NotCached);
            }
            Ok(())
        } else {
            file.read_exact_at(&mut self.buf[body..], seg.offset)
        };
        if let Err(e) = read {
            self.buf.truncate(at);
            return Err(PushError::Read(io::Error::new(
                e.kind(),
                format!(
                    "reading {len} bytes at {} of {}: {e}",
                    seg.offset,
                    path.display()
                ),
            )));
        }
        Ok(())
    }

    /// Appends a whole frame (a failure answer).
    pub fn push_bytes(&mut self, frame: &[u8]) {
        self.buf.extend_from_slice(frame);
    }

    /// Sends the batch as far as the socket takes it, without waiting. `Ok(None)`: all of it
    /// (the batch is empty again, its buffer kept for the next one); `Ok(Some)`: the socket is
    /// full and the returned [`Partial`] holds exactly the bytes it did not take.
    pub fn send(&mut self, sock: &TcpStream) -> io::Result<Option<Partial>> {
        let mut at = 0;
        while at < self.buf.len() {
            match try_send(sock, &self.buf[at..], false)? {
                Some(n) => at += n,
                None => {
                    // Only the rest is kept while the peer is not reading.
                    self.limit = None;
                    let mut out = std::mem::take(&mut self.buf);
                    out.drain(..at);
                    out.shrink_to_fit();
                    return Ok(Some(Partial {
                        out,
                        at: 0,
                        prefix: Vec::new(),
                        body: None,
                    }));
                }
            }
        }
        self.buf.clear();
        self.limit = None;
        Ok(None)
    }
}

/// `RWF_NOWAIT` (linux/fs.h): fail with `EAGAIN` instead of waiting for the disk.
const RWF_NOWAIT: libc::c_int = 0x08;

/// False once a `RWF_NOWAIT` read was refused as unsupported (a kernel before 4.14, or a file
/// system without it): nothing is then sent from the reactor ([`nowait_reads`]).
static NOWAIT_READS: AtomicBool = AtomicBool::new(true);

/// Can data files be read without waiting for the disk (`RWF_NOWAIT`)? True until a read
/// shows the kernel or file system cannot.
pub fn nowait_reads() -> bool {
    NOWAIT_READS.load(Ordering::Relaxed)
}

/// Fills `buf` from `offset` of `file` if the page cache holds all of it, without waiting for
/// the disk; `false` when it does not (or the kernel or file system cannot tell, which turns
/// [`nowait_reads`] off: the caller then reads it the ordinary way, on a blocking thread).
/// Through the raw system call, so that no newer C library than the packages' is needed.
fn read_if_cached(file: &File, buf: &mut [u8], offset: u64) -> bool {
    let Ok(offset) = libc::c_long::try_from(offset) else {
        return false;
    };
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: one iovec describing `buf`, valid and exclusively borrowed for the call; the
    // descriptor is open for reading. Arguments: fd, iov, iovcnt, pos low, pos high, flags.
    let n = unsafe {
        libc::syscall(
            libc::SYS_preadv2,
            file.as_raw_fd(),
            &iov as *const libc::iovec,
            1 as libc::c_int,
            offset,
            0 as libc::c_long,
            RWF_NOWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error().raw_os_error();
        if matches!(e, Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)) {
            NOWAIT_READS.store(false, Ordering::Relaxed);
        }
        return false;
    }
    n as usize == buf.len()
}

/// Where the rest of an item's body is.
struct Body {
    file: Arc<File>,
    path: PathBuf,
    off: u64,
    end: u64,
}

/// The rest of one item (a frame, or a chunk's header and body) that the socket did not take
/// yet. Resumed with [`Partial::resume`] once the socket is writable again.
pub struct Partial {
    /// Bytes ready for the socket (already sealed on an encrypted connection), from `at`.
    out: Vec<u8>,
    at: usize,
    /// Plaintext to seal in front of the next body batch (a frame header).
    prefix: Vec<u8>,
    /// File bytes still to send after `out`; sealed in batches when a cipher is given.
    body: Option<Body>,
}

/// How far a send got.
pub enum Sent {
    Done,
    /// The socket's buffer is full: wait until it is writable, then resume.
    Blocked(Partial),
}

impl Partial {
    /// Bytes to write as they are (a frame, sealed already if the connection is encrypted).
    pub fn bytes(out: Vec<u8>) -> Partial {
        Partial {
            out,
            at: 0,
            prefix: Vec::new(),
            body: None,
        }
    }

    /// Is what is left only bytes in memory (no file body to read)?
    pub fn is_bytes(&self) -> bool {
        self.body.is_none()
    }

    /// Sends what the socket takes without waiting. `cipher` must be the connection's cipher
    /// when it is encrypted (it seals further body batches). Blocking (disk), never on the
    /// socket.
    pub fn resume(
        mut self,
        sock: &TcpStream,
        mut cipher: Option<&mut Outbound>,
    ) -> io::Result<Sent> {
        loop {
            while self.at < self.out.len() {
                // MSG_MORE: a small header and its body share packets.
                let more = self.body.is_some();
                match try_send(sock, &self.out[self.at..], more)? {
                    Some(n) => self.at += n,
                    None => return Ok(Sent::Blocked(self)),
                }
            }
            let Some(body) = &mut self.body else {
                return Ok(Sent::Done);
            };
            match cipher.as_deref_mut() {
                None => {
                    let want = ((body.end - body.off) as usize).min(1 << 30);
                    match try_sendfile(sock, &body.file, &mut body.off, want)? {
                        None => return Ok(Sent::Blocked(self)),
                        Some(0) => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "data file {} ended at byte {} while sending up to {}",
                                    body.path.display(),
                                    body.off,
                                    body.end
                                ),
                            ))
                        }
                        Some(_) => {}
                    }
                }
                Some(c) => {
                    use std::os::unix::fs::FileExt;
                    let want = ((body.end - body.off) as usize).min(SEAL_BATCH);
                    let mut buf = std::mem::take(&mut self.prefix);
                    let at = buf.len();
                    buf.resize(at + want, 0);
                    body.file
                        .read_exact_at(&mut buf[at..], body.off)
                        .map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!(
                                    "reading {want} bytes at {} of {}: {e}",
                                    body.off,
                                    body.path.display()
                                ),
                            )
                        })?;
                    body.off += want as u64;
                    self.out = c.seal(buf);
                    self.at = 0;
                }
            }
            if body.off >= body.end {
                self.body = None;
            }
        }
    }
}

/// The segment of map output `m` (its data file `size` bytes) holding `range`'s blocks.
fn segment(m: &MapOutput, size: u64, range: BlockRange) -> Result<Seg, ChunkError> {
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

/// Opens a data file and reads its size.
fn open(exec: &Executor, path: &Path) -> Result<(File, u64), ChunkError> {
    let err = |source| ChunkError::Open {
        path: path.to_owned(),
        source,
    };
    if let Some(e) = crate::faults::injected("data::open", path) {
        return Err(err(e));
    }
    let file = exec.open(path).map_err(err)?;
    let size = file.metadata().map_err(err)?.len();
    Ok((file, size))
}

/// One non-blocking `send` through tokio's readiness (so the reactor knows to wake the
/// writer when the socket drains). `None`: the socket's buffer is full.
fn try_send(sock: &TcpStream, buf: &[u8], more: bool) -> io::Result<Option<usize>> {
    use nix::sys::socket::{send, MsgFlags};
    // nix has no MSG_MORE constant; it is a plain Linux send(2) flag. MSG_NOSIGNAL: a peer
    // that went away is an EPIPE error here, never a signal.
    let more_flag = if more {
        MsgFlags::from_bits_retain(libc::MSG_MORE)
    } else {
        MsgFlags::empty()
    };
    let flags = more_flag | MsgFlags::MSG_NOSIGNAL;
    loop {
        let r = sock.try_io(Interest::WRITABLE, || {
            send(sock.as_raw_fd(), buf, flags).map_err(io::Error::from)
        });
        match r {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket accepted no bytes",
                ))
            }
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One non-blocking `sendfile` of up to `want` bytes from `*off`, advancing it. `None`: the
/// socket's buffer is full; `Some(0)`: the file ended.
fn try_sendfile(
    sock: &TcpStream,
    file: &File,
    off: &mut u64,
    want: usize,
) -> io::Result<Option<usize>> {
    loop {
        let mut at = *off as i64;
        let r = sock.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile64(sock.as_fd(), file.as_fd(), Some(&mut at), want)
                .map_err(io::Error::from)
        });
        match r {
            Ok(n) => {
                *off = at as u64;
                return Ok(Some(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    /// A connected loopback pair whose sending side has tiny socket buffers, so a batch fills
    /// them long before it is all sent.
    async fn tight_pair() -> (TcpStream, TcpStream) {
        pair_with_buffers(4096, 4096).await
    }

    /// Writes to `sock` until its send buffer takes no more.
    fn fill(sock: &TcpStream) {
        let junk = vec![0u8; 65_536];
        loop {
            match sock.try_write(&junk) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A connected loopback pair, the sender's send buffer set to `send` bytes and the
    /// receiver's receive buffer to `recv` (the kernel doubles both).
    async fn pair_with_buffers(send: usize, recv: usize) -> (TcpStream, TcpStream) {
        use nix::sys::socket::{setsockopt, sockopt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (c, a) = tokio::join!(TcpStream::connect(addr), l.accept());
        let (server, client) = (a.unwrap().0, c.unwrap());
        setsockopt(&server, sockopt::SndBuf, &send).unwrap();
        setsockopt(&client, sockopt::RcvBuf, &recv).unwrap();
        (server, client)
    }

    fn data_file(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes).unwrap();
        (f, bytes)
    }

    fn seg(offset: u64, len: u64) -> Seg {
        Seg {
            offset,
            len,
            blocks: 1,
        }
    }

    #[test]
    fn a_batch_that_must_not_wait_takes_only_what_the_page_cache_holds() {
        use std::io::Write;
        // Beside the test binary (the build's file system), not in a tmpfs /tmp, whose pages
        // cannot be evicted.
        let exe = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir_in(exe.parent().unwrap()).unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
        let mut f = File::create(&path).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        let f = File::open(&path).unwrap();
        let dontneed = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED;
        nix::fcntl::posix_fadvise(f.as_raw_fd(), 0, 0, dontneed).unwrap();
        let mut b = Batch::new();
        // Evicted: the first chunk of a batch is refused when it must not wait...
        assert!(matches!(
            b.push(b"h", &f, &path, &seg(4096, 4096), true),
            Err(PushError::NotCached)
        ));
        assert!(b.is_empty(), "a refused chunk leaves nothing behind");
        // ...and read from the disk when it may.
        b.push(b"h", &f, &path, &seg(4096, 4096), false).unwrap();
        // In the page cache now: taken without waiting.
        b.push(b"i", &f, &path, &seg(4096, 4096), true).unwrap();
        let mut want = b"h".to_vec();
        want.extend_from_slice(&data[4096..8192]);
        want.extend_from_slice(b"i");
        want.extend_from_slice(&data[4096..8192]);
        assert!(b.buf == want);
    }

    #[test]
    fn a_sender_knows_when_it_holds_the_last_reference_to_its_file() {
        let shared = Shared::new(crate::config::Config::default(), None, None);
        let (f, _) = data_file(10);
        let file = Arc::new(f.reopen().unwrap());
        let sender = Sender::resume(
            &shared,
            Resolved {
                exec: None,
                open: Some(Open {
                    file: file.clone(),
                    size: 10,
                    what: OpenWhat::Rdd(f.path().to_owned()),
                }),
            },
        );
        assert!(
            !sender.holds_last_file(),
            "another holder (the table) keeps it"
        );
        drop(file);
        assert!(
            sender.holds_last_file(),
            "dropping the sender would close it"
        );
        assert!(
            !Sender::new(&shared).holds_last_file(),
            "a sender with nothing open closes nothing"
        );
    }

    #[test]
    fn batch_is_bounded_and_always_takes_one_chunk() {
        let (f, _) = data_file(SMALL_CHUNK as usize);
        let mut b = Batch::new();
        assert!(
            b.fits(21, BATCH_BYTES as u64 * 2),
            "an empty batch takes any chunk"
        );
        let mut n = 0;
        while b.fits(21, SMALL_CHUNK) {
            b.push(&[9; 21], f.as_file(), f.path(), &seg(0, SMALL_CHUNK), false)
                .unwrap();
            n += 1;
        }
        assert_eq!(n, BATCH_BYTES / (21 + SMALL_CHUNK as usize));
        assert!(b.len() <= BATCH_BYTES);
    }

    /// A segment the file does not hold: behind other chunks it is left for the next batch
    /// (it cannot be read without waiting); as a batch's first chunk, the read error names
    /// the file. Either way the batch keeps what it had.
    #[test]
    fn a_segment_past_the_end_of_its_file_leaves_the_batch_as_it_was() {
        let (f, bytes) = data_file(10_000);
        let mut b = Batch::new();
        b.push(b"head", f.as_file(), f.path(), &seg(100, 50), false)
            .unwrap();
        let e = b
            .push(b"next", f.as_file(), f.path(), &seg(9_000, 2_000), false)
            .unwrap_err();
        assert!(matches!(e, PushError::NotCached), "{e:?}");
        assert_eq!(b.len(), 4 + 50);
        assert_eq!(&b.buf[4..], &bytes[100..150]);
        let mut first = Batch::new();
        match first.push(b"next", f.as_file(), f.path(), &seg(9_000, 2_000), false) {
            Err(PushError::Read(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
                assert!(
                    e.to_string().contains(&f.path().display().to_string()),
                    "{e}"
                );
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        assert!(first.is_empty());
    }

    /// A socket with no room (its peer reads nothing) limits a batch to one small chunk, so a
    /// stalled connection holds about one chunk; an empty one leaves the batch its full size
    /// or the buffer's room, whichever is less.
    #[test]
    fn a_full_socket_limits_a_batch_to_one_chunk() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (server, _client) = tight_pair().await;
            let mut b = Batch::new();
            b.fit_to(&server);
            let limit = b.limit.unwrap();
            assert!(limit >= SMALL_CHUNK as usize && limit <= BATCH_BYTES);
            fill(&server);
            b.fit_to(&server);
            assert_eq!(b.limit, Some(SMALL_CHUNK as usize));
            assert!(b.fits(21, SMALL_CHUNK), "an empty batch takes a chunk");
        });
    }

    /// The room is measured when a batch holding a chunk is asked for another, not before:
    /// with the socket full, a batch that was sized while the socket was empty takes no
    /// second chunk once it has sent its first and gathered anew.
    #[test]
    fn a_batch_is_sized_when_it_holds_a_chunk_and_again_after_each_send() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Room for several small chunks while empty, for one when full; the receiver's
            // small buffer takes little of what is queued once the sender is full.
            let (server, _client) = pair_with_buffers(64 << 10, 4096).await;
            let mut b = Batch::new();
            assert!(
                b.fits_on(&server, 21, 100),
                "an empty batch takes a chunk, unsized"
            );
            assert!(
                b.limit.is_none(),
                "nothing gathered: the socket is not asked"
            );
            b.push_bytes(&[0u8; 121]);
            assert!(
                b.fits_on(&server, 21, 3 * SMALL_CHUNK),
                "an empty socket has room for more"
            );
            assert!(b.limit.is_some());
            assert!(b.send(&server).unwrap().is_none());
            assert!(
                b.limit.is_none(),
                "a sent batch is measured again for the next one"
            );
            fill(&server);
            b.push_bytes(&[0u8; 121]);
            assert!(
                !b.fits_on(&server, 21, 3 * SMALL_CHUNK),
                "a full socket: one small chunk's worth, measured anew"
            );
        });
    }

    /// Headers and bodies interleaved in order; a socket that takes part of the batch leaves
    /// exactly the rest in the Partial, and resuming it until done delivers every byte once.
    #[test]
    fn a_batch_the_socket_takes_in_parts_arrives_whole_and_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (f, bytes) = data_file(200_000);
            let (server, mut client) = tight_pair().await;
            let mut b = Batch::new();
            let mut want = Vec::new();
            // Adjacent segments, a gap, an empty body, and one from further back.
            let segs = [
                (0, 4096),
                (4096, 4096),
                (20_000, 32_768),
                (60_000, 0),
                (1_000, 65_536),
            ];
            for (i, &(off, len)) in segs.iter().enumerate() {
                let header = [i as u8 + 1; 21];
                assert!(b.fits(header.len(), len));
                b.push(&header, f.as_file(), f.path(), &seg(off, len), false)
                    .unwrap();
                want.extend_from_slice(&header);
                want.extend_from_slice(&bytes[off as usize..(off + len) as usize]);
            }
            assert_eq!(b.len(), want.len());
            let mut left = b.send(&server).unwrap();
            assert!(
                left.is_some(),
                "a {}-byte batch fit a 4 KiB socket buffer",
                want.len()
            );
            // What is kept while the peer does not read is the unsent rest only.
            let p = left.as_ref().unwrap();
            assert_eq!(p.at, 0);
            assert!(p.out.len() < want.len() && p.out.capacity() == p.out.len());
            assert!(b.is_empty());
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65_536];
            let mut rounds = 0;
            while let Some(p) = left.take() {
                rounds += 1;
                assert!(rounds < 10_000, "no progress");
                // Drain a little, then resume once the socket is writable again.
                let n = tokio::time::timeout(Duration::from_secs(30), client.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
                // Writable, or not yet: resuming then simply comes back blocked.
                let _ = tokio::time::timeout(Duration::from_millis(20), server.writable()).await;
                match p.resume(&server, None).unwrap() {
                    Sent::Done => {}
                    Sent::Blocked(p) => left = Some(p),
                }
            }
            assert!(rounds > 1, "the batch went out in one piece");
            drop(server);
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.len(), want.len());
            assert!(
                got == want,
                "bytes differ from the headers and segments in order"
            );
            // The emptied batch is reused.
            b.push(b"again", f.as_file(), f.path(), &seg(0, 10), false)
                .unwrap();
            assert_eq!(b.len(), 15);
        });
    }
}
