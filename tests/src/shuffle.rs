//! An async client for Spark's shuffle protocol, built on the service's own codec
//! ([`croupier_shuffle_service::protocol`]). Used by protocol-level tests (against our service
//! and Spark's JVM one) and by load generators.
//!
//! One [`Client`] is one TCP connection. Requests may be issued concurrently: RPC responses are
//! matched by request id, chunks by `(streamId, chunkIndex)`, stream responses in FIFO order,
//! exactly as Spark's `TransportResponseHandler` does. Every wait is bounded by
//! [`Client::timeout`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use croupier_shuffle_service::protocol::frame::{self, SPARK_MAX_FRAME};
use croupier_shuffle_service::protocol::{
    BlockTransferMessage as M, ExecutorShuffleInfo, Message, StreamChunkId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

pub use croupier_shuffle_service::protocol::message::cause;

/// The sort shuffle manager class name executors register with.
pub const SORT_SHUFFLE_MANAGER: &str = "org.apache.spark.shuffle.sort.SortShuffleManager";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("I/O error talking to {peer}: {source}")]
    Io {
        peer: SocketAddr,
        source: std::io::Error,
    },
    #[error("RpcFailure from {peer}: {error}")]
    Rpc { peer: SocketAddr, error: String },
    #[error("ChunkFetchFailure from {peer} for stream {stream_id} chunk {chunk_index}: {error}")]
    Chunk {
        peer: SocketAddr,
        stream_id: i64,
        chunk_index: i32,
        error: String,
    },
    #[error("StreamFailure from {peer} for {stream_id}: {error}")]
    Stream {
        peer: SocketAddr,
        stream_id: String,
        error: String,
    },
    #[error("connection to {peer} closed: {reason}")]
    Closed { peer: SocketAddr, reason: String },
    #[error("unexpected response from {peer}: {what}")]
    Protocol { peer: SocketAddr, what: String },
    #[error("no answer from {peer} within {after:?}")]
    Timeout { peer: SocketAddr, after: Duration },
}

impl ClientError {
    /// Like Spark's `RetryingBlockTransferor`: only connection-level failures are retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Io { .. } | ClientError::Closed { .. } | ClientError::Timeout { .. }
        )
    }

    /// The failure text sent by the server, if this is a failure frame.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ClientError::Rpc { error, .. }
            | ClientError::Chunk { error, .. }
            | ClientError::Stream { error, .. } => Some(error),
            _ => None,
        }
    }
}

type Waiter = oneshot::Sender<Result<Bytes, ClientError>>;

#[derive(Default)]
struct Pending {
    rpcs: HashMap<i64, Waiter>,
    chunks: HashMap<(i64, i32), Waiter>,
    streams: VecDeque<(String, Waiter)>,
    closed: Option<String>,
}

/// `StreamHandle(streamId, numChunks)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHandle {
    pub stream_id: i64,
    pub num_chunks: i32,
}

