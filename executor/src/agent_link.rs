//! The link to the agent: SUBSCRIBE (and re-SUBSCRIBE carrying what is unacknowledged), UPDATE
//! calls, ACKNOWLEDGED events, HEARTBEATs, and the rules for a link that breaks (retry with
//! backoff, recover within `MESOS_RECOVERY_TIMEOUT`, or give up).
//!
//! The link knows nothing of tasks: it sends the updates it is given, remembers them until the
//! agent acknowledges them, and hands every other event to the event loop ([`Happened`]).
//! Background work (the SUBSCRIBE stream, the call connection) reaches it as [`LinkInput`]s on
//! its own channel, read by the event loop through [`AgentLink::recv`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier_proto::v1::executor::{call, event, Call, Event};
use croupier_proto::v1::{framework_info, ExecutorId, FrameworkId, FrameworkInfo, TaskState};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::{self, AgentError, Caller, Endpoint};
use crate::state::{Settled, Unacked};

/// Interval of HEARTBEAT calls (only to agents that sent HEARTBEAT events).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Before the first SUBSCRIBED, retryable failures are retried for this long.
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(60);

/// What the link's background work reports. Each carries the connection generation it
/// belongs to; inputs of an older generation are dropped.
#[derive(Debug)]
pub enum LinkInput {
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
}

/// What a [`LinkInput`] means for the event loop.
#[derive(Debug)]
pub enum Happened {
    /// Handled inside the link (or stale).
    Nothing,
    /// SUBSCRIBED: the link is up (again).
    Subscribed,
    /// An event for the event loop (LAUNCH, LAUNCH_GROUP, KILL, SHUTDOWN, MESSAGE, ERROR, ...).
    Event(Box<Event>),
    /// The agent acknowledged an update.
    Acked(Settled),
    /// The link broke; the event loop decides with [`AgentLink::lost`].
    Lost(AgentError),
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

/// The connection state, the unacknowledged updates and tasks, and the agent's facts
/// (framework info, heartbeats).
pub struct AgentLink {
    cfg: Arc<Config>,
    endpoint: Endpoint,
    unacked: Unacked,
    conn: Conn,
    gen: Arc<AtomicU64>,
    /// Whether a call failing on a connection makes the link re-SUBSCRIBE (carrying every
    /// unacknowledged update). False once shutting down without checkpointing: the link then
    /// closes instead, so the call loop must go on sending what is queued.
    resubscribes: Arc<AtomicBool>,
    stream_task: Option<JoinHandle<()>>,
    subscribe_snapshot: HashSet<Vec<u8>>,
    tx: mpsc::UnboundedSender<LinkInput>,
    rx: mpsc::UnboundedReceiver<LinkInput>,
    calls: mpsc::UnboundedSender<(u64, &'static str, Call)>,
    framework: Option<FrameworkInfo>,
    agent_heartbeats: bool,
    next_heartbeat: Option<Instant>,
    started: Instant,
    ever_subscribed: bool,
    recovery_deadline: Option<Instant>,
    /// Why the last connection or SUBSCRIBE attempt failed (named when giving up).
    last_error: Option<String>,
    ack_deadline: Option<Instant>,
}

impl AgentLink {
    /// A link with its call connection started; the first SUBSCRIBE is due at once.
    pub fn new(cfg: Arc<Config>, tls: Option<Arc<crate::tls::AgentTls>>) -> AgentLink {
        let (tx, rx) = mpsc::unbounded_channel();
        let (calls, calls_rx) = mpsc::unbounded_channel();
        let endpoint = Endpoint {
            address: cfg.agent_endpoint.clone(),
            token: cfg.token.clone(),
            unix_socket: cfg.domain_socket.clone().map(std::path::PathBuf::from),
            tls,
        };
        let gen = Arc::new(AtomicU64::new(0));
        let resubscribes = Arc::new(AtomicBool::new(true));
        tokio::spawn(call_loop(
            endpoint.clone(),
            calls_rx,
            tx.clone(),
            gen.clone(),
            resubscribes.clone(),
        ));
        let now = Instant::now();
        AgentLink {
            cfg,
            endpoint,
            unacked: Unacked::default(),
            conn: Conn::Waiting(now),
            gen,
            resubscribes,
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
            last_error: None,
            ack_deadline: None,
        }
    }

