//! `croupier-executor`: a Mesos v1 HTTP executor.
//!
//! # Layout
//! Data flows one way: [`config`] → [`executor`] (the event loop) → [`task`] (the lifecycle of
//! each task) → [`launch`] (how a task becomes a process), [`checks`] (its health checks and
//! checks) and [`agent_link`] (the updates it sends). Below them: [`http`] to talk to the agent, [`state`] to remember what the agent has
//! not acknowledged, [`command`] and [`process`] to run tasks, [`fetcher`] to fetch custom-mode
//! tasks' URIs.
//! - [`config`]: the agent's environment contract and `mesos-executor`'s flags, parsed once
//!   (drop-in vs custom mode, `--help`).
//! - [`http`]: the v1 executor API client: the SUBSCRIBE RecordIO stream on one connection,
//!   calls on a second keep-alive one; protobuf only; errors say whether they are retryable.
//! - [`tls`]: the `LIBPROCESS_SSL_*` settings and the rustls client for an https agent.
//! - [`state`]: unacknowledged updates (by uuid, in order) and tasks, re-sent inside SUBSCRIBE.
//! - [`command`]: which `CommandInfo` a task runs (per mode and encoding) and its environment.
//! - [`process`]: spawning in a new session, the subreaper, reaping, finding and killing every
//!   process of a task (including ones that `setsid` away).
//! - [`executor`]: the event loop: routes events, child exits, timers and background results
//!   to the link and the tasks; SHUTDOWN, giving up, and the exit rules.
//! - [`agent_link`]: SUBSCRIBE and re-SUBSCRIBE, UPDATE calls, ACKNOWLEDGED, HEARTBEAT,
//!   disconnection and recovery.
//! - [`task`]: the task lifecycle (launch → fetch → run → kill → terminal update), reaping,
//!   task groups.
//! - [`launch`]: the host launch path (environment, working directory, streams, user).
//! - [`checks`]: health checks and checks of a task: timing, native probes, and what each
//!   result means (an update, a kill, or nothing).
//! - [`http_probe`]: the GET of HTTP(S) probes (curl's `-L -k` result, on the hyper client
//!   the agent link already uses).
//! - [`fetcher`]: fetching a task's `CommandInfo.URI`s, through a fetcher cache shared by every
//!   executor on the agent.

pub mod agent_link;
pub mod checks;
pub mod command;
pub mod config;
pub mod container;
pub mod executor;
pub mod fetcher;
pub mod http;
pub mod http_probe;
pub mod launch;
pub mod process;
pub mod state;
pub mod task;
pub mod tls;
