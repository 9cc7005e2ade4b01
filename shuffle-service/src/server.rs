//! Accept loop and per-connection tasks.
//!
//! Each connection has a reader task (decodes frames, answers RPCs, registers streams, queues
//! chunk sends in request order) and a writer task. The writer writes lone frames itself; when a
//! chunk is queued it hands the write half and the queue to one blocking-pool job, which
//! resolves and `sendfile`s that chunk and every item queued behind it, in order, then hands
//! them back. RPC handling never touches the disk on a reactor thread, and the reader keeps
//! decoding and answering RPCs while the writer's job runs (an answer on the same connection is
//! queued behind that connection's earlier chunks, in order; other connections are unaffected).
//! Connections are never closed for being idle.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::channel::{Inbound, Outbound};
use crate::auth::gate::{Gate, Verdict};
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
    // Connection numbers key the stream table's per-connection bookkeeping.
    let mut next_conn: u64 = 1;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((sock, peer)) => {
                let conn = next_conn;
                next_conn += 1;
                let shared = shared.clone();
                tokio::spawn(async move { serve_connection(shared, sock, peer, conn).await });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    cleaner.abort();
}

/// Something for the writer to send, in order.
enum Out {
    Frame(Bytes),
    /// Everything queued after this is sealed with it (sent right after the plaintext answer
    /// that completed authentication).
    Cipher(Box<Outbound>),
    /// ChunkFetchSuccess / ChunkFetchFailure for a chunk.
    Chunk {
        id: StreamChunkId,
        chunk: ChunkRef,
        received: Instant,
        _guard: InFlight,
    },
    /// StreamResponse + raw bytes / StreamFailure.
    Stream {
        stream_id: String,
        chunk: ChunkRef,
        received: Instant,
        _guard: InFlight,
    },
}

/// Why the reader stops.
enum Stop {
    Eof,
    Closed(String),
}

fn closed(shared: &Shared, kind: ErrorKind, why: String) -> Stop {
    shared.metrics.error(kind);
    Stop::Closed(why)
}

async fn serve_connection(shared: Arc<Shared>, sock: TcpStream, peer: SocketAddr, conn: u64) {
    let _ = sock.set_nodelay(true);
    shared
        .metrics
        .active_connections
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, conn, "connection opened");
    let (rd, wr) = sock.into_split();
    let (tx, rx) = mpsc::channel::<Out>(512);
    let writer = tokio::spawn(writer_loop(shared.clone(), wr, rx, peer));
    let mut auth = ConnAuth {
        gate: shared.config.auth.enabled.then(Gate::new),
        ..ConnAuth::default()
    };
    let stop = reader_loop(&shared, rd, &tx, peer, conn, &mut auth).await;
    drop(tx);
    let dropped = shared.streams.connection_closed(conn);
    match stop {
        Stop::Eof => tracing::debug!(%peer, conn, dropped, "connection closed by peer"),
        Stop::Closed(why) => {
            shared
                .metrics
                .caught_exceptions
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, conn, dropped, "closing connection: {}", why.escape_debug())
        }
    }
    let _ = writer.await;
    shared
        .metrics
        .active_connections
        .fetch_sub(1, Ordering::Relaxed);
}

/// A connection's authentication state (`spark.authenticate`).
#[derive(Default)]
struct ConnAuth {
    /// `Some` until the connection authenticates (never set without `spark.authenticate`).
    gate: Option<Gate>,
    /// The appId the connection authenticated as.
    client: Option<Arc<str>>,
    /// Decrypts what is read once an encrypted session started.
    inbound: Option<Inbound>,
    /// The session just started: bytes already buffered behind the handshake are ciphertext.
    switched: bool,
}

fn auth_failed(shared: &Shared, peer: SocketAddr, app: Option<&str>, what: &str) {
    shared.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%peer, app = ?app, "authentication failed: {}", what.escape_debug());
}

