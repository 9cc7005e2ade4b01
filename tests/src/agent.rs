//! A Mesos agent stand-in speaking the v1 executor HTTP API (spec `mesos-executor-api.md` §1–5).
//!
//! [`Agent::start`] binds an HTTP/1.1 server on `127.0.0.1:0` serving `POST /api/v1/executor`
//! (and `/slave(1)/api/v1/executor`), makes a fresh sandbox and, with
//! [`Agent::spawn_executor`], launches an executor binary with the agent's environment contract
//! (`MESOS_FRAMEWORK_ID`, `MESOS_EXECUTOR_ID`, `MESOS_AGENT_ENDPOINT`, `MESOS_SANDBOX`, ...),
//! in its own session, with stdout/stderr going to `stdout`/`stderr` in the sandbox.
//!
//! It behaves like a real agent where an executor can tell the difference:
//! - SUBSCRIBE gets `200` and a never-ending chunked RecordIO stream that starts with
//!   SUBSCRIBED (executor, framework and agent info, container id). The stream is JSON when
//!   `Accept` admits JSON (also when it is missing or `*/*`), protobuf otherwise.
//! - UPDATE gets `202`, then ACKNOWLEDGED on the stream (unless acks are withheld, see
//!   [`Agent::set_withhold_acks`]); MESSAGE gets `202`; HEARTBEAT gets `202` (or `400` when
//!   configured as a pre-1.8 agent).
//! - Calls are validated in the agent's order with its status codes and message texts
//!   (401, 415, 400 `Failed to parse body into Call protobuf`, 400 `Failed to validate
//!   Executor::Call: ...`, 403 `Executor is not subscribed`, 503 while recovering, ...).
//! - [`Agent::restart`] simulates an agent restart: every connection is closed, requests get
//!   `503 Agent has not finished recovery` for a while, then a re-SUBSCRIBE is accepted and the
//!   updates it carries are replayed (acknowledged again, de-duplicated by uuid).
//!
//! Everything is recorded ([`Agent::requests`], [`Agent::updates`], [`Agent::subscriptions`],
//! [`Agent::messages`]) and [`Agent::wait_update`] / [`Agent::wait_until`] wait for a condition
//! with a timeout. Events are sent with [`Agent::launch`], [`Agent::launch_group`],
//! [`Agent::kill`], [`Agent::shutdown`], [`Agent::message`], [`Agent::heartbeat`],
//! [`Agent::send_event`] or, for framing tests, [`Agent::send_raw`].

mod server;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use croupier_proto::v1::executor::{call, event, Event};
use croupier_proto::v1::{
    self, AgentId, AgentInfo, CommandInfo, ContainerId, DurationInfo, ExecutorId, ExecutorInfo,
    FrameworkId, FrameworkInfo, KillPolicy, TaskGroupInfo, TaskId, TaskInfo, TaskState, TaskStatus,
};
use tokio::sync::{mpsc, watch};

/// What the stand-in gives as `MESOS_NATIVE_{JAVA_,}LIBRARY` (a real agent names its own
/// libmesos, e.g. `/opt/mesos-1.11/lib/libmesos-1.11.0.so`; nothing here loads it).
pub const STAND_IN_LIBMESOS: &str = "/usr/lib/libmesos.so";

/// A failure of the stand-in or of a wait. Timeouts are retryable (try again with a longer
/// wait); the others are not.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A condition did not become true in time. `details` shows what was recorded.
    #[error("timed out after {waited:?} waiting for {what}; recorded so far: {details}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// A summary of the recorded updates and requests.
        details: String,
    },
    /// An event was to be sent but no executor is subscribed (no open stream).
    #[error("no executor subscribed to the agent stand-in at {addr}: cannot send {what}")]
    NotSubscribed {
        /// The agent's address.
        addr: SocketAddr,
        /// The event that could not be sent.
        what: String,
    },
    /// Binding the listener, creating the sandbox, ...
    #[error("agent stand-in: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The executor binary could not be started.
    #[error("agent stand-in: cannot start executor {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// [`Agent::wait_executor_exit`] without a spawned executor.
    #[error("agent stand-in: no executor process was spawned")]
    NoExecutor,
}

impl AgentError {
    /// Whether trying again (e.g. waiting longer) may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AgentError::Timeout { .. })
    }
}

