//! The task lifecycle: LAUNCH (and LAUNCH_GROUP members) → fetch URIs → start the process →
//! KILL (TASK_KILLING, SIGTERM, SIGKILL after the grace period) → terminal update; reaping task
//! processes, group failure propagation, and the status updates each step sends through the
//! [`AgentLink`].
//!
//! Health checks, checks and `max_completion_time` run per task, in both modes, as Mesos's
//! command executor (`src/launcher/executor.cpp`) and default executor
//! (`src/launcher/default_executor.cpp`) do: the [`checks`](crate::checks) module decides, this
//! one sends the updates (copies of the task's last status) and kills.
//!
//! [`Tasks`] owns every task of the executor. Background work (URI fetches, HTTP/TCP probes)
//! reports to it as [`TaskInput`]s on its own channel, read by the event loop through
//! [`Tasks::recv`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use croupier_proto::v1::executor::call;
use croupier_proto::v1::{
    task_status, CommandInfo, ExecutorId, KillPolicy, TaskId, TaskInfo, TaskState, TaskStatus,
};
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agent_link::AgentLink;
use crate::checks::{self, Checker, ProbeResult, Verdict, Which};
use crate::command;
use crate::config::{Config, Mode};
use crate::container;
use crate::fetcher::{self, FetchConfig};
use crate::launch::{self, HostLauncher};
use crate::process::{self, Exit, TaskScope};
use crate::state::Settled;

/// Default kill grace period when neither the KILL nor the task has a kill policy.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// What background work of a task reports.
#[derive(Debug)]
pub enum TaskInput {
    FetchDone {
        task_id: String,
        result: Result<FetchFigures, String>,
    },
    /// An HTTP or TCP probe of a health check or check finished.
    ProbeDone {
        task_id: String,
        which: Which,
        seq: u64,
        result: ProbeResult,
    },
}

/// What a task's URI fetch amounted to, for its summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchFigures {
    pub uris: usize,
    pub bytes: u64,
    pub cache_hits: usize,
    pub cache_misses: usize,
    pub elapsed: Duration,
}

impl FetchFigures {
    pub fn of(s: &fetcher::FetchSummary) -> FetchFigures {
        let count = |o: fetcher::CacheOutcome| s.items.iter().filter(|i| i.cache == o).count();
        FetchFigures {
            uris: s.items.len(),
            bytes: s.total_bytes(),
            cache_hits: count(fetcher::CacheOutcome::Hit),
            cache_misses: count(fetcher::CacheOutcome::Miss),
            elapsed: s.items.iter().map(|i| i.elapsed).sum(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Launched, its process not started yet: fetching URIs, or waiting for TASK_STARTING to
    /// be on the wire.
    Fetching,
    Running,
    Done,
}

struct Killing {
    start: Instant,
    escalate_at: Instant,
    escalated: bool,
}

/// Why a task is being killed (decides TASK_KILLING and the terminal update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillCause {
    /// KILL, SHUTDOWN, giving up, a failed group sibling.
    Requested,
    /// `consecutive_failures` failed health checks: terminal update with `healthy=false`.
    HealthCheck,
    /// `max_completion_time` passed: grace 0, no TASK_KILLING, terminal TASK_FAILED with
    /// REASON_MAX_COMPLETION_TIME_REACHED.
    MaxCompletion,
}

struct Task {
    info: TaskInfo,
    group: Option<u64>,
    phase: Phase,
    pid: Option<i32>,
    command: Option<CommandInfo>,
    dir: PathBuf,
    killed: bool,
    killing: Option<Killing>,
    terminal_acked: bool,
    fetch: Option<JoinHandle<()>>,
    /// When LAUNCH arrived (for the summary's duration).
    launched: Instant,
    fetched: FetchFigures,
    exit: Option<process::Exit>,
    /// The root process was reaped (its pid may be reused).
    root_reaped: bool,
    /// Why the task is being killed (the first reason wins).
    kill_cause: Option<KillCause>,
    /// When `max_completion_time` runs out (armed when the process starts).
    max_completion_at: Option<Instant>,
    /// The health checker and the checker, started with the process.
    checkers: Vec<Checker>,
    /// The last update sent (health and check updates are copies of it).
    last_status: Option<TaskStatus>,
}

/// Whether the executor is going away (set by the event loop).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stopping {
    #[default]
    No,
    /// SHUTDOWN (or SIGTERM): every task is being killed within the shutdown budget.
    Shutdown,
    /// Giving up on the agent: every task is being killed, then the executor exits 1.
    Abandon,
}

/// Every task of the executor.
pub struct Tasks {
    cfg: Arc<Config>,
    fetch_cfg: FetchConfig,
    host: HostLauncher,
    tasks: BTreeMap<String, Task>,
    next_group: u64,
    drop_in_launched: bool,
    /// Tasks whose process is to be started once their TASK_STARTING update is on the wire
    /// (see [`Tasks::spawn_pending`]).
    pending_spawns: Vec<String>,
    idle_since: Option<Instant>,
    stopping: Stopping,
    /// Custom mode: a task was killed for failing its health checks, so every later terminal
    /// update carries `healthy=false` (as Mesos's default executor).
    unhealthy: bool,
    /// Is the agent link up (custom mode pauses checking while it is not)?
    connected: bool,
    tx: mpsc::UnboundedSender<TaskInput>,
    rx: mpsc::UnboundedReceiver<TaskInput>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The grace period of a kill policy, if it has one.
pub fn grace_of(policy: Option<&KillPolicy>) -> Option<Duration> {
    policy
        .and_then(|p| p.grace_period.as_ref())
        .map(|d| Duration::from_nanos(d.nanoseconds.max(0) as u64))
}

fn state_name(s: TaskState) -> &'static str {
    s.as_str_name()
}

/// A task id usable as a directory name under `tasks/`.
fn valid_dir_name(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains('/') && !id.contains('\0')
}

impl Tasks {
    pub fn new(cfg: Arc<Config>, fetch_cfg: FetchConfig) -> Tasks {
        let (tx, rx) = mpsc::unbounded_channel();
        let idle_since = if cfg.is_drop_in() {
            None
        } else {
            Some(Instant::now())
        };
        Tasks {
            host: HostLauncher::new(cfg.clone()),
            cfg,
            fetch_cfg,
            tasks: BTreeMap::new(),
            next_group: 0,
            drop_in_launched: false,
            pending_spawns: Vec::new(),
            idle_since,
            stopping: Stopping::No,
            unhealthy: false,
            connected: false,
            tx,
            rx,
        }
    }

