//! Real-Mesos tier, drop-in mode: a real Mesos 1.11 agent started with
//! `--http_command_executor` and a `--launcher_dir` whose `mesos-executor` runs
//! croupier-executor; tasks submitted by the stock `mesos-execute` framework.
//!
//! Needs `MESOS_PREFIX` (scripts/test.sh installs ../shared/mesos); without it every test here
//! fails with `NOT RUN: real-Mesos tier (...)`.

use std::path::PathBuf;
use std::time::Duration;

use croupier_testkit::mesos::{tasks, ClusterOpts, Install, MesosCluster, MesosExecute};

const T: Duration = Duration::from_secs(90);

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_croupier-executor"))
}

async fn cluster() -> MesosCluster {
    Install::require();
    MesosCluster::start(ClusterOpts::drop_in(exe()))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_dropin_task_finishes_through_croupier() {
    let c = cluster().await;
    let task = tasks::command_task("hello", "echo hello-from-task; echo $MESOS_SANDBOX");
    let out = MesosExecute::new(&c)
        .task(&task)
        .expect("task file")
        .timeout(T)
        .run()
        .await
        .expect("mesos-execute ran");
    assert_eq!(
        out.states("hello"),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
        "{}",
        out.summary()
    );
    let fin = out.update("hello", "TASK_FINISHED").expect("finished");
    assert_eq!(fin.source.as_deref(), Some("SOURCE_EXECUTOR"));
    assert_eq!(fin.message.as_deref(), Some("Command exited with status 0"));
    assert!(out.status.is_some_and(|s| s.success()), "{}", out.summary());

    // It really was croupier-executor, and the task ran in the agent's sandbox.
    let sandbox = c.sandbox_of("hello").expect("sandbox of executor hello");
    let stderr = std::fs::read_to_string(sandbox.join("stderr")).unwrap_or_default();
    assert!(
        stderr.contains("croupier-executor") && stderr.contains("mode=drop-in"),
        "executor stderr:\n{stderr}"
    );
    let stdout = std::fs::read_to_string(sandbox.join("stdout")).unwrap_or_default();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("hello-from-task"));
    assert_eq!(
        lines.next().map(PathBuf::from),
        Some(sandbox.clone()),
        "MESOS_SANDBOX is the run directory"
    );
    assert!(c.wait_no_processes(T).await.is_empty(), "executor exited");
}
