//! The executor proper: one event loop (on the `current_thread` runtime) that owns the tasks,
//! the unacknowledged state and the connection state, and reacts to
//! agent events, child exits, timers and the results of background work (subscribe attempts,
//! calls, URI fetches), which reach it as [`Input`]s.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use croupier_proto::v1::executor::{call, event, Call, Event};
use croupier_proto::v1::{
    framework_info, task_status, Environment, ExecutorId, FrameworkId, FrameworkInfo, TaskId,
    TaskInfo, TaskState, TaskStatus,
};
use nix::sys::signal::Signal;
use rand::Rng;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::command::{self, Env};
use crate::config::{Config, DropInFlags, Mode};
use crate::fetcher::{self, FetchConfig};
use crate::http::{self, AgentError, Caller, Endpoint};
use crate::process::{self, Exit, Output, SpawnSpec, TaskScope};
use crate::state::Unacked;

/// Default kill grace period when neither the KILL nor the task has a kill policy.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);
/// Kept back from the shutdown grace period to report TASK_KILLED before the agent destroys us.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);
/// Interval of HEARTBEAT calls (only to agents that sent HEARTBEAT events).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Before the first SUBSCRIBED, retryable failures are retried for this long.
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(60);

/// Something the event loop must handle.
#[derive(Debug)]
pub enum Input {
    /// The SUBSCRIBE request of generation `gen` was answered 200.
    StreamOpen(u64),
    Event(u64, Box<Event>),
    StreamClosed(u64, AgentError),
    SubscribeFailed(u64, AgentError),
    CallFailed {
        gen: u64,
        call: &'static str,
        error: AgentError,
    },
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
    command: Option<croupier_proto::v1::CommandInfo>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Not connected; the next SUBSCRIBE attempt is due at the instant.
    Waiting(Instant),
    /// A SUBSCRIBE is in flight (or its stream is open but SUBSCRIBED has not arrived).
    Subscribing,
    /// SUBSCRIBED received on the current stream.
    Subscribed,
    /// No more attempts (exiting).
    Closed,
}

/// Why the executor is going away without the agent's blessing.
struct Abandon {
    code: i32,
    reason: String,
}

