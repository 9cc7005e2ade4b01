//! The Spark side of `mesos_spark.rs`: the processes a Spark-on-Mesos flow needs besides the
//! master and agent (which `croupier_testkit::mesos::MesosCluster` starts).
//!
//! # Layout
//! - [`workspace_bin`]: our binaries, found beside the test binary and refused when older than
//!   their sources.
//! - [`ShuffleService`]: `croupier-shuffle-service` on 127.0.0.1 (the agent's shuffle service),
//!   with its admin endpoint; reads registrations and deletions back from its log.
//! - [`PyDriver`]: a python driver speaking the line protocol of `tests/interop/spark/*.py`
//!   (`CHECK`/`INFO`/`HOLD`/`STOPPED` lines out, one line in to go on), in its own process
//!   group, killed as a group on drop.
//! - [`Dispatcher`]: Spark's `MesosClusterDispatcher`, and [`dispatcher_home`], the `spark.home`
//!   it is given (see there for why).
//! - [`MesosTask`] / [`mesos_tasks`]: every task the master knows, from its `/state`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use croupier_testkit::mesos::process::{free_port, Proc};
use croupier_testkit::mesos::{http, MesosCluster};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// `tests/interop/spark/<name>`.
pub fn interop_script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop/spark")
        .join(name);
    assert!(p.is_file(), "interop script {} is missing", p.display());
    p
}

/// One of the workspace's binaries, from the profile directory this test binary was built into
/// (`target/<profile>/deps/<test>`). `sources` are the directories (relative to the workspace)
/// whose files the binary is built from: its crate's `src/` and those of the workspace crates it
/// depends on.
///
/// Cargo builds another package's binaries only when that package is built too (`cargo test
/// --workspace` does): a binary that is missing or older than one of its sources would make
/// this test run yesterday's code, so it fails saying what to build.
pub fn workspace_bin(name: &str, sources: &[&str]) -> PathBuf {
    let how = format!(
        "build it first: `cargo build -p {name}` (`cargo test --workspace`, as scripts/test.sh runs, does)"
    );
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let Some(profile_dir) = exe.parent().and_then(Path::parent) else {
        panic!(
            "test binary {} is not under target/<profile>/deps",
            exe.display()
        );
    };
    let bin = profile_dir.join(name);
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; {how}", bin.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for src in sources {
        if let Some((newest, path)) = newest_file(&root.join(src)) {
            assert!(
                newest <= built,
                "{} is older than {} (edited since the last build); {how}",
                bin.display(),
                path.display()
            );
        }
    }
    bin
}

fn newest_file(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(p);
            } else if let Ok(t) = meta.modified() {
                if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                    newest = Some((t, p));
                }
            }
        }
    }
    newest
}

/// Reads a log file (lossy UTF-8; empty if it cannot be read).
pub fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------

/// `croupier-shuffle-service` on 127.0.0.1 with an ephemeral port and an admin endpoint.
pub struct ShuffleService {
    proc: Proc,
    pub port: u16,
    pub admin: SocketAddr,
    pub cleaner_interval: Duration,
}

/// What the service's log says about one application.
#[derive(Debug, Default)]
pub struct AppInService {
    /// The heartbeat timeout of its RegisterDriver, in ms, if the driver registered.
    pub driver_timeout_ms: Option<u64>,
    /// `(executor id, local dirs)` of every RegisterExecutor.
    pub executors: Vec<(String, Vec<PathBuf>)>,
    /// Local dirs the cleaner deleted.
    pub deleted: Vec<PathBuf>,
}

impl AppInService {
    /// Every local dir its executors registered.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut d: Vec<PathBuf> = self
            .executors
            .iter()
            .flat_map(|(_, dirs)| dirs.iter().cloned())
            .collect();
        d.sort();
        d.dedup();
        d
    }
}

