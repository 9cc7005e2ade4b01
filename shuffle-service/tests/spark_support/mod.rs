//! Harness for the real-client interop tests (`spark_*.rs`): the shuffle service under test, a
//! frame-decoding TCP tap in front of it, and the python/pyspark peer.
//!
//! # Layout
//! - [`Service`]: starts `croupier-shuffle-service` on 127.0.0.1 with an ephemeral port (or, with
//!   `CROUPIER_ESS_UNDER_TEST=spark-mesos`, Spark's own JVM `MesosExternalShuffleService`, which is
//!   how the harness itself is checked), collects its log, stops it with SIGTERM.
//! - [`Tap`]: a TCP proxy that forwards bytes unchanged and decodes Spark `network-common` frames in
//!   both directions into [`Event`]s, so a test can prove which messages really went through the
//!   service and what it answered.
//! - [`Python`]: runs a script from `tests/interop/spark/` with the venv's python in its own
//!   process group, bounded in time.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub use croupier_testkit::ports::loopback_port as free_port;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Spark-job tests start three JVMs each and the box has two cores: run them one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    let m = LOCK.get_or_init(|| Mutex::new(()));
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `tests/interop/spark/<name>` in the workspace.
pub fn script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/interop/spark")
        .join(name);
    assert!(p.is_file(), "interop script {} is missing", p.display());
    p
}

// ---------------------------------------------------------------------------------------------
// The service under test

/// Which implementation the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `croupier-shuffle-service` (the default).
    Ours,
    /// Spark's `org.apache.spark.deploy.mesos.MesosExternalShuffleService` from the pyspark jars.
    SparkMesos,
}

impl Flavour {
    pub fn from_env() -> Flavour {
        match std::env::var("CROUPIER_ESS_UNDER_TEST").as_deref() {
            Ok("spark-mesos") => Flavour::SparkMesos,
            Ok("ours") | Err(_) => Flavour::Ours,
            Ok(other) => {
                panic!("CROUPIER_ESS_UNDER_TEST={other}: expected `ours` or `spark-mesos`")
            }
        }
    }
}

pub struct Service {
    pub flavour: Flavour,
    pub port: u16,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts the service under test with the given `spark.*` settings; waits until it accepts.
    pub fn start(conf: &[(&str, &str)]) -> Service {
        Service::start_as(Flavour::from_env(), None, conf)
    }

    /// Starts a given implementation, on `port` when given (a restart on the same port), else
    /// on an ephemeral one.
    pub fn start_as(flavour: Flavour, port: Option<u16>, conf: &[(&str, &str)]) -> Service {
        match flavour {
            Flavour::Ours => Service::start_ours(port.unwrap_or(0), conf),
            Flavour::SparkMesos => Service::start_spark_mesos(port.unwrap_or_else(free_port), conf),
        }
    }

    /// SIGKILL (no clean shutdown), then reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn start_ours(port: u16, conf: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_croupier-shuffle-service"));
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        for (k, v) in conf {
            cmd.arg("--conf").arg(format!("{k}={v}"));
        }
        cmd.env("NO_COLOR", "1")
            .env_remove("SPARK_SHUFFLE_OPTS")
            .env(
                "RUST_LOG",
                std::env::var("CROUPIER_TEST_SERVICE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start croupier-shuffle-service: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        collect_lines(child.stderr.take(), log.clone(), Some(tx));
        collect_lines(child.stdout.take(), log.clone(), None);
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "croupier-shuffle-service printed no `listening on <ip>:<port>` line within 20 s; log:\n{}",
                    log.lock().map(|l| l.join("\n")).unwrap_or_default()
                );
            }
        };
        Service {
            flavour: Flavour::Ours,
            port,
            child: Some(child),
            log,
        }
    }

    fn start_spark_mesos(port: u16, conf: &[(&str, &str)]) -> Service {
        // Spark's service cannot report an ephemeral port: the caller picks a free one.
        let mut opts = format!("-Dspark.shuffle.service.port={port}");
        for (k, v) in conf {
            opts.push_str(&format!(" -D{k}={v}"));
        }
        let spark_home = croupier_testkit::env::spark_home();
        let mut cmd = Command::new(spark_home.join("bin/spark-class"));
        cmd.arg("org.apache.spark.deploy.mesos.MesosExternalShuffleService")
            .env("SPARK_HOME", &spark_home)
            .env("SPARK_SHUFFLE_OPTS", opts)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start spark-class: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stderr.take(), log.clone(), None);
        collect_lines(child.stdout.take(), log.clone(), None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("Spark's MesosExternalShuffleService did not accept on {port} within 60 s");
            }
            thread::sleep(Duration::from_millis(100));
        }
        Service {
            flavour: Flavour::SparkMesos,
            port,
            child: Some(child),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, then up to 10 s for the process to exit (SIGKILL after that).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        terminate(&mut child, Duration::from_secs(10))
    }

    /// Stops the service and asserts it exited cleanly on SIGTERM (only ours promises that).
    pub fn stop_cleanly(&mut self) {
        let status = self.stop();
        if self.flavour == Flavour::Ours {
            match status {
                Some(s) if s.success() => {}
                other => panic!(
                    "croupier-shuffle-service did not exit cleanly on SIGTERM: {other:?}; log:\n{}",
                    self.log()
                ),
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on a child we spawned and have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => break,
        }
    }
    // a forced kill reports a signal death, never success
    let _ = child.kill();
    child.wait().ok()
}