/// How the stand-in is set up. [`AgentConfig::new`] gives the defaults of a real agent
/// (grace period 5 s, backoff max 2 s, recovery timeout 15 min) with checkpointing on.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The executor binary (or interpreter, see `executor_args`).
    pub executor: PathBuf,
    /// Arguments for the executor (e.g. `--launcher_dir=...` for drop-in mode, or a script).
    pub executor_args: Vec<String>,
    /// `FrameworkID` (MESOS_FRAMEWORK_ID).
    pub framework_id: String,
    /// `ExecutorID` (MESOS_EXECUTOR_ID).
    pub executor_id: String,
    /// `AgentID` (MESOS_SLAVE_ID).
    pub agent_id: String,
    /// MESOS_CHECKPOINT = "1" / "0"; also `FrameworkInfo.checkpoint`. The recovery variables
    /// are only set when checkpointing, as a real agent does.
    pub checkpoint: bool,
    /// MESOS_RECOVERY_TIMEOUT.
    pub recovery_timeout: Duration,
    /// MESOS_SUBSCRIPTION_BACKOFF_MAX.
    pub subscription_backoff_max: Duration,
    /// MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD (and `ExecutorInfo.shutdown_grace_period`).
    pub shutdown_grace_period: Duration,
    /// If set: passed as MESOS_EXECUTOR_AUTHENTICATION_TOKEN and required as
    /// `Authorization: Bearer <token>` on every request (401 otherwise).
    pub auth_token: Option<String>,
    /// `false` = behave like an agent older than 1.8: a HEARTBEAT call is an unknown type
    /// (400 `Expecting 'type' to be present`).
    pub supports_heartbeat_calls: bool,
    /// If set, HEARTBEAT events are sent on the stream at this interval.
    pub heartbeat_interval: Option<Duration>,
    /// Framework capabilities announced in SUBSCRIBED (e.g. TASK_KILLING_STATE).
    pub framework_capabilities: Vec<v1::framework_info::capability::Type>,
    /// Replaces the generated `ExecutorInfo` in SUBSCRIBED.
    pub executor_info: Option<ExecutorInfo>,
    /// Extra environment variables for the executor (added after the agent's, e.g. RUST_LOG).
    pub extra_env: Vec<(String, String)>,
    /// Use this directory as the sandbox instead of a fresh temporary one (kept afterwards).
    pub sandbox_dir: Option<PathBuf>,
    /// Largest request body accepted (bigger gets 413).
    pub max_request_body: usize,
    /// Serve the executor API on a unix socket in the sandbox (`MESOS_DOMAIN_SOCKET`, as the
    /// agent's `--http_executor_domain_sockets`) instead of TCP; `MESOS_AGENT_ENDPOINT` then
    /// names a TCP port nobody listens on, so only the socket works.
    pub domain_socket: bool,
    /// Serve https with this configuration (an agent with `LIBPROCESS_SSL_ENABLED`); the
    /// executor's `LIBPROCESS_SSL_*` variables go in `extra_env`. Every handshake is recorded
    /// in [`Recorded::tls_handshakes`].
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl AgentConfig {
    /// Defaults for running `executor`.
    pub fn new(executor: impl Into<PathBuf>) -> Self {
        AgentConfig {
            executor: executor.into(),
            executor_args: Vec::new(),
            framework_id: "croupier-test-framework-0000".into(),
            executor_id: "croupier-test-executor".into(),
            agent_id: "croupier-test-agent-S0".into(),
            checkpoint: true,
            recovery_timeout: Duration::from_secs(15 * 60),
            subscription_backoff_max: Duration::from_secs(2),
            shutdown_grace_period: Duration::from_secs(5),
            auth_token: None,
            supports_heartbeat_calls: true,
            heartbeat_interval: None,
            framework_capabilities: Vec::new(),
            executor_info: None,
            extra_env: Vec::new(),
            sandbox_dir: None,
            max_request_body: 16 << 20,
            domain_socket: false,
            tls: None,
        }
    }
}

/// One HTTP request received on `/api/v1/executor`, with the stand-in's answer.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// When it arrived.
    pub at: Instant,
    /// `Content-Type` as sent.
    pub content_type: Option<String>,
    /// `Accept` as sent.
    pub accept: Option<String>,
    /// `Authorization` as sent.
    pub authorization: Option<String>,
    /// The decoded call, if the body decoded.
    pub call: Option<croupier_proto::v1::executor::Call>,
    /// The status code answered.
    pub status: u16,
    /// The error text answered (empty for 200/202).
    pub error: String,
}

impl RecordedRequest {
    /// The call's type, if the body decoded and had one.
    pub fn call_type(&self) -> Option<call::Type> {
        self.call
            .as_ref()
            .and_then(|c| c.r#type)
            .and_then(|t| call::Type::try_from(t).ok())
    }
}

/// Where an update came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOrigin {
    /// An UPDATE call.
    Call,
    /// Replayed from `Subscribe.unacknowledged_updates` on a re-SUBSCRIBE.
    Resubscribe,
}