impl ShuffleService {
    /// `agent` is the Mesos agent the service asks before deleting an application's files
    /// (`croupier.mesos.agent.address`), confirmed for one second.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        cleaner_interval: Duration,
        agent: SocketAddr,
    ) -> ShuffleService {
        let admin_port = free_port().unwrap_or_else(|e| panic!("{e}"));
        let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--conf")
            .arg(format!(
                "spark.shuffle.cleaner.interval={}ms",
                cleaner_interval.as_millis()
            ))
            .arg("--conf")
            .arg(format!("croupier.admin.address={admin}"))
            .arg("--conf")
            .arg(format!("croupier.mesos.agent.address={agent}"))
            .args(["--conf", "croupier.mesos.agent.confirm.interval=1s"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("SPARK_SHUFFLE_OPTS")
            .env_remove("SPARK_CONF_DIR");
        let log = dir.join("shuffle-service.log");
        let mut proc =
            Proc::spawn("croupier-shuffle-service", cmd, &log).unwrap_or_else(|e| panic!("{e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(p) = read_log(&log)
                .lines()
                .find_map(|l| l.split("listening on ").nth(1))
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                .map(|a| a.port())
            {
                break p;
            }
            if let Err(e) = proc.check_alive("starting") {
                panic!("{e}\n{}", read_log(&log));
            }
            assert!(
                Instant::now() < deadline,
                "croupier-shuffle-service printed no `listening on` line within 30 s:\n{}",
                read_log(&log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        ShuffleService {
            proc,
            port,
            admin,
            cleaner_interval,
        }
    }

    pub fn log(&self) -> String {
        read_log(self.proc.log())
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.check_alive("the test").is_ok()
    }

    /// Registrations and deletions of `app` in the service's log.
    pub fn app(&self, app: &str) -> AppInService {
        let mut out = AppInService::default();
        for line in self.log().lines() {
            if let Some(rest) = line.split("Received registration request from app ").nth(1) {
                let mut w = rest.split_whitespace();
                if w.next() == Some(app) {
                    // "(heartbeat timeout 15000 ms)"
                    out.driver_timeout_ms = rest
                        .split("heartbeat timeout ")
                        .nth(1)
                        .and_then(|t| t.split_whitespace().next())
                        .and_then(|t| t.parse().ok());
                }
            } else if let Some(rest) = line.split("Registered executor AppExecId[appId=").nth(1) {
                let Some((id, rest)) = rest.split_once(",execId=") else {
                    continue;
                };
                if id != app {
                    continue;
                }
                let exec = rest.split(']').next().unwrap_or_default().to_string();
                let dirs = rest
                    .split("localDirs=[")
                    .nth(1)
                    .and_then(|d| d.split(']').next())
                    .map(|d| {
                        d.split(',')
                            .map(|s| PathBuf::from(s.trim().trim_matches('"')))
                            .filter(|p| !p.as_os_str().is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                out.executors.push((exec, dirs));
            } else if let Some(rest) = line.split("deleted local dir ").nth(1) {
                if line.contains(&format!("app_id={app} "))
                    || line.ends_with(&format!("app_id={app}"))
                {
                    if let Some(d) = rest.split_whitespace().next() {
                        out.deleted.push(PathBuf::from(d));
                    }
                }
            }
        }
        out
    }

    /// A counter from the admin endpoint's `/metrics` (Prometheus text).
    pub async fn metric(&self, name: &str) -> f64 {
        let (status, body) = http::request(self.admin, hyper::Method::GET, "/metrics", &[], vec![])
            .await
            .unwrap_or_else(|e| panic!("GET http://{}/metrics: {e}", self.admin));
        assert_eq!(status, 200, "GET http://{}/metrics", self.admin);
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no {name} in http://{}/metrics:\n{text}", self.admin))
    }

    /// SIGTERM; asserts a clean exit.
    pub fn stop_cleanly(mut self) {
        let log = self.proc.log().to_path_buf();
        let pid = self.proc.pid();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.proc.check_alive("stopping") {
                Ok(()) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(()) => panic!("croupier-shuffle-service ignored SIGTERM for 10 s"),
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("exit status: 0"),
                        "croupier-shuffle-service did not exit cleanly on SIGTERM: {text}\n{}",
                        tail(&read_log(&log), 30)
                    );
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// One line from a [`PyDriver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Check(String),
    Info(String, String),
    Hold(String, String),
    Stopped(String),
    Other(String),
}

/// A python process from the venv running an interop script, stdout read line by line, one
/// line written to its stdin to release each `HOLD`. Its own process group is killed on drop
/// (the pyspark gateway JVM is its child).
pub struct PyDriver {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    pub stderr_log: PathBuf,
    pub seen: Vec<String>,
    pub started: Instant,
}

impl PyDriver {
    pub fn spawn(
        script: &Path,
        args: &[String],
        env: &[(&str, String)],
        stderr_log: &Path,
    ) -> Self {
        let err = std::fs::File::create(stderr_log)
            .unwrap_or_else(|e| panic!("create {}: {e}", stderr_log.display()));
        let mut cmd = tokio::process::Command::new(croupier_testkit::env::python());
        cmd.arg(script)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            panic!("no stdout pipe for {}", script.display());
        };
        PyDriver {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            stderr_log: stderr_log.to_path_buf(),
            seen: Vec::new(),
            started: Instant::now(),
        }
    }

    /// The next line, or `None` at end of output; `Err` after `timeout` without one.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<Line>, String> {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Err(_) => Err(format!("no output for {timeout:?}")),
            Ok(Err(e)) => Err(format!("reading its stdout: {e}")),
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(l))) => {
                self.seen
                    .push(format!("{:6.1}s {l}", self.started.elapsed().as_secs_f64()));
                let mut w = l.splitn(3, ' ');
                let (a, b, c) = (w.next(), w.next(), w.next());
                Ok(Some(match (a, b, c) {
                    (Some("CHECK"), Some(name), _) => Line::Check(name.to_string()),
                    (Some("INFO"), Some(k), v) => {
                        Line::Info(k.to_string(), v.unwrap_or("").to_string())
                    }
                    (Some("HOLD"), Some(k), Some(app)) => {
                        Line::Hold(k.to_string(), app.to_string())
                    }
                    (Some("STOPPED"), Some(app), _) => Line::Stopped(app.to_string()),
                    _ => Line::Other(l),
                }))
            }
        }
    }

    /// Lets the script go on after a `HOLD`.
    pub async fn release(&mut self) -> Result<(), String> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err("stdin already closed".into());
        };
        stdin
            .write_all(b"go\n")
            .await
            .map_err(|e| format!("writing to its stdin: {e}"))?;
        stdin
            .flush()
            .await
            .map_err(|e| format!("flushing its stdin: {e}"))
    }

    /// Waits (bounded) for the process to exit; its exit status.
    pub async fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, String> {
        self.stdin.take();
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Err(_) => Err(format!("still running after {timeout:?}")),
            Ok(r) => r.map_err(|e| format!("wait: {e}")),
        }
    }

    /// What it printed so far and the tail of its stderr, for failure messages.
    pub fn context(&self) -> String {
        format!(
            "stdout:\n{}\nstderr tail ({}):\n{}",
            self.seen.join("\n"),
            self.stderr_log.display(),
            tail(&read_log(&self.stderr_log), 40)
        )
    }
}

impl Drop for PyDriver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // the group: python and the pyspark gateway JVM it started
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
    }
}

