//! `croupier-executor`: a Mesos v1 HTTP executor.
//!
//! # Layout
//! - [`fetcher`]: fetching a task's `CommandInfo.URI`s, through a fetcher cache shared by every
//!   executor on the agent.

pub mod fetcher;