pub struct Client {
    peer: SocketAddr,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Arc<Mutex<Pending>>,
    unmatched: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
    reader: tokio::task::JoinHandle<()>,
    /// Bound on every wait for an answer.
    pub timeout: Duration,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    pub async fn connect(peer: SocketAddr) -> Result<Client, ClientError> {
        let sock = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(peer))
            .await
            .map_err(|_| ClientError::Timeout {
                peer,
                after: Duration::from_secs(10),
            })?
            .map_err(|source| ClientError::Io { peer, source })?;
        let _ = sock.set_nodelay(true);
        let (rd, wr) = sock.into_split();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (utx, urx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(peer, rd, pending.clone(), utx));
        Ok(Client {
            peer,
            writer: tokio::sync::Mutex::new(wr),
            pending,
            unmatched: tokio::sync::Mutex::new(urx),
            reader,
            timeout: Duration::from_secs(30),
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes raw bytes (for bad-input tests).
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<(), ClientError> {
        let mut w = self.writer.lock().await;
        w.write_all(bytes).await.map_err(|source| ClientError::Io {
            peer: self.peer,
            source,
        })
    }

    /// Half-closes the connection (no more requests).
    pub async fn shutdown_write(&self) -> Result<(), ClientError> {
        let mut w = self.writer.lock().await;
        w.shutdown().await.map_err(|source| ClientError::Io {
            peer: self.peer,
            source,
        })
    }

    async fn send(&self, m: &Message) -> Result<(), ClientError> {
        self.send_raw(&m.to_bytes()).await
    }

    async fn wait(
        &self,
        rx: oneshot::Receiver<Result<Bytes, ClientError>>,
    ) -> Result<Bytes, ClientError> {
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => Err(ClientError::Timeout {
                peer: self.peer,
                after: self.timeout,
            }),
            Ok(Err(_)) => Err(ClientError::Closed {
                peer: self.peer,
                reason: "reader stopped".into(),
            }),
            Ok(Ok(r)) => r,
        }
    }

    fn closed_err(&self, reason: &str) -> ClientError {
        ClientError::Closed {
            peer: self.peer,
            reason: reason.to_owned(),
        }
    }

    /// Sends an RpcRequest with `body`, returns the RpcResponse body.
    pub async fn rpc_raw(&self, body: Bytes) -> Result<Bytes, ClientError> {
        let request_id = (rand::random::<u64>() >> 1) as i64;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.lock();
            if let Some(r) = &p.closed {
                return Err(self.closed_err(r));
            }
            p.rpcs.insert(request_id, tx);
        }
        self.send(&Message::RpcRequest { request_id, body }).await?;
        self.wait(rx).await
    }

    pub async fn rpc(&self, msg: &M) -> Result<Bytes, ClientError> {
        self.rpc_raw(msg.to_bytes()).await
    }

    /// Sends a OneWayMessage.
    pub async fn send_one_way(&self, msg: &M) -> Result<(), ClientError> {
        self.send(&Message::OneWayMessage {
            body: msg.to_bytes(),
        })
        .await
    }

    async fn rpc_expect_empty(&self, msg: &M) -> Result<(), ClientError> {
        let body = self.rpc(msg).await?;
        if body.is_empty() {
            Ok(())
        } else {
            Err(ClientError::Protocol {
                peer: self.peer,
                what: format!("{} bytes in a {} reply", body.len(), msg.name()),
            })
        }
    }

    async fn rpc_decoded(&self, msg: &M) -> Result<M, ClientError> {
        let body = self.rpc(msg).await?;
        M::decode(&body).map_err(|e| ClientError::Protocol {
            peer: self.peer,
            what: format!("{} reply: {e}", msg.name()),
        })
    }

    pub async fn register_executor(
        &self,
        app_id: &str,
        exec_id: &str,
        info: ExecutorShuffleInfo,
    ) -> Result<(), ClientError> {
        self.rpc_expect_empty(&M::RegisterExecutor {
            app_id: app_id.into(),
            exec_id: exec_id.into(),
            info,
        })
        .await
    }

    pub async fn register_driver(
        &self,
        app_id: &str,
        heartbeat_timeout_ms: i64,
    ) -> Result<(), ClientError> {
        self.rpc_expect_empty(&M::RegisterDriver {
            app_id: app_id.into(),
            heartbeat_timeout_ms,
        })
        .await
    }

    pub async fn heartbeat(&self, app_id: &str) -> Result<(), ClientError> {
        self.send_one_way(&M::ShuffleServiceHeartbeat {
            app_id: app_id.into(),
        })
        .await
    }

    fn stream_handle(&self, m: M) -> Result<StreamHandle, ClientError> {
        match m {
            M::StreamHandle {
                stream_id,
                num_chunks,
            } => Ok(StreamHandle {
                stream_id,
                num_chunks,
            }),
            other => Err(ClientError::Protocol {
                peer: self.peer,
                what: format!("{} instead of StreamHandle", other.name()),
            }),
        }
    }

