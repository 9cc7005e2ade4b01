//! The closed-loop load generator: `connections` concurrent connections, each repeatedly
//! opening a stream (FetchShuffleBlocks, batch FetchShuffleBlocks or OpenBlocks), pipelining
//! all its ChunkFetchRequests as Spark's `OneForOneBlockFetcher` does, and comparing every
//! received byte with the data set's expected content.
//!
//! A *fetch* is one request: from writing the RPC to the last byte of its last chunk; its
//! latency is what the percentiles describe (for timed runs, each connection's first fetch,
//! sent by all connections at the same instant, is left out: steady state). Blocks are reduce partitions (a batch chunk of
//! `[start, end)` counts `end - start` blocks), bytes are chunk body bytes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use croupier_shuffle_service::auth::ctr::{Decryptor, Encryptor};
use croupier_shuffle_service::auth::engine::{AuthMessage, ClientAuth, EngineVersion};
use croupier_shuffle_service::auth::sasl::{netty_base64, DigestInput, SaslMessage};

use super::data::{Content, DataSet, Shape, APP_ID, EXEC_ID, SHUFFLE_MANAGER, SUB_DIRS};
use super::wire;

/// How each connection authenticates (`spark.authenticate` on the server).
#[derive(Debug, Clone)]
pub struct Auth {
    pub secret: String,
    pub protocol: AuthProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthProtocol {
    /// SASL DIGEST-MD5, qop auth (authenticated, not encrypted).
    Sasl,
    /// Spark's auth engine v1, then AES-256-CTR on everything.
    Engine,
    /// Spark's auth engine v2, then AES-128-CTR on everything.
    Engine2,
}

/// The read half, decrypting once an encrypted session started.
struct Reader {
    r: BufReader<OwnedReadHalf>,
    dec: Option<Decryptor>,
}

impl Reader {
    async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.r.read_exact(buf).await?;
        if let Some(d) = &mut self.dec {
            d.decrypt(buf);
        }
        Ok(())
    }
}

/// The write half, encrypting (in place, the caller's buffer is consumed) once a session started.
struct Writer {
    w: OwnedWriteHalf,
    enc: Option<Encryptor>,
}

impl Writer {
    async fn write_all(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if let Some(e) = &mut self.enc {
            e.encrypt(buf);
        }
        self.w.write_all(buf).await
    }
}

async fn connect(addr: SocketAddr, auth: Option<&Auth>) -> Result<(Reader, Writer), LoadError> {
    let sock = TcpStream::connect(addr)
        .await
        .map_err(|source| LoadError::Connect { addr, source })?;
    let _ = sock.set_nodelay(true);
    let (r, w) = sock.into_split();
    let mut r = Reader {
        r: BufReader::with_capacity(256 << 10, r),
        dec: None,
    };
    let mut w = Writer { w, enc: None };
    if let Some(a) = auth {
        authenticate(addr, &mut r, &mut w, a).await?;
    }
    Ok((r, w))
}

async fn send_rpc(w: &mut Writer, id: i64, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::new();
    wire::rpc_request(&mut frame, id, payload);
    w.write_all(&mut frame).await
}

