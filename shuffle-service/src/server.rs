//! Accept loop and per-connection tasks.
//!
//! Each connection has a reader task (decodes frames, answers RPCs, registers streams, queues
//! chunk sends in request order) and a writer task. The writer writes lone frames itself; when a
//! chunk is queued it hands the write half and the queue to one blocking-pool job, which
//! resolves and `sendfile`s that chunk and every item queued behind it, in order, then hands
//! them back; a burst of small chunks that needs nothing from the disk (files open, index
//! cached, data read with `RWF_NOWAIT`) it sends itself (`in_memory`, `Queue::give_back`).
//! RPC handling never touches the disk on a reactor thread, and the reader keeps
//! decoding and answering RPCs while the writer's job runs (an answer on the same connection is
//! queued behind that connection's earlier chunks, in order; other connections are unaffected).
//! Connections are never closed for being idle.
//!
//! An idle connection costs little: its read buffer is allocated only once the socket is
//! readable and released whenever everything read has been handled, and its writer task and
//! queue are started only when there is something to send (see `bench/connections.sh`).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::channel::{Inbound, Outbound};
use crate::auth::gate::{Gate, Verdict};
use crate::auth::pending::{Admission, PRE_AUTH_MAX_FRAME};
use crate::handler::{self, Reply};
use crate::metrics::ErrorKind;
use crate::protocol::frame::{self, FrameError};
use crate::protocol::{Message, StreamChunkId};
use crate::send;
use crate::state::Shared;
use crate::streams::{ChunkRef, InFlight, StreamError};

/// Runs the accept loop (and the Mesos cleaner) until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let cleaner = tokio::spawn(crate::mesos::run_cleaner(
        shared.clone(),
        shared.config.cleaner_interval,
        shutdown.clone(),
    ));
    // Held data files are closed once expired even when no fetch comes: a file deleted behind
    // the service's back (an executor removing its own shuffle) must not keep its disk space.
    let sweeper = tokio::spawn({
        let shared = shared.clone();
        async move {
            let mut tick = tokio::time::interval(crate::data_files::MAX_AGE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.data_files.close_expired()).await;
            }
        }
    });
    // Connection numbers key the stream table's per-connection bookkeeping.
    let mut next_conn: u64 = 1;
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((sock, peer)) => {
                backoff.reset();
                let conn = next_conn;
                next_conn += 1;
                let shared = shared.clone();
                tokio::spawn(async move { serve_connection(shared, sock, peer, conn).await });
            }
            Err(e) => {
                // EMFILE and friends: the connection stays in the backlog and the listener
                // stays readable, so retrying at once would spin. Back off (up to 1 s), log once
                // per interval, count every failure.
                shared.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.failed(&e);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    cleaner.abort();
    sweeper.abort();
}

/// How long to wait after a failed `accept`, and when to log it.
#[derive(Default)]
struct AcceptBackoff {
    wait: Duration,
    last_log: Option<Instant>,
    /// Failures not logged since the last line.
    unlogged: u64,
}

/// At most one log line per this interval about failing accepts.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl AcceptBackoff {
    fn reset(&mut self) {
        self.wait = Duration::ZERO;
    }

    /// Records a failure; returns how long to wait before accepting again.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.wait = (self.wait * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
        self.unlogged += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_INTERVAL)
        {
            let hint = if e.raw_os_error() == Some(libc::EMFILE)
                || e.raw_os_error() == Some(libc::ENFILE)
            {
                " (out of file descriptors: raise LimitNOFILE / ulimit -n, or lower croupier.authenticate.maxPendingConnections)"
            } else {
                ""
            };
            tracing::warn!(
                failures = self.unlogged,
                "accepting connections on the shuffle port failed: {e}{hint}; retrying with back-off (logged at most every {ACCEPT_LOG_INTERVAL:?})"
            );
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        }
        self.wait
    }
}

/// Something for the writer to send, in order.
enum Out {
    Frame(Bytes),
    /// Everything queued after this is sealed with it (sent right after the plaintext answer
    /// that completed authentication).
    Cipher(Box<Outbound>),
    /// A chunk to send. Boxed: every slot of a connection's queue is as large as its largest
    /// item, and an idle connection's queue holds one block of slots.
    Fetch(Box<Fetch>),
}

/// A chunk to resolve and send, answering the request it came in.
struct Fetch {
    answer: Answer,
    chunk: ChunkRef,
    received: Instant,
    guard: InFlight,
}

/// How a chunk is answered.
enum Answer {
    /// ChunkFetchSuccess / ChunkFetchFailure.
    Chunk(StreamChunkId),
    /// StreamResponse + raw bytes / StreamFailure.
    Stream(String),
}

/// Why the reader stops.
enum Stop {
    Eof,
    Closed(String),
    /// Closed without anything more to send (handshake deadline, frame too big to read).
    Abort(String),
    /// Closed unauthenticated for a newer connection (logged in aggregate, not one by one).
    Evicted(String),
}

fn closed(shared: &Shared, kind: ErrorKind, why: String) -> Stop {
    shared.metrics.error(kind);
    Stop::Closed(why)
}

async fn serve_connection(shared: Arc<Shared>, sock: TcpStream, peer: SocketAddr, conn: u64) {
    let _ = sock.set_nodelay(true);
    if shared.config.tcp_keepalive {
        if let Err(e) =
            nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::KeepAlive, &true)
        {
            tracing::debug!(%peer, "SO_KEEPALIVE (spark.shuffle.io.enableTcpKeepAlive): {e}");
        }
    }
    shared
        .metrics
        .active_connections
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, conn, "connection opened");
    let (rd, wr) = sock.into_split();
    let mut link = Link {
        shared: shared.clone(),
        peer,
        wr: Some(wr),
        tx: None,
        writer: None,
    };
    let mut auth = ConnAuth::default();
    if shared.config.auth.enabled {
        auth.gate = Some(Box::new(Gate::new()));
        let (admission, evicted) = shared.pending.admit(conn, peer.ip());
        if evicted > 0 {
            log_evictions(&shared, peer);
        }
        auth.admission = Some(admission);
        auth.deadline = Some(tokio::time::Instant::now() + shared.config.auth.handshake_timeout);
    }
    let mut rd = rd;
    let stop = reader_loop(&shared, &mut rd, &mut link, peer, conn, &mut auth).await;
    // Closing the queue: the writer sends what is queued, then shuts its half down.
    drop(link.tx.take());
    let mut writer = link.writer.take();
    // `rd` is still alive here, so its descriptor cannot have been reused by another
    // connection: shutting it down acts on this socket only.
    let shut = || {
        let _ = nix::sys::socket::shutdown(
            rd.as_ref().as_fd().as_raw_fd(),
            nix::sys::socket::Shutdown::Both,
        );
    };
    if let Some((deadline, evict)) = auth.limit() {
        // Never authenticated, whatever made the reader stop: the writer may still flush what
        // is queued (a refusal), but only within the handshake deadline and until evicted;
        // the connection keeps its place among those authenticating until then. Then the
        // socket is shut down both ways so that a writer stuck behind a peer that does not
        // read returns at once, and the descriptor is freed.
        if !matches!(stop, Stop::Abort(_) | Stop::Evicted(_)) {
            tokio::select! {
                _ = finished(&mut writer) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = evict.cancelled() => {}
            }
        }
        shut();
    } else if matches!(stop, Stop::Abort(_) | Stop::Evicted(_)) {
        // Nothing more is owed to this peer: free the descriptor now, even if the writer is
        // stuck behind a socket the peer does not read.
        shut();
    }
    let dropped = shared.streams.connection_closed(conn);
    match stop {
        Stop::Eof => tracing::debug!(%peer, conn, dropped, "connection closed by peer"),
        Stop::Evicted(why) => tracing::debug!(%peer, conn, "closing connection: {why}"),
        Stop::Closed(why) | Stop::Abort(why) => {
            shared
                .metrics
                .caught_exceptions
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, conn, dropped, "closing connection: {}", why.escape_debug())
        }
    }
    finished(&mut writer).await;
    // A connection that never had anything to send: both halves go together (FIN).
    drop(link);
    // Released only now: an unauthenticated connection counts against
    // croupier.authenticate.maxPendingConnections until its writer is gone.
    drop(auth);
    drop(rd);
    shared
        .metrics
        .active_connections
        .fetch_sub(1, Ordering::Relaxed);
}