    pub async fn open_blocks(
        &self,
        app_id: &str,
        exec_id: &str,
        block_ids: &[&str],
    ) -> Result<StreamHandle, ClientError> {
        let m = M::OpenBlocks {
            app_id: app_id.into(),
            exec_id: exec_id.into(),
            block_ids: block_ids.iter().map(|s| s.to_string()).collect(),
        };
        let r = self.rpc_decoded(&m).await?;
        self.stream_handle(r)
    }

    pub async fn fetch_shuffle_blocks(
        &self,
        app_id: &str,
        exec_id: &str,
        shuffle_id: i32,
        map_ids: &[i64],
        reduce_ids: &[Vec<i32>],
        batch: bool,
    ) -> Result<StreamHandle, ClientError> {
        let m = M::FetchShuffleBlocks {
            app_id: app_id.into(),
            exec_id: exec_id.into(),
            shuffle_id,
            map_ids: map_ids.to_vec(),
            reduce_ids: reduce_ids.to_vec(),
            batch_fetch_enabled: batch,
        };
        let r = self.rpc_decoded(&m).await?;
        self.stream_handle(r)
    }

    /// Requests one chunk and waits for it.
    pub async fn fetch_chunk(
        &self,
        stream_id: i64,
        chunk_index: i32,
    ) -> Result<Bytes, ClientError> {
        let rx = self.request_chunk(stream_id, chunk_index).await?;
        self.wait(rx).await
    }