async fn reader_loop(
    shared: &Arc<Shared>,
    mut rd: OwnedReadHalf,
    tx: &mpsc::Sender<Out>,
    peer: SocketAddr,
    conn: u64,
    auth: &mut ConnAuth,
) -> Stop {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // Raw bytes following an UploadStream/StreamResponse header, to discard.
    let mut skip: u64 = 0;
    let max = shared.config.max_request_frame;
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
                    if tx.send(Out::Frame(reply.to_bytes())).await.is_err() {
                        return Stop::Closed("writer gone".into());
                    }
                    continue;
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
                    let _ = tx.send(Out::Frame(reply.to_bytes())).await;
                    return closed(shared, ErrorKind::BadFrame, e.to_string());
                }
            };
            let r = if auth.gate.is_some() {
                handle_unauthenticated(shared, msg, tx, peer, auth).await
            } else {
                handle(
                    shared,
                    msg,
                    tx,
                    peer,
                    conn,
                    &mut skip,
                    auth.client.as_deref(),
                )
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
        let from = buf.len();
        let read = rd.read_buf(&mut buf).await;
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
    let send = |o: Out| async move {
        tx.send(o)
            .await
            .map_err(|_| Stop::Closed("writer gone".into()))
    };
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
                    auth.inbound = Some(inbound);
                    auth.switched = true;
                }
                auth.client = Some(app_id.into());
                auth.gate = None;
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
    let send = |o: Out| async move {
        tx.send(o)
            .await
            .map_err(|_| Stop::Closed("writer gone".into()))
    };
    match msg {
        Message::ChunkFetchRequest(id) => {
            let received = Instant::now();
            check_in_flight(shared)?;
            match shared
                .streams
                .next_chunk_for(id.stream_id, id.chunk_index, client)
            {
                Ok(chunk) => {
                    send(Out::Chunk {
                        id,
                        chunk,
                        received,
                        _guard: shared.streams.chunk_guard(),
                    })
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
                    send(Out::Stream {
                        stream_id,
                        chunk,
                        received,
                        _guard: shared.streams.chunk_guard(),
                    })
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
                    let tx = tx.clone();
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let r = tokio::task::spawn_blocking(job)
                            .await
                            .unwrap_or_else(|e| Err(format!("internal error: {e}")));
                        let m = match r {
                            Ok(body) => Message::RpcResponse { request_id, body },
                            Err(error) => {
                                shared.metrics.error(ErrorKind::BadRequest);
                                Message::RpcFailure { request_id, error }
                            }
                        };
                        let _ = tx.send(Out::Frame(m.to_bytes())).await;
                    });
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

/// Most queued items one blocking job sends before handing its thread back (fairness between
/// connections when the pool is busy).
const MAX_ITEMS_PER_JOB: usize = 64;

async fn writer_loop(
    shared: Arc<Shared>,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Out>,
    peer: SocketAddr,
) {
    // Set once the connection's encrypted session starts (spark.authenticate).
    let mut cipher: Option<Outbound> = None;
    while let Some(out) = rx.recv().await {
        let r = match out {
            Out::Cipher(c) => {
                cipher = Some(*c);
                Ok(())
            }
            // A lone frame (an RPC answer) is written from here: no blocking-pool hand-off.
            Out::Frame(b) => {
                let sealed;
                let bytes: &[u8] = match &mut cipher {
                    None => &b,
                    Some(c) => {
                        sealed = c.seal(b.to_vec());
                        &sealed
                    }
                };
                wr.write_all(bytes)
                    .await
                    .map_err(|e| format!("write error: {e}"))
            }
            first => {
                // One blocking job takes the write half and the queue, and keeps sending while
                // items are queued (the client pipelines every chunk of a stream), so the
                // hand-off to the pool is paid per burst, not per chunk.
                let sh = shared.clone();
                let mut c = cipher.take();
                let job = move || {
                    let r = send_queued(&sh, &wr, first, &mut rx, &mut c);
                    (wr, rx, c, r)
                };
                match tokio::task::spawn_blocking(job).await {
                    Ok((w, q, c, r)) => {
                        wr = w;
                        rx = q;
                        cipher = c;
                        r
                    }
                    Err(e) => {
                        // The write half and the queue went with the job: the reader sees the
                        // queue closed and stops.
                        shared.metrics.error(ErrorKind::Io);
                        tracing::warn!(%peer, "closing connection: send task failed: {e}");
                        return;
                    }
                }
            }
        };
        if let Err(why) = r {
            shared.metrics.error(ErrorKind::Io);
            tracing::warn!(%peer, "closing connection: {why}");
            // Wake the reader too: it must not keep serving a broken connection.
            let _ = nix::sys::socket::shutdown(
                wr.as_ref().as_raw_fd(),
                nix::sys::socket::Shutdown::Both,
            );
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Blocking: sends `first`, then whatever is already queued (up to [`MAX_ITEMS_PER_JOB`]), in
/// order. An error means the connection is unusable.
fn send_queued(
    shared: &Shared,
    wr: &OwnedWriteHalf,
    first: Out,
    rx: &mut mpsc::Receiver<Out>,
    cipher: &mut Option<Outbound>,
) -> Result<(), String> {
    let sock = wr.as_ref().as_fd();
    let mut sender = send::Sender::new(shared);
    let mut next = Some(first);
    let mut sent = 0;
    while let Some(out) = next.take() {
        match out {
            Out::Cipher(c) => *cipher = Some(*c),
            Out::Frame(b) => write_frame(sock, &b, false, cipher)?,
            Out::Chunk {
                id,
                chunk,
                received,
                _guard,
            } => send_chunk(
                shared,
                &mut sender,
                sock,
                &chunk,
                Kind::Chunk(id),
                received,
                cipher,
            )?,
            Out::Stream {
                stream_id,
                chunk,
                received,
                _guard,
            } => send_chunk(
                shared,
                &mut sender,
                sock,
                &chunk,
                Kind::Stream(&stream_id),
                received,
                cipher,
            )?,
        }
        sent += 1;
        if sent < MAX_ITEMS_PER_JOB {
            next = rx.try_recv().ok();
        }
    }
    Ok(())
}

enum Kind<'a> {
    Chunk(StreamChunkId),
    Stream(&'a str),
}

/// Blocking: resolves one chunk, writes its header, then `sendfile`s its segment. A chunk that
/// cannot be resolved is answered with a failure frame; `Err` means the connection is broken
/// (something was partially written, or the socket failed).
fn send_chunk(
    shared: &Shared,
    sender: &mut send::Sender<'_>,
    sock: BorrowedFd<'_>,
    chunk: &ChunkRef,
    kind: Kind<'_>,
    received: Instant,
    cipher: &mut Option<Outbound>,
) -> Result<(), String> {
    let failure = match sender.resolve(chunk) {
        Err(e) => Some((e.error_kind(), e.to_string())),
        // Spark's frame decoder refuses frames of 2 GiB and more; only the StreamRequest path
        // (raw bytes after the frame) can carry such a chunk.
        Ok(seg)
            if matches!(kind, Kind::Chunk(_))
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
        Ok(seg) if cipher.is_some() => {
            // Encrypted connection: no zero-copy; the body is read in large batches and
            // encrypted in place behind its header.
            let header = match kind {
                Kind::Chunk(id) => frame::chunk_success_header(id, seg.len).to_vec(),
                Kind::Stream(stream_id) => Message::StreamResponse {
                    stream_id: stream_id.to_owned(),
                    byte_count: seg.len as i64,
                }
                .to_bytes()
                .to_vec(),
            };
            if let Some(c) = cipher.as_mut() {
                sender
                    .send_sealed(sock, header, &seg, c)
                    .map_err(|e| format!("sending {} failed: {e}", sender.path().display()))?;
            }
            shared.metrics.record_transfer(seg.blocks, seg.len);
            shared.metrics.fetch_latency.observe(received.elapsed());
            None
        }
        Ok(seg) => {
            let more = seg.len > 0;
            let written = match kind {
                Kind::Chunk(id) => {
                    send::write_all(sock, &frame::chunk_success_header(id, seg.len), more)
                }
                Kind::Stream(stream_id) => {
                    let header = Message::StreamResponse {
                        stream_id: stream_id.to_owned(),
                        byte_count: seg.len as i64,
                    }
                    .to_bytes();
                    send::write_all(sock, &header, more)
                }
            };
            written.map_err(|e| format!("write error: {e}"))?;
            sender.send(sock, &seg).map_err(|e| {
                format!("sendfile of {} failed: {e}", sender.path().display())
            })?;
            shared.metrics.record_transfer(seg.blocks, seg.len);
            shared.metrics.fetch_latency.observe(received.elapsed());
            None
        }
    };
    if let Some((error_kind, error)) = failure {
        shared.metrics.error(error_kind);
        tracing::info!("chunk fetch failed: {error}");
        let m = match kind {
            Kind::Chunk(id) => Message::ChunkFetchFailure { id, error },
            Kind::Stream(stream_id) => Message::StreamFailure {
                stream_id: stream_id.to_owned(),
                error,
            },
        };
        write_frame(sock, &m.to_bytes(), false, cipher)?;
    }
    Ok(())
}

/// Blocking: writes one frame, sealed when the connection is encrypted.
fn write_frame(
    sock: BorrowedFd<'_>,
    b: &[u8],
    more: bool,
    cipher: &mut Option<Outbound>,
) -> Result<(), String> {
    let r = match cipher {
        None => send::write_all(sock, b, more),
        Some(c) => {
            let mut v = b.to_vec();
            let mut scratch = Vec::new();
            let sealed = c.seal_buf(&mut v, &mut scratch);
            send::write_all(sock, sealed, more)
        }
    };
    r.map_err(|e| format!("write error: {e}"))
}
