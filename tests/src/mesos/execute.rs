//! Running the stock `mesos-execute` framework against a [`MesosCluster`] and reading what it
//! prints: every status update it received (state, message, source, reason, healthy, check
//! status), with the moment each line arrived.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::cluster::MesosCluster;
use super::error::MesosError;

/// One `Received status update ...` block as `mesos-execute` printed it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenUpdate {
    /// The task id.
    pub task_id: String,
    /// `TASK_RUNNING`, ...
    pub state: String,
    /// `message: '...'`.
    pub message: Option<String>,
    /// `SOURCE_EXECUTOR`, ...
    pub source: Option<String>,
    /// `REASON_...`.
    pub reason: Option<String>,
    /// `healthy?: 1|0`.
    pub healthy: Option<bool>,
    /// `check status: ...` (protobuf text as printed).
    pub check_status: Option<String>,
    /// When the first line of the block was read.
    pub at: Instant,
}

/// What a `mesos-execute` run printed, parsed.
#[derive(Debug, Clone)]
pub struct ExecuteOutput {
    /// How it exited (`None` if it had to be killed at the timeout).
    pub status: Option<ExitStatus>,
    /// Every stdout line with the moment it was read.
    pub lines: Vec<(Instant, String)>,
    /// Its stderr (libprocess/glog chatter, errors).
    pub stderr: String,
    /// `Subscribed with ID ...`.
    pub framework_id: Option<String>,
    /// When `Submitted task ...` was read (the LAUNCH / LAUNCH_GROUP call was just sent).
    pub submitted: Option<Instant>,
    /// Every status update received, in order.
    pub updates: Vec<SeenUpdate>,
}

impl ExecuteOutput {
    /// Parses `mesos-execute`'s stdout lines.
    pub fn parse(
        lines: Vec<(Instant, String)>,
        stderr: String,
        status: Option<ExitStatus>,
    ) -> Self {
        let mut out = ExecuteOutput {
            status,
            lines: Vec::new(),
            stderr,
            framework_id: None,
            submitted: None,
            updates: Vec::new(),
        };
        for (at, line) in &lines {
            if let Some(id) = line.strip_prefix("Subscribed with ID ") {
                out.framework_id = Some(id.trim().to_string());
            } else if line.starts_with("Submitted task") {
                out.submitted.get_or_insert(*at);
            } else if let Some(rest) = line.strip_prefix("Received status update ") {
                // "<STATE> for task '<id>'"
                let (state, task) = rest.split_once(" for task ").unwrap_or((rest, ""));
                out.updates.push(SeenUpdate {
                    task_id: task.trim().trim_matches('\'').to_string(),
                    state: state.trim().to_string(),
                    message: None,
                    source: None,
                    reason: None,
                    healthy: None,
                    check_status: None,
                    at: *at,
                });
            } else if let Some(u) = out.updates.last_mut() {
                let l = line.trim_start();
                if let Some(m) = l.strip_prefix("message: ") {
                    let m = m.strip_prefix('\'').unwrap_or(m);
                    u.message = Some(m.strip_suffix('\'').unwrap_or(m).to_string());
                } else if let Some(s) = l.strip_prefix("source: ") {
                    u.source = Some(s.trim().to_string());
                } else if let Some(r) = l.strip_prefix("reason: ") {
                    u.reason = Some(r.trim().to_string());
                } else if let Some(h) = l.strip_prefix("healthy?: ") {
                    u.healthy = Some(h.trim() == "1" || h.trim() == "true");
                } else if let Some(c) = l.strip_prefix("check status: ") {
                    u.check_status = Some(c.trim().to_string());
                }
            }
        }
        out.lines = lines;
        out
    }

    /// The states seen for `task_id`, in order.
    pub fn states(&self, task_id: &str) -> Vec<String> {
        self.updates
            .iter()
            .filter(|u| u.task_id == task_id)
            .map(|u| u.state.clone())
            .collect()
    }

    /// The first update for `task_id` in `state`.
    pub fn update(&self, task_id: &str, state: &str) -> Option<&SeenUpdate> {
        self.updates
            .iter()
            .find(|u| u.task_id == task_id && u.state == state)
    }

    /// From `Submitted task` to the first `TASK_RUNNING` of `task_id`, as the framework saw it.
    pub fn submit_to_running(&self, task_id: &str) -> Option<Duration> {
        let s = self.submitted?;
        let r = self.update(task_id, "TASK_RUNNING")?.at;
        Some(r.saturating_duration_since(s))
    }

    /// A short dump for assertion messages.
    pub fn summary(&self) -> String {
        let lines: Vec<&str> = self.lines.iter().map(|(_, l)| l.as_str()).collect();
        format!(
            "exit {:?}; stdout:\n{}\nstderr (tail):\n{}",
            self.status,
            lines.join("\n"),
            tail(&self.stderr, 30)
        )
    }
}