/// Runs the client side of the handshake, as a Spark 3.5 client does.
async fn authenticate(
    addr: SocketAddr,
    r: &mut Reader,
    w: &mut Writer,
    a: &Auth,
) -> Result<(), LoadError> {
    let io = |source| LoadError::Io { addr, source };
    let proto = |detail: String| LoadError::Protocol { addr, detail };
    let mut body = Vec::new();
    match a.protocol {
        AuthProtocol::Sasl => {
            let first = SaslMessage {
                app_id: APP_ID.into(),
                payload: Vec::new(),
            };
            send_rpc(w, -1, &first.encode()).await.map_err(io)?;
            read_rpc_response(addr, r, -1, "SASL challenge", &mut body).await?;
            let challenge = String::from_utf8_lossy(&body).into_owned();
            let nonce = challenge
                .split("nonce=\"")
                .nth(1)
                .and_then(|x| x.split('"').next())
                .ok_or_else(|| proto(format!("no nonce in the SASL challenge {challenge:?}")))?
                .to_owned();
            let password = netty_base64(a.secret.as_bytes());
            let cnonce = "croupierbenchcnonce0123456789abcdefghijk";
            let input = DigestInput {
                username: "c3BhcmtTYXNsVXNlcg==",
                realm: "default",
                password: &password,
                nonce: &nonce,
                cnonce,
                nc: "00000001",
                qop: "auth",
                digest_uri: "null/default",
                authzid: None,
            };
            let resp = format!(
                "charset=utf-8,username=\"c3BhcmtTYXNsVXNlcg==\",realm=\"default\",nonce=\"{nonce}\",nc=00000001,\
                 cnonce=\"{cnonce}\",digest-uri=\"null/default\",maxbuf=65536,response={},qop=auth",
                input.response()
            );
            let second = SaslMessage {
                app_id: APP_ID.into(),
                payload: resp.into_bytes(),
            };
            send_rpc(w, -2, &second.encode()).await.map_err(io)?;
            read_rpc_response(addr, r, -2, "SASL response", &mut body).await?;
            if body != format!("rspauth={}", input.rspauth()).as_bytes() {
                return Err(proto("wrong SASL rspauth".into()));
            }
        }
        AuthProtocol::Engine | AuthProtocol::Engine2 => {
            let version = if a.protocol == AuthProtocol::Engine {
                EngineVersion::V1
            } else {
                EngineVersion::V2
            };
            let (client, challenge) =
                ClientAuth::start(a.secret.as_bytes(), APP_ID, version, &mut rand::rngs::OsRng);
            send_rpc(w, -1, &challenge.encode()).await.map_err(io)?;
            read_rpc_response(addr, r, -1, "auth engine challenge", &mut body).await?;
            let response = AuthMessage::decode(&body).map_err(|e| proto(e.to_string()))?;
            let keys = client.finish(&response).map_err(|e| proto(e.to_string()))?;
            let (enc, dec) = keys.channel().map_err(|e| proto(e.to_string()))?.split();
            r.dec = Some(dec);
            w.enc = Some(enc);
        }
    }
    Ok(())
}

/// How blocks are requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// FetchShuffleBlocks, one chunk per (map, reduce): Spark 3.5's default path.
    Fetch,
    /// FetchShuffleBlocks with batchFetchEnabled: one chunk per map covering a reduce range.
    Batch,
    /// OpenBlocks with `shuffle_<s>_<m>_<r>` ids (spark.shuffle.useOldFetchProtocol=true).
    Open,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Fetch => "fetch",
            Mode::Batch => "batch",
            Mode::Open => "open",
        }
    }
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub shape: Shape,
    pub mode: Mode,
    pub connections: usize,
    /// Stop issuing fetches after this long (each connection finishes its current one)...
    pub duration: Option<Duration>,
    /// ...or after this many fetches per connection.
    pub fetches_per_conn: Option<u64>,
    /// Chunks per request (distinct maps), capped at the number of maps.
    pub blocks_per_fetch: u32,
    /// Reduces per chunk in batch mode, capped at the number of reduces.
    pub batch_reduces: u32,
    /// Authenticate every connection first.
    pub auth: Option<Auth>,
    /// Print a `slow_fetch` line (stderr) with the time of every step of each fetch that
    /// takes at least this long: where a stalled fetch waited.
    pub trace_slow: Option<Duration>,
}

/// A run's failure; every variant names the peer.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot connect to shuffle server {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("I/O with shuffle server {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    #[error("shuffle server {addr} answered {what} with RpcFailure: {error}")]
    RpcFailure {
        addr: SocketAddr,
        what: &'static str,
        error: String,
    },
    #[error("shuffle server {addr} answered chunk {chunk} of stream {stream} with ChunkFetchFailure: {error}")]
    ChunkFailure {
        addr: SocketAddr,
        stream: i64,
        chunk: i32,
        error: String,
    },
    #[error("shuffle server {addr} violated the protocol: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
    #[error("WRONG BYTES from shuffle server {addr}: shuffle {shuffle} map {map} reduce {reduce} ({len} bytes) differs from the data set")]
    Mismatch {
        addr: SocketAddr,
        shuffle: i32,
        map: u32,
        reduce: u32,
        len: usize,
    },
}

impl LoadError {
    /// Connection-level failures may pass; answers and wrong bytes are the server's verdict.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LoadError::Connect { .. } | LoadError::Io { .. })
    }
}

