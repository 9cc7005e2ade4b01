//! `croupier-shuffle-service`: a Spark 3.5 external shuffle service (Mesos flavour) speaking
//! Spark's own wire protocol, byte for byte.
//!
//! # Layout
//! Data flows top to bottom:
//! - [`auth`]: `spark.authenticate`: settings and secret, SASL DIGEST-MD5, Spark's auth engine,
//!   the per-connection gate and the channel ciphers.
//! - [`config`]: CLI, `SPARK_SHUFFLE_OPTS`, properties file → typed [`config::Config`].
//! - [`server`]: accept loop; per connection a reader task and a writer task.
//! - [`protocol`]: frame codec and `BlockTransferMessage` (shared with the test client).
//! - [`handler`]: RPC dispatch (registration, stream setup, local dirs, removal, diagnosis).
//! - [`streams`]: the global stream table (compact, in-order chunks, freed on disconnect).
//! - [`resolver`]: registered executors and Spark's file-path hashing, with input validation.
//! - [`index_cache`]: byte-bounded LRU of validated index files.
//! - [`data_files`]: a bounded, short-lived table of open data files (no open per chunk).
//! - [`send`]: chunk resolution and zero-copy `sendfile` on the blocking pool.
//! - [`checksum`]: the DiagnoseCorruption check.
//! - [`mesos`]: the app cleaner (deletes the files of apps whose drivers went silent).
//! - [`state`]: [`state::Shared`], the state every module above reads (config, registries,
//!   caches, metrics); it imports none of them.
//! - [`drivers`]: registered drivers and their heartbeats.
//! - [`store`]: registrations persisted in `croupier.state.dir` (redb), restored at start-up;
//!   [`journal`] below it: the append-only file a registration is answered from before the
//!   store's fsync (`croupier.state.sync=background`); [`store_file`]: the redb file backend,
//!   with failpoints for tests.
//! - [`agent`]: asks the Mesos agent which frameworks are active or completed.
//! - [`cleanup`]: the pure rule deciding when an app's files may go (heartbeats × agent × time).
//! - [`metrics`]: counters (Spark's `shuffleService` source names, fetch latency, errors by
//!   kind), atomic adds only.
//! - [`admin`]: the optional admin HTTP endpoint (`/healthz`, `/metrics` in Prometheus text).
//! - [`notify`]: systemd readiness, stopping and watchdog notifications.
//! - [`units`]: Spark's size and time strings, for [`config`] and [`auth`].
//! - [`faults`]: test failpoints for disk I/O (debug builds only), used by [`store_file`],
//!   [`journal`] and [`index_cache`].

pub mod admin;
pub mod agent;
pub mod auth;
pub mod checksum;
pub mod cleanup;
pub mod config;
pub mod data_files;
pub mod drivers;
pub mod faults;
pub mod handler;
pub mod index_cache;
pub mod journal;
pub mod mesos;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod resolver;
pub mod send;
pub mod server;
pub mod stamp;
pub mod state;
pub mod store;
pub mod store_file;
pub mod streams;
pub mod units;

pub use config::{Cli, Config};
pub use server::run;
pub use state::Shared;