fn tail(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

/// A `mesos-execute` invocation against a cluster's master.
#[derive(Debug, Clone)]
pub struct MesosExecute {
    exe: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    files: usize,
    timeout: Duration,
    ld_library_path: Option<PathBuf>,
}

impl MesosExecute {
    /// `mesos-execute --master=<cluster master>` (add `--task=`, `--command=` ...).
    pub fn new(cluster: &MesosCluster) -> Self {
        MesosExecute {
            exe: cluster.install().execute(),
            dir: cluster.dir().to_path_buf(),
            args: vec![format!("--master={}", cluster.master_addr())],
            files: 0,
            timeout: Duration::from_secs(120),
            ld_library_path: cluster.install().ld_library_path(),
        }
    }

    /// Adds a raw argument (`--checkpoint`, `--kill_after=1secs`, `--content_type=json` ...).
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// `--name=<name> --command=<shell command> --resources=cpus:0.1;mem:32`.
    pub fn command(self, name: &str, shell_command: &str) -> Self {
        self.arg(format!("--name={name}"))
            .arg(format!("--command={shell_command}"))
            .arg("--resources=cpus:0.1;mem:32")
    }

    /// `--task=file://<file>` with this `TaskInfo` JSON. mesos-execute sets `agent_id` from
    /// the offer but its flag parser requires the field: a placeholder is added if missing.
    pub fn task(self, task: &Value) -> Result<Self, MesosError> {
        let (me, path) = self.write_json("task", &with_agent_placeholder(task.clone()))?;
        Ok(me.arg(format!("--task=file://{}", path.display())))
    }

    /// `--task_group=file://<file>` with this `TaskGroupInfo` JSON (`{"tasks": [...]}`),
    /// `agent_id` placeholders added as for [`MesosExecute::task`].
    pub fn task_group(self, group: &Value) -> Result<Self, MesosError> {
        let mut group = group.clone();
        if let Some(tasks) = group["tasks"].as_array_mut() {
            for t in tasks.iter_mut() {
                *t = with_agent_placeholder(t.clone());
            }
        }
        let (me, path) = self.write_json("task-group", &group)?;
        Ok(me.arg(format!("--task_group=file://{}", path.display())))
    }

    /// How long [`MesosExecute::run`] waits before killing it (default 120 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn write_json(mut self, what: &str, v: &Value) -> Result<(Self, PathBuf), MesosError> {
        self.files += 1;
        let path = self.dir.join(format!(
            "mesos-execute-{what}-{}-{}.json",
            std::process::id(),
            uniq()
        ));
        let text = serde_json::to_vec_pretty(v).map_err(|e| MesosError::Protocol {
            peer: format!("{what} JSON"),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text)
            .map_err(|e| MesosError::io(format!("write {}", path.display()), e))?;
        Ok((self, path))
    }

    /// Starts it; read its progress with [`RunningExecute`].
    pub fn spawn(self) -> Result<RunningExecute, MesosError> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(lib) = &self.ld_library_path {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        let mut child = cmd.spawn().map_err(|source| MesosError::Spawn {
            what: "mesos-execute".into(),
            path: self.exe.clone(),
            source,
        })?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let lines = lines.clone();
            readers.push(tokio::spawn(async move {
                let mut r = BufReader::new(out).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    let now = Instant::now();
                    if let Ok(mut v) = lines.lock() {
                        v.push((now, l));
                    }
                }
            }));
        }
        if let Some(err) = child.stderr.take() {
            let stderr = stderr.clone();
            readers.push(tokio::spawn(async move {
                let mut r = BufReader::new(err).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    if let Ok(mut s) = stderr.lock() {
                        s.push_str(&l);
                        s.push('\n');
                    }
                }
            }));
        }
        Ok(RunningExecute {
            child,
            lines,
            stderr,
            readers,
            timeout: self.timeout,
        })
    }

    /// Runs it to the end (it exits after the task's terminal update) or until the timeout.
    pub async fn run(self) -> Result<ExecuteOutput, MesosError> {
        self.spawn()?.finish().await
    }
}

fn with_agent_placeholder(mut task: Value) -> Value {
    if task.get("agent_id").is_none() {
        task["agent_id"] = serde_json::json!({ "value": "" });
    }
    task
}

fn uniq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running `mesos-execute` (killed by pid if dropped).
pub struct RunningExecute {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    timeout: Duration,
}

impl RunningExecute {
    /// Its pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// What it has printed so far, parsed.
    pub fn output(&self) -> ExecuteOutput {
        let lines = self.lines.lock().map(|v| v.clone()).unwrap_or_default();
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        ExecuteOutput::parse(lines, stderr, None)
    }

    /// Waits until it has printed an update of `task_id` in `state`.
    pub async fn wait_state(
        &mut self,
        task_id: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<SeenUpdate, MesosError> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if let Some(u) = out.update(task_id, state) {
                return Ok(u.clone());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(MesosError::Protocol {
                    peer: "mesos-execute".into(),
                    message: format!(
                        "exited ({status}) before {task_id} reached {state}; {}",
                        out.summary()
                    ),
                });
            }
            if Instant::now() > deadline {
                return Err(MesosError::Timeout {
                    what: format!("mesos-execute to see {task_id} in {state}"),
                    waited: timeout,
                    details: out.summary(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for it to exit (killing it after the timeout) and returns everything it printed.
    pub async fn finish(mut self) -> Result<ExecuteOutput, MesosError> {
        let status = match tokio::time::timeout(self.timeout, self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => return Err(MesosError::io("wait for mesos-execute", e)),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                None
            }
        };
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        let out = self.output();
        Ok(ExecuteOutput { status, ..out })
    }
}