fn collect_lines(
    from: Option<impl Read + Send + 'static>,
    into: Arc<Mutex<Vec<String>>>,
    port_tx: Option<mpsc::Sender<u16>>,
) {
    let Some(from) = from else { return };
    thread::spawn(move || {
        let mut port_tx = port_tx;
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            if let Some(tx) = &port_tx {
                if let Some(port) = listening_port(&line) {
                    let _ = tx.send(port);
                    port_tx = None;
                }
            }
            if let Ok(mut l) = into.lock() {
                l.push(line);
            }
        }
    });
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c2 in chars.by_ref() {
                if c2.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The port of a `... listening on 127.0.0.1:40123 ...` line.
fn listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.rsplit(':').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The frame-decoding tap

/// One decoded `BlockTransferMessage` (the body of an RpcRequest or OneWayMessage).
#[derive(Clone, Debug, PartialEq)]
pub enum Btm {
    OpenBlocks {
        app: String,
        exec: String,
        blocks: Vec<String>,
    },
    RegisterExecutor {
        app: String,
        exec: String,
        dirs: Vec<String>,
        sub_dirs: i32,
        manager: String,
    },
    RegisterDriver {
        app: String,
        timeout_ms: i64,
    },
    Heartbeat {
        app: String,
    },
    RemoveBlocks {
        app: String,
        exec: String,
        blocks: Vec<String>,
    },
    FetchShuffleBlocks {
        app: String,
        exec: String,
        shuffle: i32,
        maps: Vec<i64>,
        reduces: Vec<Vec<i32>>,
        batch: bool,
    },
    GetLocalDirs {
        app: String,
        execs: Vec<String>,
    },
    /// Any other type id, or a body that did not decode.
    Other {
        type_id: u8,
        len: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    RpcRequest {
        id: i64,
        btm: Btm,
    },
    OneWay {
        btm: Btm,
    },
    RpcResponse {
        id: i64,
        body: Vec<u8>,
    },
    RpcFailure {
        id: i64,
        error: String,
    },
    ChunkFetchRequest {
        stream: i64,
        chunk: i32,
    },
    ChunkFetchSuccess {
        stream: i64,
        chunk: i32,
        len: usize,
    },
    ChunkFetchFailure {
        stream: i64,
        chunk: i32,
        error: String,
    },
    StreamRequest {
        id: String,
    },
    StreamResponse {
        id: String,
        len: u64,
    },
    StreamFailure {
        id: String,
        error: String,
    },
    /// Frame types the tests do not expect (UploadStream, MergedBlockMeta*, unknown ids).
    OtherFrame {
        type_id: u8,
        len: usize,
    },
    /// Bytes that are not a valid frame; decoding of that direction stops here.
    Garbage {
        detail: String,
    },
    /// The side named by `from_server` closed (or reset) its half of the connection.
    Closed {
        from_server: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Event {
    pub seq: u64,
    pub conn: u64,
    pub from_server: bool,
    pub at: Instant,
    pub msg: Msg,
}

#[derive(Default)]
struct Log {
    events: Mutex<Vec<Event>>,
    seq: AtomicU64,
    /// The raw bytes of each (connection, direction), as they crossed the tap (bounded by
    /// [`MAX_RAW_PER_CONN`]).
    raw: Mutex<HashMap<(u64, bool), Vec<u8>>>,
}

/// Raw bytes kept per connection and direction.
const MAX_RAW_PER_CONN: usize = 64 << 20;

impl Log {
    fn push(&self, conn: u64, from_server: bool, msg: Msg) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut e) = self.events.lock() {
            e.push(Event {
                seq,
                conn,
                from_server,
                at: Instant::now(),
                msg,
            });
        }
    }
}

/// A TCP proxy on 127.0.0.1 (ephemeral port) in front of the service; see the module docs.
pub struct Tap {
    pub port: u16,
    log: Arc<Log>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    pub fn start(target_port: u16) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("tap bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("tap local_addr: {e}"))
            .port();
        let log = Arc::new(Log::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        thread::spawn(move || {
            let mut next_conn = 0u64;
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let conn = next_conn;
                next_conn += 1;
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    log2.push(
                        conn,
                        true,
                        Msg::Garbage {
                            detail: "tap could not connect to the service".into(),
                        },
                    );
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                pipe(conn, false, &client, &server, log2.clone());
                pipe(conn, true, &server, &client, log2.clone());
            }
        });
        Tap { port, log, stop }
    }

    pub fn events(&self) -> Vec<Event> {
        self.log
            .events
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// Every decoded client request (RpcRequest and OneWayMessage bodies), in order.
    pub fn requests(&self) -> Vec<(Event, Btm)> {
        self.events()
            .into_iter()
            .filter_map(|e| match &e.msg {
                Msg::RpcRequest { btm, .. } | Msg::OneWay { btm } if !e.from_server => {
                    Some((e.clone(), btm.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// The server's answer (RpcResponse / RpcFailure) to the RpcRequest `id` on `conn`.
    pub fn answer(&self, conn: u64, id: i64) -> Option<Msg> {
        self.events().into_iter().find_map(|e| match &e.msg {
            Msg::RpcResponse { id: i, .. } | Msg::RpcFailure { id: i, .. }
                if e.conn == conn && *i == id =>
            {
                Some(e.msg.clone())
            }
            _ => None,
        })
    }

    /// A compact, human-readable summary (counts per message kind) for failure messages.
    pub fn summary(&self) -> String {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut failures = Vec::new();
        for e in self.events() {
            let key = match &e.msg {
                Msg::RpcRequest { btm, .. } => format!("RpcRequest/{}", btm_name(btm)),
                Msg::OneWay { btm } => format!("OneWay/{}", btm_name(btm)),
                Msg::RpcFailure { error, .. }
                | Msg::ChunkFetchFailure { error, .. }
                | Msg::StreamFailure { error, .. } => {
                    failures.push(format!("conn {}: {:?}", e.conn, first_line(error)));
                    msg_name(&e.msg).to_string()
                }
                Msg::Garbage { detail } => {
                    failures.push(format!(
                        "conn {} {}: {detail}",
                        e.conn,
                        if e.from_server { "S->C" } else { "C->S" }
                    ));
                    "Garbage".into()
                }
                Msg::Closed { from_server } => {
                    format!("Closed/{}", if *from_server { "server" } else { "client" })
                }
                m => msg_name(m).to_string(),
            };
            *counts.entry(key).or_default() += 1;
        }
        let mut keys: Vec<_> = counts.into_iter().collect();
        keys.sort();
        let mut s = keys
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        for f in failures.iter().take(10) {
            s.push_str("\n  ");
            s.push_str(f);
        }
        s
    }

    /// Connections whose raw bytes in one direction (`from_server`) satisfy `pred`.
    pub fn raw_matches(&self, from_server: bool, pred: impl Fn(&[u8]) -> bool) -> usize {
        self.log
            .raw
            .lock()
            .map(|raw| {
                raw.iter()
                    .filter(|((_, dir), bytes)| *dir == from_server && pred(bytes))
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events().iter().filter(|e| pred(e)).count()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub fn btm_name(b: &Btm) -> String {
    match b {
        Btm::OpenBlocks { .. } => "OpenBlocks".into(),
        Btm::RegisterExecutor { .. } => "RegisterExecutor".into(),
        Btm::RegisterDriver { .. } => "RegisterDriver".into(),
        Btm::Heartbeat { .. } => "ShuffleServiceHeartbeat".into(),
        Btm::RemoveBlocks { .. } => "RemoveBlocks".into(),
        Btm::FetchShuffleBlocks { batch, .. } => {
            format!("FetchShuffleBlocks(batch={})", u8::from(*batch))
        }
        Btm::GetLocalDirs { .. } => "GetLocalDirsForExecutors".into(),
        Btm::Other { type_id, .. } => format!("type{type_id}"),
    }
}

fn msg_name(m: &Msg) -> &'static str {
    match m {
        Msg::RpcRequest { .. } => "RpcRequest",
        Msg::OneWay { .. } => "OneWayMessage",
        Msg::RpcResponse { .. } => "RpcResponse",
        Msg::RpcFailure { .. } => "RpcFailure",
        Msg::ChunkFetchRequest { .. } => "ChunkFetchRequest",
        Msg::ChunkFetchSuccess { .. } => "ChunkFetchSuccess",
        Msg::ChunkFetchFailure { .. } => "ChunkFetchFailure",
        Msg::StreamRequest { .. } => "StreamRequest",
        Msg::StreamResponse { .. } => "StreamResponse",
        Msg::StreamFailure { .. } => "StreamFailure",
        Msg::OtherFrame { .. } => "OtherFrame",
        Msg::Garbage { .. } => "Garbage",
        Msg::Closed { .. } => "Closed",
    }
}

/// Copies `from` to `to` on a thread, decoding frames on the way.
fn pipe(conn: u64, from_server: bool, from: &TcpStream, to: &TcpStream, log: Arc<Log>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        log.push(
            conn,
            from_server,
            Msg::Garbage {
                detail: "tap: try_clone failed".into(),
            },
        );
        return;
    };
    thread::spawn(move || {
        let mut dec = Decoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            if let Ok(mut raw) = log.raw.lock() {
                let kept = raw.entry((conn, from_server)).or_default();
                let room = MAX_RAW_PER_CONN.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
            }
            for msg in dec.feed(&buf[..n]) {
                log.push(conn, from_server, msg);
            }
        }
        log.push(conn, from_server, Msg::Closed { from_server });
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    });
}

/// Incremental decoder of one direction of a Spark `network-common` connection.
#[derive(Default)]
struct Decoder {
    buf: Vec<u8>,
    /// raw bytes following a StreamResponse / UploadStream frame, not frames themselves
    skip: u64,
    broken: bool,
}

const MAX_TAP_FRAME: i64 = 256 << 20;

impl Decoder {
    fn feed(&mut self, data: &[u8]) -> Vec<Msg> {
        let mut out = Vec::new();
        if self.broken {
            return out;
        }
        self.buf.extend_from_slice(data);
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.buf.len() as u64) as usize;
                self.buf.drain(..n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return out;
                }
            }
            if self.buf.len() < 8 {
                return out;
            }
            let len = i64::from_be_bytes(self.buf[..8].try_into().unwrap_or([0; 8]));
            if !(9..=MAX_TAP_FRAME).contains(&len) {
                out.push(Msg::Garbage {
                    detail: format!("frame length {len}"),
                });
                self.broken = true;
                return out;
            }
            let len = len as usize;
            if self.buf.len() < len {
                return out;
            }
            let frame: Vec<u8> = self.buf.drain(..len).collect();
            match decode_frame(&frame[8..]) {
                Ok((msg, skip)) => {
                    self.skip = skip;
                    out.push(msg);
                }
                Err(detail) => {
                    out.push(Msg::Garbage { detail });
                    self.broken = true;
                    return out;
                }
            }
        }
    }
}

struct Cur<'a> {
    b: &'a [u8],
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!("truncated: need {n} bytes, have {}", self.b.len()));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| "i32")?,
        ))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| "i64")?,
        ))
    }
    fn len(&mut self) -> Result<usize, String> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| format!("negative length {n}"))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.len()?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn strings(&mut self) -> Result<Vec<String>, String> {
        let n = self.len()?;
        (0..n).map(|_| self.string()).collect()
    }
    fn ints(&mut self) -> Result<Vec<i32>, String> {
        let n = self.len()?;
        (0..n).map(|_| self.i32()).collect()
    }
    fn longs(&mut self) -> Result<Vec<i64>, String> {
        let n = self.len()?;
        (0..n).map(|_| self.i64()).collect()
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
}