/// One status update accepted by the stand-in (validated; duplicates included).
#[derive(Debug, Clone)]
pub struct RecordedUpdate {
    /// When it arrived.
    pub at: Instant,
    /// The status as sent.
    pub status: TaskStatus,
    /// How it arrived.
    pub origin: UpdateOrigin,
    /// Whether an update with the same uuid had been received before.
    pub duplicate: bool,
}

/// Everything the stand-in has recorded; what [`Agent::wait_until`] predicates look at.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// Every request, in arrival order.
    pub requests: Vec<RecordedRequest>,
    /// Every accepted status update, in arrival order.
    pub updates: Vec<RecordedUpdate>,
    /// The `Subscribe` message of every accepted SUBSCRIBE, in order.
    pub subscriptions: Vec<call::Subscribe>,
    /// Data of every MESSAGE call.
    pub messages: Vec<Vec<u8>>,
    /// Every event put on a stream (raw frames are not included).
    pub events: Vec<Event>,
    /// Uuids acknowledged so far.
    pub acked: HashSet<Vec<u8>>,
    /// Whether an executor is subscribed right now (stream open).
    pub subscribed: bool,
    /// With [`AgentConfig::tls`]: every TLS handshake, in order.
    pub tls_handshakes: Vec<TlsHandshake>,
}

/// One TLS handshake of the stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsHandshake {
    /// Completed; `client_certs` = length of the certificate chain the client presented.
    Done { client_certs: usize },
    /// Failed, with rustls's reason.
    Failed(String),
}

impl Recorded {
    /// The first update (by arrival) for `task_id` in `state`.
    pub fn update(&self, task_id: &str, state: TaskState) -> Option<&TaskStatus> {
        self.updates
            .iter()
            .map(|u| &u.status)
            .find(|s| s.task_id.value == task_id && s.state == state as i32)
    }

    /// The distinct states reported for `task_id`, in order of first arrival (duplicates by
    /// uuid skipped).
    pub fn states(&self, task_id: &str) -> Vec<TaskState> {
        self.updates
            .iter()
            .filter(|u| !u.duplicate && u.status.task_id.value == task_id)
            .filter_map(|u| TaskState::try_from(u.status.state).ok())
            .collect()
    }

    /// Non-duplicate terminal updates for `task_id`.
    pub fn terminal_updates(&self, task_id: &str) -> Vec<&TaskStatus> {
        self.updates
            .iter()
            .filter(|u| !u.duplicate && u.status.task_id.value == task_id)
            .map(|u| &u.status)
            .filter(|s| {
                TaskState::try_from(s.state)
                    .map(croupier_proto::is_terminal)
                    .unwrap_or(false)
            })
            .collect()
    }

    fn summary(&self) -> String {
        let updates: Vec<String> = self
            .updates
            .iter()
            .map(|u| {
                let state = TaskState::try_from(u.status.state)
                    .map(|s| s.as_str_name().to_string())
                    .unwrap_or_else(|_| u.status.state.to_string());
                format!(
                    "{}:{}{}",
                    u.status.task_id.value,
                    state,
                    if u.duplicate { "(dup)" } else { "" }
                )
            })
            .collect();
        let requests: Vec<String> = self
            .requests
            .iter()
            .map(|r| {
                let t = r
                    .call_type()
                    .map(|t| t.as_str_name().to_string())
                    .unwrap_or_else(|| "?".into());
                if r.error.is_empty() {
                    format!("{t}->{}", r.status)
                } else {
                    format!("{t}->{} {:?}", r.status, r.error)
                }
            })
            .collect();
        format!(
            "updates [{}]; requests [{}]; subscribed={}",
            updates.join(", "),
            requests.join(", "),
            self.subscribed
        )
    }
}

/// The open event stream to the subscribed executor.
pub(crate) struct Stream {
    pub(crate) tx: mpsc::UnboundedSender<Bytes>,
    pub(crate) json: bool,
}