    /// The next input of the tasks' background work.
    pub async fn recv(&mut self) -> Option<TaskInput> {
        self.rx.recv().await
    }

    /// The executor began shutting down or giving up (a shutdown, once begun, stays the
    /// reason).
    pub fn set_stopping(&mut self, s: Stopping) {
        if s == Stopping::Shutdown || self.stopping == Stopping::No {
            self.stopping = s;
        }
    }

    pub fn handle(&mut self, input: TaskInput, link: &mut AgentLink) {
        match input {
            TaskInput::FetchDone { task_id, result } => self.fetched(link, &task_id, result),
            TaskInput::ProbeDone {
                task_id,
                which,
                seq,
                result,
            } => {
                let now = Instant::now();
                let verdict = self.tasks.get_mut(&task_id).and_then(|t| {
                    t.checkers
                        .iter_mut()
                        .find(|c| c.which() == which)
                        .map(|c| c.finished(seq, result, now))
                });
                if let Some(v) = verdict {
                    self.apply_verdict(link, &task_id, v);
                }
            }
        }
    }

    /// The agent went away or came back. In custom mode, checks and health checks pause while
    /// it is away and probe again at once when it is back (as Mesos's default executor); the
    /// command executor (drop-in) keeps checking.
    pub fn agent_connected(&mut self, up: bool) {
        self.connected = up;
        if self.cfg.is_drop_in() {
            return;
        }
        let now = Instant::now();
        for t in self.tasks.values_mut() {
            for c in &mut t.checkers {
                if up {
                    c.resume(now);
                } else {
                    c.pause();
                }
            }
        }
    }

    /// The agent acknowledged an update. In custom mode a task whose terminal update is
    /// acknowledged is forgotten: nothing is left to do for it (its process was reaped or
    /// killed, its checks stopped), and an executor that runs thousands of tasks must not keep
    /// an entry for each. (Mesos's default executor drops a task's container already when it
    /// sends the terminal update; we wait for the ACK so that nothing a re-SUBSCRIBE or a late
    /// KILL could need is gone before the agent has the update.) Drop-in mode keeps its one
    /// task: its acknowledged terminal update is what ends the executor.
    pub fn acknowledged(&mut self, settled: &Settled) {
        if !croupier_proto::is_terminal(settled.state) {
            return;
        }
        let Some(t) = self.tasks.get_mut(&settled.task_id) else {
            return;
        };
        t.terminal_acked = true;
        if self.cfg.is_drop_in() || t.phase != Phase::Done {
            return;
        }
        self.tasks.remove(&settled.task_id);
        self.pending_spawns.retain(|id| id != &settled.task_id);
        tracing::debug!(
            task_id = %settled.task_id,
            tasks_held = self.tasks.len(),
            "task {}: forgotten (terminal update acknowledged)",
            settled.task_id
        );
    }