/// The executor state machine.
pub struct Executor {
    cfg: Config,
    fetch_cfg: FetchConfig,
    endpoint: Endpoint,
    unacked: Unacked,
    tasks: BTreeMap<String, Task>,
    next_group: u64,
    conn: Conn,
    gen: Arc<AtomicU64>,
    stream_task: Option<JoinHandle<()>>,
    subscribe_snapshot: HashSet<Vec<u8>>,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    calls: mpsc::UnboundedSender<(u64, &'static str, Call)>,
    framework: Option<FrameworkInfo>,
    agent_heartbeats: bool,
    next_heartbeat: Option<Instant>,
    started: Instant,
    ever_subscribed: bool,
    recovery_deadline: Option<Instant>,
    shutdown: Option<(Instant, Instant)>,
    abandon: Option<Abandon>,
    ack_deadline: Option<Instant>,
    idle_since: Option<Instant>,
    drop_in_launched: bool,
    /// Tasks whose process is to be started once their TASK_STARTING update is on the wire
    /// (see [`Executor::spawn_pending`]).
    pending_spawns: Vec<String>,
    base_env: Vec<(String, String)>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn grace_of(policy: Option<&croupier_proto::v1::KillPolicy>) -> Option<Duration> {
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

impl Executor {
    pub fn new(cfg: Config, fetch_cfg: FetchConfig) -> Executor {
        let (tx, rx) = mpsc::unbounded_channel();
        let (calls, calls_rx) = mpsc::unbounded_channel();
        let endpoint = Endpoint {
            address: cfg.agent_endpoint.clone(),
            token: cfg.token.clone(),
        };
        let gen = Arc::new(AtomicU64::new(0));
        tokio::spawn(call_loop(
            endpoint.clone(),
            calls_rx,
            tx.clone(),
            gen.clone(),
        ));
        let now = Instant::now();
        let idle_since = if cfg.is_drop_in() { None } else { Some(now) };
        Executor {
            endpoint,
            unacked: Unacked::default(),
            tasks: BTreeMap::new(),
            next_group: 0,
            conn: Conn::Waiting(now),
            gen,
            stream_task: None,
            subscribe_snapshot: HashSet::new(),
            tx,
            rx,
            calls,
            framework: None,
            agent_heartbeats: false,
            next_heartbeat: None,
            started: now,
            ever_subscribed: false,
            recovery_deadline: None,
            shutdown: None,
            abandon: None,
            ack_deadline: None,
            idle_since,
            drop_in_launched: false,
            pending_spawns: Vec::new(),
            base_env: std::env::vars().collect(),
            fetch_cfg,
            cfg,
        }
    }

    /// Run until the executor should exit; returns the process exit code.
    pub async fn run(mut self) -> i32 {
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot watch SIGCHLD ({e}); polling for exits every 100ms");
                None
            }
        };
        let mut sigterm = signal(SignalKind::terminate()).ok();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                Some(input) = self.rx.recv() => self.handle(input),
                _ = async { match sigchld.as_mut() { Some(s) => { s.recv().await; } None => tokio::time::sleep(Duration::from_millis(100)).await } } => self.reap(),
                _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending::<()>().await } } => {
                    tracing::info!("received SIGTERM: shutting down");
                    self.begin_shutdown();
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = tick.tick() => self.reap(),
            }
            if !self.pending_spawns.is_empty() {
                // Forking and waiting for exec takes a while; let the call loop (and the
                // connection task under it) write the queued TASK_STARTING updates first. On
                // the current_thread runtime this yield runs every ready task before we resume.
                tokio::task::yield_now().await;
                self.spawn_pending();
            }
            self.on_timers();
            if let Some(code) = self.exit_code() {
                self.finish();
                return code;
            }
        }
    }

    // ----- connection -------------------------------------------------------------------

    fn current_gen(&self) -> u64 {
        self.gen.load(Ordering::SeqCst)
    }

    fn base_call(&self, ty: call::Type) -> Call {
        Call {
            executor_id: ExecutorId {
                value: self.cfg.executor_id.clone(),
            },
            framework_id: FrameworkId {
                value: self.cfg.framework_id.clone(),
            },
            r#type: Some(ty as i32),
            subscribe: None,
            update: None,
            message: None,
        }
    }

    fn start_subscribe(&mut self) {
        let gen = self.gen.fetch_add(1, Ordering::SeqCst) + 1;
        let mut call = self.base_call(call::Type::Subscribe);
        let payload = self.unacked.subscribe_payload();
        self.subscribe_snapshot = payload
            .unacknowledged_updates
            .iter()
            .filter_map(|u| u.status.uuid.clone())
            .collect();
        tracing::info!(
            "subscribing to the agent at {} (unacknowledged: {} updates, {} tasks)",
            self.endpoint.address,
            payload.unacknowledged_updates.len(),
            payload.unacknowledged_tasks.len()
        );
        call.subscribe = Some(payload);
        let tx = self.tx.clone();
        let endpoint = self.endpoint.clone();
        if let Some(t) = self.stream_task.take() {
            t.abort();
        }
        self.conn = Conn::Subscribing;
        self.stream_task = Some(tokio::spawn(async move {
            match http::subscribe(&endpoint, &call).await {
                Err(e) => {
                    let _ = tx.send(Input::SubscribeFailed(gen, e));
                }
                Ok(mut stream) => {
                    let _ = tx.send(Input::StreamOpen(gen));
                    loop {
                        match stream.next().await {
                            Ok(ev) => {
                                if tx.send(Input::Event(gen, Box::new(ev))).is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Input::StreamClosed(gen, e));
                                return;
                            }
                        }
                    }
                }
            }
        }));
    }

    /// The agent went away (or refused us). Decide between retrying and giving up.
    fn disconnected(&mut self, error: AgentError) {
        if let Some(t) = self.stream_task.take() {
            t.abort();
        }
        self.gen.fetch_add(1, Ordering::SeqCst);
        if self.conn == Conn::Closed {
            return;
        }
        let was_subscribed = self.conn == Conn::Subscribed;
        let now = Instant::now();
        if self.shutdown.is_some() && !self.cfg.checkpoint {
            // Shutting down anyway: finish within the grace period without the agent.
            tracing::warn!("disconnected from the agent during shutdown: {error}");
            self.conn = Conn::Closed;
            return;
        }
        if !error.is_retryable() {
            tracing::error!("{error}; giving up on the agent");
            self.abandon(1, format!("the agent refused us: {error}"));
            return;
        }
        if self.ever_subscribed && !self.cfg.checkpoint {
            tracing::error!(
                "{error}; not checkpointing (MESOS_CHECKPOINT != 1): killing all tasks and exiting"
            );
            self.abandon(1, format!("lost the agent without checkpointing: {error}"));
            return;
        }
        if !self.ever_subscribed
            && now.duration_since(self.started) > REGISTRATION_WINDOW
            && !self.cfg.checkpoint
        {
            self.abandon(
                1,
                format!("could not subscribe within {REGISTRATION_WINDOW:?}: {error}"),
            );
            return;
        }
        if self.ever_subscribed && self.recovery_deadline.is_none() {
            self.recovery_deadline = Some(now + self.cfg.recovery_timeout);
            tracing::warn!(
                "disconnected from the agent: {error}; tasks keep running, re-subscribing for up to {:?}",
                self.cfg.recovery_timeout
            );
        } else if was_subscribed {
            tracing::warn!("disconnected from the agent: {error}");
        } else {
            tracing::info!("subscribe attempt failed: {error}");
        }
        // The ACK fail-safe is suspended while the agent is away.
        self.ack_deadline = None;
        let max = self.cfg.backoff_max.max(Duration::from_millis(10));
        let delay = rand::thread_rng().gen_range(Duration::ZERO..=max);
        self.conn = Conn::Waiting(now + delay);
    }

    /// Give up: kill every task quickly and exit with `code` once they are gone.
    fn abandon(&mut self, code: i32, reason: String) {
        if self.abandon.is_none() {
            self.abandon = Some(Abandon { code, reason });
        }
        self.conn = Conn::Closed;
        if let Some(t) = self.stream_task.take() {
            t.abort();
        }
        let budget = self.shutdown_budget();
        let ids: Vec<String> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.kill(&id, budget);
        }
    }

    fn send_call(&self, name: &'static str, call: Call) {
        let _ = self.calls.send((self.current_gen(), name, call));
    }

    // ----- inputs -----------------------------------------------------------------------

    fn handle(&mut self, input: Input) {
        let gen = self.current_gen();
        match input {
            Input::StreamOpen(g) if g == gen => tracing::debug!("event stream open"),
            Input::Event(g, ev) if g == gen => self.on_event(*ev),
            Input::StreamClosed(g, e) | Input::SubscribeFailed(g, e) if g == gen => {
                self.disconnected(e)
            }
            Input::CallFailed {
                gen: g,
                call,
                error,
            } if g == gen => {
                if call == "HEARTBEAT" {
                    tracing::debug!("HEARTBEAT call failed (ignored): {error}");
                } else if error.is_retryable() && self.conn == Conn::Subscribed {
                    self.disconnected(error);
                } else {
                    tracing::error!("{call} call failed: {error}");
                }
            }
            Input::FetchDone { task_id, result } => self.fetched(&task_id, result),
            _ => tracing::debug!("dropping an input of an older connection"),
        }
    }

    fn on_event(&mut self, ev: Event) {
        let ty = ev
            .r#type
            .and_then(|t| event::Type::try_from(t).ok())
            .unwrap_or(event::Type::Unknown);
        match ty {
            event::Type::Subscribed => {
                let Some(s) = ev.subscribed else {
                    tracing::warn!("SUBSCRIBED event without its payload; ignored");
                    return;
                };
                tracing::info!(
                    "subscribed to agent {} ({}) for framework {}{}",
                    s.agent_info
                        .id
                        .as_ref()
                        .map(|i| i.value.as_str())
                        .unwrap_or("?"),
                    s.agent_info.hostname,
                    s.framework_info.name,
                    s.container_id
                        .as_ref()
                        .map(|c| format!(", container {}", c.value))
                        .unwrap_or_default()
                );
                self.framework = Some(s.framework_info);
                self.conn = Conn::Subscribed;
                self.ever_subscribed = true;
                self.recovery_deadline = None;
                // Updates created while SUBSCRIBE was in flight were not in it: send them now.
                let late: Vec<call::Update> = self
                    .unacked
                    .subscribe_payload()
                    .unacknowledged_updates
                    .into_iter()
                    .filter(|u| {
                        u.status
                            .uuid
                            .as_ref()
                            .is_none_or(|x| !self.subscribe_snapshot.contains(x))
                    })
                    .collect();
                for u in late {
                    let mut c = self.base_call(call::Type::Update);
                    c.update = Some(u);
                    self.send_call("UPDATE", c);
                }
                self.rearm_ack_deadline();
            }
            event::Type::Launch => match ev.launch {
                Some(l) => self.launch(l.task, None),
                None => tracing::warn!("LAUNCH event without a task; ignored"),
            },
            event::Type::LaunchGroup => match ev.launch_group {
                Some(g) => self.launch_group(g.task_group.tasks),
                None => tracing::warn!("LAUNCH_GROUP event without a task group; ignored"),
            },
            event::Type::Kill => match ev.kill {
                Some(k) => self.on_kill(&k.task_id.value, k.kill_policy.as_ref()),
                None => tracing::warn!("KILL event without a task id; ignored"),
            },
            event::Type::Acknowledged => match ev.acknowledged {
                Some(a) => self.on_ack(&a.task_id.value, &a.uuid),
                None => tracing::warn!("ACKNOWLEDGED event without payload; ignored"),
            },
            event::Type::Message => {
                let len = ev.message.map(|m| m.data.len()).unwrap_or(0);
                tracing::info!("received a framework MESSAGE of {len} bytes (ignored)");
            }
            event::Type::Error => {
                tracing::error!(
                    "agent sent ERROR: {}",
                    ev.error.map(|e| e.message).unwrap_or_default()
                );
            }
            event::Type::Shutdown => {
                tracing::info!("received SHUTDOWN");
                self.begin_shutdown();
            }
            event::Type::Heartbeat => {
                if !self.agent_heartbeats {
                    tracing::info!("agent sends HEARTBEAT events: answering with HEARTBEAT calls");
                    self.agent_heartbeats = true;
                    self.next_heartbeat = Some(Instant::now() + HEARTBEAT_INTERVAL);
                }
            }
            event::Type::Unknown => {
                tracing::warn!("ignoring an event of unknown type {:?}", ev.r#type)
            }
        }
    }

    // ----- updates ----------------------------------------------------------------------

    fn update(
        &mut self,
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
            task_id = %task_id,
            "task {task_id}: {}{}",
            state_name(state),
            message.map(|m| format!(" ({m})")).unwrap_or_default()
        );
        if croupier_proto::is_terminal(state) {
            self.log_summary(task_id, state);
        }
        let update = call::Update { status };
        self.unacked.add_update(update.clone());
        if self.conn == Conn::Subscribed {
            let mut c = self.base_call(call::Type::Update);
            c.update = Some(update);
            self.send_call("UPDATE", c);
        }
        if croupier_proto::is_terminal(state) {
            self.rearm_ack_deadline();
        }
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

    fn rearm_ack_deadline(&mut self) {
        if self.conn == Conn::Subscribed && self.unacked.pending_updates() > 0 {
            self.ack_deadline = Some(Instant::now() + self.cfg.ack_timeout);
        }
    }

    fn on_ack(&mut self, task_id: &str, uuid: &[u8]) {
        match self.unacked.acknowledge(uuid) {
            Some(settled) => {
                tracing::debug!(
                    "agent acknowledged {} for task {}",
                    state_name(settled.state),
                    settled.task_id
                );
                if croupier_proto::is_terminal(settled.state) {
                    if let Some(t) = self.tasks.get_mut(&settled.task_id) {
                        t.terminal_acked = true;
                    }
                }
                if self.unacked.pending_updates() == 0 {
                    self.ack_deadline = None;
                }
            }
            None => tracing::warn!("ACKNOWLEDGED for an unknown update of task {task_id}; ignored"),
        }
    }

    // ----- launching --------------------------------------------------------------------

    fn launch_group(&mut self, tasks: Vec<TaskInfo>) {
        if self.cfg.is_drop_in() {
            tracing::error!("LAUNCH_GROUP is not supported by the command executor: shutting down");
            self.begin_shutdown();
            return;
        }
        self.next_group += 1;
        let group = self.next_group;
        tracing::info!("launching a task group of {} tasks", tasks.len());
        for t in tasks {
            self.launch(t, Some(group));
        }
    }

    fn launch(&mut self, info: TaskInfo, group: Option<u64>) {
        let id = info.task_id.value.clone();
        if self.shutdown.is_some() || self.abandon.is_some() {
            self.unacked.add_task(info);
            self.update(
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
        self.unacked.add_task(info.clone());
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
        self.update(&id, TaskState::TaskStarting, None, None);

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
        if let Err(e) = prepare_task_dir(&dir, user.as_deref()) {
            self.finish_task(
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
                let _ = tx.send(Input::FetchDone { task_id, result });
            },
            span,
        ));
        if let Some(t) = self.tasks.get_mut(&id) {
            t.fetch = Some(handle);
        }
    }

    fn fetched(&mut self, id: &str, result: Result<FetchFigures, String>) {
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
                self.spawn_task(id);
            }
            Err(e) => self.finish_task(
                id,
                TaskState::TaskFailed,
                Some(task_status::Reason::ContainerLaunchFailed),
                format!("Failed to fetch URIs: {e}"),
            ),
        }
    }

    fn task_env(
        &self,
        id: &str,
        info: &TaskInfo,
        cmd: &croupier_proto::v1::CommandInfo,
        dir: &std::path::Path,
    ) -> Vec<(String, String)> {
        let mut env;
        match &self.cfg.mode {
            Mode::DropIn(DropInFlags {
                task_environment, ..
            }) => {
                env = Env::from_executor(self.base_env.iter().cloned(), false);
                if let Some(json) = task_environment {
                    match croupier_proto::json::from_json_slice::<Environment>(json.as_bytes()) {
                        Ok(e) => env.merge(&e),
                        Err(e) => tracing::warn!(
                            "ignoring --task_environment: not a JSON Environment: {e}"
                        ),
                    }
                }
            }
            Mode::Custom => {
                env = Env::from_executor(self.base_env.iter().cloned(), true);
                env.set("MESOS_FRAMEWORK_ID", &self.cfg.framework_id);
                env.set("MESOS_EXECUTOR_ID", &self.cfg.executor_id);
                env.set("MESOS_TASK_ID", id);
                env.set("MESOS_SANDBOX", dir.to_string_lossy());
                env.set("MESOS_DIRECTORY", dir.to_string_lossy());
                if let Some(a) = &self.cfg.agent_id {
                    env.set("MESOS_SLAVE_ID", a);
                }
                env.set(process::TASK_MARKER_ENV, id);
            }
        }
        if let Some(role) = command::allocation_role(info) {
            env.set("MESOS_ALLOCATION_ROLE", role);
        }
        if let Some(e) = &cmd.environment {
            env.merge(e);
        }
        if !self.cfg.is_drop_in() {
            env.set(process::TASK_MARKER_ENV, id);
        }
        env.into_vec()
    }

    /// Start the processes of the tasks launched by the last input (making a custom-mode task's
    /// directory first), unless they were killed (or the executor began shutting down) in the
    /// meantime.
    fn spawn_pending(&mut self) {
        for id in std::mem::take(&mut self.pending_spawns) {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if t.phase != Phase::Fetching || t.pid.is_some() {
                continue;
            }
            if !self.cfg.is_drop_in() {
                let user = t.command.as_ref().and_then(|c| c.user.clone());
                if let Err(e) = prepare_task_dir(&t.dir, user.as_deref()) {
                    self.finish_task(
                        &id,
                        TaskState::TaskFailed,
                        Some(task_status::Reason::CommandExecutorFailed),
                        e,
                    );
                    continue;
                }
            }
            self.spawn_task(&id);
        }
    }

    fn spawn_task(&mut self, id: &str) {
        let Some(t) = self.tasks.get(id) else { return };
        let Some(cmd) = t.command.clone() else { return };
        let program = match command::program(&cmd) {
            Ok(p) => p,
            Err(m) => {
                return self.finish_task(
                    id,
                    TaskState::TaskFailed,
                    Some(task_status::Reason::TaskInvalid),
                    m,
                )
            }
        };
        let (stdout, stderr, cwd, user) = match &self.cfg.mode {
            Mode::DropIn(f) => (
                Output::Inherit,
                Output::Inherit,
                f.working_directory
                    .clone()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| self.cfg.sandbox.clone()),
                f.user.clone().or(cmd.user.clone()),
            ),
            Mode::Custom => (
                Output::File(t.dir.join("stdout")),
                Output::File(t.dir.join("stderr")),
                t.dir.clone(),
                cmd.user.clone(),
            ),
        };
        let spec = SpawnSpec {
            program,
            env: self.task_env(id, &t.info, &cmd, &t.dir),
            cwd,
            stdout,
            stderr,
            user,
        };
        match process::spawn(&spec) {
            Ok(pid) => {
                tracing::info!("task {id}: started {:?} as pid {pid}", spec.program);
                if let Some(t) = self.tasks.get_mut(id) {
                    t.pid = Some(pid.as_raw());
                    t.phase = Phase::Running;
                }
                self.arm_max_completion(id);
                self.update(id, TaskState::TaskRunning, None, None);
            }
            Err(e) => self.finish_task(
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
        let scope = self.scope_of(id);
        if let Some(scope) = scope {
            let left = process::kill_task(&scope, Signal::SIGKILL);
            if !left.is_empty() {
                tracing::info!(
                    "task {id}: killed {} leftover process(es): {left:?}",
                    left.len()
                );
            }
        }
        self.update(id, state, reason, Some(message));
        if let Some(g) = group {
            if matches!(state, TaskState::TaskFailed | TaskState::TaskKilled)
                && self.shutdown.is_none()
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
                    self.kill(&sid, grace);
                }
            }
        }
        if self.tasks.values().all(|t| t.phase == Phase::Done) && self.idle_since.is_none() {
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

    fn on_kill(&mut self, id: &str, policy: Option<&croupier_proto::v1::KillPolicy>) {
        let Some(t) = self.tasks.get(id) else {
            tracing::warn!("KILL for unknown task {id}; ignored");
            return;
        };
        let grace = grace_of(policy)
            .or_else(|| grace_of(t.info.kill_policy.as_ref()))
            .unwrap_or(DEFAULT_KILL_GRACE);
        tracing::info!("received KILL for task {id} with a grace period of {grace:?}");
        self.kill(id, grace);
    }

    /// Kill a task with `grace` before SIGKILL. Idempotent; a repeat can only shorten the grace.
    fn kill(&mut self, id: &str, grace: Duration) {
        let now = Instant::now();
        let can_killing = self.framework.as_ref().is_some_and(|f| {
            f.capabilities.iter().any(|c| {
                c.r#type == Some(framework_info::capability::Type::TaskKillingState as i32)
            })
        });
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        match t.phase {
            Phase::Done => {}
            Phase::Fetching => {
                t.killed = true;
                self.finish_task(
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
                    self.update(id, TaskState::TaskKilling, None, None);
                }
                if let Some(scope) = self.scope_of(id) {
                    let pids = process::kill_task(&scope, Signal::SIGTERM);
                    tracing::info!("task {id}: sent SIGTERM to {pids:?}; SIGKILL in {grace:?}");
                }
            }
        }
    }

    fn shutdown_budget(&self) -> Duration {
        let g = self.cfg.shutdown_grace;
        if g > SHUTDOWN_MARGIN * 2 {
            g - SHUTDOWN_MARGIN
        } else {
            g / 2
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let now = Instant::now();
        let deadline = now
            + self
                .cfg
                .shutdown_grace
                .saturating_sub(Duration::from_millis(500));
        self.shutdown = Some((now, deadline));
        let budget = self.shutdown_budget();
        tracing::info!("shutting down: killing all tasks within {budget:?}");
        let ids: Vec<String> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.kill(&id, budget);
        }
    }

    // ----- children, timers, exit ----------------------------------------------------------

    fn reap(&mut self) {
        for (pid, exit) in process::reap_all() {
            let owner = self
                .tasks
                .iter()
                .find(|(_, t)| t.pid == Some(pid.as_raw()) && t.phase == Phase::Running)
                .map(|(id, _)| id.clone());
            match owner {
                Some(id) => self.task_exited(&id, exit),
                None => tracing::debug!("reaped process {pid} ({})", exit.describe()),
            }
        }
    }

    fn task_exited(&mut self, id: &str, exit: Exit) {
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
        self.finish_task(id, state, None, format!("Command {}", exit.describe()));
    }

    fn next_deadline(&self) -> Instant {
        let mut d = Instant::now() + Duration::from_secs(1);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                d = d.min(x);
            }
        };
        if let Conn::Waiting(at) = self.conn {
            consider(Some(at));
        }
        for t in self.tasks.values() {
            consider(
                t.killing
                    .as_ref()
                    .filter(|k| !k.escalated)
                    .map(|k| k.escalate_at),
            );
        }
        consider(self.recovery_deadline);
        consider(self.shutdown.map(|s| s.1));
        consider(self.ack_deadline);
        consider(self.next_heartbeat);
        if let (Some(since), Some(idle)) = (self.idle_since, self.cfg.idle_timeout) {
            consider(Some(since + idle));
        }
        d
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        if let Conn::Waiting(at) = self.conn {
            if at <= now && self.abandon.is_none() {
                self.start_subscribe();
            }
        }
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
        if self.recovery_deadline.is_some_and(|d| d <= now) && self.abandon.is_none() {
            tracing::error!(
                "the agent did not come back within {:?}",
                self.cfg.recovery_timeout
            );
            self.recovery_deadline = None;
            self.abandon(1, "recovery timeout expired".into());
        }
        if self.agent_heartbeats
            && self.conn == Conn::Subscribed
            && self.next_heartbeat.is_some_and(|h| h <= now)
        {
            self.next_heartbeat = Some(now + HEARTBEAT_INTERVAL);
            let c = self.base_call(call::Type::Heartbeat);
            self.send_call("HEARTBEAT", c);
        }
    }

    fn all_done(&self) -> bool {
        self.tasks.values().all(|t| t.phase == Phase::Done)
    }

    fn exit_code(&mut self) -> Option<i32> {
        let now = Instant::now();
        if let Some(a) = &self.abandon {
            if self.all_done() {
                tracing::error!("exiting: {}", a.reason);
                return Some(a.code);
            }
            return None;
        }
        if let Some((_, deadline)) = self.shutdown {
            if self.all_done() && self.unacked.pending_updates() == 0 {
                tracing::info!("shutdown complete");
                return Some(0);
            }
            if now >= deadline {
                tracing::warn!(
                    "shutdown grace period over: exiting with {} unacknowledged update(s)",
                    self.unacked.pending_updates()
                );
                return Some(0);
            }
            return None;
        }
        if self.cfg.is_drop_in()
            && self.drop_in_launched
            && self.all_done()
            && !self.tasks.is_empty()
            && self.tasks.values().all(|t| t.terminal_acked)
        {
            tracing::info!("terminal update acknowledged: exiting");
            return Some(0);
        }
        if self.ack_deadline.is_some_and(|d| d <= now)
            && self.all_done()
            && self.wants_exit_after_acks()
        {
            tracing::error!("Did not receive ACK for the terminal status update from the agent");
            return Some(1);
        }
        if let (Some(since), Some(idle)) = (self.idle_since, self.cfg.idle_timeout) {
            if self.all_done() && now >= since + idle && self.unacked.pending_updates() == 0 {
                tracing::info!("no task for {idle:?}: exiting (CROUPIER_EXECUTOR_IDLE_TIMEOUT)");
                return Some(0);
            }
        }
        None
    }

    /// Would the executor exit as soon as its pending updates are acknowledged?
    fn wants_exit_after_acks(&self) -> bool {
        (self.cfg.is_drop_in() && self.drop_in_launched)
            || self
                .idle_since
                .zip(self.cfg.idle_timeout)
                .is_some_and(|(s, i)| Instant::now() >= s + i)
    }

    /// Last sweep before exiting: nothing of ours outlives us.
    fn finish(&mut self) {
        self.conn = Conn::Closed;
        let n = process::kill_all_descendants();
        if n > 0 {
            tracing::info!("killed {n} remaining descendant process(es) before exiting");
        }
        std::thread::sleep(Duration::from_millis(20));
        process::reap_all();
    }
}

fn prepare_task_dir(dir: &std::path::Path, user: Option<&str>) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("Failed to create the task directory {}: {e}", dir.display()))?;
    if let Ok(Some(creds)) = process::credentials_for(user) {
        nix::unistd::chown(dir, Some(creds.uid), Some(creds.gid))
            .map_err(|e| format!("Failed to chown the task directory {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Sends calls in order on the keep-alive connection; calls of an older connection generation
/// are dropped (their updates are re-sent inside the next SUBSCRIBE anyway).
async fn call_loop(
    endpoint: Endpoint,
    mut rx: mpsc::UnboundedReceiver<(u64, &'static str, Call)>,
    tx: mpsc::UnboundedSender<Input>,
    gen: Arc<AtomicU64>,
) {
    let mut caller = Caller::new(endpoint);
    while let Some((g, name, call)) = rx.recv().await {
        if g != gen.load(Ordering::SeqCst) {
            continue;
        }
        if let Err(error) = caller.call(&call, name).await {
            let _ = tx.send(Input::CallFailed {
                gen: g,
                call: name,
                error,
            });
        }
    }
}