/// The sending side of a connection: its writer task and the queue to it, started on the first
/// thing to send (an idle connection holds neither).
struct Link {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Until the writer starts.
    wr: Option<OwnedWriteHalf>,
    tx: Option<mpsc::Sender<Out>>,
    writer: Option<JoinHandle<()>>,
}

/// Items queued for one connection's writer before the reader waits (back-pressure on a peer
/// that sends requests faster than it reads the answers).
const SEND_QUEUE: usize = 512;

impl Link {
    /// The queue to the writer, starting the writer if needed. `None` once the writer half is
    /// gone (the writer task ended).
    fn tx(&mut self) -> Option<&mpsc::Sender<Out>> {
        if self.tx.is_none() {
            let wr = self.wr.take()?;
            let (tx, rx) = mpsc::channel::<Out>(SEND_QUEUE);
            self.writer = Some(tokio::spawn(writer_loop(
                self.shared.clone(),
                wr,
                rx,
                self.peer,
            )));
            self.tx = Some(tx);
        }
        self.tx.as_ref()
    }
}

/// Waits for the writer task, if one was started.
async fn finished(writer: &mut Option<JoinHandle<()>>) {
    if let Some(w) = writer.as_mut() {
        let _ = w.await;
        *writer = None;
    }
}

fn writer_gone() -> Stop {
    Stop::Closed("writer gone".into())
}

/// A connection's authentication state (`spark.authenticate`).
#[derive(Default)]
struct ConnAuth {
    /// `Some` until the connection authenticates (never set without `spark.authenticate`).
    gate: Option<Box<Gate>>,
    /// The appId the connection authenticated as.
    client: Option<Arc<str>>,
    /// Decrypts what is read once an encrypted session started.
    inbound: Option<Box<Inbound>>,
    /// The session just started: bytes already buffered behind the handshake are ciphertext.
    switched: bool,
    /// The connection's place among those authenticating (until it authenticates).
    admission: Option<Admission>,
    /// When an unauthenticated connection is closed.
    deadline: Option<tokio::time::Instant>,
}

/// Warns that unauthenticated connections are being evicted, at most once per
/// [`ACCEPT_LOG_INTERVAL`] (the count is in `croupier_shuffle_unauthenticated_evicted`).
fn log_evictions(shared: &Shared, peer: SocketAddr) {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_INTERVAL) {
        *last = Some(Instant::now());
        tracing::warn!(
            %peer,
            evicted_total = shared.pending.evicted.load(Ordering::Relaxed),
            "{} connections are open without having authenticated (croupier.authenticate.maxPendingConnections): the oldest are closed to admit new ones (logged at most every {ACCEPT_LOG_INTERVAL:?})",
            shared.config.auth.max_pending
        );
    }
}

impl ConnAuth {
    /// While unauthenticated: the handshake deadline and the eviction signal.
    fn limit(&self) -> Option<(tokio::time::Instant, CancellationToken)> {
        Some((self.deadline?, self.admission.as_ref()?.evict.clone()))
    }
}

/// Resolves when an unauthenticated connection must stop: its handshake deadline passed, or a
/// newer connection needed its place.
async fn pre_auth_limit(
    shared: &Shared,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
    evict: CancellationToken,
    app: Option<String>,
) -> Stop {
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => {
            shared.metrics.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
            auth_failed(shared, peer, app.as_deref(), "no authentication within croupier.authenticate.handshakeTimeout");
            Stop::Abort(format!(
                "not authenticated within {:?} (croupier.authenticate.handshakeTimeout)",
                shared.config.auth.handshake_timeout
            ))
        }
        _ = evict.cancelled() => Stop::Evicted(format!(
            "closed unauthenticated to make room for a newer connection: {} connections were authenticating (croupier.authenticate.maxPendingConnections)",
            shared.config.auth.max_pending
        )),
    }
}

fn auth_failed(shared: &Shared, peer: SocketAddr, app: Option<&str>, what: &str) {
    shared.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%peer, app = ?app, "authentication failed: {}", what.escape_debug());
}

