//! [`MesosCluster`]: a real `mesos-master` and `mesos-agent` on 127.0.0.1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::MesosError;
use super::http;
use super::install::Install;
use super::process::{free_port, pid_alive, Proc};

/// Which command executor the agent runs for command tasks.
#[derive(Debug, Clone)]
pub enum CommandExecutor {
    /// Mesos's own `mesos-executor` (the default `--launcher_dir`): the reference.
    Reference,
    /// Drop-in: a `--launcher_dir` whose `mesos-executor` execs this binary (croupier-executor)
    /// with the agent's arguments; every other file links to `$MESOS_PREFIX/libexec/mesos`.
    DropIn(PathBuf),
}

/// How to start the cluster. [`ClusterOpts::drop_in`] and [`ClusterOpts::reference`] give the
/// defaults; the fields are public for the rest.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    /// Names the kept-logs directory (defaults to the test's thread name).
    pub name: String,
    /// The command executor.
    pub command_executor: CommandExecutor,
    /// `--http_command_executor` (default true, for the reference too: the same agent flags).
    pub http_command_executor: bool,
    /// The agent's `--resources`.
    pub resources: String,
    /// `--executor_environment_variables` (the agent passes executors none of its own
    /// environment). Default: `PATH=/usr/local/bin:/usr/bin:/bin`, `RUST_LOG=info`. Empty:
    /// the flag is not passed (the agent then sets only its default `PATH`).
    pub executor_env: BTreeMap<String, String>,
    /// More agent flags (`--name=value`); one the harness also sets replaces the harness's.
    pub agent_flags: Vec<String>,
    /// Environment of the agent process itself.
    pub agent_env: Vec<(String, String)>,
    /// More master flags; one the harness also sets replaces the harness's.
    pub master_flags: Vec<String>,
    /// How long the master may take to come up and the agent to register.
    pub start_timeout: Duration,
}

impl ClusterOpts {
    fn base(command_executor: CommandExecutor) -> Self {
        let mut executor_env = BTreeMap::new();
        executor_env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
        executor_env.insert("RUST_LOG".into(), "info".into());
        ClusterOpts {
            name: std::thread::current()
                .name()
                .unwrap_or("mesos-cluster")
                .replace("::", "-"),
            command_executor,
            http_command_executor: true,
            resources: "cpus:4;mem:4096;disk:4096".into(),
            executor_env,
            agent_flags: Vec::new(),
            agent_env: Vec::new(),
            master_flags: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }

    /// Croupier as the agent's command executor.
    pub fn drop_in(croupier_executor: impl Into<PathBuf>) -> Self {
        Self::base(CommandExecutor::DropIn(croupier_executor.into()))
    }

    /// Mesos's own `mesos-executor` as the command executor (also what custom-executor tests use:
    /// their executor is named in `ExecutorInfo`, not by the launcher dir).
    pub fn reference() -> Self {
        Self::base(CommandExecutor::Reference)
    }
}

/// A master (`--registry=in_memory`) and one agent on 127.0.0.1 with their own directories.
///
/// Dropping it stops the agent, every process still running in one of its sandboxes (by pid),
/// then the master; if the thread is panicking, the logs and sandboxes are first copied under
/// `target/mesos-logs/` and the path printed.
pub struct MesosCluster {
    install: Install,
    opts: ClusterOpts,
    dir: tempfile::TempDir,
    master: Proc,
    agent: Option<Proc>,
    master_addr: SocketAddr,
    agent_addr: SocketAddr,
    agent_id: String,
    agent_args: Vec<String>,
    agent_starts: u32,
}

impl MesosCluster {
    /// Starts the master, then the agent, and waits until the agent is registered.
    pub async fn start(opts: ClusterOpts) -> Result<MesosCluster, MesosError> {
        let install = Install::find()?;
        let dir = tempfile::Builder::new()
            .prefix("croupier-mesos-")
            .tempdir()
            .map_err(|e| MesosError::io("create a temporary directory for the cluster", e))?;
        let d = dir.path();
        for sub in ["master", "agent", "runtime", "fetcher-cache"] {
            std::fs::create_dir_all(d.join(sub))
                .map_err(|e| MesosError::io(format!("create {}", d.join(sub).display()), e))?;
        }
        let launcher_dir = match &opts.command_executor {
            CommandExecutor::Reference => None,
            CommandExecutor::DropIn(exe) => Some(make_launcher_dir(&install, d, exe)?),
        };

        let (master, master_addr) = start_master(&install, &opts, d).await?;

        let executor_env =
            serde_json::to_string(&opts.executor_env).map_err(|e| MesosError::Protocol {
                peer: "ClusterOpts::executor_env".into(),
                message: e.to_string(),
            })?;
        let mut agent_args = vec![
            format!("--master={master_addr}"),
            "--ip=127.0.0.1".to_string(),
            format!("--port={}", free_port()?),
            "--hostname=127.0.0.1".to_string(),
            format!("--work_dir={}", d.join("agent").display()),
            format!("--runtime_dir={}", d.join("runtime").display()),
            format!("--fetcher_cache_dir={}", d.join("fetcher-cache").display()),
            "--launcher=posix".to_string(),
            "--isolation=posix/cpu,posix/mem".to_string(),
            "--no-systemd_enable_support".to_string(),
            format!("--resources={}", opts.resources),
        ];
        if !opts.executor_env.is_empty() {
            agent_args.push(format!("--executor_environment_variables={executor_env}"));
        }
        if opts.http_command_executor {
            agent_args.push("--http_command_executor".to_string());
        }
        match &launcher_dir {
            Some(l) => agent_args.push(format!("--launcher_dir={}", l.display())),
            None if install.ld_library_path().is_some() => {
                agent_args.push(format!("--launcher_dir={}", install.libexec().display()))
            }
            None => {}
        }
        with_flags(&mut agent_args, &opts.agent_flags);
        let agent_addr = SocketAddr::from(([127, 0, 0, 1], port_in(&agent_args, "agent_flags")?));

        let mut cluster = MesosCluster {
            install,
            opts,
            dir,
            master,
            agent: None,
            master_addr,
            agent_addr,
            agent_id: String::new(),
            agent_args,
            agent_starts: 0,
        };
        cluster.start_agent().await?;
        Ok(cluster)
    }

