//! Starts the `croupier-shuffle-service` binary for protocol tests: 127.0.0.1, ephemeral port,
//! stderr collected, SIGTERM on drop.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Ess {
    pub addr: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

/// `--host 127.0.0.1 --port 0` plus `--conf k=v` for each setting.
fn loopback_args(conf: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> = ["--host", "127.0.0.1", "--port", "0"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    for (k, v) in conf {
        args.push("--conf".into());
        args.push(format!("{k}={v}"));
    }
    args
}

impl Ess {
    /// Starts the service with `--host 127.0.0.1 --port 0` plus `--conf k=v` for each setting.
    pub fn start(conf: &[(&str, &str)]) -> Ess {
        Ess::start_with(&loopback_args(conf), &[])
    }

    /// As [`Ess::start`], with the open-file limit set to `nofile` (`ulimit -n`).
    pub fn start_with_nofile(conf: &[(&str, &str)], nofile: u32) -> Ess {
        let mut args: Vec<String> = vec![
            "-c".into(),
            format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_croupier-shuffle-service").into(),
        ];
        args.extend(loopback_args(conf));
        Ess::spawn(Command::new("/bin/sh"), &args, &[])
    }

    /// Starts the binary with exactly these arguments and extra environment.
    pub fn start_with(args: &[String], env: &[(&str, &str)]) -> Ess {
        Ess::spawn(
            Command::new(env!("CARGO_BIN_EXE_croupier-shuffle-service")),
            args,
            env,
        )
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A value of the service's `/metrics` (admin endpoint on `croupier.admin.address`):
    /// the first sample line starting with `name `.
    pub fn metric(&self, name: &str) -> f64 {
        use std::io::{Read, Write};
        let line = self
            .wait_log("admin endpoint listening on ", Duration::from_secs(10))
            .expect("admin endpoint line (set croupier.admin.address)");
        let addr = line
            .rsplit("listening on ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut s =
            std::net::TcpStream::connect(&addr).unwrap_or_else(|e| panic!("admin {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn spawn(mut cmd: Command, args: &[String], env: &[(&str, &str)]) -> Ess {
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.env_remove("SPARK_SHUFFLE_OPTS")
            .env_remove("SPARK_CONF_DIR")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn croupier-shuffle-service");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on ") {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_string());
                }
                l2.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a
                .parse()
                .unwrap_or_else(|e| panic!("bad listen address {a:?}: {e}")),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "service did not log `listening on` within 20 s; log: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        Ess {
            addr,
            child: Some(child),
            log,
        }
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits up to `within` for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (no clean shutdown), then reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status (killed after 10 s).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > end {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one whole frame (< 1 MiB) from a blocking socket, decrypting it with `dec` when the
/// connection is encrypted.
pub fn read_frame(
    s: &mut std::net::TcpStream,
    dec: Option<&mut croupier_shuffle_service::auth::ctr::Decryptor>,
) -> croupier_shuffle_service::protocol::Message {
    let mut len = [0u8; 8];
    std::io::Read::read_exact(s, &mut len).expect("frame length");
    let mut dec = dec;
    if let Some(d) = dec.as_deref_mut() {
        d.decrypt(&mut len);
    }
    let n = u64::from_be_bytes(len) as usize;
    assert!((8..1 << 20).contains(&n), "frame length {n}");
    let mut rest = vec![0u8; n - 8];
    std::io::Read::read_exact(s, &mut rest).expect("frame body");
    if let Some(d) = dec {
        d.decrypt(&mut rest);
    }
    let mut buf = bytes::BytesMut::from(&len[..]);
    buf.extend_from_slice(&rest);
    croupier_shuffle_service::protocol::frame::decode(&mut buf, 1 << 20)
        .expect("a valid frame")
        .expect("a whole frame")
}

/// A new connection that opens `block` of `app`'s executor `0` (OpenBlocks, answered) and asks
/// for its chunk 0, whose answer it leaves unread: a peer that stalls the service's sends.
pub fn ask_block_unread(
    addr: SocketAddr,
    app: &str,
    block: &str,
    request_id: i64,
) -> std::net::TcpStream {
    use croupier_shuffle_service::protocol::{BlockTransferMessage as M, Message, StreamChunkId};
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let open = M::OpenBlocks {
        app_id: app.into(),
        exec_id: "0".into(),
        block_ids: vec![block.into()],
    };
    let req = Message::RpcRequest {
        request_id,
        body: open.to_bytes(),
    };
    s.write_all(&req.to_bytes()).unwrap();
    let stream_id = match read_frame(&mut s, None) {
        Message::RpcResponse { body, .. } => match M::decode(&body) {
            Ok(M::StreamHandle { stream_id, .. }) => stream_id,
            other => panic!("expected a StreamHandle, got {other:?}"),
        },
        other => panic!("expected the OpenBlocks answer, got {other:?}"),
    };
    let fetch = Message::ChunkFetchRequest(StreamChunkId {
        stream_id,
        chunk_index: 0,
    });
    s.write_all(&fetch.to_bytes()).unwrap();
    s
}
