//! What an operator meets first: `--version`/`--help`, shutdown when stderr's reader went
//! away, every configuration problem at once, JSON log lines, and `SPARK_SHUFFLE_OPTS` values
//! with spaces through the Spark-style start script. Real service processes on 127.0.0.1.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use croupier_shuffle_service::protocol::ExecutorShuffleInfo;
use croupier_testkit::shuffle::Client;
use nix::sys::signal::Signal;

const EXE: &str = env!("CARGO_BIN_EXE_croupier-shuffle-service");
const START_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/scripts/start-mesos-shuffle-service"
);

/// A started service; SIGKILLed on drop if still running.
struct Service {
    child: Child,
    addr: SocketAddr,
    /// Lines read up to and including the `listening on` line.
    head: Vec<String>,
    /// The rest of stderr, still open (`None` once closed by the test).
    stderr: Option<BufReader<ChildStderr>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("SPARK_SHUFFLE_OPTS")
        .env_remove("SPARK_CONF_DIR")
        .env_remove("CROUPIER_LOG_FORMAT")
        .env("RUST_LOG", "info");
    cmd
}

/// Spawns `cmd` and reads stderr until the `listening on` line (text or JSON).
fn start(mut cmd: Command) -> Service {
    let mut child = cmd.spawn().expect("spawn the shuffle service");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
    // A reader thread bounds the wait; it hands the reader back once the line is seen.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut head = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match stderr.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send((head, None));
                    return;
                }
                Ok(_) => {
                    let l = line.trim_end().to_string();
                    let done = l.contains("listening on ");
                    head.push(l);
                    if done {
                        let _ = tx.send((head, Some(stderr)));
                        return;
                    }
                }
            }
        }
    });
    let (head, stderr) = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(got) => got,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service did not log `listening on` within 30 s");
        }
    };
    let Some(stderr) = stderr else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the service ended before listening:\n{}", head.join("\n"));
    };
    let last = head.last().cloned().unwrap_or_default();
    let at = last.find("listening on ").unwrap_or(0) + "listening on ".len();
    let addr: String = last[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    let addr = addr
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {last:?}: {e}"));
    Service {
        child,
        addr,
        head,
        stderr: Some(stderr),
    }
}

fn signal(s: &Service, sig: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.child.id() as i32), sig)
        .expect("send the signal");
}

/// Waits up to `within` for the exit.
fn wait_exit(s: &mut Service, within: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + within;
    loop {
        if let Ok(Some(st)) = s.child.try_wait() {
            return Some(st);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, wait for a clean exit, and return every stderr line.
fn stop_and_collect(mut s: Service) -> Vec<String> {
    signal(&s, Signal::SIGTERM);
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(mut r) = s.stderr.take() {
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = r.read_to_string(&mut rest);
            let _ = tx.send(rest);
        });
    }
    let st = wait_exit(&mut s, Duration::from_secs(30)).expect("the service stops on SIGTERM");
    // EOF comes with the exit.
    let rest = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    assert_eq!(st.code(), Some(0), "{st:?}");
    let mut lines = s.head.clone();
    lines.extend(rest.lines().map(str::to_string));
    lines
}

async fn register(addr: SocketAddr, app: &str, dir: &std::path::Path) {
    let c = Client::connect(addr).await.expect("connect");
    c.register_driver(app, 60_000)
        .await
        .expect("RegisterDriver");
    c.register_executor(
        app,
        "0",
        ExecutorShuffleInfo {
            local_dirs: vec![dir.display().to_string()],
            sub_dirs_per_local_dir: 1,
            shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
        },
    )
    .await
    .expect("RegisterExecutor");
}

#[test]
fn version_and_help() {
    let out = Command::new(EXE)
        .arg("--version")
        .output()
        .expect("run --version");
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with(&format!(
            "croupier-shuffle-service {} (git ",
            env!("CARGO_PKG_VERSION")
        )) && line.contains(", target ")
            && line.contains("glibc ")
            && line.lines().count() == 1,
        "{line}"
    );
    let out = Command::new(EXE)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Usage: croupier-shuffle-service [OPTIONS]",
        "--log-format <text|json>",
        "croupier.log.format",
        "CROUPIER_LOG_FORMAT",
        "SPARK_SHUFFLE_OPTS",
        "-V, --version",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
}

