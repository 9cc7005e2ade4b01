//! systemd's notify protocol against the real binary: a unix datagram socket stands in for
//! systemd (`NOTIFY_SOCKET`), with a short `WATCHDOG_USEC`.

mod shuffle_support;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shuffle_support::Ess;

/// Reads datagrams until one contains `line` (as a whole line), within `within`; returns it and
/// every datagram seen before it.
fn wait_for(sock: &UnixDatagram, line: &str, within: Duration) -> (String, Vec<String>) {
    let end = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {line} within {within:?}; received {seen:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                if msg.lines().any(|l| l == line) {
                    return (msg, seen);
                }
                seen.push(msg);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }
}

#[test]
fn ready_after_bind_watchdog_pings_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // Started directly (not through the harness, which waits for the log line): the only
    // thing this test waits for before connecting is READY=1.
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_croupier-shuffle-service"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env_remove("SPARK_SHUFFLE_OPTS")
        .env_remove("SPARK_CONF_DIR")
        .env_remove("WATCHDOG_PID")
        .env("NOTIFY_SOCKET", &path)
        // 200 ms: pings every 100 ms.
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child.id());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let (ready, before) = wait_for(&sock, "READY=1", Duration::from_secs(10));
    assert!(before.is_empty(), "READY=1 comes first: {before:?}");
    let addr: SocketAddr = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=serving on "))
        .unwrap_or_else(|| panic!("no STATUS=serving on <addr> with READY=1: {ready:?}"))
        .parse()
        .unwrap();
    // Once READY=1 is out, the port accepts.
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("READY=1 sent but {addr} refuses: {e}\n{}", read_log()));

    let started = Instant::now();
    for _ in 0..10 {
        wait_for(&sock, "WATCHDOG=1", Duration::from_secs(5));
    }
    // Pings at half the 200 ms interval: ten take about a second. The bound leaves a loaded
    // machine three seconds of delay and still fails a service that pinged once a second
    // (nine seconds or more) or not at all.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(read_log().contains("systemd_notify=true"), "{}", read_log());

    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (stopping, _) = wait_for(&sock, "STOPPING=1", Duration::from_secs(5));
    assert!(stopping.contains("STATUS=shutting down"), "{stopping:?}");
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < end,
            "no exit after SIGTERM: {}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}: {}", read_log());
    // Reaped: its pid may be reused, never signal it again.
    std::mem::forget(guard);
}

/// SIGKILLs the process if the test fails before it exits.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn without_a_watchdog_only_ready_and_stopping_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let args: Vec<String> = ["--host", "127.0.0.1", "--port", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let notify = path.display().to_string();
    let mut ess = Ess::start_with(&args, &[("NOTIFY_SOCKET", &notify)]);
    wait_for(&sock, "READY=1", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert!(ess.stop().is_some_and(|s| s.success()));
    let (_, between) = wait_for(&sock, "STOPPING=1", Duration::from_secs(5));
    assert!(
        between.is_empty(),
        "nothing between READY=1 and STOPPING=1 without WATCHDOG_USEC: {between:?}"
    );
}