/// Totals of one run.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    pub elapsed: Duration,
    pub fetches: u64,
    pub chunks: u64,
    pub blocks: u64,
    pub bytes: u64,
    /// Bytes compared with the expected content (equals `bytes` when the run succeeded).
    pub verified_bytes: u64,
    /// Per-fetch latency, microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl RunStats {
    pub fn blocks_per_s(&self) -> f64 {
        self.blocks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e9 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Latency quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// Registers the data set's executor with the server (RegisterExecutor; empty RpcResponse).
pub async fn register(
    addr: SocketAddr,
    data: &DataSet,
    auth: Option<&Auth>,
) -> Result<(), LoadError> {
    let (mut r, mut w) = connect(addr, auth).await?;
    let body = wire::register_executor(
        APP_ID,
        EXEC_ID,
        &data.local_dir_strings(),
        SUB_DIRS,
        SHUFFLE_MANAGER,
    );
    let mut frame = Vec::new();
    wire::rpc_request(&mut frame, 1, &body);
    let io = |source| LoadError::Io { addr, source };
    w.write_all(&mut frame).await.map_err(io)?;
    let mut rest = Vec::new();
    read_rpc_response(addr, &mut r, 1, "RegisterExecutor", &mut rest).await?;
    Ok(())
}

/// Opens `n` connections one after another, each authenticating (when `auth`) and answering
/// one RegisterExecutor, then closed; returns the time of each (the cost of a new connection).
pub async fn handshakes(
    addr: SocketAddr,
    data: &DataSet,
    auth: Option<&Auth>,
    n: usize,
) -> Result<Vec<Duration>, LoadError> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        register(addr, data, auth).await?;
        out.push(t0.elapsed());
    }
    Ok(out)
}

/// Reads one RPC answer into `body`; RpcFailure becomes an error.
async fn read_rpc_response(
    addr: SocketAddr,
    r: &mut Reader,
    request_id: i64,
    what: &'static str,
    body: &mut Vec<u8>,
) -> Result<(), LoadError> {
    let io = |source| LoadError::Io { addr, source };
    let mut h = [0u8; wire::HEADER];
    r.read_exact(&mut h).await.map_err(io)?;
    let (kind, len, rid, _) = wire::parse_header(&h);
    if !(wire::HEADER as i64..=(16 << 20)).contains(&len) {
        return Err(LoadError::Protocol {
            addr,
            detail: format!("{what} answer has frame length {len}"),
        });
    }
    body.resize(len as usize - wire::HEADER, 0);
    r.read_exact(body).await.map_err(io)?;
    match kind {
        wire::RPC_RESPONSE if rid == request_id => Ok(()),
        wire::RPC_FAILURE => {
            let error = String::from_utf8_lossy(body).into_owned();
            Err(LoadError::RpcFailure { addr, what, error })
        }
        _ => Err(LoadError::Protocol {
            addr,
            detail: format!(
                "expected RpcResponse to request {request_id} ({what}), got type {kind} id {rid}"
            ),
        }),
    }
}

/// One chunk the server owes us: map, reduce range.
#[derive(Clone, Copy)]
struct Want {
    map: u32,
    start: u32,
    end: u32,
}

struct Conn {
    addr: SocketAddr,
    r: Reader,
    w: Writer,
    out: Vec<u8>,
    body: Vec<u8>,
    rpc: Vec<u8>,
    wants: Vec<Want>,
    ids: Vec<String>,
    maps: Vec<i64>,
    ranges: Vec<[i32; 2]>,
    next_request: i64,
    /// When each step of the current fetch ended (for `trace_slow`).
    steps: Vec<(&'static str, Instant)>,
}

/// One `slow_fetch` line: the fetch's start (ms since the run started) and, for each step, the
/// ms since the fetch started. Steps: `rpc` (request written), `handle` (StreamHandle read),
/// `req` (all ChunkFetchRequests written), `hN` (header of chunk N read), `bN` (its body read).
fn trace_fetch(
    conn: u64,
    i: u64,
    run_start: Instant,
    t0: Instant,
    took: Duration,
    steps: &[(&'static str, Instant)],
) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut line = format!(
        "slow_fetch conn={conn} fetch={i} start_ms={:.1} total_ms={:.1}",
        ms(t0.duration_since(run_start)),
        ms(took)
    );
    let mut n = 0;
    for (what, at) in steps {
        let name = match *what {
            "h" | "b" => {
                let s = format!("{what}{n}");
                if *what == "b" {
                    n += 1;
                }
                s
            }
            w => w.to_owned(),
        };
        line += &format!(" {name}={:.1}", ms(at.duration_since(t0)));
    }
    eprintln!("{line}");
}

/// Runs the load; returns totals or the first failure (wrong bytes included).
pub async fn run(cfg: Arc<LoadConfig>, content: Arc<Content>) -> Result<RunStats, LoadError> {
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..cfg.connections {
        let (cfg, content) = (cfg.clone(), content.clone());
        tasks.spawn(async move { conn_loop(cfg, content, c as u64, start, deadline).await });
    }
    let mut total = RunStats::default();
    let mut first_err = None;
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(Ok(s)) => {
                total.fetches += s.fetches;
                total.chunks += s.chunks;
                total.blocks += s.blocks;
                total.bytes += s.bytes;
                total.verified_bytes += s.verified_bytes;
                total.latencies_us.extend_from_slice(&s.latencies_us);
            }
            Ok(Err(e)) => {
                if first_err.is_none() {
                    first_err = Some(e);
                    tasks.abort_all();
                }
            }
            Err(j) if j.is_cancelled() => {}
            Err(j) => {
                first_err.get_or_insert(LoadError::Protocol {
                    addr: cfg.addr,
                    detail: format!("load task failed: {j}"),
                });
            }
        }
    }
    total.elapsed = start.elapsed();
    if let Some(e) = first_err {
        return Err(e);
    }
    total.latencies_us.sort_unstable();
    Ok(total)
}