/// The reading end of stderr goes away, the service logs (a registration), then `sig` must
/// still stop it, cleanly.
async fn stop_with_stderr_closed(sig: Signal) {
    // A port for the admin endpoint (its own line comes after `listening on`).
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a port");
    let mut cmd = base_command(EXE);
    cmd.args(["--host", "127.0.0.1", "--port", "0", "--conf"])
        .arg(format!("croupier.admin.address={admin}"));
    let mut s = start(cmd);
    drop(s.stderr.take());
    let dirs = tempfile::tempdir().expect("tempdir");
    register(s.addr, "app-closed-stderr", dirs.path()).await;
    // The lines written into the broken pipe were dropped and counted.
    // (Lines are written by the log thread, so allow it a moment.)
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let dropped = scrape(admin, "croupier_log_lines_dropped_total");
        if dropped >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "croupier_log_lines_dropped_total = {dropped} after two registrations"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    signal(&s, sig);
    let Some(st) = wait_exit(&mut s, Duration::from_secs(30)) else {
        panic!("the service ignored {sig} for 30 s with its stderr reader gone");
    };
    assert_eq!(st.signal(), None, "killed by a signal: {st:?}");
    assert_eq!(st.code(), Some(0), "not a clean exit after {sig}: {st:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

/// One sample of the admin endpoint's /metrics.
fn scrape(admin: SocketAddr, sample: &str) -> f64 {
    use std::io::Write;
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::net::TcpStream::connect(admin).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut t = String::new();
            c.read_to_string(&mut t)?;
            Ok(t)
        });
        if let Ok(text) = text {
            if let Some(v) = text
                .lines()
                .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
            {
                return v;
            }
            panic!("no {sample} in /metrics:\n{text}");
        }
        assert!(
            Instant::now() < end,
            "cannot reach the admin endpoint {admin}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn sigterm_with_stderr_reader_gone() {
    stop_with_stderr_closed(Signal::SIGTERM).await;
}

#[tokio::test]
async fn sigint_with_stderr_reader_gone() {
    stop_with_stderr_closed(Signal::SIGINT).await;
}

#[tokio::test]
async fn json_log_lines() {
    let mut cmd = base_command(EXE);
    cmd.args([
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-format=json",
        "--conf",
        "spark.shuffle.io.lazyFD=true",
    ]);
    let s = start(cmd);
    let dirs = tempfile::tempdir().expect("tempdir");
    register(s.addr, "app-json-1", dirs.path()).await;
    let lines = stop_and_collect(s);
    let mut app_lines = 0;
    let mut warned = 0;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}\n{lines:#?}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        if v["app_id"] == "app-json-1" {
            app_lines += 1;
        }
        if v["level"] == "WARN"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("spark.shuffle.io.lazyFD"))
        {
            warned += 1;
        }
    }
    assert!(app_lines >= 2, "app_id on fewer than 2 lines: {lines:#?}");
    assert_eq!(warned, 1, "{lines:#?}");
}

#[test]
fn every_configuration_problem_in_one_round() {
    let out = base_command(EXE)
        .args([
            "--conf",
            "spark.shuffle.service.port=99999",
            "--conf",
            "spark.shuffle.cleaner.interval=soon",
            "--conf",
            "croupier.admin.address=7338",
        ])
        .env(
            "SPARK_SHUFFLE_OPTS",
            r#"-Dspark.shuffle.service.index.cache.size="1 g" -Dspark.shuffle.maxChunksBeingTransferred=0"#,
        )
        .env("CROUPIER_LOG_FORMAT", "xml")
        .output()
        .expect("run the service");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = err.lines().filter(|l| l.starts_with("  - ")).collect();
    for needle in [
        "\"99999\" for spark.shuffle.service.port (from --conf): expected a port number",
        "\"soon\" for spark.shuffle.cleaner.interval",
        "\"7338\" for croupier.admin.address",
        "\"1 g\" for spark.shuffle.service.index.cache.size (from SPARK_SHUFFLE_OPTS)",
        "\"0\" for spark.shuffle.maxChunksBeingTransferred",
        "CROUPIER_LOG_FORMAT \"xml\": expected text or json",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle} missing from:\n{err}"
        );
    }
    assert_eq!(problems.len(), 6, "{err}");
}