async fn reader_loop(
    shared: &Arc<Shared>,
    rd: &mut OwnedReadHalf,
    link: &mut Link,
    peer: SocketAddr,
    conn: u64,
    auth: &mut ConnAuth,
) -> Stop {
    // Allocated when the socket turns readable, released when everything read was handled.
    let mut buf = BytesMut::new();
    // Raw bytes following an UploadStream/StreamResponse header, to discard.
    let mut skip: u64 = 0;
    loop {
        loop {
            if skip > 0 {
                let n = skip.min(buf.len() as u64) as usize;
                let _ = buf.split_to(n);
                skip -= n as u64;
                if skip > 0 {
                    break;
                }
            }
            // Before authentication only authentication messages are legal: a few KiB at most.
            let max = if auth.gate.is_some() {
                PRE_AUTH_MAX_FRAME
            } else {
                shared.config.max_request_frame
            };
            let msg = match frame::decode(&mut buf, max) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e @ FrameError::UnknownType { .. }) => {
                    // The frame was well delimited: answer and keep the connection.
                    shared.metrics.error(ErrorKind::BadFrame);
                    tracing::warn!(%peer, "{e}");
                    let reply = Message::RpcFailure {
                        request_id: 0,
                        error: format!("{e}: not a Spark 3.5 message type"),
                    };
                    if let Err(stop) = send_limited(
                        shared,
                        link.tx(),
                        peer,
                        auth.limit(),
                        Out::Frame(reply.to_bytes()),
                    )
                    .await
                    {
                        return stop;
                    }
                    continue;
                }
                Err(e @ FrameError::BadLength { .. }) if auth.gate.is_some() => {
                    // Refused unread, before anything is allocated for it.
                    auth_failed(shared, peer, None, &format!("{e} before authenticating"));
                    shared.metrics.error(ErrorKind::BadFrame);
                    return Stop::Abort(format!("{e} before authenticating"));
                }
                Err(e) => {
                    let request_id = match &e {
                        FrameError::Malformed { request_id, .. } => request_id.unwrap_or(0),
                        _ => 0,
                    };
                    let reply = Message::RpcFailure {
                        request_id,
                        error: format!("{e}; closing the connection"),
                    };
                    if let Err(stop) = send_limited(
                        shared,
                        link.tx(),
                        peer,
                        auth.limit(),
                        Out::Frame(reply.to_bytes()),
                    )
                    .await
                    {
                        if !matches!(stop, Stop::Closed(_)) {
                            return stop;
                        }
                    }
                    return closed(shared, ErrorKind::BadFrame, e.to_string());
                }
            };
            let Some(tx) = link.tx() else {
                return writer_gone();
            };
            // Boxed: the state of handling one request is not carried by every idle
            // connection's task.
            let r = if auth.gate.is_some() {
                Box::pin(handle_unauthenticated(shared, msg, tx, peer, auth)).await
            } else {
                Box::pin(handle(
                    shared,
                    msg,
                    tx,
                    peer,
                    conn,
                    &mut skip,
                    auth.client.as_deref(),
                ))
                .await
            };
            if let Err(stop) = r {
                return stop;
            }
            if std::mem::take(&mut auth.switched) {
                if let Some(inbound) = &mut auth.inbound {
                    if let Err(e) = inbound.after_read(&mut buf, 0) {
                        return closed(shared, ErrorKind::BadFrame, format!("{e}"));
                    }
                }
            }
        }
        if buf.is_empty() {
            // Everything read was handled: the connection holds no buffer while idle.
            buf = BytesMut::new();
        }
        let from = buf.len();
        let read = match auth.limit() {
            Some((deadline, evict)) => {
                let app = auth
                    .gate
                    .as_deref()
                    .and_then(Gate::app_id)
                    .map(str::to_owned);
                tokio::select! {
                    r = read_some(rd, &mut buf) => r,
                    stop = Box::pin(pre_auth_limit(shared, peer, deadline, evict, app)) => return stop,
                }
            }
            None => read_some(rd, &mut buf).await,
        };
        if let (Ok(n), Some(admission)) = (&read, &auth.admission) {
            if *n > 0 {
                admission.started();
            }
        }
        if let (Ok(_), Some(inbound)) = (&read, &mut auth.inbound) {
            if let Err(e) = inbound.after_read(&mut buf, from) {
                auth_failed(shared, peer, auth.client.as_deref(), &e.to_string());
                return closed(shared, ErrorKind::BadFrame, format!("{e}"));
            }
        }
        match read {
            Ok(0) if buf.is_empty() && skip == 0 => return Stop::Eof,
            Ok(0) => {
                return closed(shared, ErrorKind::BadFrame, format!(
                    "peer closed the connection in the middle of a frame ({} bytes of a truncated frame buffered{})",
                    buf.len(),
                    if skip > 0 { format!(", {skip} stream bytes missing") } else { String::new() }
                ))
            }
            Ok(_) => {}
            Err(e) => return closed(shared, ErrorKind::Io, format!("read error: {e}")),
        }
    }
}

/// Spare room kept in the buffer while a large frame is being read (requests are small; a
/// large frame's buffer grows to its declared, bounded length in `frame::decode`).
const READ_CHUNK: usize = 16 * 1024;