    pub fn ids(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Has every task reached a terminal state?
    pub fn all_done(&self) -> bool {
        self.tasks.values().all(|t| t.phase == Phase::Done)
    }

    /// Drop-in mode: the one task ran and its terminal update was acknowledged.
    pub fn drop_in_complete(&self) -> bool {
        self.cfg.is_drop_in()
            && self.drop_in_launched
            && self.all_done()
            && !self.tasks.is_empty()
            && self.tasks.values().all(|t| t.terminal_acked)
    }

    /// Drop-in mode: the one task was launched.
    pub fn drop_in_launched(&self) -> bool {
        self.drop_in_launched
    }

    /// Since when no task has been running (custom mode).
    pub fn idle_since(&self) -> Option<Instant> {
        self.idle_since
    }

    pub fn has_pending_spawns(&self) -> bool {
        !self.pending_spawns.is_empty()
    }

    // ----- updates ----------------------------------------------------------------------

    fn update(
        &mut self,
        link: &mut AgentLink,
        task_id: &str,
        state: TaskState,
        reason: Option<task_status::Reason>,
        message: Option<String>,
    ) {
        let mut status = TaskStatus {
            task_id: TaskId {
                value: task_id.to_string(),
            },
            state: state as i32,
            source: Some(task_status::Source::Executor as i32),
            uuid: Some(uuid::Uuid::new_v4().as_bytes().to_vec()),
            executor_id: Some(ExecutorId {
                value: self.cfg.executor_id.clone(),
            }),
            timestamp: Some(now_secs()),
            reason: reason.map(|r| r as i32),
            message: message.clone(),
            ..Default::default()
        };
        let drop_in = self.cfg.is_drop_in();
        let unhealthy = self.unhealthy;
        if let Some(t) = self.tasks.get(task_id) {
            // A task with a check: every update carries a check status, empty until known.
            status.check_status = t.info.check.as_ref().and_then(checks::empty_status);
            if croupier_proto::is_terminal(state)
                && (t.kill_cause == Some(KillCause::HealthCheck) || (!drop_in && unhealthy))
            {
                status.healthy = Some(false);
            }
        }
        tracing::info!(
            task_id = %task_id,
            "task {task_id}: {}{}",
            state_name(state),
            message.map(|m| format!(" ({m})")).unwrap_or_default()
        );
        if croupier_proto::is_terminal(state) {
            self.log_summary(task_id, state);
        }
        self.send(link, status);
    }

    /// Send `status` and remember it as the task's last.
    fn send(&mut self, link: &mut AgentLink, status: TaskStatus) {
        if let Some(t) = self.tasks.get_mut(&status.task_id.value) {
            t.last_status = Some(status.clone());
        }
        link.send_update(call::Update { status });
    }

    /// A TASK_RUNNING health or check update: a copy of the task's last status (keeping what
    /// it carried) with a new uuid, timestamp and reason, and the new `healthy` or
    /// `check_status`.
    fn send_copy(
        &mut self,
        link: &mut AgentLink,
        id: &str,
        reason: task_status::Reason,
        healthy: Option<bool>,
        check_status: Option<croupier_proto::v1::CheckStatusInfo>,
    ) {
        let Some(t) = self.tasks.get(id) else { return };
        let Some(mut status) = t.last_status.clone() else {
            return;
        };
        status.uuid = Some(uuid::Uuid::new_v4().as_bytes().to_vec());
        status.timestamp = Some(now_secs());
        status.reason = Some(reason as i32);
        if let Some(h) = healthy {
            status.healthy = Some(h);
        }
        if let Some(c) = check_status {
            status.check_status = Some(c);
        }
        tracing::info!(
            "task {id}: {} ({}{})",
            state_name(TaskState::try_from(status.state).unwrap_or(TaskState::TaskRunning)),
            reason.as_str_name(),
            healthy
                .map(|h| format!(", healthy={h}"))
                .unwrap_or_default()
        );
        self.send(link, status);
    }

    /// One line per task reaching a terminal state: state, how its process ended, how long it
    /// took since LAUNCH, and what fetching its URIs amounted to.
    fn log_summary(&self, task_id: &str, state: TaskState) {
        let t = self.tasks.get(task_id);
        let exit = match t.and_then(|t| t.exit) {
            Some(process::Exit::Code(c)) => format!("status:{c}"),
            Some(process::Exit::Signal {
                signal,
                core_dumped,
            }) => format!(
                "signal:{signal}({}{})",
                process::strsignal(signal),
                if core_dumped { ", core dumped" } else { "" }
            ),
            None => "none".into(),
        };
        let duration = t.map(|t| t.launched.elapsed()).unwrap_or_default();
        let f = t.map(|t| t.fetched).unwrap_or_default();
        tracing::info!(
            task_id = %task_id,
            state = %state_name(state),
            exit = %exit,
            duration_secs = %format_args!("{:.3}", duration.as_secs_f64()),
            fetch_uris = f.uris,
            fetch_bytes = f.bytes,
            fetch_secs = %format_args!("{:.3}", f.elapsed.as_secs_f64()),
            cache_hits = f.cache_hits,
            cache_misses = f.cache_misses,
            "task summary"
        );
    }

    // ----- launching --------------------------------------------------------------------

    /// LAUNCH_GROUP (custom mode only; the event loop handles drop-in mode).
    pub fn launch_group(&mut self, link: &mut AgentLink, tasks: Vec<TaskInfo>) {
        self.next_group += 1;
        let group = self.next_group;
        tracing::info!("launching a task group of {} tasks", tasks.len());
        for t in tasks {
            self.launch(link, t, Some(group));
        }
    }

    pub fn launch(&mut self, link: &mut AgentLink, info: TaskInfo, group: Option<u64>) {
        let id = info.task_id.value.clone();
        if self.stopping != Stopping::No {
            link.add_task(info);
            self.update(
                link,
                &id,
                TaskState::TaskKilled,
                Some(task_status::Reason::TaskKilledDuringLaunch),
                Some("Executor is shutting down".into()),
            );
            return;
        }
        if self.tasks.contains_key(&id) {
            tracing::warn!("task {id} was launched twice; ignoring the second LAUNCH");
            return;
        }
        let drop_in = match &self.cfg.mode {
            Mode::DropIn(f) => Some(f.clone()),
            Mode::Custom => None,
        };
        if drop_in.is_some() {
            if self.drop_in_launched {
                self.update(
                    link,
                    &id,
                    TaskState::TaskFailed,
                    None,
                    Some("Attempted to run multiple tasks using a \"command\" executor".into()),
                );
                return;
            }
            self.drop_in_launched = true;
        }
        self.idle_since = None;
        link.add_task(info.clone());
        let dir = if drop_in.is_some() {
            self.cfg.sandbox.clone()
        } else if valid_dir_name(&id) {
            self.cfg.sandbox.join("tasks").join(&id)
        } else {
            self.cfg.sandbox.clone()
        };
        self.tasks.insert(
            id.clone(),
            Task {
                info: info.clone(),
                group,
                phase: Phase::Fetching,
                pid: None,
                command: None,
                dir: dir.clone(),
                killed: false,
                killing: None,
                terminal_acked: false,
                fetch: None,
                launched: Instant::now(),
                fetched: FetchFigures::default(),
                exit: None,
                root_reaped: false,
                kill_cause: None,
                max_completion_at: None,
                checkers: Vec::new(),
                last_status: None,
            },
        );
        self.update(link, &id, TaskState::TaskStarting, None, None);

        let cmd = match &drop_in {
            Some(flags) => command::drop_in_task_command(&info, flags.task_command.as_deref()),
            None if !valid_dir_name(&id) => Err(format!(
                "Task id '{id}' cannot be used as a directory name under tasks/"
            )),
            None => command::custom_task_command(&info),
        };
        let cmd = cmd.and_then(|c| {
            if let Some(hc) = &info.health_check {
                checks::health_probe(hc)
                    .map_err(|e| format!("Task '{id}' has an invalid health_check: {e}"))?;
            }
            if let Some(ci) = &info.check {
                checks::check_probe(ci)
                    .map_err(|e| format!("Task '{id}' has an invalid check: {e}"))?;
            }
            Ok(c)
        });
        let cmd = match cmd.and_then(|c| command::program(&c).map(|_| c)) {
            Ok(c) => c,
            Err(msg) => {
                self.finish_task(
                    link,
                    &id,
                    TaskState::TaskFailed,
                    Some(task_status::Reason::TaskInvalid),
                    msg,
                );
                return;
            }
        };
        // Custom mode: a container the task asks for that we cannot give fails the task (in
        // drop-in mode the agent has already set up the task's container).
        if let (None, Some(ci)) = (&drop_in, &info.container) {
            if let Err(msg) = container::custom_mode_container(ci) {
                self.finish_task(
                    link,
                    &id,
                    TaskState::TaskFailed,
                    Some(task_status::Reason::ContainerLaunchFailed),
                    format!("Task '{id}': {msg}"),
                );
                return;
            }
        }
        let uris = cmd.uris.clone();
        let user = cmd.user.clone();
        if let Some(t) = self.tasks.get_mut(&id) {
            t.command = Some(cmd);
        }
        // Drop-in: the agent already fetched the URIs (they are in the generated ExecutorInfo).
        // Without URIs to fetch, the task directory is made with the process, after
        // TASK_STARTING has left (see `spawn_pending`).
        if drop_in.is_some() || uris.is_empty() {
            self.pending_spawns.push(id);
            return;
        }
        if let Err(e) = launch::prepare_task_dir(&dir, user.as_deref()) {
            self.finish_task(
                link,
                &id,
                TaskState::TaskFailed,
                Some(task_status::Reason::CommandExecutorFailed),
                e,
            );
            return;
        }
        let tx = self.tx.clone();
        let task_id = id.clone();
        let fetch_cfg = self.fetch_cfg.clone();
        // The fetcher's lines carry the task id as a field (JSON logs).
        let span = tracing::info_span!("task", task_id = %id);
        let handle = tokio::spawn(tracing::Instrument::instrument(
            async move {
                // The one call into the fetcher (custom mode; the agent fetched drop-in URIs).
                let result = fetcher::fetch_all(&uris, &dir, user.as_deref(), &fetch_cfg)
                    .await
                    .map(|s| FetchFigures::of(&s))
                    .map_err(|e| e.to_string());
                let _ = tx.send(TaskInput::FetchDone { task_id, result });
            },
            span,
        ));
        if let Some(t) = self.tasks.get_mut(&id) {
            t.fetch = Some(handle);
        }
    }

    fn fetched(&mut self, link: &mut AgentLink, id: &str, result: Result<FetchFigures, String>) {
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        t.fetch = None;
        if t.phase != Phase::Fetching {
            return;
        }
        match result {
            Ok(figures) => {
                t.fetched = figures;
                tracing::info!(
                    "task {id}: fetched URIs ({} URI(s), {} bytes)",
                    figures.uris,
                    figures.bytes
                );
                self.spawn_task(link, id);
            }
            Err(e) => self.finish_task(
                link,
                id,
                TaskState::TaskFailed,
                Some(task_status::Reason::ContainerLaunchFailed),
                format!("Failed to fetch URIs: {e}"),
            ),
        }
    }

    /// Start the processes of the tasks launched by the last input (making a custom-mode task's
    /// directory first), unless they were killed (or the executor began shutting down) in the
    /// meantime.
    pub fn spawn_pending(&mut self, link: &mut AgentLink) {
        for id in std::mem::take(&mut self.pending_spawns) {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if t.phase != Phase::Fetching || t.pid.is_some() {
                continue;
            }
            if !self.cfg.is_drop_in() {
                let user = t.command.as_ref().and_then(|c| c.user.clone());
                if let Err(e) = launch::prepare_task_dir(&t.dir, user.as_deref()) {
                    self.finish_task(
                        link,
                        &id,
                        TaskState::TaskFailed,
                        Some(task_status::Reason::CommandExecutorFailed),
                        e,
                    );
                    continue;
                }
            }
            self.spawn_task(link, &id);
        }
    }

    fn spawn_task(&mut self, link: &mut AgentLink, id: &str) {
        let Some(t) = self.tasks.get(id) else { return };
        let Some(cmd) = t.command.clone() else { return };
        let program = match command::program(&cmd) {
            Ok(p) => p,
            Err(m) => {
                return self.finish_task(
                    link,
                    id,
                    TaskState::TaskFailed,
                    Some(task_status::Reason::TaskInvalid),
                    m,
                )
            }
        };
        let image = match &self.cfg.mode {
            Mode::DropIn(f) => f.rootfs.clone().map(|r| (f.clone(), r)),
            Mode::Custom => None,
        };
        let spec = match image {
            Some((f, rootfs)) => {
                let env = self.host.task_env(id, &t.info, &cmd, &t.dir);
                let here = std::env::current_dir().unwrap_or_else(|_| t.dir.clone());
                match container::spec(&f, &rootfs, &cmd, &env, self.host.executor_env(), &here) {
                    Ok(s) => s,
                    Err(e) => {
                        return self.finish_task(
                            link,
                            id,
                            TaskState::TaskFailed,
                            Some(task_status::Reason::CommandExecutorFailed),
                            format!("Failed to launch the command in its image: {e}"),
                        )
                    }
                }
            }
            None => self.host.spec(id, &t.info, &cmd, program, &t.dir),
        };
        match process::spawn(&spec) {
            Ok(pid) => {
                tracing::info!("task {id}: started {:?} as pid {pid}", spec.program);
                let now = Instant::now();
                let paused = !self.cfg.is_drop_in() && !self.connected;
                if let Some(t) = self.tasks.get_mut(id) {
                    t.pid = Some(pid.as_raw());
                    t.phase = Phase::Running;
                    t.max_completion_at = max_completion(id, &t.info).map(|d| now + d);
                    // Validated at LAUNCH; a failure here cannot happen, but is not hidden.
                    let hc = t
                        .info
                        .health_check
                        .as_ref()
                        .map(|hc| Checker::health(id, hc, now));
                    let ck = t.info.check.as_ref().map(|ci| Checker::check(id, ci, now));
                    for c in [hc, ck].into_iter().flatten() {
                        match c {
                            Ok(mut c) => {
                                if paused {
                                    c.pause();
                                }
                                t.checkers.push(c)
                            }
                            Err(e) => tracing::error!("task {id}: {e}"),
                        }
                    }
                }
                self.update(link, id, TaskState::TaskRunning, None, None);
            }
            Err(e) => self.finish_task(
                link,
                id,
                TaskState::TaskFailed,
                Some(task_status::Reason::CommandExecutorFailed),
                format!("Failed to launch the command: {e}"),
            ),
        }
    }

    /// Record a terminal state and report it; kills what is left of the task and, for a group
    /// member that FAILED or was KILLED, its siblings.
    fn finish_task(
        &mut self,
        link: &mut AgentLink,
        id: &str,
        state: TaskState,
        reason: Option<task_status::Reason>,
        message: String,
    ) {
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        if t.phase == Phase::Done {
            return;
        }
        t.phase = Phase::Done;
        t.killing = None;
        t.max_completion_at = None;
        for c in &mut t.checkers {
            c.stop();
        }
        if let Some(f) = t.fetch.take() {
            f.abort();
        }
        let group = t.group;
        if let Some(scope) = self.scope_of(id) {
            let left = process::kill_task(&scope, Signal::SIGKILL);
            if !left.is_empty() {
                tracing::info!(
                    "task {id}: killed {} leftover process(es): {left:?}",
                    left.len()
                );
            }
        }
        self.update(link, id, state, reason, Some(message));
        if let Some(g) = group {
            if matches!(state, TaskState::TaskFailed | TaskState::TaskKilled)
                && self.stopping != Stopping::Shutdown
            {
                let siblings: Vec<(String, Duration)> = self
                    .tasks
                    .iter()
                    .filter(|(sid, s)| {
                        s.group == Some(g) && sid.as_str() != id && s.phase != Phase::Done
                    })
                    .map(|(sid, s)| {
                        (
                            sid.clone(),
                            grace_of(s.info.kill_policy.as_ref()).unwrap_or(DEFAULT_KILL_GRACE),
                        )
                    })
                    .collect();
                for (sid, grace) in siblings {
                    tracing::info!(
                        "task {sid}: killing it because task {id} of its group ended {}",
                        state_name(state)
                    );
                    self.kill(link, &sid, grace);
                }
            }
        }
        if self.all_done() && self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
    }

    fn scope_of(&self, id: &str) -> Option<TaskScope> {
        let t = self.tasks.get(id)?;
        Some(TaskScope {
            root: t.pid,
            marker: if self.cfg.is_drop_in() {
                None
            } else {
                Some(id.to_string())
            },
            claim_all_orphans: self.cfg.is_drop_in(),
            root_reaped: t.root_reaped,
            // Probes of every task: in custom mode a probe carries its task's marker.
            exclude_sessions: self
                .tasks
                .values()
                .flat_map(|t| t.checkers.iter().filter_map(|c| c.probe_pid()))
                .collect(),
        })
    }

    // ----- killing ----------------------------------------------------------------------

    /// KILL from the agent.
    pub fn on_kill(&mut self, link: &mut AgentLink, id: &str, policy: Option<&KillPolicy>) {
        let Some(t) = self.tasks.get(id) else {
            tracing::warn!("KILL for unknown task {id}; ignored");
            return;
        };
        let grace = grace_of(policy)
            .or_else(|| grace_of(t.info.kill_policy.as_ref()))
            .unwrap_or(DEFAULT_KILL_GRACE);
        tracing::info!("received KILL for task {id} with a grace period of {grace:?}");
        self.kill(link, id, grace);
    }

    /// Kill a task with `grace` before SIGKILL. Idempotent; a repeat can only shorten the grace.
    pub fn kill(&mut self, link: &mut AgentLink, id: &str, grace: Duration) {
        self.kill_for(link, id, grace, KillCause::Requested);
    }

    fn kill_for(&mut self, link: &mut AgentLink, id: &str, grace: Duration, cause: KillCause) {
        let now = Instant::now();
        let can_killing = link.framework_allows_killing();
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        match t.phase {
            Phase::Done => {}
            Phase::Fetching => {
                t.killed = true;
                self.finish_task(
                    link,
                    id,
                    TaskState::TaskKilled,
                    None,
                    "Task killed before it was started".into(),
                );
            }
            Phase::Running => {
                if let Some(k) = &mut t.killing {
                    let new_deadline = k.start + grace;
                    if new_deadline < k.escalate_at {
                        k.escalate_at = new_deadline.max(now);
                        tracing::info!(
                            "task {id}: rescheduling SIGKILL in {:?}",
                            k.escalate_at - now
                        );
                    }
                    return;
                }
                t.killed = true;
                t.killing = Some(Killing {
                    start: now,
                    escalate_at: now + grace,
                    escalated: false,
                });
                t.kill_cause.get_or_insert(cause);
                // No more checking, and no deadline once a kill began (as upstream).
                t.max_completion_at = None;
                for c in &mut t.checkers {
                    c.stop();
                }
                if can_killing && cause != KillCause::MaxCompletion {
                    self.update(link, id, TaskState::TaskKilling, None, None);
                }
                if let Some(scope) = self.scope_of(id) {
                    let pids = process::kill_task(&scope, Signal::SIGTERM);
                    tracing::info!("task {id}: sent SIGTERM to {pids:?}; SIGKILL in {grace:?}");
                }
            }
        }
    }

    /// Kill every task within `budget`.
    pub fn kill_all(&mut self, link: &mut AgentLink, budget: Duration) {
        for id in self.ids() {
            self.kill(link, &id, budget);
        }
    }

    // ----- children, timers -------------------------------------------------------------

    /// Reap every exited child; a task's root process ending ends the task.
    pub fn reap(&mut self, link: &mut AgentLink) {
        for (pid, exit) in process::reap_all() {
            let owner = self
                .tasks
                .iter()
                .find(|(_, t)| t.pid == Some(pid.as_raw()) && t.phase == Phase::Running)
                .map(|(id, _)| id.clone());
            if let Some(id) = owner {
                if let Some(t) = self.tasks.get_mut(&id) {
                    t.root_reaped = true;
                }
                self.task_exited(link, &id, exit);
                continue;
            }
            let now = Instant::now();
            let probe = self.tasks.iter_mut().find_map(|(id, t)| {
                t.checkers
                    .iter_mut()
                    .find_map(|c| c.reaped(pid.as_raw(), exit, now))
                    .map(|v| (id.clone(), v))
            });
            match probe {
                Some((id, verdict)) => self.apply_verdict(link, &id, verdict),
                None => tracing::debug!("reaped process {pid} ({})", exit.describe()),
            }
        }
    }

    fn task_exited(&mut self, link: &mut AgentLink, id: &str, exit: Exit) {
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        t.exit = Some(exit);
        let (state, reason) = if t.kill_cause == Some(KillCause::MaxCompletion) {
            (
                TaskState::TaskFailed,
                Some(task_status::Reason::MaxCompletionTimeReached),
            )
        } else if t.killed {
            (TaskState::TaskKilled, None)
        } else if exit.success() {
            (TaskState::TaskFinished, None)
        } else {
            (TaskState::TaskFailed, None)
        };
        self.finish_task(
            link,
            id,
            state,
            reason,
            format!("Command {}", exit.describe()),
        );
    }

    /// The earliest instant a task has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.tasks
            .values()
            .flat_map(|t| {
                let escalation = t
                    .killing
                    .as_ref()
                    .filter(|k| !k.escalated)
                    .map(|k| k.escalate_at);
                let probes = t.checkers.iter().filter_map(|c| c.next_deadline());
                [escalation, t.max_completion_at]
                    .into_iter()
                    .flatten()
                    .chain(probes)
            })
            .min()
    }