/// Decodes one frame without its 8-byte length; returns the message and the raw tail length.
fn decode_frame(f: &[u8]) -> Result<(Msg, u64), String> {
    let mut c = Cur { b: f };
    let ty = c.u8()?;
    let msg = match ty {
        0 => Msg::ChunkFetchRequest {
            stream: c.i64()?,
            chunk: c.i32()?,
        },
        1 => {
            let (stream, chunk) = (c.i64()?, c.i32()?);
            Msg::ChunkFetchSuccess {
                stream,
                chunk,
                len: c.rest().len(),
            }
        }
        2 => Msg::ChunkFetchFailure {
            stream: c.i64()?,
            chunk: c.i32()?,
            error: c.string()?,
        },
        3 => {
            let id = c.i64()?;
            let _ = c.i32()?;
            Msg::RpcRequest {
                id,
                btm: decode_btm(c.rest()),
            }
        }
        4 => {
            let id = c.i64()?;
            let _ = c.i32()?;
            Msg::RpcResponse {
                id,
                body: c.rest().to_vec(),
            }
        }
        5 => Msg::RpcFailure {
            id: c.i64()?,
            error: c.string()?,
        },
        6 => Msg::StreamRequest { id: c.string()? },
        7 => {
            let id = c.string()?;
            let len = c.i64()?;
            let len = u64::try_from(len)
                .map_err(|_| format!("negative StreamResponse byteCount {len}"))?;
            return Ok((Msg::StreamResponse { id, len }, len));
        }
        8 => Msg::StreamFailure {
            id: c.string()?,
            error: c.string()?,
        },
        9 => {
            let _ = c.i32()?;
            Msg::OneWay {
                btm: decode_btm(c.rest()),
            }
        }
        10 => {
            let _ = c.i64()?;
            let meta = c.len()?;
            c.take(meta)?;
            let body = c.i64()?;
            let body =
                u64::try_from(body).map_err(|_| format!("negative UploadStream body {body}"))?;
            return Ok((
                Msg::OtherFrame {
                    type_id: ty,
                    len: f.len(),
                },
                body,
            ));
        }
        _ => Msg::OtherFrame {
            type_id: ty,
            len: f.len(),
        },
    };
    Ok((msg, 0))
}