    /// Starts the agent (again, after [`MesosCluster::kill_agent`]) with the same flags and
    /// work directory, and waits until the master lists it as active and the agent's own
    /// `/state` names its id (after a restart: recovered, `--recover=reconnect`).
    pub async fn start_agent(&mut self) -> Result<(), MesosError> {
        if self.agent.is_some() {
            return Ok(());
        }
        self.agent_starts += 1;
        let log = self.dir.path().join("agent.log");
        {
            use std::io::Write;
            let mut f = std::fs::File::options()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(|e| MesosError::io(format!("open {}", log.display()), e))?;
            let _ = writeln!(
                f,
                "==== croupier harness: agent start #{} ====",
                self.agent_starts
            );
        }
        let mut cmd = Command::new(self.install.agent());
        cmd.args(&self.agent_args);
        if let Some(lib) = self.install.ld_library_path() {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        for (k, v) in &self.opts.agent_env {
            cmd.env(k, v);
        }
        let agent = Proc::spawn("mesos-agent", cmd, &log)?;
        self.agent = Some(agent);
        let timeout = self.opts.start_timeout;
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(a) = self.agent.as_mut() {
                if let Err(e) = a.check_alive("waiting for it to register with the master") {
                    self.agent = None;
                    // Only a first start may move: a restarted agent keeps its address.
                    if self.agent_starts < PORT_TRIES
                        && self.agent_id.is_empty()
                        && e.lost_its_port()
                    {
                        self.move_agent_port()?;
                        return Box::pin(self.start_agent()).await;
                    }
                    return Err(e);
                }
            }
            self.master
                .check_alive("waiting for the agent to register")?;
            // A short wait per poll: the port may belong to a process that never answers.
            let poll = tokio::time::timeout(POLL_TIMEOUT, self.registered_id());
            match poll.await.unwrap_or(Ok(None)) {
                Ok(Some(id)) => {
                    self.agent_id = id;
                    return Ok(());
                }
                Ok(None) => last = "agent not yet registered and active".into(),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                return Err(MesosError::Timeout {
                    what: format!("mesos-agent at {} to register", self.agent_addr),
                    waited: timeout,
                    details: format!("last: {last}; log: {}", log.display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Gives the agent a new port (its first start found its port taken).
    fn move_agent_port(&mut self) -> Result<(), MesosError> {
        let port = free_port()?;
        self.agent_addr = SocketAddr::from(([127, 0, 0, 1], port));
        set_port(&mut self.agent_args, port);
        Ok(())
    }

    async fn registered_id(&self) -> Result<Option<String>, MesosError> {
        let state = http::get_json(self.agent_addr, "/state").await?;
        let id = state["id"].as_str().unwrap_or_default().to_string();
        if id.is_empty() {
            return Ok(None);
        }
        let slaves = http::get_json(self.master_addr, "/slaves").await?;
        let active = slaves["slaves"]
            .as_array()
            .map(|a| {
                a.iter()
                    .any(|s| s["id"].as_str() == Some(&id) && s["active"].as_bool() == Some(true))
            })
            .unwrap_or(false);
        Ok(active.then_some(id))
    }

    /// SIGKILLs the agent by pid (its executors keep running, as on a real crash).
    pub fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.sigkill();
        }
    }

    /// SIGKILL and start again with the same work directory (`--recover=reconnect`), waiting
    /// until it has re-registered.
    pub async fn restart_agent(&mut self) -> Result<(), MesosError> {
        self.kill_agent();
        self.start_agent().await
    }

    /// The Mesos install in use.
    pub fn install(&self) -> &Install {
        &self.install
    }

    /// The options the cluster was started with.
    pub fn opts(&self) -> &ClusterOpts {
        &self.opts
    }

    /// The master's address (`--master=` for frameworks, `/api/v1/scheduler`).
    pub fn master_addr(&self) -> SocketAddr {
        self.master_addr
    }

    /// The agent's address (`/api/v1`, `/state`, `/api/v1/executor`).
    pub fn agent_addr(&self) -> SocketAddr {
        self.agent_addr
    }

    /// The agent's id as registered with the master.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The agent's pid (None while it is stopped).
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Proc::pid)
    }

    /// The cluster's own directory (`master/`, `agent/` = work dir, `runtime/`,
    /// `fetcher-cache/`, `launcher/` in drop-in mode, `master.log`, `agent.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The agent's `--work_dir`.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    /// The agent's `--fetcher_cache_dir`.
    pub fn fetcher_cache_dir(&self) -> PathBuf {
        self.dir.path().join("fetcher-cache")
    }

    /// The agent's log (all of its starts, separated by marker lines).
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The master's log.
    pub fn master_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("master.log")).unwrap_or_default()
    }