async fn conn_loop(
    cfg: Arc<LoadConfig>,
    content: Arc<Content>,
    conn: u64,
    run_start: Instant,
    deadline: Option<Instant>,
) -> Result<RunStats, LoadError> {
    let addr = cfg.addr;
    let (r, w) = connect(addr, cfg.auth.as_ref()).await?;
    let mut c = Conn {
        addr,
        r,
        w,
        out: Vec::with_capacity(4096),
        body: Vec::new(),
        rpc: Vec::with_capacity(64),
        wants: Vec::new(),
        ids: Vec::new(),
        maps: Vec::new(),
        ranges: Vec::new(),
        next_request: (conn as i64 + 1) << 32,
        steps: Vec::new(),
    };
    let mut stats = RunStats::default();
    let shape = &cfg.shape;
    let k = cfg.blocks_per_fetch.clamp(1, shape.maps);
    let br = cfg.batch_reduces.clamp(1, shape.reduces);
    let mut i = 0u64;
    let mut first_us = None;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d)
            || cfg.fetches_per_conn.is_some_and(|n| i >= n)
        {
            break;
        }
        // Spread connections over the data set: reducer and first map differ per iteration.
        let g = conn.wrapping_mul(7919).wrapping_add(i);
        let (start, end) = match cfg.mode {
            Mode::Batch => {
                let s = (g % u64::from(shape.reduces - br + 1)) as u32;
                (s, s + br)
            }
            _ => {
                let s = (g % u64::from(shape.reduces)) as u32;
                (s, s + 1)
            }
        };
        let first_map = (g.wrapping_mul(u64::from(k)) % u64::from(shape.maps)) as u32;
        c.wants.clear();
        for j in 0..k {
            c.wants.push(Want {
                map: (first_map + j) % shape.maps,
                start,
                end,
            });
        }
        let t0 = Instant::now();
        c.steps.clear();
        fetch_once(&mut c, &cfg, &content, &mut stats).await?;
        let took = t0.elapsed();
        // Latency is steady-state: every connection's first fetch is left out of the
        // percentiles (its bytes still count and are verified). All connections send their
        // first request in the same millisecond, so that wave asks for connections x request
        // bytes at once (512 MiB at 1 MiB x 8 x 64) and its last fetches end after the whole
        // wave is delivered: ~1 s on this machine with any server, the raw one included.
        // A connection that completes only that one fetch in the run still reports it.
        let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
        if i > 0 || cfg.fetches_per_conn.is_some() {
            stats.latencies_us.push(us);
        } else {
            first_us = Some(us);
        }
        if cfg.trace_slow.is_some_and(|t| took >= t) {
            trace_fetch(conn, i, run_start, t0, took, &c.steps);
        }
        stats.fetches += 1;
        i += 1;
    }
    if stats.latencies_us.is_empty() {
        stats.latencies_us.extend(first_us);
    }
    Ok(stats)
}

