//! `croupier-executor`: a Mesos v1 HTTP executor.
//!
//! # Layout
//! Data flows one way: [`config`] → [`executor`] (the event loop), which uses [`http`] to talk
//! to the agent, [`command`] and [`process`] to run tasks, [`state`] to remember what the agent
//! has not acknowledged, and [`fetcher`] to fetch custom-mode tasks' URIs.
//! - [`config`]: the agent's environment contract and `mesos-executor`'s flags, parsed once
//!   (drop-in vs custom mode, `--help`).
//! - [`http`]: the v1 executor API client: the SUBSCRIBE RecordIO stream on one connection,
//!   calls on a second keep-alive one; protobuf only; errors say whether they are retryable.
//! - [`state`]: unacknowledged updates (by uuid, in order) and tasks, re-sent inside SUBSCRIBE.
//! - [`command`]: which `CommandInfo` a task runs (per mode and encoding) and its environment.
//! - [`process`]: spawning in a new session, the subreaper, reaping, finding and killing every
//!   process of a task (including ones that `setsid` away).
//! - [`executor`]: the task state machine and event loop (LAUNCH, LAUNCH_GROUP, KILL, SHUTDOWN,
//!   ACKNOWLEDGED, disconnection and recovery, exit rules).
//! - [`fetcher`]: fetching a task's `CommandInfo.URI`s, through a fetcher cache shared by every
//!   executor on the agent.

pub mod command;
pub mod config;
pub mod executor;
pub mod fetcher;
pub mod http;
pub mod process;
pub mod state;
