//! Accept loop and per-connection tasks.
//!
//! Each connection has a reader task (decodes frames, answers RPCs, registers streams, queues
//! chunk sends in request order) and a writer task (writes frames; for chunks, resolves and
//! `sendfile`s on the blocking pool). RPC handling never touches the disk on a reactor thread.
//! Connections are never closed for being idle.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::handler::{self, Reply};
use crate::index_cache::IndexCache;
use crate::mesos::Apps;
use crate::metrics::{ErrorKind, Metrics};
use crate::protocol::frame::{self, FrameError};
use crate::protocol::{Message, StreamChunkId};
use crate::resolver::Registry;
use crate::send;
use crate::streams::{ChunkRef, InFlight, StreamTable};

/// State shared by every connection.
pub struct Shared {
    pub config: Config,
    pub registry: Registry,
    pub index_cache: IndexCache,
    pub streams: Arc<StreamTable>,
    pub apps: Apps,
    pub metrics: Metrics,
    next_conn: AtomicU64,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        Arc::new(Shared {
            index_cache: IndexCache::new(config.index_cache_size),
            config,
            registry: Registry::default(),
            streams: Arc::new(StreamTable::new()),
            apps: Apps::default(),
            metrics: Metrics::default(),
            next_conn: AtomicU64::new(1),
        })
    }
}

/// Runs the accept loop (and the Mesos cleaner) until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let cleaner = tokio::spawn(crate::mesos::run_cleaner(
        shared.clone(),
        shared.config.cleaner_interval,
        shutdown.clone(),
    ));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((sock, peer)) => {
                let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
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
    let stop = reader_loop(&shared, rd, &tx, peer, conn).await;
    drop(tx);
    let dropped = shared.streams.connection_closed(conn);
    match stop {
        Stop::Eof => tracing::debug!(%peer, conn, dropped, "connection closed by peer"),
        Stop::Closed(why) => {
            shared
                .metrics
                .caught_exceptions
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, conn, dropped, "closing connection: {why}")
        }
    }
    let _ = writer.await;
    shared
        .metrics
        .active_connections
        .fetch_sub(1, Ordering::Relaxed);
}

async fn reader_loop(
    shared: &Arc<Shared>,
    mut rd: OwnedReadHalf,
    tx: &mpsc::Sender<Out>,
    peer: SocketAddr,
    conn: u64,
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
            match handle(shared, msg, tx, peer, conn, &mut skip).await {
                Ok(()) => {}
                Err(stop) => return stop,
            }
        }
        match rd.read_buf(&mut buf).await {
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

async fn handle(
    shared: &Arc<Shared>,
    msg: Message,
    tx: &mpsc::Sender<Out>,
    peer: SocketAddr,
    conn: u64,
    skip: &mut u64,
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
            match shared.streams.next_chunk(id.stream_id, id.chunk_index) {
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
                Some((s, c)) => shared.streams.next_chunk(s, c).map_err(|e| e.to_string()),
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
            match handler::rpc(shared, &body, peer, conn) {
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
            handler::one_way(shared, &body, peer);
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

async fn writer_loop(
    shared: Arc<Shared>,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Out>,
    peer: SocketAddr,
) {
    while let Some(out) = rx.recv().await {
        let r = match out {
            Out::Frame(b) => wr
                .write_all(&b)
                .await
                .map_err(|e| format!("write error: {e}")),
            Out::Chunk {
                id,
                chunk,
                received,
                _guard,
            } => send_chunk(&shared, &mut wr, chunk, Kind::Chunk(id), received).await,
            Out::Stream {
                stream_id,
                chunk,
                received,
                _guard,
            } => send_chunk(&shared, &mut wr, chunk, Kind::Stream(stream_id), received).await,
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

enum Kind {
    Chunk(StreamChunkId),
    Stream(String),
}

/// Outcome of the blocking part.
enum Sent {
    Done {
        bytes: u64,
        blocks: u64,
    },
    /// Nothing written: answer with a failure frame.
    Failed(ErrorKind, String),
    /// Partially written: the connection is unusable.
    Broken(String),
}

async fn send_chunk(
    shared: &Arc<Shared>,
    wr: &mut OwnedWriteHalf,
    chunk: ChunkRef,
    kind: Kind,
    received: Instant,
) -> Result<(), String> {
    // The write half stays borrowed (and the fd open) until the blocking job returns.
    let fd = wr.as_ref().as_raw_fd();
    let sh = shared.clone();
    let header_for = {
        let kind = match &kind {
            Kind::Chunk(id) => Kind::Chunk(*id),
            Kind::Stream(s) => Kind::Stream(s.clone()),
        };
        move |len: u64| -> Vec<u8> {
            match kind {
                Kind::Chunk(id) => frame::chunk_success_header(id, len).to_vec(),
                Kind::Stream(stream_id) => Message::StreamResponse {
                    stream_id,
                    byte_count: len as i64,
                }
                .to_bytes()
                .to_vec(),
            }
        }
    };
    let framed = matches!(kind, Kind::Chunk(_));
    let job = move || -> Sent {
        let seg = match send::resolve(&sh, &chunk) {
            Ok(s) => s,
            Err(e) => return Sent::Failed(e.error_kind(), e.to_string()),
        };
        // Spark's frame decoder refuses frames of 2 GiB and more; only the StreamRequest path
        // (raw bytes after the frame) can carry such a chunk.
        if framed
            && seg.len + (frame::CHUNK_SUCCESS_HEADER - frame::LEN_FIELD) as u64
                >= frame::SPARK_MAX_FRAME
        {
            return Sent::Failed(ErrorKind::BadRequest, format!(
                "chunk of {} bytes from {} does not fit in a Spark frame (< 2 GiB); fetch it to disk with a \
                 StreamRequest (lower spark.network.maxRemoteBlockSizeFetchToMem)",
                seg.len,
                seg.path.display()
            ));
        }
        // SAFETY: `fd` belongs to the socket whose write half the awaiting task holds borrowed
        // for the whole duration of this job, so it stays open.
        let sock = unsafe { BorrowedFd::borrow_raw(fd) };
        let header = header_for(seg.len);
        if let Err(e) = send::write_all(sock, &header, seg.len > 0) {
            return Sent::Broken(format!("write error: {e}"));
        }
        match send::send_segment(sock, &seg) {
            Ok(()) => Sent::Done {
                bytes: seg.len,
                blocks: seg.blocks,
            },
            Err(e) => Sent::Broken(format!("sendfile of {} failed: {e}", seg.path.display())),
        }
    };
    let sent = tokio::task::spawn_blocking(job)
        .await
        .unwrap_or_else(|e| Sent::Broken(format!("send task failed: {e}")));
    match sent {
        Sent::Done { bytes, blocks } => {
            shared.metrics.record_transfer(blocks, bytes);
            shared.metrics.fetch_latency.observe(received.elapsed());
            Ok(())
        }
        Sent::Failed(error_kind, error) => {
            shared.metrics.error(error_kind);
            tracing::info!("chunk fetch failed: {error}");
            let m = match kind {
                Kind::Chunk(id) => Message::ChunkFetchFailure { id, error },
                Kind::Stream(stream_id) => Message::StreamFailure { stream_id, error },
            };
            wr.write_all(&m.to_bytes())
                .await
                .map_err(|e| format!("write error: {e}"))
        }
        Sent::Broken(why) => Err(why),
    }
}
