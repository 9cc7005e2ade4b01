//! Croupier's integration harness.
//!
//! # Layout
//! - [`agent`]: a Mesos agent stand-in speaking the v1 executor API (protobuf and JSON).
//! - [`shuffle`]: a Spark shuffle-protocol client used by protocol tests and load generators.
//! - [`bench`]: the shuffle benchmark (data sets, verified load, raw sendfile limit, report).
//! - [`env`]: locating the interop peers (the pyspark/pymesos/moto venv, Java).
//! - [`mesos`]: the real-Mesos tier's harness (a real master and agent, `mesos-execute`, a v1
//!   HTTP scheduler).
//! - [`local`]: the `croupier-local` command line (its `--help` and man page).
//! - [`ports`]: loopback ports for servers started as processes, picked outside the kernel's
//!   ephemeral range so that no outgoing connection takes one before the server binds it.

pub mod agent;
pub mod bench;
pub mod env;
pub mod local;
pub mod mesos;
pub mod ports;
pub mod shuffle;