fn decode_btm(body: &[u8]) -> Btm {
    let other = Btm::Other {
        type_id: body.first().copied().unwrap_or(255),
        len: body.len(),
    };
    let mut c = Cur { b: body };
    let r: Result<Btm, String> = (|| {
        Ok(match c.u8()? {
            0 => Btm::OpenBlocks {
                app: c.string()?,
                exec: c.string()?,
                blocks: c.strings()?,
            },
            2 => Btm::RegisterExecutor {
                app: c.string()?,
                exec: c.string()?,
                dirs: c.strings()?,
                sub_dirs: c.i32()?,
                manager: c.string()?,
            },
            4 => Btm::RegisterDriver {
                app: c.string()?,
                timeout_ms: c.i64()?,
            },
            5 => Btm::Heartbeat { app: c.string()? },
            7 => Btm::RemoveBlocks {
                app: c.string()?,
                exec: c.string()?,
                blocks: c.strings()?,
            },
            9 => {
                let (app, exec, shuffle) = (c.string()?, c.string()?, c.i32()?);
                let maps = c.longs()?;
                let m = c.len()?;
                let reduces = (0..m).map(|_| c.ints()).collect::<Result<Vec<_>, _>>()?;
                let batch = c.u8()? != 0;
                Btm::FetchShuffleBlocks {
                    app,
                    exec,
                    shuffle,
                    maps,
                    reduces,
                    batch,
                }
            }
            10 => Btm::GetLocalDirs {
                app: c.string()?,
                execs: c.strings()?,
            },
            _ => return Err(String::new()),
        })
    })();
    r.unwrap_or(other)
}

