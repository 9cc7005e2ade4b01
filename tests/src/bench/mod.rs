//! The shuffle benchmark behind `croupier-shuffle-bench` (issue 5): Spark-layout shuffle output
//! on disk, a closed-loop load generator speaking Spark's fetch protocol, a minimal `sendfile`
//! server for the physical limit, `/proc` probes of the server under test, and the report.
//!
//! # Layout
//! - [`data`]: the on-disk data set (index + data files at Spark's hashed paths) and the
//!   deterministic content every received byte is compared with.
//! - [`wire`]: the few frames the load generator and the raw server exchange.
//! - [`load`]: N concurrent connections fetching and verifying; throughput and latency.
//! - [`conns`]: thousands of mostly idle connections, each answered once; the server's RSS.
//! - [`procfs`]: server CPU seconds and RSS from `/proc/<pid>`.
//! - [`raw`]: the raw `sendfile` server (same bytes, same framing, nothing else).
//! - [`report`]: the side-by-side table with ratios and the one-line summary.

pub mod conns;
pub mod data;
pub mod load;
pub mod procfs;
pub mod raw;
pub mod report;
pub mod wire;