    /// The next input of the link's background work.
    pub async fn recv(&mut self) -> Option<LinkInput> {
        self.rx.recv().await
    }

    /// Is the framework able to see TASK_KILLING (the TASK_KILLING_STATE capability)?
    pub fn framework_allows_killing(&self) -> bool {
        self.framework.as_ref().is_some_and(|f| {
            f.capabilities.iter().any(|c| {
                c.r#type == Some(framework_info::capability::Type::TaskKillingState as i32)
            })
        })
    }

    /// Remember a task received in LAUNCH / LAUNCH_GROUP until an update of it is acknowledged.
    pub fn add_task(&mut self, task: croupier_proto::v1::TaskInfo) {
        self.unacked.add_task(task);
    }

    /// Send an update (now if subscribed, else inside the next SUBSCRIBE) and remember it until
    /// its ACK.
    pub fn send_update(&mut self, update: call::Update) {
        let terminal = TaskState::try_from(update.status.state)
            .map(croupier_proto::is_terminal)
            .unwrap_or(false);
        self.unacked.add_update(update.clone());
        if self.conn == Conn::Subscribed {
            let mut c = self.base_call(call::Type::Update);
            c.update = Some(update);
            self.send_call("UPDATE", c);
        }
        if terminal {
            self.rearm_ack_deadline();
        }
    }

    /// Number of updates waiting for an ACK.
    pub fn pending_updates(&self) -> usize {
        self.unacked.pending_updates()
    }

    /// Has the ACK fail-safe expired?
    pub fn ack_overdue(&self, now: Instant) -> bool {
        self.ack_deadline.is_some_and(|d| d <= now)
    }

    /// No more SUBSCRIBE attempts; the event stream is dropped.
    pub fn close(&mut self) {
        self.conn = Conn::Closed;
        if let Some(t) = self.stream_task.take() {
            t.abort();
        }
    }

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

