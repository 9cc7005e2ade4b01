//! `croupier-ops`: what every Croupier binary shares for the operator running it.
//!
//! # Layout
//! Each module stands alone; the binaries call them from `main` before anything else runs.
//! - [`build_info`]: the build's identity (version, git revision, target, glibc), the one
//!   `--version` line every binary prints.
//! - [`log`]: log set-up: text or JSON lines (`--log-format`, `CROUPIER_LOG_FORMAT`) on a
//!   stderr writer that never panics and never blocks the process (a line stderr cannot take
//!   is dropped and counted).
//! - [`man`]: a man page (roff) from the same `clap` definition that renders `--help`.

pub mod build_info;
pub mod log;
pub mod man;
