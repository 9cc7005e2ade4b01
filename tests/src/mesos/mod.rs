//! The real-Mesos tier's harness: a real Apache Mesos 1.11 master and agent on 127.0.0.1, the
//! stock `mesos-execute` framework, and a small v1 HTTP scheduler of ours.
//!
//! # Layout
//! - [`install`]: [`Install::find`] locates Mesos through `MESOS_PREFIX` (binaries checked);
//!   when it is missing the error reads `NOT RUN: real-Mesos tier (<why>; <how to get it>)`.
//!   A tier test starts with [`Install::require`] (or [`MesosCluster::start`], which calls
//!   `find`), so run without Mesos it fails with that text, never passes.
//! - [`cluster`]: [`MesosCluster::start`]`(`[`ClusterOpts`]`)` starts `mesos-master
//!   --registry=in_memory` and `mesos-agent` on 127.0.0.1 with free ports (picked below the
//!   ephemeral range by [`crate::ports`]; a first start that finds its port taken, which
//!   libprocess reports by aborting, is made again on another) and their own work, runtime and
//!   fetcher-cache directories, `--launcher=posix
//!   --isolation=posix/cpu,posix/mem --no-systemd_enable_support`, and waits until the agent
//!   is registered and active. [`ClusterOpts::drop_in`] gives `--http_command_executor` and a
//!   `--launcher_dir` of symlinks to every file of `$MESOS_PREFIX/libexec/mesos` except
//!   `mesos-executor`, which is a script exec'ing croupier-executor; [`ClusterOpts::reference`]
//!   keeps the default launcher dir (Mesos's own `mesos-executor`). Extra agent and master
//!   flags, the agent's environment and `--executor_environment_variables` are options.
//!   Accessors: `master_addr`, `agent_addr` (for `/api/v1`, `/state`), `agent_id`,
//!   `work_dir`, `sandboxes`, `sandbox_of`, `agent_log`, `processes_in_sandboxes`.
//!   `restart_agent` SIGKILLs the agent and starts it again on the same work dir
//!   (`--recover=reconnect`), waiting for re-registration; `kill_agent`/`start_agent` split it.
//!   Drop stops the agent, every process left in a sandbox, then the master, all by pid, even
//!   when the test panics; a panicking test's logs and sandboxes are first copied to
//!   `<target>/mesos-logs/<test>-<pid>-<n>/` (path printed; `keep_logs` does it on demand).
//! - [`execute`]: [`MesosExecute`] runs `mesos-execute` (`--command`, `--task=<file>`,
//!   `--task_group=<file>` from JSON, any flag) and parses what it prints into
//!   [`ExecuteOutput`]: framework id, submit time, and every [`SeenUpdate`] (state, message,
//!   source, reason, healthy, check status, arrival time); `spawn` for acting mid-run.
//! - [`scheduler`]: [`Scheduler`], a v1 HTTP scheduler (JSON): SUBSCRIBE, offers, ACCEPT with
//!   LAUNCH / LAUNCH_GROUP (CUSTOM `ExecutorInfo`), DECLINE, ACKNOWLEDGE (automatic by
//!   default), KILL, TEARDOWN; records every event and UPDATE, with `wait_update` /
//!   `wait_terminal`.
//! - [`tasks`]: JSON builders for `TaskInfo`, `ExecutorInfo`, resources, URIs, data.
//! - [`process`]: [`process::Proc`], a child stopped by pid on drop (a death reported with the
//!   end of its log); free ports.
//! - [`http`]: the one-request HTTP client used above. [`error`]: [`MesosError`].
//!
//! The API is async (tokio): use `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`.
//!
//! ```no_run
//! # async fn demo(exe: &std::path::Path) -> Result<(), croupier_testkit::mesos::MesosError> {
//! use croupier_testkit::mesos::{ClusterOpts, MesosCluster, MesosExecute};
//! let cluster = MesosCluster::start(ClusterOpts::drop_in(exe)).await?;
//! let out = MesosExecute::new(&cluster).command("hello", "echo hello").run().await?;
//! assert_eq!(out.states("hello").last().map(String::as_str), Some("TASK_FINISHED"));
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod error;
pub mod execute;
pub mod http;
pub mod install;
pub mod process;
pub mod scheduler;
pub mod tasks;

pub use cluster::{ClusterOpts, CommandExecutor, MesosCluster};
pub use error::MesosError;
pub use execute::{ExecuteOutput, MesosExecute, RunningExecute, SeenUpdate};
pub use install::Install;
pub use scheduler::{FrameworkOpts, Scheduler};