    /// Due timers: SIGKILL for tasks whose kill grace period is over, `max_completion_time`,
    /// probes to start and probes past their timeout.
    pub fn on_timers(&mut self, link: &mut AgentLink, now: Instant) {
        self.escalate(now);
        let expired: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.phase == Phase::Running
                    && t.killing.is_none()
                    && t.max_completion_at.is_some_and(|at| at <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::info!("task {id}: killing it: its max_completion_time has passed");
            self.kill_for(link, &id, Duration::ZERO, KillCause::MaxCompletion);
        }
        // Killing with no grace is due at once.
        self.escalate(Instant::now());
        self.run_probes(link, now);
    }

    /// Probes past their timeout are killed (a failure), due probes start.
    fn run_probes(&mut self, link: &mut AgentLink, now: Instant) {
        let ids: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.phase == Phase::Running && t.killing.is_none() && !t.checkers.is_empty()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            for which in [Which::Health, Which::Check] {
                let verdicts = self.probe_step(&id, which, now);
                for v in verdicts {
                    self.apply_verdict(link, &id, v);
                }
            }
        }
    }

    /// One checker's timers: its timeout, then its next start.
    fn probe_step(&mut self, id: &str, which: Which, now: Instant) -> Vec<Verdict> {
        let mut out = Vec::new();
        let tx = self.tx.clone();
        let host = &self.host;
        let Some(t) = self.tasks.get_mut(id) else {
            return out;
        };
        let Task {
            info,
            command,
            dir,
            checkers,
            pid,
            ..
        } = t;
        let Some(c) = checkers.iter_mut().find(|c| c.which() == which) else {
            return out;
        };
        if let Some(v) = c.check_timeout(now) {
            out.push(v);
        }
        if c.is_due(now) {
            let task_id = id.to_string();
            let spec =
                |probe: &CommandInfo| host.probe_spec(id, info, command.as_ref(), *pid, probe, dir);
            let done = move |seq, result| {
                let _ = tx.send(TaskInput::ProbeDone {
                    task_id,
                    which,
                    seq,
                    result,
                });
            };
            out.push(c.start(now, spec, done));
        }
        out
    }