/// Reads what the socket has into `buf`. Cancel-safe: nothing is read unless it returns.
async fn read_some(rd: &OwnedReadHalf, buf: &mut BytesMut) -> std::io::Result<usize> {
    loop {
        rd.readable().await?;
        match try_read_into(rd, buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// One non-blocking read. Unless `buf` already has room (a large frame being read), the bytes
/// go through a stack buffer first, so `buf` grows by what was read only: a connection whose
/// socket turned out to have nothing (readiness is only a hint) allocates nothing.
fn try_read_into(rd: &OwnedReadHalf, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() >= READ_CHUNK / 4 {
        return rd.try_read_buf(buf);
    }
    let mut stack = [0u8; 4096];
    let n = rd.try_read(&mut stack)?;
    buf.extend_from_slice(&stack[..n]);
    Ok(n)
}

/// Queues `o` for the writer. While unauthenticated (`limit` set) a peer that sends but never
/// reads must not outlive its handshake deadline or its eviction blocked here.
async fn send_limited(
    shared: &Shared,
    tx: Option<&mpsc::Sender<Out>>,
    peer: SocketAddr,
    limit: Option<(tokio::time::Instant, CancellationToken)>,
    o: Out,
) -> Result<(), Stop> {
    let Some(tx) = tx else {
        return Err(writer_gone());
    };
    let Some((deadline, evict)) = limit else {
        return tx.send(o).await.map_err(|_| writer_gone());
    };
    tokio::select! {
        r = tx.send(o) => r.map_err(|_| writer_gone()),
        stop = pre_auth_limit(shared, peer, deadline, evict, None) => Err(stop),
    }
}

/// Before authentication (spec `spark-auth.md` §4): RpcRequests are authentication messages;
/// one-way messages are dropped (logged), uploads refused and the connection closed; chunk,
/// stream and merged-meta requests — which Spark serves unauthenticated — are refused and the
/// connection closed.
async fn handle_unauthenticated(
    shared: &Arc<Shared>,
    msg: Message,
    tx: &mpsc::Sender<Out>,
    peer: SocketAddr,
    auth: &mut ConnAuth,
) -> Result<(), Stop> {
    // A peer that sends but never reads must not outlive its deadline blocked here either.
    let limit = auth.limit();
    let send = |o: Out| send_limited(shared, Some(tx), peer, limit.clone(), o);
    let refuse_and_close = |what: String| {
        auth_failed(shared, peer, None, &what);
        Stop::Closed(format!("{what} before authenticating"))
    };
    let Some(gate) = auth.gate.as_mut() else {
        return Ok(());
    };
    match msg {
        Message::RpcRequest { request_id, body } => match gate.on_rpc(&shared.config.auth, &body) {
            Verdict::Continue(body) => {
                send(Out::Frame(
                    Message::RpcResponse {
                        request_id,
                        body: body.into(),
                    }
                    .to_bytes(),
                ))
                .await
            }
            Verdict::Refuse {
                error,
                close,
                app_id,
                why,
            } => {
                auth_failed(shared, peer, app_id.as_deref(), &why);
                send(Out::Frame(
                    Message::RpcFailure { request_id, error }.to_bytes(),
                ))
                .await?;
                if close {
                    return Err(Stop::Closed(format!("authentication failed: {why}")));
                }
                Ok(())
            }
            Verdict::Authenticated {
                reply,
                app_id,
                protocol,
                cipher,
            } => {
                tracing::info!(%peer, app = ?app_id, "authenticated ({protocol})");
                send(Out::Frame(
                    Message::RpcResponse {
                        request_id,
                        body: reply.into(),
                    }
                    .to_bytes(),
                ))
                .await?;
                if let Some(pair) = cipher {
                    let (inbound, outbound) = *pair;
                    send(Out::Cipher(Box::new(outbound))).await?;
                    auth.inbound = Some(Box::new(inbound));
                    auth.switched = true;
                }
                auth.client = Some(app_id.into());
                auth.gate = None;
                auth.admission = None;
                auth.deadline = None;
                Ok(())
            }
        },
        Message::OneWayMessage { .. } => {
            // Spark logs "Unauthenticated call to receive()" and sends nothing back.
            auth_failed(
                shared,
                peer,
                None,
                "one-way message before authenticating (dropped)",
            );
            Ok(())
        }
        Message::UploadStream { request_id, .. } => {
            send(Out::Frame(
                Message::RpcFailure {
                    request_id,
                    error: "java.lang.SecurityException: Unauthenticated call to receiveStream()."
                        .into(),
                }
                .to_bytes(),
            ))
            .await?;
            Err(refuse_and_close("UploadStream".into()))
        }
        Message::ChunkFetchRequest(id) => {
            send(Out::Frame(
                Message::ChunkFetchFailure {
                    id,
                    error: "java.lang.SecurityException: chunk fetch before authenticating.".into(),
                }
                .to_bytes(),
            ))
            .await?;
            Err(refuse_and_close(format!(
                "ChunkFetchRequest for stream {}",
                id.stream_id
            )))
        }
        Message::StreamRequest { stream_id } => {
            send(Out::Frame(
                Message::StreamFailure {
                    stream_id: stream_id.clone(),
                    error: "java.lang.SecurityException: stream request before authenticating."
                        .into(),
                }
                .to_bytes(),
            ))
            .await?;
            Err(refuse_and_close(format!("StreamRequest for {stream_id}")))
        }
        Message::MergedBlockMetaRequest { request_id, .. } => {
            send(Out::Frame(
                Message::RpcFailure {
                    request_id,
                    error:
                        "java.lang.SecurityException: MergedBlockMetaRequest before authenticating."
                            .into(),
                }
                .to_bytes(),
            ))
            .await?;
            Err(refuse_and_close("MergedBlockMetaRequest".into()))
        }
        other => Err(refuse_and_close(other.name().to_owned())),
    }
}

async fn handle(
    shared: &Arc<Shared>,
    msg: Message,
    tx: &mpsc::Sender<Out>,
    peer: SocketAddr,
    conn: u64,
    skip: &mut u64,
    client: Option<&str>,
) -> Result<(), Stop> {
    let send = |o: Out| async move { tx.send(o).await.map_err(|_| writer_gone()) };
    match msg {
        Message::ChunkFetchRequest(id) => {
            let received = Instant::now();
            check_in_flight(shared)?;
            match shared
                .streams
                .next_chunk_for(id.stream_id, id.chunk_index, client)
            {
                Ok(chunk) => {
                    send(Out::Fetch(Box::new(Fetch {
                        answer: Answer::Chunk(id),
                        chunk,
                        received,
                        guard: shared.streams.chunk_guard(),
                    })))
                    .await
                }
                Err(e) => {
                    shared.metrics.error(ErrorKind::BadRequest);
                    not_authorized(shared, peer, &e);
                    send(Out::Frame(
                        Message::ChunkFetchFailure {
                            id,
                            error: e.to_string(),
                        }
                        .to_bytes(),
                    ))
                    .await
                }
            }
        }
        Message::StreamRequest { stream_id } => {
            let received = Instant::now();
            check_in_flight(shared)?;
            let parsed = stream_id
                .split_once('_')
                .and_then(|(s, c)| Some((s.parse::<i64>().ok()?, c.parse::<i32>().ok()?)));
            let result = match parsed {
                None => Err(format!(
                    "malformed stream id {stream_id:?}: expected <streamId>_<chunkIndex>"
                )),
                Some((s, c)) => shared.streams.next_chunk_for(s, c, client).map_err(|e| {
                    not_authorized(shared, peer, &e);
                    e.to_string()
                }),
            };
            match result {
                Ok(chunk) => {
                    send(Out::Fetch(Box::new(Fetch {
                        answer: Answer::Stream(stream_id),
                        chunk,
                        received,
                        guard: shared.streams.chunk_guard(),
                    })))
                    .await
                }
                Err(error) => {
                    shared.metrics.error(ErrorKind::BadRequest);
                    send(Out::Frame(
                        Message::StreamFailure { stream_id, error }.to_bytes(),
                    ))
                    .await
                }
            }
        }
        Message::RpcRequest { request_id, body } => {
            match handler::rpc(shared, &body, peer, conn, client) {
                Reply::Now(Ok(resp)) => {
                    send(Out::Frame(
                        Message::RpcResponse {
                            request_id,
                            body: resp,
                        }
                        .to_bytes(),
                    ))
                    .await
                }
                Reply::Now(Err(error)) => {
                    shared.metrics.error(ErrorKind::BadRequest);
                    tracing::info!(%peer, request_id, "RPC failed: {error}");
                    send(Out::Frame(
                        Message::RpcFailure { request_id, error }.to_bytes(),
                    ))
                    .await
                }
                Reply::Unsupported(error) => {
                    shared.metrics.error(ErrorKind::Unsupported);
                    tracing::info!(%peer, request_id, "RPC refused: {error}");
                    send(Out::Frame(
                        Message::RpcFailure { request_id, error }.to_bytes(),
                    ))
                    .await
                }
                Reply::Blocking(job) => {
                    // Disk work (deleting files, checksumming): answered when done, out of order
                    // with other RPCs (they are matched by request id).
                    answer_later(shared, tx, request_id, async move {
                        tokio::task::spawn_blocking(job)
                            .await
                            .unwrap_or_else(|e| Err(format!("internal error: {e}")))
                    });
                    Ok(())
                }
                Reply::Async(pending) => {
                    // Waiting for the registration store: likewise answered when done.
                    answer_later(shared, tx, request_id, pending);
                    Ok(())
                }
            }
        }
        Message::OneWayMessage { body } => {
            handler::one_way(shared, &body, peer, client);
            Ok(())
        }
        Message::UploadStream {
            request_id,
            meta,
            body_byte_count,
        } => {
            *skip = body_byte_count as u64;
            shared.metrics.error(ErrorKind::Unsupported);
            let what = crate::protocol::BlockTransferMessage::decode(&meta)
                .map(|m| m.name().to_owned())
                .unwrap_or_else(|e| format!("undecodable metadata ({e})"));
            let error = format!(
                "UploadStream ({what}, {body_byte_count} bytes) is not supported by this shuffle service: \
                 block upload and push-based shuffle are not available"
            );
            send(Out::Frame(
                Message::RpcFailure { request_id, error }.to_bytes(),
            ))
            .await
        }
        Message::MergedBlockMetaRequest {
            request_id, app_id, ..
        } => {
            shared.metrics.error(ErrorKind::Unsupported);
            let error = format!("MergedBlockMetaRequest (app {app_id}) is not supported: push-based shuffle is not available");
            send(Out::Frame(
                Message::RpcFailure { request_id, error }.to_bytes(),
            ))
            .await
        }
        Message::StreamResponse { byte_count, .. } => {
            *skip = byte_count as u64;
            shared.metrics.error(ErrorKind::BadRequest);
            tracing::warn!(%peer, "ignoring a StreamResponse sent by a client");
            Ok(())
        }
        other => {
            // Responses sent to a server: Spark's response handler would log and drop them.
            shared.metrics.error(ErrorKind::BadRequest);
            tracing::warn!(%peer, "ignoring unexpected {} from a client", other.name());
            Ok(())
        }
    }
}

/// Answers RPC `request_id` once `work` is done, from a task of its own: the reader goes on
/// with the connection's next requests meanwhile.
fn answer_later(
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<Out>,
    request_id: i64,
    work: impl std::future::Future<Output = Result<Bytes, String>> + Send + 'static,
) {
    let tx = tx.clone();
    let shared = shared.clone();
    tokio::spawn(async move {
        let m = match work.await {
            Ok(body) => Message::RpcResponse { request_id, body },
            Err(error) => {
                shared.metrics.error(ErrorKind::BadRequest);
                Message::RpcFailure { request_id, error }
            }
        };
        let _ = tx.send(Out::Frame(m.to_bytes())).await;
    });
}

/// Counts and logs a chunk or stream request for another application's stream.
fn not_authorized(shared: &Shared, peer: SocketAddr, e: &StreamError) {
    if let StreamError::NotAuthorized {
        client,
        stream_id,
        app_id,
    } = e
    {
        shared.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, app = %client, "refused stream {stream_id} of application {app_id}: the connection authenticated as {client}");
    }
}

fn check_in_flight(shared: &Shared) -> Result<(), Stop> {
    let in_flight = shared.streams.in_flight();
    let max = shared.config.max_chunks_being_transferred;
    if in_flight >= max {
        // Spark closes the connection here without a failure frame; the client retries.
        return Err(closed(shared, ErrorKind::Limit, format!(
            "{in_flight} chunks are being transferred, at the limit spark.shuffle.maxChunksBeingTransferred={max}"
        )));
    }
    Ok(())
}

/// How long a send job keeps its turn (`croupier.shuffle.io.sendThreads`) before giving it to
/// the next connection: several times what a burst from the page cache takes, so it is mostly
/// jobs waiting on the disk that give it up, and reads from a cold cache still overlap. Against
/// 100 ms, in interleaved runs with the cache dropped before each: 32 KiB fetches at 0.92x of
/// unbounded sending instead of 0.8x; RPC p99 under warm fetch load the same.
const TURN_HELD_AT_MOST: Duration = Duration::from_millis(10);

/// Counts a send job as running (`croupier_shuffle_sending`) for as long as it lives.
struct Sending<'a>(&'a Shared);

impl<'a> Sending<'a> {
    fn start(shared: &'a Shared) -> Self {
        shared.metrics.sending.fetch_add(1, Ordering::Relaxed);
        Sending(shared)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.metrics.sending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Most queued items one blocking job sends before handing its thread back (fairness between
/// connections when the pool is busy).
const MAX_ITEMS_PER_JOB: usize = 64;

async fn writer_loop(
    shared: Arc<Shared>,
    mut wr: OwnedWriteHalf,
    rx: mpsc::Receiver<Out>,
    peer: SocketAddr,
) {
    // Set once the connection's encrypted session starts (spark.authenticate).
    // Boxed: the cipher state is not carried by every plaintext connection's task.
    let mut cipher: Option<Box<Outbound>> = None;
    // An item the socket did not take whole: sent before anything queued behind it.
    let mut partial: Option<Resume> = None;
    let mut queue = Queue {
        rx,
        front: None,
        on_reactor: false,
    };
    let deadline = shared.config.connection_timeout;
    loop {
        // `to_pool`: the item was turned away from the reactor already.
        let (first, to_pool) = match partial {
            Some(_) => (None, false),
            None => match queue.recv().await {
                Some((o, to_pool)) => (Some(o), to_pool),
                None => break,
            },
        };
        let r = match first {
            Some(Out::Cipher(c)) => {
                cipher = Some(c);
                Ok(())
            }
            // A lone frame (an RPC answer) is written from here: no blocking-pool hand-off.
            Some(Out::Frame(b)) => {
                let bytes = match &mut cipher {
                    None => b.to_vec(),
                    Some(c) => c.seal(b.to_vec()),
                };
                write_with_deadline(&shared, &mut wr, &bytes, deadline).await
            }
            first => {
                if partial.is_some() {
                    // The socket was full: wait on the reactor, never on a blocking thread.
                    if let Err(why) = writable_within(&shared, &wr, deadline).await {
                        close_writer(&shared, &wr, peer, &why);
                        // The unsent rest of a `sendfile` holds its data file open.
                        if let Some(r) = partial.take().filter(|r| !r.partial.is_bytes()) {
                            drop_off_reactor(r);
                        }
                        return;
                    }
                }
                // Plaintext data the page cache holds, from files already open, is sent from
                // here, on the reactor: nothing in it waits for the disk, and the hand-off to
                // a blocking thread would cost more than the send. The burst stops at the
                // first queued item that is not so, which goes to a blocking thread next.
                let mut sender = send::Sender::new(&shared);
                let in_memory = cipher.is_none()
                    && !to_pool
                    && match (&partial, &first) {
                        (Some(r), _) => {
                            r.partial.is_bytes()
                                && r.then
                                    .as_ref()
                                    .is_none_or(|n| !n.slow && in_memory(&mut sender, &n.out))
                        }
                        (None, Some(o)) => in_memory(&mut sender, o),
                        (None, None) => false,
                    };
                if in_memory {
                    shared.metrics.reactor_sends.fetch_add(1, Ordering::Relaxed);
                    queue.on_reactor = true;
                    let resume = partial.take();
                    let r = send_queued(
                        &shared,
                        &mut sender,
                        wr.as_ref(),
                        resume,
                        first,
                        &mut queue,
                        &mut cipher,
                    );
                    if sender.holds_last_file() {
                        // Its data file left the shared table during the burst (deleted).
                        drop_off_reactor(sender.into_resolved());
                    } else {
                        drop(sender);
                    }
                    // The other connections' writers on this thread go next: a burst is
                    // bounded (MAX_ITEMS_PER_JOB), and so is every connection's wait.
                    tokio::task::yield_now().await;
                    r.map(|left| partial = left)
                } else {
                    // The blocking thread goes on with what was resolved here.
                    let resolved = sender.into_resolved();
                    queue.on_reactor = false;
                    let burst = Burst {
                        resume: partial.take(),
                        first,
                        resolved,
                    };
                    match send_on_pool(&shared, peer, wr, queue, cipher.take(), burst).await {
                        Some((w, q, c, r)) => {
                            wr = w;
                            queue = q;
                            cipher = c;
                            r.map(|left| partial = left)
                        }
                        // The write half and the queue went with the job: the reader sees the
                        // queue closed and stops.
                        None => return,
                    }
                }
            }
        };
        if let Err(why) = r {
            close_writer(&shared, &wr, peer, &why);
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Where a burst starts: the rest of an item the socket did not take, or the item just taken
/// from the queue; and what the writer already resolved for it.
struct Burst {
    resume: Option<Resume>,
    first: Option<Out>,
    resolved: send::Resolved,
}

/// What a blocking send job hands back: the write half, the queue and the cipher it took, and
/// how the burst ended.
type Returned = (
    OwnedWriteHalf,
    Queue,
    Option<Box<Outbound>>,
    Result<Option<Resume>, String>,
);

/// One blocking job takes the write half and the queue, and keeps sending while items are
/// queued (the client pipelines every chunk of a stream), so the hand-off to the pool is paid
/// per burst, not per chunk. It stops, without waiting, when the socket is full. `None`: the
/// job failed (counted and logged here) and took the connection's halves with it.
async fn send_on_pool(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    wr: OwnedWriteHalf,
    mut queue: Queue,
    mut cipher: Option<Box<Outbound>>,
    burst: Burst,
) -> Option<Returned> {
    let Burst {
        resume,
        first,
        resolved,
    } = burst;
    // A turn first: at most croupier.shuffle.io.sendThreads connections send at once; the
    // others wait here, off any thread.
    let turn = match shared.send_turns.try_acquire() {
        Ok(t) => t,
        Err(_) => {
            shared
                .metrics
                .send_turn_waits
                .fetch_add(1, Ordering::Relaxed);
            // Never closed; were it, nothing more could be sent.
            shared.send_turns.acquire().await.ok()?
        }
    };
    let sh = shared.clone();
    let job = move || {
        let _sending = Sending::start(&sh);
        let mut sender = send::Sender::resume(&sh, resolved);
        let r = send_queued(
            &sh,
            &mut sender,
            wr.as_ref(),
            resume,
            first,
            &mut queue,
            &mut cipher,
        );
        (wr, queue, cipher, r)
    };
    let mut job = tokio::task::spawn_blocking(job);
    // A job that keeps its thread this long is waiting (on a slow or hung disk, not the
    // socket: it never waits for that): it gives its turn to the next connection, so that a
    // few stuck reads cannot stop every other client's.
    let done = tokio::select! {
        done = &mut job => done,
        _ = tokio::time::sleep(TURN_HELD_AT_MOST) => {
            drop(turn);
            shared.metrics.slow_sends.fetch_add(1, Ordering::Relaxed);
            job.await
        }
    };
    match done {
        Ok(returned) => Some(returned),
        Err(e) => {
            shared.metrics.error(ErrorKind::Io);
            tracing::warn!(%peer, "closing connection: send task failed: {e}");
            None
        }
    }
}

/// A connection's queue of items to send, as a burst takes them. On the reactor
/// (`on_reactor`), a burst takes only what [`in_memory`] admits, and gives back what turns out
/// to need the disk after all ([`Queue::give_back`]): that item stays at the `front`, and the
/// next burst, on a blocking thread, starts with it.
struct Queue {
    rx: mpsc::Receiver<Out>,
    /// An item taken from `rx` and not sent yet: it goes before anything in `rx`. Only the
    /// reactor turns items away, so it is always one for a blocking thread.
    front: Option<Out>,
    on_reactor: bool,
}

impl Queue {
    /// The next item, waiting for one, and whether the reactor turned it away already;
    /// `None` once the reader is gone.
    async fn recv(&mut self) -> Option<(Out, bool)> {
        match self.front.take() {
            Some(o) => Some((o, true)),
            None => self.rx.recv().await.map(|o| (o, false)),
        }
    }

    /// The next item if one is queued and, on the reactor, sendable there (`sender` then holds
    /// its data file open). On the reactor, an item turned away ends the burst.
    fn try_recv(&mut self, sender: &mut send::Sender<'_>) -> Option<Out> {
        if self.on_reactor {
            if self.front.is_some() {
                return None;
            }
            let o = self.rx.try_recv().ok()?;
            if !in_memory(sender, &o) {
                self.front = Some(o);
                return None;
            }
            return Some(o);
        }
        match self.front.take() {
            Some(o) => Some(o),
            None => self.rx.try_recv().ok(),
        }
    }

    /// On the reactor: `f` turned out to need the disk (its bytes are not all in the page cache,
    /// or reading them failed); it is sent next, by a blocking thread, and the burst ends.
    fn give_back(&mut self, shared: &Shared, f: Box<Fetch>) {
        debug_assert!(
            self.front.is_none(),
            "an item taken while another was given back"
        );
        shared
            .metrics
            .reactor_give_backs
            .fetch_add(1, Ordering::Relaxed);
        self.front = Some(Out::Fetch(f));
    }
}

/// Is `out` sent from the reactor: nothing to open or read from the disk, and little to copy?
/// A frame is. A chunk is when it is small ([`send::SMALL_CHUNK`]: gathered with its
/// neighbours into one send) and resolves from memory (its registration, index and open data
/// file: [`send::Sender::resolve_cached`], which leaves the file open in `sender` for the
/// send). Its bytes are then read only if the page cache holds them (`RWF_NOWAIT`), or it is
/// given back ([`Queue::give_back`]). Larger chunks go to `sendfile` on blocking threads: sent
/// from the reactor too, they cost a little less CPU but the p99 of fetches rose from 45 to 62 ms
/// (`bench/results-shuffle.md`). Encrypted connections seal on blocking threads.
fn in_memory(sender: &mut send::Sender<'_>, out: &Out) -> bool {
    match out {
        Out::Frame(_) => true,
        Out::Cipher(_) => false,
        Out::Fetch(f) => {
            send::nowait_reads()
                && sender
                    .resolve_cached(&f.chunk)
                    .is_some_and(|seg| seg.len <= send::SMALL_CHUNK)
        }
    }
}

/// Drops `what` on a blocking thread. For what may hold the last reference to a data file:
/// closing a file that was deleted frees its blocks on the closing thread (milliseconds to
/// seconds for a large file on a busy disk), which must not be a reactor thread.
fn drop_off_reactor<T: Send + 'static>(what: T) {
    // Nothing waits for the drop.
    drop(tokio::task::spawn_blocking(move || drop(what)));
}

/// Logs why the writer stops and shuts the socket down both ways, so the reader stops too
/// (it must not keep serving a broken connection).
fn close_writer(shared: &Shared, wr: &OwnedWriteHalf, peer: SocketAddr, why: &str) {
    shared.metrics.error(ErrorKind::Io);
    tracing::warn!(%peer, "closing connection: {why}");
    let _ = nix::sys::socket::shutdown(wr.as_ref().as_raw_fd(), nix::sys::socket::Shutdown::Both);
}

/// Why a send gave up: the peer read nothing for `deadline`.
fn send_timed_out(shared: &Shared, deadline: Duration) -> String {
    shared.metrics.send_timeouts.fetch_add(1, Ordering::Relaxed);
    format!(
        "the peer read nothing sent to it for {deadline:?} (spark.shuffle.io.connectionTimeout)"
    )
}

/// Waits until the socket can take bytes again, at most `deadline`.
async fn writable_within(
    shared: &Shared,
    wr: &OwnedWriteHalf,
    deadline: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(deadline, wr.as_ref().writable()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write error: {e}")),
        Err(_) => Err(send_timed_out(shared, deadline)),
    }
}

/// Writes `bytes`, giving up when a write makes no progress for `deadline`.
async fn write_with_deadline(
    shared: &Shared,
    wr: &mut OwnedWriteHalf,
    mut bytes: &[u8],
    deadline: Duration,
) -> Result<(), String> {
    while !bytes.is_empty() {
        match tokio::time::timeout(deadline, wr.write(bytes)).await {
            Ok(Ok(0)) => return Err("write error: the socket accepted no bytes".into()),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(format!("write error: {e}")),
            Err(_) => return Err(send_timed_out(shared, deadline)),
        }
    }
    Ok(())
}

/// An item (or a batch of small chunks) the socket did not take whole, what to record once it
/// is sent, and the item taken from the queue to send right after it.
struct Resume {
    partial: send::Partial,
    done: Vec<Done>,
    then: Option<Next>,
}

/// An item taken from the queue; `slow`: never gathered into a batch (it did not fit the
/// small-chunk path, or reading it for a batch failed), sent on its own.
struct Next {
    out: Out,
    slow: bool,
}

impl Next {
    fn queued(out: Out) -> Self {
        Next { out, slow: false }
    }
}

/// A chunk being sent: counted in the metrics once its last byte is out.
struct Done {
    blocks: u64,
    len: u64,
    received: Instant,
    _guard: InFlight,
}

/// Blocking (on the reactor, when `queue.on_reactor`, only what reads nothing from the disk):
/// finishes `resume`, then sends `first` and whatever is already queued (up to
/// [`MAX_ITEMS_PER_JOB`]), in order. Returns early with the item the socket did not take whole
/// (never waiting for the socket). An error means the connection is unusable.
fn send_queued(
    shared: &Shared,
    sender: &mut send::Sender<'_>,
    sock: &TcpStream,
    resume: Option<Resume>,
    first: Option<Out>,
    queue: &mut Queue,
    cipher: &mut Option<Box<Outbound>>,
) -> Result<Option<Resume>, String> {
    let mut next = first.map(Next::queued);
    if let Some(r) = resume {
        match drive(shared, sock, r, cipher)? {
            Driven::Blocked(left) => return Ok(Some(left)),
            Driven::Done(then) => {
                // The writer resumes with nothing new taken from the queue.
                debug_assert!(next.is_none(), "an item both resumed and passed in");
                next = then.or(next);
            }
        }
    }
    let mut batch = send::Batch::new();
    let mut sent = 0;
    while let Some(Next { out, slow }) = next.take() {
        let (left, then, items) = match out {
            // Plaintext: this chunk and the small ones queued behind it, in one send.
            Out::Fetch(f) if !slow && cipher.is_none() => {
                let budget = MAX_ITEMS_PER_JOB.saturating_sub(sent).max(1);
                let g = send_gathered(shared, sender, &mut batch, sock, f, queue, budget)?;
                (g.left, g.then, g.items)
            }
            Out::Cipher(c) => {
                *cipher = Some(c);
                (None, None, 1)
            }
            Out::Frame(b) => (write_frame(shared, sock, &b, cipher)?, None, 1),
            Out::Fetch(f) => {
                let Fetch {
                    answer,
                    chunk,
                    received,
                    guard,
                } = *f;
                let left = send_chunk(
                    shared, sender, sock, &chunk, &answer, received, guard, cipher,
                )?;
                (left, None, 1)
            }
        };
        if let Some(mut left) = left {
            left.then = then;
            return Ok(Some(left));
        }
        sent += items;
        // An item already taken from the queue is always sent, whatever the budget.
        next = then.or_else(|| {
            (sent < MAX_ITEMS_PER_JOB)
                .then(|| queue.try_recv(sender).map(Next::queued))
                .flatten()
        });
    }
    Ok(None)
}

/// What [`send_gathered`] did: `left`, the part of the batch the socket did not take;
/// `then`, an item it took from the queue but did not gather (to send next); `items`, the
/// chunks gathered.
struct Gathered {
    left: Option<Resume>,
    then: Option<Next>,
    items: usize,
}

/// Plaintext connections only; blocking, except on the reactor (`queue.on_reactor`), where a
/// chunk that would wait for the disk is given back instead. Gathers `first` and the small
/// chunks queued right behind it (at most `budget` chunks, [`send::BATCH_BYTES`] bytes) into
/// `batch`, each header followed by its body read from the data file, and sends the batch with
/// one `send`. A chunk that cannot be resolved is answered in the batch with its failure frame
/// (on the reactor it is given back, and answered by the blocking thread). A chunk that is
/// not small, or whose data file cannot be read as indexed (it shrank), ends the batch and
/// comes back in `then`, marked slow: [`send_chunk`] then sends it with `sendfile`, or closes
/// the connection as it did before batching. A chunk that does not fit the batch (the
/// socket's room, measured once a second chunk is queued) or is not in the page cache also
/// ends it and comes back in `then` unmarked, to start the next batch.
fn send_gathered(
    shared: &Shared,
    sender: &mut send::Sender<'_>,
    batch: &mut send::Batch,
    sock: &TcpStream,
    first: Box<Fetch>,
    queue: &mut Queue,
    budget: usize,
) -> Result<Gathered, String> {
    let mut done = Vec::new();
    let mut failed = 0;
    let mut then = None;
    let mut item = Some(first);
    let on_reactor = queue.on_reactor;
    while let Some(f) = item.take() {
        let slow = |f| {
            Some(Next {
                out: Out::Fetch(f),
                slow: true,
            })
        };
        // On the reactor nothing may wait for the disk: a chunk that would is given back, to
        // be sent next by a blocking thread (which also answers its failure, if it fails).
        let resolved = if on_reactor {
            match sender.resolve_cached(&f.chunk) {
                Some(seg) if seg.len <= send::SMALL_CHUNK => Ok(seg),
                _ => {
                    queue.give_back(shared, f);
                    break;
                }
            }
        } else {
            sender.resolve(&f.chunk)
        };
        let seg = match resolved {
            Ok(seg) if seg.len <= send::SMALL_CHUNK => seg,
            Ok(_) => {
                then = slow(f);
                break;
            }
            // Answered here, in order: resolving again could see another outcome.
            Err(e) => {
                let Fetch { answer, .. } = *f;
                batch.push_bytes(&failure_frame(
                    shared,
                    &answer,
                    e.error_kind(),
                    e.to_string(),
                ));
                failed += 1;
                item = next_fetch(
                    queue,
                    sender,
                    &mut then,
                    done.len() + failed < budget,
                    batch,
                    sock,
                );
                continue;
            }
        };
        let header = success_header(&f.answer, seg.len);
        if !batch.fits_on(sock, header.as_ref().len(), seg.len) {
            then = Some(Next::queued(Out::Fetch(f)));
            break;
        }
        let Some(file) = sender.file() else {
            if on_reactor {
                queue.give_back(shared, f);
            } else {
                then = slow(f);
            }
            break;
        };
        match batch.push(header.as_ref(), file, sender.path(), &seg, on_reactor) {
            Ok(()) => {}
            Err(_) if on_reactor => {
                queue.give_back(shared, f);
                break;
            }
            // Not in the page cache: what is gathered goes out first; this chunk starts the
            // next batch (and is read then, waiting on the disk).
            Err(send::PushError::NotCached) => {
                then = Some(Next::queued(Out::Fetch(f)));
                break;
            }
            Err(send::PushError::Read(_)) => {
                then = slow(f);
                break;
            }
        }
        let Fetch {
            received, guard, ..
        } = *f;
        done.push(Done {
            blocks: seg.blocks,
            len: seg.len,
            received,
            _guard: guard,
        });
        item = next_fetch(
            queue,
            sender,
            &mut then,
            done.len() + failed < budget,
            batch,
            sock,
        );
    }
    let items = done.len() + failed;
    if batch.is_empty() {
        return Ok(Gathered {
            left: None,
            then,
            items,
        });
    }
    let bytes = batch.len();
    let left = match batch.send(sock) {
        Ok(None) => {
            record_sent(shared, done);
            None
        }
        Ok(Some(partial)) => Some(Resume {
            partial,
            done,
            then: None,
        }),
        Err(e) => {
            return Err(format!(
                "sending {items} chunks ({bytes} bytes) failed: {e}"
            ))
        }
    };
    Ok(Gathered { left, then, items })
}

/// When `more` (the job's budget allows another item), the next queued item: a chunk is
/// returned to be gathered while `batch` is within the room of `sock` (measured only now, when
/// there is a second item: a lone chunk costs no sizing); anything else, or a chunk once the
/// batch is full, is left in `then`, to be sent after the batch.
fn next_fetch(
    queue: &mut Queue,
    sender: &mut send::Sender<'_>,
    then: &mut Option<Next>,
    more: bool,
    batch: &mut send::Batch,
    sock: &TcpStream,
) -> Option<Box<Fetch>> {
    if !more {
        return None;
    }
    match queue.try_recv(sender)? {
        Out::Fetch(f) if batch.fits_on(sock, 0, 0) => Some(f),
        other => {
            *then = Some(Next::queued(other));
            None
        }
    }
}

/// Counts and logs a chunk that could not be sent (`kind`, `error`); the frame answering it.
fn failure_frame(shared: &Shared, answer: &Answer, kind: ErrorKind, error: String) -> Bytes {
    shared.metrics.error(kind);
    tracing::info!("chunk fetch failed: {error}");
    match answer {
        Answer::Chunk(id) => Message::ChunkFetchFailure { id: *id, error },
        Answer::Stream(stream_id) => Message::StreamFailure {
            stream_id: stream_id.clone(),
            error,
        },
    }
    .to_bytes()
}

/// The frame header in front of a chunk's body: a fixed-size array for the usual
/// ChunkFetchSuccess (no allocation per chunk), an encoded StreamResponse otherwise.
enum Header {
    Chunk([u8; frame::CHUNK_SUCCESS_HEADER]),
    Stream(Bytes),
}

impl AsRef<[u8]> for Header {
    fn as_ref(&self) -> &[u8] {
        match self {
            Header::Chunk(h) => h,
            Header::Stream(b) => b,
        }
    }
}

/// The header in front of a chunk's `len` body bytes.
fn success_header(answer: &Answer, len: u64) -> Header {
    match answer {
        Answer::Chunk(id) => Header::Chunk(frame::chunk_success_header(*id, len)),
        Answer::Stream(stream_id) => Header::Stream(
            Message::StreamResponse {
                stream_id: stream_id.clone(),
                byte_count: len as i64,
            }
            .to_bytes(),
        ),
    }
}

/// Counts sent chunks in the metrics.
fn record_sent(shared: &Shared, done: impl IntoIterator<Item = Done>) {
    for d in done {
        shared.metrics.record_transfer(d.blocks, d.len);
        shared.metrics.fetch_latency.observe(d.received.elapsed());
    }
}

/// How far [`drive`] got.
enum Driven {
    /// All sent; the item to send next, if one was taken from the queue.
    Done(Option<Next>),
    Blocked(Resume),
}

/// Blocking: sends what the socket takes of `r`; records finished chunks in the metrics.
fn drive(
    shared: &Shared,
    sock: &TcpStream,
    r: Resume,
    cipher: &mut Option<Box<Outbound>>,
) -> Result<Driven, String> {
    match r.partial.resume(sock, cipher.as_deref_mut()) {
        Ok(send::Sent::Done) => {
            record_sent(shared, r.done);
            Ok(Driven::Done(r.then))
        }
        Ok(send::Sent::Blocked(partial)) => Ok(Driven::Blocked(Resume {
            partial,
            done: r.done,
            then: r.then,
        })),
        Err(e) => Err(format!("send error: {e}")),
    }
}

/// Blocking: resolves one chunk, writes its header, then `sendfile`s its segment (or reads and
/// seals it on an encrypted connection). A chunk that cannot be resolved is answered with a
/// failure frame. `Ok(Some)`: the socket filled up, the rest is to be resumed; `Err` means the
/// connection is broken.
#[allow(clippy::too_many_arguments)]
fn send_chunk(
    shared: &Shared,
    sender: &mut send::Sender<'_>,
    sock: &TcpStream,
    chunk: &ChunkRef,
    answer: &Answer,
    received: Instant,
    guard: InFlight,
    cipher: &mut Option<Box<Outbound>>,
) -> Result<Option<Resume>, String> {
    let failure = match sender.resolve(chunk) {
        Err(e) => Some((e.error_kind(), e.to_string())),
        // Spark's frame decoder refuses frames of 2 GiB and more; only the StreamRequest path
        // (raw bytes after the frame) can carry such a chunk.
        Ok(seg)
            if matches!(answer, Answer::Chunk(_))
                && seg.len + (frame::CHUNK_SUCCESS_HEADER - frame::LEN_FIELD) as u64
                    >= frame::SPARK_MAX_FRAME =>
        {
            Some((ErrorKind::BadRequest, format!(
                "chunk of {} bytes from {} does not fit in a Spark frame (< 2 GiB); fetch it to disk with a \
                 StreamRequest (lower spark.network.maxRemoteBlockSizeFetchToMem)",
                seg.len,
                sender.path().display()
            )))
        }
        Ok(seg) => {
            let header = success_header(answer, seg.len).as_ref().to_vec();
            // Encrypted connection: no zero-copy; the body is read in large batches and
            // encrypted in place behind its header.
            let done = Done {
                blocks: seg.blocks,
                len: seg.len,
                received,
                _guard: guard,
            };
            let r = match sender.start(sock, header, &seg, cipher.as_deref_mut()) {
                Ok(send::Sent::Done) => None,
                Ok(send::Sent::Blocked(partial)) => Some(partial),
                Err(e) => {
                    return Err(format!("sending {} failed: {e}", sender.path().display()));
                }
            };
            return Ok(match r {
                None => {
                    record_sent(shared, [done]);
                    None
                }
                Some(partial) => Some(Resume {
                    partial,
                    done: vec![done],
                    then: None,
                }),
            });
        }
    };
    drop(guard);
    let Some((error_kind, error)) = failure else {
        return Ok(None);
    };
    let m = failure_frame(shared, answer, error_kind, error);
    write_frame(shared, sock, &m, cipher)
}

/// Blocking: writes one frame, sealed when the connection is encrypted, as far as the socket
/// takes it.
fn write_frame(
    shared: &Shared,
    sock: &TcpStream,
    b: &[u8],
    cipher: &mut Option<Box<Outbound>>,
) -> Result<Option<Resume>, String> {
    let out = match cipher {
        None => b.to_vec(),
        Some(c) => c.seal(b.to_vec()),
    };
    let r = Resume {
        partial: send::Partial::bytes(out),
        done: Vec::new(),
        then: None,
    };
    match drive(shared, sock, r, cipher)? {
        Driven::Done(_) => Ok(None),
        Driven::Blocked(left) => Ok(Some(left)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, D, Fut, F>(_: F) -> usize
    where
        F: Fn(A, B, C, D) -> Fut,
        Fut: std::future::Future,
    {
        std::mem::size_of::<Fut>()
    }

    /// The closing of a deleted data file (its last reference dropped) happens on a blocking
    /// thread, not on the reactor thread that let go of it.
    #[tokio::test(flavor = "current_thread")]
    async fn what_may_close_a_deleted_file_is_dropped_off_the_reactor() {
        struct Probe(std::sync::mpsc::Sender<std::thread::ThreadId>);
        impl Drop for Probe {
            fn drop(&mut self) {
                let _ = self.0.send(std::thread::current().id());
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        drop_off_reactor(Probe(tx));
        let dropped_on = tokio::task::spawn_blocking(move || {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("the probe was never dropped")
        })
        .await
        .unwrap();
        assert_ne!(dropped_on, std::thread::current().id());
    }

    /// What every open connection carries (bench/connections.sh measures the whole): its task's
    /// state, and once it has sent something, the writer's and a block of queue slots.
    #[test]
    fn per_connection_state_stays_small() {
        let out = std::mem::size_of::<Out>();
        let serve = future_size(serve_connection);
        let writer = future_size(writer_loop);
        eprintln!("Out {out} bytes, connection task {serve} bytes, writer task {writer} bytes");
        // A queue block is 32 slots: 40 bytes each is 1.25 KiB per connection that answered.
        assert!(out <= 40, "Out is {out} bytes: box the large variant");
        // Debug-build sizes (larger than release), with room to spare; the request-handling
        // states are boxed out of the connection task.
        assert!(serve <= 4096, "connection task {serve} bytes");
        assert!(writer <= 4096, "writer task {writer} bytes");
    }
}