    async fn request_chunk(
        &self,
        stream_id: i64,
        chunk_index: i32,
    ) -> Result<oneshot::Receiver<Result<Bytes, ClientError>>, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.lock();
            if let Some(r) = &p.closed {
                return Err(self.closed_err(r));
            }
            p.chunks.insert((stream_id, chunk_index), tx);
        }
        self.send(&Message::ChunkFetchRequest(StreamChunkId {
            stream_id,
            chunk_index,
        }))
        .await?;
        Ok(rx)
    }

    /// Pipelines every chunk request of `h` (as Spark does), then collects the answers in order.
    pub async fn fetch_all_chunks(&self, h: StreamHandle) -> Vec<Result<Bytes, ClientError>> {
        let mut rxs = Vec::with_capacity(h.num_chunks.max(0) as usize);
        for i in 0..h.num_chunks {
            rxs.push(self.request_chunk(h.stream_id, i).await);
        }
        let mut out = Vec::with_capacity(rxs.len());
        for rx in rxs {
            out.push(match rx {
                Ok(rx) => self.wait(rx).await,
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Fetches a chunk through the StreamRequest path (`"<streamId>_<chunk>"`).
    pub async fn stream_chunk(
        &self,
        stream_id: i64,
        chunk_index: i32,
    ) -> Result<Bytes, ClientError> {
        self.stream_request(&format!("{stream_id}_{chunk_index}"))
            .await
    }

    /// Sends a StreamRequest with an arbitrary id.
    pub async fn stream_request(&self, id: &str) -> Result<Bytes, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.lock();
            if let Some(r) = &p.closed {
                return Err(self.closed_err(r));
            }
            p.streams.push_back((id.to_owned(), tx));
        }
        // The FIFO position and the write must not interleave with another stream request.
        self.send(&Message::StreamRequest {
            stream_id: id.to_owned(),
        })
        .await?;
        self.wait(rx).await
    }

    pub async fn get_local_dirs(
        &self,
        app_id: &str,
        exec_ids: &[&str],
    ) -> Result<HashMap<String, Vec<String>>, ClientError> {
        let m = M::GetLocalDirsForExecutors {
            app_id: app_id.into(),
            exec_ids: exec_ids.iter().map(|s| s.to_string()).collect(),
        };
        match self.rpc_decoded(&m).await? {
            M::LocalDirsForExecutors {
                exec_ids,
                num_local_dirs_by_exec,
                all_local_dirs,
            } => {
                let mut out = HashMap::new();
                let mut at = 0usize;
                for (id, n) in exec_ids.into_iter().zip(num_local_dirs_by_exec) {
                    let n = n.max(0) as usize;
                    let dirs =
                        all_local_dirs
                            .get(at..at + n)
                            .ok_or_else(|| ClientError::Protocol {
                                peer: self.peer,
                                what: "LocalDirsForExecutors counts exceed the dirs sent".into(),
                            })?;
                    out.insert(id, dirs.to_vec());
                    at += n;
                }
                Ok(out)
            }
            other => Err(ClientError::Protocol {
                peer: self.peer,
                what: format!("{} instead of LocalDirsForExecutors", other.name()),
            }),
        }
    }

    pub async fn remove_blocks(
        &self,
        app_id: &str,
        exec_id: &str,
        block_ids: &[&str],
    ) -> Result<i32, ClientError> {
        let m = M::RemoveBlocks {
            app_id: app_id.into(),
            exec_id: exec_id.into(),
            block_ids: block_ids.iter().map(|s| s.to_string()).collect(),
        };
        match self.rpc_decoded(&m).await? {
            M::BlocksRemoved { num_removed_blocks } => Ok(num_removed_blocks),
            other => Err(ClientError::Protocol {
                peer: self.peer,
                what: format!("{} instead of BlocksRemoved", other.name()),
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn diagnose_corruption(
        &self,
        app_id: &str,
        exec_id: &str,
        shuffle_id: i32,
        map_id: i64,
        reduce_id: i32,
        checksum: i64,
        algorithm: &str,
    ) -> Result<u8, ClientError> {
        let m = M::DiagnoseCorruption {
            app_id: app_id.into(),
            exec_id: exec_id.into(),
            shuffle_id,
            map_id,
            reduce_id,
            checksum,
            algorithm: algorithm.into(),
        };
        match self.rpc_decoded(&m).await? {
            M::CorruptionCause { cause } => Ok(cause),
            other => Err(ClientError::Protocol {
                peer: self.peer,
                what: format!("{} instead of CorruptionCause", other.name()),
            }),
        }
    }

    /// Fetches blocks the way Spark's `OneForOneBlockFetcher` does: FetchShuffleBlocks when
    /// every id is a shuffle block (grouped by map in first-seen order; batch when the first
    /// id has 5 parts), else OpenBlocks. Returns `(blockId, result)` in chunk order.
    pub async fn fetch_blocks(
        &self,
        app_id: &str,
        exec_id: &str,
        block_ids: &[&str],
    ) -> Result<Vec<(String, Result<Bytes, ClientError>)>, ClientError> {
        let all_shuffle =
            !block_ids.is_empty() && block_ids.iter().all(|b| b.starts_with("shuffle_"));
        let (h, order) = if all_shuffle {
            let batch = block_ids[0].split('_').count() == 5;
            let mut maps: Vec<i64> = Vec::new();
            let mut reduces: Vec<Vec<i32>> = Vec::new();
            let mut ids_by_map: Vec<Vec<String>> = Vec::new();
            let mut shuffle_id = 0;
            for b in block_ids {
                let parts: Vec<&str> = b.split('_').collect();
                let bad = || ClientError::Protocol {
                    peer: self.peer,
                    what: format!("bad block id {b}"),
                };
                shuffle_id = parts.get(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let map: i64 = parts.get(2).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let pos = match maps.iter().position(|m| *m == map) {
                    Some(p) => p,
                    None => {
                        maps.push(map);
                        reduces.push(Vec::new());
                        ids_by_map.push(Vec::new());
                        maps.len() - 1
                    }
                };
                for p in &parts[3..] {
                    reduces[pos].push(p.parse().map_err(|_| bad())?);
                }
                ids_by_map[pos].push(b.to_string());
            }
            let h = self
                .fetch_shuffle_blocks(app_id, exec_id, shuffle_id, &maps, &reduces, batch)
                .await?;
            (h, ids_by_map.concat())
        } else {
            (
                self.open_blocks(app_id, exec_id, block_ids).await?,
                block_ids.iter().map(|s| s.to_string()).collect(),
            )
        };
        let got = self.fetch_all_chunks(h).await;
        Ok(order.into_iter().zip(got).collect())
    }

    /// The next message that matched no outstanding request (e.g. an RpcFailure with request
    /// id 0 for a malformed frame), waiting at most `within`.
    pub async fn next_unmatched(&self, within: Duration) -> Option<Message> {
        let mut rx = self.unmatched.lock().await;
        tokio::time::timeout(within, rx.recv()).await.ok().flatten()
    }

    /// True once the server closed the connection (or it broke).
    pub fn is_closed(&self) -> Option<String> {
        self.lock().closed.clone()
    }

    /// Waits until the server closes the connection; returns the reason, or `None` on timeout.
    pub async fn wait_closed(&self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(r) = self.is_closed() {
                return Some(r);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn read_loop(
    peer: SocketAddr,
    mut rd: OwnedReadHalf,
    pending: Arc<Mutex<Pending>>,
    unmatched: mpsc::UnboundedSender<Message>,
) {
    let lock = || pending.lock().unwrap_or_else(|p| p.into_inner());
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let reason = 'outer: loop {
        loop {
            let msg = match frame::decode(&mut buf, SPARK_MAX_FRAME - 1) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => break 'outer format!("undecodable frame: {e}"),
            };
            let deliver = |w: Option<Waiter>, r: Result<Bytes, ClientError>, m: Message| match w {
                Some(w) => {
                    let _ = w.send(r);
                }
                None => {
                    let _ = unmatched.send(m);
                }
            };
            match msg {
                Message::RpcResponse {
                    request_id,
                    ref body,
                } => {
                    let w = lock().rpcs.remove(&request_id);
                    deliver(w, Ok(body.clone()), msg);
                }
                Message::RpcFailure {
                    request_id,
                    ref error,
                } => {
                    let w = lock().rpcs.remove(&request_id);
                    deliver(
                        w,
                        Err(ClientError::Rpc {
                            peer,
                            error: error.clone(),
                        }),
                        msg,
                    );
                }
                Message::ChunkFetchSuccess { id, ref body } => {
                    let w = lock().chunks.remove(&(id.stream_id, id.chunk_index));
                    deliver(w, Ok(body.clone()), msg);
                }
                Message::ChunkFetchFailure { id, ref error } => {
                    let w = lock().chunks.remove(&(id.stream_id, id.chunk_index));
                    let e = ClientError::Chunk {
                        peer,
                        stream_id: id.stream_id,
                        chunk_index: id.chunk_index,
                        error: error.clone(),
                    };
                    deliver(w, Err(e), msg);
                }
                Message::StreamResponse {
                    ref stream_id,
                    byte_count,
                } => {
                    // The body follows the frame, raw.
                    if byte_count as u64 >= SPARK_MAX_FRAME {
                        break 'outer format!("StreamResponse of {byte_count} bytes is too large");
                    }
                    let n = byte_count as usize;
                    while buf.len() < n {
                        buf.reserve(n - buf.len());
                        match rd.read_buf(&mut buf).await {
                            Ok(0) => break 'outer format!("closed inside a {n}-byte stream body"),
                            Ok(_) => {}
                            Err(e) => break 'outer format!("read error: {e}"),
                        }
                    }
                    let body = buf.split_to(n).freeze();
                    let w = lock().streams.pop_front();
                    match w {
                        Some((id, w)) if &id == stream_id => {
                            let _ = w.send(Ok(body));
                        }
                        Some((id, w)) => {
                            let _ = w.send(Err(ClientError::Protocol {
                                peer,
                                what: format!(
                                    "StreamResponse for {stream_id} while {id} was first in line"
                                ),
                            }));
                        }
                        None => {
                            let _ = unmatched.send(msg);
                        }
                    }
                }
                Message::StreamFailure {
                    ref stream_id,
                    ref error,
                } => {
                    let w = lock().streams.pop_front().map(|(_, w)| w);
                    let e = ClientError::Stream {
                        peer,
                        stream_id: stream_id.clone(),
                        error: error.clone(),
                    };
                    deliver(w, Err(e), msg);
                }
                other => {
                    let _ = unmatched.send(other);
                }
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => break "closed by the server".to_string(),
            Ok(0) => {
                break format!(
                    "closed by the server inside a frame ({} bytes buffered)",
                    buf.len()
                )
            }
            Ok(_) => {}
            Err(e) => break format!("read error: {e}"),
        }
    };
    let mut p = lock();
    p.closed = Some(reason.clone());
    let fail = |w: Waiter| {
        let _ = w.send(Err(ClientError::Closed {
            peer,
            reason: reason.clone(),
        }));
    };
    p.rpcs.drain().for_each(|(_, w)| fail(w));
    p.chunks.drain().for_each(|(_, w)| fail(w));
    p.streams.drain(..).for_each(|(_, w)| fail(w));
}

/// Helpers to lay out Spark shuffle files exactly as an executor writes them.
pub mod layout {
    use std::path::{Path, PathBuf};

    use croupier_shuffle_service::protocol::ExecutorShuffleInfo;
    use croupier_shuffle_service::resolver::file_path;

    /// An executor's local dirs (created) and its ExecutorShuffleInfo.
    pub struct ExecutorDirs {
        pub info: ExecutorShuffleInfo,
    }

    impl ExecutorDirs {
        /// `n` `blockmgr-*` dirs under `root`, 64 sub-dirs each (the Spark default).
        pub fn create(root: &Path, name: &str, n: usize) -> ExecutorDirs {
            let dirs: Vec<String> = (0..n)
                .map(|i| {
                    let d = root.join(format!("blockmgr-{name}-{i}"));
                    std::fs::create_dir_all(&d)
                        .unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
                    d.display().to_string()
                })
                .collect();
            ExecutorDirs {
                info: ExecutorShuffleInfo {
                    local_dirs: dirs,
                    sub_dirs_per_local_dir: 64,
                    shuffle_manager: super::SORT_SHUFFLE_MANAGER.into(),
                },
            }
        }

        /// Where Spark puts `filename`.
        pub fn path(&self, filename: &str) -> PathBuf {
            file_path(
                &self.info.local_dirs,
                self.info.sub_dirs_per_local_dir,
                filename,
            )
        }

        fn write(&self, filename: &str, bytes: &[u8]) -> PathBuf {
            let p = self.path(filename);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
            }
            std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
            p
        }

        /// Writes `shuffle_S_M_0.data` holding `partitions` back to back and its index.
        /// Returns (data path, index path).
        pub fn write_map_output(
            &self,
            shuffle_id: i32,
            map_id: i64,
            partitions: &[&[u8]],
        ) -> (PathBuf, PathBuf) {
            let data: Vec<u8> = partitions.concat();
            let mut offsets = vec![0i64];
            for p in partitions {
                offsets.push(offsets.last().copied().unwrap_or(0) + p.len() as i64);
            }
            let d = self.write(&format!("shuffle_{shuffle_id}_{map_id}_0.data"), &data);
            let i = self.write_index(shuffle_id, map_id, &offsets);
            (d, i)
        }

        /// Writes an index file with arbitrary offsets (for bad-input tests).
        pub fn write_index(&self, shuffle_id: i32, map_id: i64, offsets: &[i64]) -> PathBuf {
            let raw: Vec<u8> = offsets.iter().flat_map(|o| o.to_be_bytes()).collect();
            self.write(&format!("shuffle_{shuffle_id}_{map_id}_0.index"), &raw)
        }

        /// Writes an arbitrary block file, e.g. `rdd_1_2` or a checksum file.
        pub fn write_file(&self, filename: &str, bytes: &[u8]) -> PathBuf {
            self.write(filename, bytes)
        }
    }
}