    /// Act on what a checker decided: a health or check update, and the kill after too many
    /// failed health checks. Nothing once the task is being killed or has ended (as upstream).
    fn apply_verdict(&mut self, link: &mut AgentLink, id: &str, verdict: Verdict) {
        let Some(t) = self.tasks.get(id) else { return };
        if t.phase != Phase::Running || t.killing.is_some() {
            return;
        }
        let grace = grace_of(t.info.kill_policy.as_ref()).unwrap_or(DEFAULT_KILL_GRACE);
        match verdict {
            Verdict::Quiet => {}
            Verdict::Check(status) => self.send_copy(
                link,
                id,
                task_status::Reason::TaskCheckStatusUpdated,
                None,
                Some(status),
            ),
            Verdict::Health { healthy, kill } => {
                self.send_copy(
                    link,
                    id,
                    task_status::Reason::TaskHealthCheckStatusUpdated,
                    Some(healthy),
                    None,
                );
                if kill {
                    tracing::warn!(
                        "task {id}: killing it: too many consecutive failed health checks"
                    );
                    if !self.cfg.is_drop_in() {
                        self.unhealthy = true;
                    }
                    self.kill_for(link, id, grace, KillCause::HealthCheck);
                }
            }
        }
    }

    /// SIGKILL for tasks whose kill grace period is over.
    fn escalate(&mut self, now: Instant) {
        let due: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.phase == Phase::Running
                    && t.killing
                        .as_ref()
                        .is_some_and(|k| !k.escalated && k.escalate_at <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(k) = self.tasks.get_mut(&id).and_then(|t| t.killing.as_mut()) {
                k.escalated = true;
            }
            if let Some(scope) = self.scope_of(&id) {
                let pids = process::kill_task(&scope, Signal::SIGKILL);
                tracing::info!("task {id}: did not terminate in time; sent SIGKILL to {pids:?}");
            }
        }
    }
}

/// A task's `max_completion_time`, if it has a positive one.
fn max_completion(id: &str, info: &TaskInfo) -> Option<Duration> {
    let ns = info.max_completion_time.as_ref()?.nanoseconds;
    if ns <= 0 {
        return None;
    }
    let d = Duration::from_nanos(ns as u64);
    tracing::info!("task {id}: has a max completion time of {d:?}");
    Some(d)
}