    /// `GET /state` of the agent.
    pub async fn agent_state(&self) -> Result<Value, MesosError> {
        http::get_json(self.agent_addr, "/state").await
    }

    /// `GET /state` of the master.
    pub async fn master_state(&self) -> Result<Value, MesosError> {
        http::get_json(self.master_addr, "/state").await
    }

    /// Every executor run directory (sandbox) under the agent's work dir, oldest first:
    /// `slaves/*/frameworks/*/executors/*/runs/<container id>` (not the `latest` links).
    pub fn sandboxes(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let slaves = self.work_dir().join("slaves");
        for s in subdirs(&slaves) {
            for f in subdirs(&s.join("frameworks")) {
                for e in subdirs(&f.join("executors")) {
                    for r in subdirs(&e.join("runs")) {
                        if r.file_name().is_some_and(|n| n != "latest") {
                            found.push(r);
                        }
                    }
                }
            }
        }
        found.sort_by_key(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        });
        found
    }

    /// The newest sandbox of executor `executor_id` (for a command task, its task id).
    pub fn sandbox_of(&self, executor_id: &str) -> Option<PathBuf> {
        self.sandboxes().into_iter().rev().find(|p| {
            p.parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .is_some_and(|n| n == executor_id)
        })
    }

    /// Pids of processes whose working directory is inside the agent's work dir: executors and
    /// tasks still running (the agent itself runs elsewhere).
    pub fn processes_in_sandboxes(&self) -> Vec<u32> {
        let root = self.work_dir();
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        let mut pids = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) {
                if cwd.starts_with(&root) && pid_alive(pid) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// Waits until no process runs inside a sandbox; returns the survivors after `timeout`.
    pub async fn wait_no_processes(&self, timeout: Duration) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.processes_in_sandboxes();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Copies the logs and sandboxes to `target/mesos-logs/<name>-<pid>-<n>/` and returns
    /// that path (done automatically when a test panics).
    pub fn keep_logs(&self) -> PathBuf {
        let base = target_dir().join("mesos-logs");
        let mut n = 0;
        let dest = loop {
            let d = base.join(format!("{}-{}-{n}", self.opts.name, std::process::id()));
            if !d.exists() {
                break d;
            }
            n += 1;
        };
        let _ = std::fs::create_dir_all(&dest);
        for f in ["master.log", "agent.log"] {
            let _ = std::fs::copy(self.dir.path().join(f), dest.join(f));
        }
        let _ = copy_tree(&self.work_dir().join("slaves"), &dest.join("sandboxes"));
        let _ = copy_tree(&self.dir.path().join("launcher"), &dest.join("launcher"));
        dest
    }
}

impl Drop for MesosCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let kept = self.keep_logs();
            eprintln!(
                "real-Mesos harness: test failed; master/agent logs and sandboxes kept in {}",
                kept.display()
            );
        }
        if let Some(mut a) = self.agent.take() {
            a.stop(Duration::from_secs(5));
        }
        // Executors and tasks outlive a stopped agent (own sessions): stop them by pid.
        for _ in 0..3 {
            let left = self.processes_in_sandboxes();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.master.stop(Duration::from_secs(5));
    }
}