/// As with Spark's start-mesos-shuffle-service.sh, a quoted value with spaces in
/// SPARK_SHUFFLE_OPTS is one value: `-Dspark.foo="a b"` is the setting `spark.foo` = `a b`,
/// and no stray `b"` item appears.
#[test]
fn start_script_passes_opts_with_spaces() {
    let conf = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        conf.path().join("spark-defaults.conf"),
        "spark.shuffle.cleaner.interval 7s\n",
    )
    .expect("write spark-defaults.conf");
    let mut cmd = base_command("bash");
    cmd.arg(START_SCRIPT)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("SPARK_NO_DAEMONIZE", "1")
        .env("CROUPIER_SHUFFLE_BIN", EXE)
        .env("SPARK_CONF_DIR", conf.path())
        .env_remove("CROUPIER_CONF")
        .env("CROUPIER_LOG_FORMAT", "json")
        .env(
            "SPARK_SHUFFLE_OPTS",
            r#"-Dspark.foo="a b" -Dspark.shuffle.service.index.cache.size=' 3m' -Xms1g -Dspark.shuffle.io.backLog="64""#,
        );
    let s = start(cmd);
    let lines = stop_and_collect(s);
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let config = parsed
        .iter()
        .find(|v| v["message"] == "configuration")
        .unwrap_or_else(|| panic!("no configuration line: {lines:#?}"));
    assert_eq!(config["index_cache_size"], 3 << 20, "{config}");
    assert_eq!(config["cleaner_interval_ms"], 7000, "{config}");
    let warnings: Vec<&str> = parsed
        .iter()
        .filter(|v| v["level"] == "WARN")
        .filter_map(|v| v["message"].as_str())
        .collect();
    assert_eq!(
        warnings
            .iter()
            .filter(|m| m.contains("unknown setting"))
            .copied()
            .collect::<Vec<_>>(),
        ["unknown setting spark.foo ignored"],
        "{lines:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|m| m.starts_with("setting spark.shuffle.io.backLog is honoured")),
        "{lines:#?}"
    );
}

/// stderr's reader is alive but stops reading: once the pipe is full, lines are dropped and
/// counted (each after a short wait) instead of blocking; requests are still served and
/// SIGTERM still stops the service cleanly.
#[tokio::test]
async fn a_stalled_stderr_reader_never_blocks_the_service() {
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a port");
    let mut cmd = base_command(EXE);
    cmd.args(["--host", "127.0.0.1", "--port", "0", "--log-format=json"])
        .arg("--conf")
        .arg(format!("croupier.admin.address={admin}"))
        .env("RUST_LOG", "croupier_shuffle_service=trace");
    let mut s = start(cmd);
    // s.stderr stays open and unread from here on.
    let c = Client::connect(s.addr).await.expect("connect");
    c.register_driver("app-stalled", 600_000)
        .await
        .expect("RegisterDriver");
    // Each heartbeat is a trace line of about 200 bytes: far more than a 64 KiB pipe holds.
    for _ in 0..600 {
        c.heartbeat("app-stalled").await.expect("heartbeat");
    }
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let dropped = scrape(admin, "croupier_log_lines_dropped_total");
        if dropped >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "no line dropped with stderr stalled (dropped = {dropped})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still serving.
    let dirs = tempfile::tempdir().expect("tempdir");
    tokio::time::timeout(
        Duration::from_secs(30),
        register(s.addr, "app-stalled-2", dirs.path()),
    )
    .await
    .expect("requests are served while stderr is stalled");
    signal(&s, Signal::SIGTERM);
    let st = wait_exit(&mut s, Duration::from_secs(30))
        .expect("the service stops on SIGTERM with stderr stalled");
    assert_eq!(st.code(), Some(0), "{st:?}");
    drop(s.stderr.take());
}