pub(crate) struct State {
    pub(crate) rec: Recorded,
    pub(crate) stream: Option<Stream>,
    pub(crate) recovering: bool,
    /// The TLS configuration served from now on instead of [`AgentConfig::tls`]
    /// (see [`Agent::set_tls`]).
    pub(crate) tls_now: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    pub(crate) withhold_acks: bool,
    pub(crate) withheld: Vec<(TaskId, Vec<u8>)>,
    /// Tasks with a terminal update already (further updates are acked and dropped).
    pub(crate) terminal: HashSet<String>,
    /// Faults for the next UPDATE calls, in order (see [`Agent::fail_next_updates`]).
    pub(crate) update_faults: VecDeque<UpdateFault>,
    /// The uuid of every update recorded so far (to mark duplicates).
    pub(crate) seen_uuids: HashSet<Vec<u8>>,
}

/// A fault the stand-in injects into one UPDATE call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateFault {
    /// Answer with this status (e.g. 500) without taking the update.
    Status(u16),
    /// Take the update (record it, acknowledge it on the stream as the agent's status update
    /// manager would), then close the connection before answering `202`.
    DropBeforeAccepted,
}

pub(crate) struct Shared {
    pub(crate) cfg: AgentConfig,
    pub(crate) addr: SocketAddr,
    pub(crate) container_id: String,
    pub(crate) sandbox: PathBuf,
    pub(crate) state: Mutex<State>,
    /// Bumped after every change of `state`, for waiters.
    pub(crate) changed: watch::Sender<u64>,
    /// Bumped to drop every open connection (agent restart).
    pub(crate) drop_connections: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock only happens in a failing test; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The restarted agent has recovered: it accepts a re-SUBSCRIBE again.
    pub(crate) fn end_recovery(&self) {
        self.lock().recovering = false;
        self.bump();
    }

    pub(crate) fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Encode `event` for the current stream and queue it.
    pub(crate) fn send_event_locked(&self, st: &mut State, event: Event) -> bool {
        let Some(stream) = st.stream.as_ref() else {
            return false;
        };
        let record = if stream.json {
            serde_json::to_vec(&croupier_proto::json::event_to_json(&event)).unwrap_or_default()
        } else {
            prost::Message::encode_to_vec(&event)
        };
        let mut frame = bytes::BytesMut::new();
        croupier_proto::recordio::encode(&record, &mut frame);
        let ok = stream.tx.send(frame.freeze()).is_ok();
        if ok {
            st.rec.events.push(event);
        }
        ok
    }

    pub(crate) fn executor_info(&self) -> ExecutorInfo {
        if let Some(info) = &self.cfg.executor_info {
            return info.clone();
        }
        ExecutorInfo {
            r#type: Some(v1::executor_info::Type::Custom as i32),
            executor_id: ExecutorId {
                value: self.cfg.executor_id.clone(),
            },
            framework_id: Some(FrameworkId {
                value: self.cfg.framework_id.clone(),
            }),
            command: Some(CommandInfo {
                value: Some(self.cfg.executor.display().to_string()),
                shell: Some(false),
                arguments: std::iter::once(self.cfg.executor.display().to_string())
                    .chain(self.cfg.executor_args.iter().cloned())
                    .collect(),
                ..Default::default()
            }),
            name: Some("croupier agent stand-in executor".into()),
            shutdown_grace_period: Some(duration_info(self.cfg.shutdown_grace_period)),
            ..Default::default()
        }
    }

    pub(crate) fn subscribed_event(&self) -> Event {
        let framework_info = FrameworkInfo {
            user: "root".into(),
            name: "croupier-agent-stand-in".into(),
            id: Some(FrameworkId {
                value: self.cfg.framework_id.clone(),
            }),
            checkpoint: Some(self.cfg.checkpoint),
            capabilities: self
                .cfg
                .framework_capabilities
                .iter()
                .map(|t| v1::framework_info::Capability {
                    r#type: Some(*t as i32),
                })
                .collect(),
            ..Default::default()
        };
        let agent_info = AgentInfo {
            hostname: "localhost".into(),
            port: Some(i32::from(self.addr.port())),
            id: Some(AgentId {
                value: self.cfg.agent_id.clone(),
            }),
            ..Default::default()
        };
        Event {
            r#type: Some(event::Type::Subscribed as i32),
            subscribed: Some(event::Subscribed {
                executor_info: self.executor_info(),
                framework_info,
                agent_info,
                container_id: Some(ContainerId {
                    value: self.container_id.clone(),
                    parent: None,
                }),
            }),
            ..Default::default()
        }
    }
}

/// A `DurationInfo` for `d`.
pub fn duration_info(d: Duration) -> DurationInfo {
    DurationInfo {
        nanoseconds: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
    }
}

/// The running stand-in. Dropping it stops the server and SIGKILLs the executor's session.
pub struct Agent {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    heartbeats: Option<tokio::task::JoinHandle<()>>,
    _sandbox_tmp: Option<tempfile::TempDir>,
    child: Option<tokio::process::Child>,
    child_pid: Option<u32>,
}