fn make_launcher_dir(install: &Install, d: &Path, exe: &Path) -> Result<PathBuf, MesosError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = d.join("launcher");
    std::fs::create_dir_all(&dir)
        .map_err(|e| MesosError::io(format!("create {}", dir.display()), e))?;
    let libexec = install.libexec();
    let entries = std::fs::read_dir(&libexec)
        .map_err(|e| MesosError::io(format!("list {}", libexec.display()), e))?;
    for e in entries.flatten() {
        if e.file_name() == "mesos-executor" {
            continue;
        }
        let link = dir.join(e.file_name());
        std::os::unix::fs::symlink(e.path(), &link)
            .map_err(|err| MesosError::io(format!("symlink {}", link.display()), err))?;
    }
    let exe = std::fs::canonicalize(exe)
        .map_err(|e| MesosError::io(format!("croupier-executor at {}", exe.display()), e))?;
    let exe_s = exe.display().to_string();
    if exe_s.contains('\'') {
        return Err(MesosError::io(
            format!("croupier-executor path {exe_s} contains a quote"),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let script = dir.join("mesos-executor");
    std::fs::write(&script, format!("#!/bin/sh\nexec '{exe_s}' \"$@\"\n"))
        .map_err(|e| MesosError::io(format!("write {}", script.display()), e))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| MesosError::io(format!("chmod {}", script.display()), e))?;
    Ok(dir)
}

fn subdirs(p: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Copies files (up to 8 MiB each) and directories; symlinks are recreated, not followed.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    const MAX: u64 = 8 << 20;
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)?.flatten() {
        let t = e.file_type()?;
        let dest = to.join(e.file_name());
        if t.is_symlink() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                let _ = std::os::unix::fs::symlink(target, &dest);
            }
        } else if t.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else if e.metadata()?.len() <= MAX {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else three levels above the test binary
/// (`target/debug/deps/<test>`).
pub fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
        return PathBuf::from(t);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
}

/// Adds `extra` flags to `args`, each replacing a flag of the same name already there (Mesos
/// refuses a flag given twice: `Flag 'port' is already loaded`).
fn with_flags(args: &mut Vec<String>, extra: &[String]) {
    fn name(flag: &str) -> &str {
        flag.split_once('=').map_or(flag, |(n, _)| n)
    }
    for flag in extra {
        args.retain(|a| name(a) != name(flag));
        args.push(flag.clone());
    }
}

/// The `--port` in `args`; `from` names the options it may have come from.
fn port_in(args: &[String], from: &str) -> Result<u16, MesosError> {
    args.iter()
        .filter_map(|a| a.strip_prefix("--port="))
        .next_back()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| MesosError::Protocol {
            peer: format!("ClusterOpts::{from}"),
            message: "--port is not a port number".into(),
        })
}

/// Sets `--port` in `args`.
fn set_port(args: &mut Vec<String>, port: u16) {
    with_flags(args, &[format!("--port={port}")]);
}

/// How long one poll of a starting master or agent may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// How many ports a master or agent is given before its failure to bind is reported.
const PORT_TRIES: u32 = 3;

/// Starts a master on a free port and waits until it serves `/health`; if another process took
/// the port first (a master cannot bind and aborts), starts it again on another.
async fn start_master(
    install: &Install,
    opts: &ClusterOpts,
    d: &Path,
) -> Result<(Proc, SocketAddr), MesosError> {
    let mut args = vec![
        "--ip=127.0.0.1".to_string(),
        format!("--port={}", free_port()?),
        "--hostname=127.0.0.1".to_string(),
        "--registry=in_memory".to_string(),
        format!("--work_dir={}", d.join("master").display()),
        "--allocation_interval=250ms".to_string(),
    ];
    with_flags(&mut args, &opts.master_flags);
    let mut tries = 0;
    loop {
        tries += 1;
        if tries > 1 {
            set_port(&mut args, free_port()?);
        }
        let master_port = port_in(&args, "master_flags")?;
        let master_addr = SocketAddr::from(([127, 0, 0, 1], master_port));
        let mut cmd = Command::new(install.master());
        cmd.args(&args);
        if let Some(lib) = install.ld_library_path() {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        let mut master = Proc::spawn("mesos-master", cmd, &d.join("master.log"))?;
        let deadline = Instant::now() + opts.start_timeout;
        loop {
            match master.check_alive("waiting for it to serve /health") {
                Ok(()) => {}
                Err(e) if tries < PORT_TRIES && e.lost_its_port() => break,
                Err(e) => return Err(e),
            }
            let health = http::request(master_addr, hyper::Method::GET, "/health", &[], Vec::new());
            if let Ok(Ok((200, _))) = tokio::time::timeout(POLL_TIMEOUT, health).await {
                return Ok((master, master_addr));
            }
            if Instant::now() > deadline {
                return Err(MesosError::Timeout {
                    what: format!("mesos-master at {master_addr} to serve /health"),
                    waited: opts.start_timeout,
                    details: format!("log: {}", master.log().display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