// ---------------------------------------------------------------------------------------------

/// A `spark.home` for the dispatcher whose `bin/spark-submit` execs pyspark's own.
///
/// The dispatcher starts each driver as `<spark.home>/bin/spark-submit --driver-cores 1.0 ...`
/// (it formats the cores as a double), and Spark 3.5.7's own spark-submit rejects that value
/// ("Driver cores must be a positive number"): the wrapper rewrites a whole-number value such as
/// `1.0` to `1`, says so on stderr (the test looks for that line), and passes every other
/// argument unchanged.
pub fn dispatcher_home(dir: &Path, real_spark_home: &Path) -> PathBuf {
    let home = dir.join("dispatcher-spark-home");
    let bin = home.join("bin");
    std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("create {}: {e}", bin.display()));
    let real = real_spark_home.join("bin/spark-submit");
    let real = real.display().to_string();
    assert!(
        !real.contains('\''),
        "spark-submit path {real} contains a quote"
    );
    let script = format!(
        r#"#!/usr/bin/env bash
# Written by croupier's mesos_spark test: MesosClusterDispatcher passes --driver-cores as a
# double ("1.0"), which Spark 3.5.7's spark-submit rejects. Normalise whole numbers, then run
# pyspark's own spark-submit with everything else unchanged.
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = --driver-cores ] && [ $# -ge 2 ]; then
    v="$2"
    case "$v" in
      *.0) v="${{v%.0}}"; echo "dispatcher-spark-home: --driver-cores $2 -> $v" >&2 ;;
    esac
    args+=(--driver-cores "$v")
    shift 2
  else
    args+=("$1")
    shift
  fi
