//! The task lifecycle: LAUNCH (and LAUNCH_GROUP members) → fetch URIs → start the process →
//! KILL (TASK_KILLING, SIGTERM, SIGKILL after the grace period) → terminal update; reaping task
//! processes, group failure propagation, and the status updates each step sends through the
//! [`AgentLink`].
//!
//! [`Tasks`] owns every task of the executor. Background work (URI fetches) reports to it as
//! [`TaskInput`]s on its own channel, read by the event loop through [`Tasks::recv`].

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
use crate::command;
use crate::config::{Config, Mode};
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
        }
    }

    /// The agent acknowledged an update.
    pub fn acknowledged(&mut self, settled: &Settled) {
        if croupier_proto::is_terminal(settled.state) {
            if let Some(t) = self.tasks.get_mut(&settled.task_id) {
                t.terminal_acked = true;
            }
        }
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
        let status = TaskStatus {
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
        tracing::info!(
            "task {task_id}: {}{}",
            state_name(state),
            message.map(|m| format!(" ({m})")).unwrap_or_default()
        );
        if croupier_proto::is_terminal(state) {
            self.log_summary(task_id, state);
        }
        link.send_update(call::Update { status });
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
        let handle = tokio::spawn(async move {
            // The one call into the fetcher (custom mode; the agent fetched drop-in URIs).
            let result = fetcher::fetch_all(&uris, &dir, user.as_deref(), &fetch_cfg)
                .await
                .map(|s| FetchFigures::of(&s))
                .map_err(|e| e.to_string());
            let _ = tx.send(TaskInput::FetchDone { task_id, result });
        });
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
        let spec = self.host.spec(id, &t.info, &cmd, program, &t.dir);
        match process::spawn(&spec) {
            Ok(pid) => {
                tracing::info!("task {id}: started {:?} as pid {pid}", spec.program);
                if let Some(t) = self.tasks.get_mut(id) {
                    t.pid = Some(pid.as_raw());
                    t.phase = Phase::Running;
                }
                self.arm_max_completion(id);
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

    fn arm_max_completion(&mut self, id: &str) {
        if let Some(t) = self.tasks.get(id) {
            if t.info.max_completion_time.is_some() {
                tracing::warn!(
                    "task {id}: max_completion_time is not enforced by croupier-executor"
                );
            }
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
                if can_killing {
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
            match owner {
                Some(id) => self.task_exited(link, &id, exit),
                None => tracing::debug!("reaped process {pid} ({})", exit.describe()),
            }
        }
    }

    fn task_exited(&mut self, link: &mut AgentLink, id: &str, exit: Exit) {
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        t.exit = Some(exit);
        let state = if t.killed {
            TaskState::TaskKilled
        } else if exit.success() {
            TaskState::TaskFinished
        } else {
            TaskState::TaskFailed
        };
        self.finish_task(
            link,
            id,
            state,
            None,
            format!("Command {}", exit.describe()),
        );
    }

    /// The earliest instant a task has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.tasks
            .values()
            .filter_map(|t| {
                t.killing
                    .as_ref()
                    .filter(|k| !k.escalated)
                    .map(|k| k.escalate_at)
            })
            .min()
    }

    /// Due timers: SIGKILL for tasks whose kill grace period is over.
    pub fn on_timers(&mut self, now: Instant) {
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