// ---------------------------------------------------------------------------------------------
// The python peer

/// pyspark needs a JDK (17 was used to verify these tests): fail clearly when there is none.
fn require_java() {
    let from_home = std::env::var_os("JAVA_HOME").map(|h| PathBuf::from(h).join("bin/java"));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("java"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let found = from_home.into_iter().chain(on_path).any(|j| j.is_file());
    assert!(
        found,
        "no java on PATH or in JAVA_HOME: the Spark interop tests need a JDK 17; run the suite with scripts/test.sh on a machine with one"
    );
}

pub struct PyRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl PyRun {
    /// The words after `CHECK ` / `INFO ` on stdout.
    pub fn lines(&self, kind: &str) -> Vec<String> {
        let prefix = format!("{kind} ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
            .collect()
    }

    pub fn info(&self, key: &str) -> Option<String> {
        self.lines("INFO").into_iter().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.to_string())
        })
    }

    /// Tail of stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// Waits for what is left of the process group (the py4j JVM running its shutdown hooks, which
/// delete Spark's temp dirs); SIGTERM after 5 s, SIGKILL after 15 s, so nothing outlives the test.
fn reap_group(pgid: i32) {
    if pgid <= 0 {
        return;
    }
    let started = Instant::now();
    let mut termed = false;
    // SAFETY (all three calls): signalling the process group this harness created.
    while unsafe { libc::kill(-pgid, 0) } == 0 {
        let waited = started.elapsed();
        if waited > Duration::from_secs(15) {
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            return;
        }
        if waited > Duration::from_secs(5) && !termed {
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            termed = true;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A SPARK_HOME of symlinks to the real one: local-cluster workers write their logs to
/// `$SPARK_HOME/work`, which must not grow inside the shared venv.
fn private_spark_home(real: &Path, dir: &Path) -> PathBuf {
    let home = dir.join("spark-home");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
    let entries = std::fs::read_dir(real).unwrap_or_else(|e| panic!("{}: {e}", real.display()));
    for entry in entries.flatten() {
        if entry.file_name() == "work" {
            continue;
        }
        let link = home.join(entry.file_name());
        std::os::unix::fs::symlink(entry.path(), &link)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    }
    home
}

/// Runs `python <script> <args>` from the venv with the Spark environment the tests need; kills the
/// whole process group (python, its py4j JVM and the executor JVMs) at `timeout`.
pub fn run_python(script_name: &str, args: &[String], timeout: Duration) -> PyRun {
    require_java();
    let python = croupier_testkit::env::python();
    let spark_home = croupier_testkit::env::spark_home();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let local_dirs = dir.path().join("local");
    std::fs::create_dir_all(&local_dirs)
        .unwrap_or_else(|e| panic!("{}: {e}", local_dirs.display()));
    let out =
        std::fs::File::create(&out_path).unwrap_or_else(|e| panic!("{}: {e}", out_path.display()));
    let err =
        std::fs::File::create(&err_path).unwrap_or_else(|e| panic!("{}: {e}", err_path.display()));
    let started = Instant::now();
    let mut child = Command::new(&python)
        .arg(script(script_name))
        .args(args)
        .env("SPARK_HOME", private_spark_home(&spark_home, dir.path()))
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("TMPDIR", dir.path())
        .env("PYSPARK_PYTHON", &python)
        .env("PYSPARK_DRIVER_PYTHON", &python)
        .env("PYTHONUNBUFFERED", "1")
        // executors keep their shuffle files when a shuffle service is enabled: keep them in
        // this run's temporary dir
        .env("SPARK_LOCAL_DIRS", &local_dirs)
        .env_remove("SPARK_CONF_DIR")
        .env_remove("PYSPARK_SUBMIT_ARGS")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/test.sh", python.display()));
    let pgid = i32::try_from(child.id()).unwrap_or(0);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() < timeout => thread::sleep(Duration::from_millis(100)),
            _ => {
                timed_out = true;
                // SAFETY: signalling the process group we created for this child.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                match child.wait() {
                    Ok(s) => break s,
                    Err(e) => panic!("wait for python: {e}"),
                }
            }
        }
    };
    reap_group(pgid);
    let run = PyRun {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: started.elapsed(),
    };
    assert!(
        !timed_out,
        "{script_name} {args:?} timed out after {timeout:?}\nstdout:\n{}\nstderr tail:\n{}",
        run.stdout,
        run.stderr_tail()
    );
    run
}