    fn send_call(&self, name: &'static str, call: Call) {
        let _ = self.calls.send((self.current_gen(), name, call));
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
                    let _ = tx.send(LinkInput::SubscribeFailed(gen, e));
                }
                Ok(mut stream) => {
                    let _ = tx.send(LinkInput::StreamOpen(gen));
                    loop {
                        match stream.next().await {
                            Ok(ev) => {
                                if tx.send(LinkInput::Event(gen, Box::new(ev))).is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(LinkInput::StreamClosed(gen, e));
                                return;
                            }
                        }
                    }
                }
            }
        }));
    }

    /// The executor is shutting down. Without checkpointing, a lost connection is not
    /// re-subscribed from here on (see `lost`), so the call loop must keep sending the updates
    /// queued behind a failed call rather than hold them for a re-SUBSCRIBE that never comes.
    pub fn shutting_down(&mut self) {
        if !self.cfg.checkpoint {
            self.resubscribes.store(false, Ordering::SeqCst);
        }
    }

    /// The agent went away (or refused us): decide between retrying and giving up. Returns the
    /// reason to give up (the event loop then kills every task and exits 1).
    pub fn lost(&mut self, error: AgentError, shutting_down: bool) -> Option<String> {
        if let Some(t) = self.stream_task.take() {
            t.abort();
        }
        self.gen.fetch_add(1, Ordering::SeqCst);
        if self.conn == Conn::Closed {
            return None;
        }
        let was_subscribed = self.conn == Conn::Subscribed;
        let now = Instant::now();
        if shutting_down && !self.cfg.checkpoint {
            // Shutting down anyway: finish within the grace period without the agent.
            tracing::warn!("disconnected from the agent during shutdown: {error}");
            self.conn = Conn::Closed;
            return None;
        }
        // Once subscribed, a refused handshake is the agent coming back with another
        // certificate (rotated, or not yet the right one): retried until the recovery timeout.
        let retryable = error.is_retryable() || (self.ever_subscribed && error.is_tls_refusal());
        if !retryable {
            tracing::error!("{error}; giving up on the agent");
            return Some(format!("the agent refused us: {error}"));
        }
        if self.ever_subscribed && !self.cfg.checkpoint {
            tracing::error!(
                "{error}; not checkpointing (MESOS_CHECKPOINT != 1): killing all tasks and exiting"
            );
            return Some(format!("lost the agent without checkpointing: {error}"));
        }
        if !self.ever_subscribed
            && now.duration_since(self.started) > REGISTRATION_WINDOW
            && !self.cfg.checkpoint
        {
            return Some(format!(
                "could not subscribe within {REGISTRATION_WINDOW:?}: {error}"
            ));
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
        self.last_error = Some(error.to_string());
        // The ACK fail-safe is suspended while the agent is away.
        self.ack_deadline = None;
        let max = self.cfg.backoff_max.max(Duration::from_millis(10));
        let delay = rand::thread_rng().gen_range(Duration::ZERO..=max);
        self.conn = Conn::Waiting(now + delay);
        None
    }

    /// Digest one input of the background work.
    pub fn handle(&mut self, input: LinkInput) -> Happened {
        let gen = self.current_gen();
        match input {
            LinkInput::StreamOpen(g) if g == gen => {
                tracing::debug!("event stream open");
                Happened::Nothing
            }
            LinkInput::Event(g, ev) if g == gen => self.on_event(ev),
            LinkInput::StreamClosed(g, e) | LinkInput::SubscribeFailed(g, e) if g == gen => {
                Happened::Lost(e)
            }
            LinkInput::CallFailed {
                gen: g,
                call,
                error,
            } if g == gen => {
                if call == "HEARTBEAT" {
                    tracing::debug!("HEARTBEAT call failed (ignored): {error}");
                } else if breaks_link(call, &error)
                    && self.conn == Conn::Subscribed
                    && self.resubscribes.load(Ordering::SeqCst)
                {
                    return Happened::Lost(error);
                } else {
                    // Shutting down without checkpointing nothing re-subscribes: the link stays
                    // up and the updates queued behind the refused one still go out.
                    tracing::error!("{call} call failed: {error}");
                }
                Happened::Nothing
            }
            _ => {
                tracing::debug!("dropping an input of an older connection");
                Happened::Nothing
            }
        }
    }

    fn on_event(&mut self, ev: Box<Event>) -> Happened {
        let ty = ev
            .r#type
            .and_then(|t| event::Type::try_from(t).ok())
            .unwrap_or(event::Type::Unknown);
        match ty {
            event::Type::Subscribed => {
                let Some(s) = ev.subscribed else {
                    tracing::warn!("SUBSCRIBED event without its payload; ignored");
                    return Happened::Nothing;
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
                Happened::Subscribed
            }
            event::Type::Acknowledged => match ev.acknowledged {
                Some(a) => self.on_ack(&a.task_id.value, &a.uuid),
                None => {
                    tracing::warn!("ACKNOWLEDGED event without payload; ignored");
                    Happened::Nothing
                }
            },
            event::Type::Heartbeat => {
                if !self.agent_heartbeats {
                    tracing::info!("agent sends HEARTBEAT events: answering with HEARTBEAT calls");
                    self.agent_heartbeats = true;
                    self.next_heartbeat = Some(Instant::now() + HEARTBEAT_INTERVAL);
                }
                Happened::Nothing
            }
            _ => Happened::Event(ev),
        }
    }

    fn rearm_ack_deadline(&mut self) {
        if self.conn == Conn::Subscribed && self.unacked.pending_updates() > 0 {
            self.ack_deadline = Some(Instant::now() + self.cfg.ack_timeout);
        }
    }

    fn on_ack(&mut self, task_id: &str, uuid: &[u8]) -> Happened {
        match self.unacked.acknowledge(uuid) {
            Some(settled) => {
                tracing::debug!(
                    "agent acknowledged {} for task {}",
                    settled.state.as_str_name(),
                    settled.task_id
                );
                if self.unacked.pending_updates() == 0 {
                    self.ack_deadline = None;
                }
                Happened::Acked(settled)
            }
            None => {
                tracing::warn!("ACKNOWLEDGED for an unknown update of task {task_id}; ignored");
                Happened::Nothing
            }
        }
    }

    /// The earliest instant the link has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let waiting = match self.conn {
            Conn::Waiting(at) => Some(at),
            _ => None,
        };
        [
            waiting,
            self.recovery_deadline,
            self.ack_deadline,
            self.next_heartbeat,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Due timers: a SUBSCRIBE attempt (unless `abandoning`), the recovery deadline, a
    /// HEARTBEAT. Returns the reason to give up when the agent did not come back in time.
    pub fn on_timers(&mut self, now: Instant, abandoning: bool) -> Option<String> {
        if let Conn::Waiting(at) = self.conn {
            if at <= now && !abandoning {
                self.start_subscribe();
            }
        }
        let mut give_up = None;
        if self.recovery_deadline.is_some_and(|d| d <= now) && !abandoning {
            let why = self
                .last_error
                .as_deref()
                .map(|e| format!("; last attempt: {e}"))
                .unwrap_or_default();
            tracing::error!(
                "the agent at {} did not come back within {:?} (MESOS_RECOVERY_TIMEOUT){why}",
                self.cfg.agent_endpoint,
                self.cfg.recovery_timeout
            );
            self.recovery_deadline = None;
            give_up = Some(format!(
                "recovery timeout expired waiting for the agent at {}{why}",
                self.cfg.agent_endpoint
            ));
        }
        if self.agent_heartbeats
            && self.conn == Conn::Subscribed
            && self.next_heartbeat.is_some_and(|h| h <= now)
        {
            self.next_heartbeat = Some(now + HEARTBEAT_INTERVAL);
            let c = self.base_call(call::Type::Heartbeat);
            self.send_call("HEARTBEAT", c);
        }
        give_up
    }
}

/// Does this failed call break the link (the event loop then re-subscribes, carrying every
/// unacknowledged update)? A HEARTBEAT never does; a retryable failure (5xx, 404, a dropped
/// connection) or a refused TLS handshake does.
fn breaks_link(call: &str, error: &AgentError) -> bool {
    call != "HEARTBEAT" && (error.is_retryable() || error.is_tls_refusal())
}

/// Sends calls in order on the keep-alive connection; calls of an older connection generation
/// are dropped (their updates are re-sent inside the next SUBSCRIBE anyway).
///
/// Once a call of a generation fails in a way that breaks the link, the later calls of that
/// generation are dropped too, not sent: an UPDATE refused with a 500 goes out again only in
/// the re-SUBSCRIBE, and the updates queued behind it must not reach the agent before it (the
/// agent would see TASK_RUNNING before TASK_STARTING). The re-SUBSCRIBE carries them all, in
/// the order they were made. Shutting down without checkpointing, nothing re-subscribes, so
/// nothing is held back then: every queued call is still tried.
async fn call_loop(
    endpoint: Endpoint,
    mut rx: mpsc::UnboundedReceiver<(u64, &'static str, Call)>,
    tx: mpsc::UnboundedSender<LinkInput>,
    gen: Arc<AtomicU64>,
    resubscribes: Arc<AtomicBool>,
) {
    let mut caller = Caller::new(endpoint);
    let mut broken: Option<u64> = None;
    while let Some((g, name, call)) = rx.recv().await {
        if g != gen.load(Ordering::SeqCst) {
            continue;
        }
        if broken == Some(g) {
            tracing::debug!(
                "{name} held for the re-SUBSCRIBE: an earlier call of this connection failed"
            );
            continue;
        }
        if let Err(error) = caller.call(&call, name).await {
            if breaks_link(name, &error) && resubscribes.load(Ordering::SeqCst) {
                broken = Some(g);
            }
            let _ = tx.send(LinkInput::CallFailed {
                gen: g,
                call: name,
                error,
            });
        }
    }
}