async fn fetch_once(
    c: &mut Conn,
    cfg: &LoadConfig,
    content: &Content,
    stats: &mut RunStats,
) -> Result<(), LoadError> {
    let addr = c.addr;
    let io = |source| LoadError::Io { addr, source };
    let shuffle = cfg.shape.shuffle_id;
    c.rpc.clear();
    let what = match cfg.mode {
        Mode::Fetch | Mode::Batch => {
            c.maps.clear();
            c.ranges.clear();
            for w in &c.wants {
                c.maps.push(i64::from(w.map));
                c.ranges.push([w.start as i32, w.end as i32]);
            }
            let batch = cfg.mode == Mode::Batch;
            let per_map: Vec<&[i32]> = c
                .ranges
                .iter()
                .map(|r| if batch { &r[..] } else { &r[..1] })
                .collect();
            wire::fetch_shuffle_blocks(
                &mut c.rpc, APP_ID, EXEC_ID, shuffle, &c.maps, &per_map, batch,
            );
            "FetchShuffleBlocks"
        }
        Mode::Open => {
            c.ids.clear();
            for w in &c.wants {
                c.ids
                    .push(format!("shuffle_{shuffle}_{}_{}", w.map, w.start));
            }
            wire::open_blocks(&mut c.rpc, APP_ID, EXEC_ID, &c.ids);
            "OpenBlocks"
        }
    };
    let request_id = c.next_request;
    c.next_request += 1;
    c.out.clear();
    wire::rpc_request(&mut c.out, request_id, &c.rpc);
    let trace = cfg.trace_slow.is_some();
    c.w.write_all(&mut c.out).await.map_err(io)?;
    if trace {
        c.steps.push(("rpc", Instant::now()));
    }
    let mut handle = std::mem::take(&mut c.body);
    read_rpc_response(addr, &mut c.r, request_id, what, &mut handle).await?;
    if trace {
        c.steps.push(("handle", Instant::now()));
    }
    if handle.len() != 13 || handle[0] != wire::STREAM_HANDLE {
        return Err(LoadError::Protocol {
            addr,
            detail: format!("{what} answer is not a 13-byte StreamHandle: {handle:?}"),
        });
    }
    let stream = i64::from_be_bytes(handle[1..9].try_into().unwrap_or_default());
    let num_chunks = i32::from_be_bytes(handle[9..13].try_into().unwrap_or_default());
    c.body = handle;
    if num_chunks as usize != c.wants.len() {
        return Err(LoadError::Protocol {
            addr,
            detail: format!(
                "{what} of {} blocks got numChunks={num_chunks}",
                c.wants.len()
            ),
        });
    }
    c.out.clear();
    for j in 0..num_chunks {
        wire::chunk_fetch_request(&mut c.out, stream, j);
    }
    c.w.write_all(&mut c.out).await.map_err(io)?;
    if trace {
        c.steps.push(("req", Instant::now()));
    }
    let bs = content.block_size();
    for (j, want) in c.wants.iter().enumerate() {
        let mut h = [0u8; wire::HEADER];
        c.r.read_exact(&mut h).await.map_err(io)?;
        if trace {
            c.steps.push(("h", Instant::now()));
        }
        let (kind, len, sid, idx) = wire::parse_header(&h);
        let blocks = (want.end - want.start) as usize;
        let expect_len = blocks * bs;
        if kind == wire::CHUNK_FETCH_FAILURE && (wire::HEADER as i64..=(16 << 20)).contains(&len) {
            c.body.resize(len as usize - wire::HEADER, 0);
            c.r.read_exact(&mut c.body).await.map_err(io)?;
            let msg = c
                .body
                .get(4..)
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            return Err(LoadError::ChunkFailure {
                addr,
                stream: sid,
                chunk: idx,
                error: msg,
            });
        }
        if kind != wire::CHUNK_FETCH_SUCCESS
            || sid != stream
            || idx != j as i32
            || len != (wire::HEADER + expect_len) as i64
        {
            return Err(LoadError::Protocol {
                addr,
                detail: format!(
                    "expected ChunkFetchSuccess stream {stream} chunk {j} with {expect_len} body bytes, got type {kind} stream {sid} chunk {idx} frame length {len}"
                ),
            });
        }
        c.body.resize(expect_len, 0);
        c.r.read_exact(&mut c.body).await.map_err(io)?;
        if trace {
            c.steps.push(("b", Instant::now()));
        }
        for (b, red) in (want.start..want.end).enumerate() {
            let got = &c.body[b * bs..(b + 1) * bs];
            if !content.matches(want.map, red, got) {
                return Err(LoadError::Mismatch {
                    addr,
                    shuffle: cfg.shape.shuffle_id,
                    map: want.map,
                    reduce: red,
                    len: got.len(),
                });
            }
        }
        stats.chunks += 1;
        // Let the other connections' tasks run after every chunk, as Netty's event loop (Spark's
        // client) reads at most a few messages of one channel before serving the next. Without
        // it, tokio's co-operative budget lets one task read and verify many MiB in one poll
        // while the other connections' bytes wait unread in their sockets: the first fetch of
        // some connections then took over 1 s at 1 MiB x 64 connections, whatever the server.
        tokio::task::yield_now().await;
        stats.blocks += blocks as u64;
        stats.bytes += expect_len as u64;
        stats.verified_bytes += expect_len as u64;
    }
    Ok(())
}