done
exec '{real}' "${{args[@]}}"
"#
    );
    let path = bin.join("spark-submit");
    std::fs::write(&path, script).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    home
}

/// Spark's `MesosClusterDispatcher` registered with the cluster's master, its REST submission
/// server on 127.0.0.1.
pub struct Dispatcher {
    proc: Proc,
    pub port: u16,
}

impl Dispatcher {
    pub async fn start(
        cluster: &MesosCluster,
        dir: &Path,
        spark_home: &Path,
        home: &Path,
        java_opts: &str,
    ) -> Self {
        let port = free_port().unwrap_or_else(|e| panic!("{e}"));
        let ui_port = free_port().unwrap_or_else(|e| panic!("{e}"));
        let props = dir.join("dispatcher.conf");
        std::fs::write(
            &props,
            format!(
                "spark.home {}\nspark.mesos.dispatcher.webui.url http://127.0.0.1:{ui_port}\n",
                home.display()
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", props.display()));
        let mut cmd = Command::new(spark_home.join("bin/spark-class"));
        cmd.arg("org.apache.spark.deploy.mesos.MesosClusterDispatcher")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--webui-port", &ui_port.to_string()])
            .arg("--master")
            .arg(format!("mesos://{}", cluster.master_addr()))
            .arg("--properties-file")
            .arg(&props)
            .env("MESOS_NATIVE_JAVA_LIBRARY", native_library(cluster))
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .env("LIBPROCESS_IP", "127.0.0.1")
            .env("SPARK_DAEMON_JAVA_OPTS", java_opts)
            .env_remove("SPARK_HOME")
            .env_remove("SPARK_CONF_DIR");
        let mut proc = Proc::spawn("MesosClusterDispatcher", cmd, &dir.join("dispatcher.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if read_log(proc.log()).contains("Started REST server for submitting applications") {
                break;
            }
            if let Err(e) = proc.check_alive("starting") {
                panic!("{e}\n{}", tail(&read_log(proc.log()), 40));
            }
            assert!(
                Instant::now() < deadline,
                "MesosClusterDispatcher did not start its REST server within 120 s:\n{}",
                tail(&read_log(proc.log()), 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Dispatcher { proc, port }
    }

    pub fn log(&self) -> String {
        read_log(self.proc.log())
    }
}

/// `MESOS_NATIVE_JAVA_LIBRARY` for Spark: the environment's, else the install's JNI library.
pub fn native_library(cluster: &MesosCluster) -> String {
    match std::env::var("MESOS_NATIVE_JAVA_LIBRARY") {
        Ok(v) if !v.is_empty() => v,
        _ => cluster
            .install()
            .prefix
            .join("lib/libmesos-jni.so")
            .display()
            .to_string(),
    }
}

// ---------------------------------------------------------------------------------------------

/// A task as the master's `/state` shows it.
#[derive(Debug, Clone)]
pub struct MesosTask {
    pub framework_id: String,
    pub framework_name: String,
    pub task_id: String,
    pub state: String,
}

/// Every task of every framework (active or completed) the master knows.
pub async fn mesos_tasks(cluster: &MesosCluster) -> Vec<MesosTask> {
    let state = cluster
        .master_state()
        .await
        .unwrap_or_else(|e| panic!("master /state: {e}"));
    let mut out = Vec::new();
    for key in ["frameworks", "completed_frameworks"] {
        for fw in state[key].as_array().into_iter().flatten() {
            let fid = fw["id"].as_str().unwrap_or_default().to_string();
            let name = fw["name"].as_str().unwrap_or_default().to_string();
            for tkey in ["tasks", "completed_tasks", "unreachable_tasks"] {
                for t in fw[tkey].as_array().into_iter().flatten() {
                    out.push(MesosTask {
                        framework_id: fid.clone(),
                        framework_name: name.clone(),
                        task_id: t["id"].as_str().unwrap_or_default().to_string(),
                        state: t["state"].as_str().unwrap_or_default().to_string(),
                    });
                }
            }
        }
    }
    out
}

/// The framework ids the master knows by this name.
pub fn framework_ids(tasks_state: &Value, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["frameworks", "completed_frameworks"] {
        for fw in tasks_state[key].as_array().into_iter().flatten() {
            if fw["name"].as_str() == Some(name) {
                out.push(fw["id"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    out
}

/// The sandbox of command task `task_id` of framework `framework_id` (a command task's
/// executor id is its task id), newest run.
pub fn sandbox(cluster: &MesosCluster, framework_id: &str, task_id: &str) -> Option<PathBuf> {
    cluster.sandboxes().into_iter().rev().find(|p| {
        let exec = p.parent().and_then(Path::parent);
        let fw = exec.and_then(Path::parent).and_then(Path::parent);
        exec.and_then(Path::file_name).is_some_and(|n| n == task_id)
            && fw
                .and_then(Path::file_name)
                .is_some_and(|n| n == framework_id)
    })
}

/// Which command executor the agent runs: croupier-executor (drop-in, the default), or with
/// `CROUPIER_MESOS_SPARK_EXECUTOR=reference` Mesos's own `mesos-executor`, to check that the
/// test holds for the real thing as well (not run in CI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandExecutor {
    Croupier,
    Reference,
}

impl CommandExecutor {
    pub fn from_env() -> Self {
        match std::env::var("CROUPIER_MESOS_SPARK_EXECUTOR").as_deref() {
            Err(_) | Ok("") | Ok("croupier") => CommandExecutor::Croupier,
            Ok("reference") => CommandExecutor::Reference,
            Ok(other) => panic!(
                "CROUPIER_MESOS_SPARK_EXECUTOR={other}: expected `croupier` (default) or `reference`"
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CommandExecutor::Croupier => "croupier-executor",
            CommandExecutor::Reference => "mesos-executor",
        }
    }

    /// Whether the sandbox's stderr shows that this executor ran the task: croupier-executor's
    /// start-up line names the mode, framework and executor; mesos-executor logs
    /// `Starting task <id>`.
    pub fn ran(self, sandbox: &Path, framework_id: &str, task_id: &str) -> bool {
        let log = read_log(&sandbox.join("stderr"));
        let croupier = log.lines().any(|l| {
            l.contains("croupier-executor")
                && l.contains("mode=drop-in")
                && l.contains(&format!("framework_id={framework_id} "))
                && l.contains(&format!("executor_id={task_id} "))
        });
        match self {
            CommandExecutor::Croupier => croupier,
            CommandExecutor::Reference => {
                !croupier
                    && log
                        .lines()
                        .any(|l| l.ends_with(&format!("] Starting task {task_id}")))
            }
        }
    }
}

/// Regular files under `dir` whose name starts with `prefix` (`shuffle_`).
pub fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() && e.file_name().to_string_lossy().starts_with(prefix) => {
                    out.push(p)
                }
                _ => {}
            }
        }
    }
    out.sort();
    out
}