impl Agent {
    /// Bind `127.0.0.1:0`, create the sandbox and start serving. The executor is not started.
    pub async fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| AgentError::Io {
                context: "binding 127.0.0.1:0".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| AgentError::Io {
            context: "reading the listener's address".into(),
            source,
        })?;
        let (sandbox, tmp) = match &cfg.sandbox_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| AgentError::Io {
                    context: format!("creating sandbox {}", dir.display()),
                    source,
                })?;
                (dir.clone(), None)
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("croupier-sandbox-")
                    .tempdir()
                    .map_err(|source| AgentError::Io {
                        context: "creating a temporary sandbox".into(),
                        source,
                    })?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let heartbeat_interval = cfg.heartbeat_interval;
        let shared = Arc::new(Shared {
            cfg,
            addr,
            container_id: uuid::Uuid::new_v4().to_string(),
            sandbox,
            state: Mutex::new(State {
                rec: Recorded::default(),
                stream: None,
                recovering: false,
                tls_now: None,
                withhold_acks: false,
                withheld: Vec::new(),
                terminal: HashSet::new(),
                update_faults: VecDeque::new(),
                seen_uuids: HashSet::new(),
            }),
            changed: watch::channel(0).0,
            drop_connections: watch::channel(0).0,
        });
        let server = if shared.cfg.domain_socket {
            drop(listener);
            let path = shared.sandbox.join("agent.sock");
            let unix = tokio::net::UnixListener::bind(&path).map_err(|source| AgentError::Io {
                context: format!("binding the unix socket {}", path.display()),
                source,
            })?;
            tokio::spawn(server::serve_unix(unix, shared.clone()))
        } else if let Some(tls) = shared.cfg.tls.clone() {
            tokio::spawn(server::serve_tls(
                listener,
                tokio_rustls::TlsAcceptor::from(tls),
                shared.clone(),
            ))
        } else {
            tokio::spawn(server::serve(listener, shared.clone()))
        };
        let heartbeats = heartbeat_interval.map(|every| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let mut st = shared.lock();
                    let ev = Event {
                        r#type: Some(event::Type::Heartbeat as i32),
                        ..Default::default()
                    };
                    shared.send_event_locked(&mut st, ev);
                    drop(st);
                    shared.bump();
                }
            })
        });
        Ok(Agent {
            shared,
            server,
            heartbeats,
            _sandbox_tmp: tmp,
            child: None,
            child_pid: None,
        })
    }

    /// [`Agent::start`] then [`Agent::spawn_executor`].
    pub async fn start_with_executor(cfg: AgentConfig) -> Result<Agent, AgentError> {
        let mut agent = Agent::start(cfg).await?;
        agent.spawn_executor()?;
        Ok(agent)
    }

    /// The environment a real agent gives the executor (see spec §1.8).
    pub fn executor_env(&self) -> Vec<(String, String)> {
        let cfg = &self.shared.cfg;
        let sandbox = self.shared.sandbox.display().to_string();
        let mut env = vec![
            (
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("MESOS_FRAMEWORK_ID".into(), cfg.framework_id.clone()),
            ("MESOS_EXECUTOR_ID".into(), cfg.executor_id.clone()),
            ("MESOS_DIRECTORY".into(), sandbox.clone()),
            ("MESOS_SANDBOX".into(), sandbox),
            ("MESOS_AGENT_ENDPOINT".into(), self.shared.addr.to_string()),
            ("MESOS_SLAVE_ID".into(), cfg.agent_id.clone()),
            (
                "MESOS_SLAVE_PID".into(),
                format!("slave(1)@{}", self.shared.addr),
            ),
            (
                "MESOS_CHECKPOINT".into(),
                if cfg.checkpoint { "1" } else { "0" }.into(),
            ),
            ("MESOS_HTTP_COMMAND_EXECUTOR".into(), "1".into()),
            (
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(),
                croupier_proto::duration::format(cfg.shutdown_grace_period),
            ),
            ("LIBPROCESS_PORT".into(), "0".into()),
            // A real agent also hands every executor these (seen under Mesos 1.11: the
            // libprocess IP it binds and its own libmesos, for executors built on libmesos).
            ("LIBPROCESS_IP".into(), self.shared.addr.ip().to_string()),
            ("MESOS_NATIVE_JAVA_LIBRARY".into(), STAND_IN_LIBMESOS.into()),
            ("MESOS_NATIVE_LIBRARY".into(), STAND_IN_LIBMESOS.into()),
        ];
        // Only an agent with --http_executor_domain_sockets sets it (a real agent without one
        // leaves it out, as mesos_dropin's environment test checks).
        if cfg.domain_socket {
            env.push((
                "MESOS_DOMAIN_SOCKET".into(),
                self.shared.sandbox.join("agent.sock").display().to_string(),
            ));
        }
        if cfg.checkpoint {
            env.push((
                "MESOS_RECOVERY_TIMEOUT".into(),
                croupier_proto::duration::format(cfg.recovery_timeout),
            ));
            env.push((
                "MESOS_SUBSCRIPTION_BACKOFF_MAX".into(),
                croupier_proto::duration::format(cfg.subscription_backoff_max),
            ));
        }
        if let Some(token) = &cfg.auth_token {
            env.push(("MESOS_EXECUTOR_AUTHENTICATION_TOKEN".into(), token.clone()));
        }
        env.extend(cfg.extra_env.iter().cloned());
        env
    }

    /// Launch the executor: a clean environment ([`Agent::executor_env`]), working directory
    /// and stdout/stderr files in the sandbox, a new session (as the Mesos containerizer does).
    pub fn spawn_executor(&mut self) -> Result<u32, AgentError> {
        let cfg = &self.shared.cfg;
        let sandbox = &self.shared.sandbox;
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(sandbox.join(name))
                .map_err(|source| AgentError::Io {
                    context: format!("opening {}", sandbox.join(name).display()),
                    source,
                })
        };
        let (stdout, stderr) = (open("stdout")?, open("stderr")?);
        let mut cmd = tokio::process::Command::new(&cfg.executor);
        cmd.args(&cfg.executor_args)
            .env_clear()
            .envs(self.executor_env())
            .current_dir(sandbox)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| AgentError::Spawn {
            path: cfg.executor.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        self.child = Some(child);
        self.child_pid = Some(pid);
        Ok(pid)
    }

    /// `IP:PORT` of the stand-in (MESOS_AGENT_ENDPOINT).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://IP:PORT/api/v1/executor`.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/executor", self.shared.addr)
    }

    /// The executor's sandbox (MESOS_SANDBOX).
    pub fn sandbox(&self) -> &Path {
        &self.shared.sandbox
    }

    /// The container id announced in SUBSCRIBED.
    pub fn container_id(&self) -> &str {
        &self.shared.container_id
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.shared.cfg
    }

    /// The executor's pid (also its session and process group id).
    pub fn executor_pid(&self) -> Option<u32> {
        self.child_pid
    }

    /// The executor's stderr so far (its log), lossily decoded.
    pub fn executor_stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.sandbox().join("stderr")).unwrap_or_default())
            .into_owned()
    }

    /// A copy of everything recorded so far.
    pub fn recorded(&self) -> Recorded {
        self.shared.lock().rec.clone()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().rec.requests.clone()
    }

    /// Every accepted status update so far.
    pub fn updates(&self) -> Vec<RecordedUpdate> {
        self.shared.lock().rec.updates.clone()
    }

    /// Every accepted SUBSCRIBE's payload so far.
    pub fn subscriptions(&self) -> Vec<call::Subscribe> {
        self.shared.lock().rec.subscriptions.clone()
    }

    /// How many updates were recorded so far (without copying them).
    pub fn update_count(&self) -> usize {
        self.shared.lock().rec.updates.len()
    }

    /// Data of the MESSAGE calls so far.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.shared.lock().rec.messages.clone()
    }

    /// Wait until `f` returns `Some` (checked now and after every recorded change).
    pub async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Recorded) -> Option<T>,
    ) -> Result<T, AgentError> {
        let mut rx = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(v) = f(&self.shared.lock().rec) {
                return Ok(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let rec = self.shared.lock().rec.clone();
                    if let Some(v) = f(&rec) {
                        return Ok(v);
                    }
                    return Err(AgentError::Timeout {
                        what: what.to_string(),
                        waited: timeout,
                        details: rec.summary(),
                    });
                }
            }
        }
    }

    /// Wait for the (first) update of `task_id` with `state`.
    pub async fn wait_update(
        &self,
        task_id: &str,
        state: TaskState,
        timeout: Duration,
    ) -> Result<TaskStatus, AgentError> {
        self.wait_until(
            &format!("{} of task {task_id}", state.as_str_name()),
            timeout,
            |r| r.update(task_id, state).cloned(),
        )
        .await
    }

    /// Wait for the first terminal update of `task_id`.
    pub async fn wait_terminal(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<TaskStatus, AgentError> {
        self.wait_until(
            &format!("a terminal update of task {task_id}"),
            timeout,
            |r| r.terminal_updates(task_id).first().map(|s| (*s).clone()),
        )
        .await
    }

    /// Wait until an executor is subscribed; returns how many SUBSCRIBEs were accepted so far.
    pub async fn wait_subscribed(&self, timeout: Duration) -> Result<usize, AgentError> {
        self.wait_until("the executor to subscribe", timeout, |r| {
            r.subscribed.then_some(r.subscriptions.len())
        })
        .await
    }

    /// Wait until `n` SUBSCRIBEs have been accepted in total and one is open.
    pub async fn wait_subscriptions(&self, n: usize, timeout: Duration) -> Result<(), AgentError> {
        self.wait_until(&format!("SUBSCRIBE number {n}"), timeout, |r| {
            (r.subscribed && r.subscriptions.len() >= n).then_some(())
        })
        .await
    }

    /// Send any event on the open stream.
    pub fn send_event(&self, event: Event) -> Result<(), AgentError> {
        let what = event
            .r#type
            .and_then(|t| event::Type::try_from(t).ok())
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|| "event".into());
        let mut st = self.shared.lock();
        let ok = self.shared.send_event_locked(&mut st, event);
        drop(st);
        self.shared.bump();
        if ok {
            Ok(())
        } else {
            Err(AgentError::NotSubscribed {
                addr: self.shared.addr,
                what,
            })
        }
    }

    /// Put raw bytes on the open stream (no framing added), for garbage-frame tests.
    pub fn send_raw(&self, bytes: impl Into<Bytes>) -> Result<(), AgentError> {
        let st = self.shared.lock();
        let ok = st
            .stream
            .as_ref()
            .map(|s| s.tx.send(bytes.into()).is_ok())
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(AgentError::NotSubscribed {
                addr: self.shared.addr,
                what: "raw bytes".into(),
            })
        }
    }

    /// Whether the open stream is JSON (`None` when not subscribed).
    pub fn stream_is_json(&self) -> Option<bool> {
        self.shared.lock().stream.as_ref().map(|s| s.json)
    }

    /// LAUNCH `task`.
    pub fn launch(&self, task: TaskInfo) -> Result<(), AgentError> {
        self.send_event(Event {
            r#type: Some(event::Type::Launch as i32),
            launch: Some(event::Launch { task }),
            ..Default::default()
        })
    }

    /// LAUNCH_GROUP `tasks`.
    pub fn launch_group(&self, tasks: Vec<TaskInfo>) -> Result<(), AgentError> {
        self.send_event(Event {
            r#type: Some(event::Type::LaunchGroup as i32),
            launch_group: Some(event::LaunchGroup {
                task_group: TaskGroupInfo { tasks },
            }),
            ..Default::default()
        })
    }

    /// KILL `task_id`, optionally with a kill policy grace period.
    pub fn kill(&self, task_id: &str, grace: Option<Duration>) -> Result<(), AgentError> {
        self.send_event(Event {
            r#type: Some(event::Type::Kill as i32),
            kill: Some(event::Kill {
                task_id: TaskId {
                    value: task_id.into(),
                },
                kill_policy: grace.map(|g| KillPolicy {
                    grace_period: Some(duration_info(g)),
                }),
            }),
            ..Default::default()
        })
    }

    /// SHUTDOWN.
    pub fn shutdown(&self) -> Result<(), AgentError> {
        self.send_event(Event {
            r#type: Some(event::Type::Shutdown as i32),
            ..Default::default()
        })
    }

    /// MESSAGE with `data`.
    pub fn message(&self, data: &[u8]) -> Result<(), AgentError> {
        self.send_event(Event {
            r#type: Some(event::Type::Message as i32),
            message: Some(event::Message {
                data: data.to_vec(),
            }),
            ..Default::default()
        })
    }

    /// HEARTBEAT.
    pub fn heartbeat(&self) -> Result<(), AgentError> {
        self.send_event(Event {
            r#type: Some(event::Type::Heartbeat as i32),
            ..Default::default()
        })
    }

    /// ERROR with `message`.
    pub fn error(&self, message: &str) -> Result<(), AgentError> {
        self.send_event(Event {
            r#type: Some(event::Type::Error as i32),
            error: Some(event::Error {
                message: message.into(),
            }),
            ..Default::default()
        })
    }

    /// Withhold ACKNOWLEDGED events (`true`) or resume them (`false`: the withheld acks are
    /// sent now, if a stream is open).
    pub fn set_withhold_acks(&self, withhold: bool) {
        let mut st = self.shared.lock();
        st.withhold_acks = withhold;
        if !withhold {
            let pending = std::mem::take(&mut st.withheld);
            for (task_id, uuid) in pending {
                server::ack_locked(&self.shared, &mut st, task_id, uuid);
            }
        }
        drop(st);
        self.shared.bump();
    }

    /// Inject `faults` into the next UPDATE calls, one each, in order; later calls are
    /// answered normally.
    pub fn fail_next_updates(&self, faults: &[UpdateFault]) {
        self.shared
            .lock()
            .update_faults
            .extend(faults.iter().copied());
    }

    /// Simulate an agent restart: close the stream and every connection, answer every request
    /// with `503 Agent has not finished recovery` for `down`, then accept a re-SUBSCRIBE.
    /// Acks withheld so far are forgotten (the executor must re-send those updates).
    pub fn restart(&self, down: Duration) {
        self.restart_held();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(down).await;
            shared.end_recovery();
        });
    }

    /// [`Agent::restart`] whose recovery lasts until [`Agent::finish_recovery`]: for a test that
    /// must see the recovering agent refuse requests (a fixed `down` could end before they
    /// arrive on a loaded machine).
    pub fn restart_held(&self) {
        {
            let mut st = self.shared.lock();
            st.recovering = true;
            st.stream = None;
            st.rec.subscribed = false;
            st.withheld.clear();
        }
        self.shared.drop_connections.send_modify(|v| *v += 1);
        self.shared.bump();
    }

    /// Ends the recovery phase of a restart now.
    pub fn finish_recovery(&self) {
        self.shared.end_recovery();
    }

    /// Serve this TLS configuration (another certificate, another CA) to every connection
    /// accepted from now on; with [`Agent::restart`], an agent restarted with a rotated
    /// certificate. Only for a stand-in started with [`AgentConfig::tls`].
    pub fn set_tls(&self, tls: Arc<tokio_rustls::rustls::ServerConfig>) {
        self.shared.lock().tls_now = Some(tls);
    }

    /// Close the stream and every connection, without a recovery phase (the agent "went away"
    /// and is immediately reachable again; for non-checkpointing executors, which must not
    /// come back).
    pub fn disconnect(&self) {
        {
            let mut st = self.shared.lock();
            st.stream = None;
            st.rec.subscribed = false;
        }
        self.shared.drop_connections.send_modify(|v| *v += 1);
        self.shared.bump();
    }

    /// Wait for the executor process to exit.
    pub async fn wait_executor_exit(
        &mut self,
        timeout: Duration,
    ) -> Result<ExitStatus, AgentError> {
        let Some(child) = self.child.as_mut() else {
            return Err(AgentError::NoExecutor);
        };
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(source)) => Err(AgentError::Io {
                context: "waiting for the executor".into(),
                source,
            }),
            Err(_) => {
                let rec = self.shared.lock().rec.clone();
                Err(AgentError::Timeout {
                    what: "the executor to exit".into(),
                    waited: timeout,
                    details: rec.summary(),
                })
            }
        }
    }

    /// Whether the executor process is still running.
    pub fn executor_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A command task for this agent: `sh -c <shell_command>`.
    pub fn command_task(&self, task_id: &str, shell_command: &str) -> TaskInfo {
        TaskInfo {
            name: format!("task {task_id}"),
            task_id: TaskId {
                value: task_id.into(),
            },
            agent_id: AgentId {
                value: self.shared.cfg.agent_id.clone(),
            },
            resources: vec![scalar_resource("cpus", 0.1), scalar_resource("mem", 32.0)],
            command: Some(CommandInfo {
                value: Some(shell_command.into()),
                shell: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A custom-executor task: no `command`, its `CommandInfo` as protobuf in `data`.
    pub fn data_task(&self, task_id: &str, command: &CommandInfo) -> TaskInfo {
        let mut task = self.command_task(task_id, "");
        task.command = None;
        task.data = Some(prost::Message::encode_to_vec(command));
        task
    }
}

/// A scalar resource (`cpus`, `mem`, ...).
pub fn scalar_resource(name: &str, value: f64) -> v1::Resource {
    v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..Default::default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(h) = &self.heartbeats {
            h.abort();
        }
        self.shared.drop_connections.send_modify(|v| *v += 1);
        if let Some(pid) = self.child_pid {
            if let Ok(pid) = i32::try_from(pid) {
                // The executor leads its own session/process group: take all of it down.
                // SAFETY: plain syscall.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
        }
    }
}
