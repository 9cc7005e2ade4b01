//! Shared helpers for the executor's integration tests (real executor processes against the
//! testkit's Mesos agent stand-in on 127.0.0.1).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use croupier_testkit::agent::{Agent, AgentConfig};

/// Generous bound for one step (a task start, an update, an exit).
pub const T: Duration = Duration::from_secs(20);

/// The executor binary built for these tests.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_croupier-executor"))
}

/// Stand-in defaults for the executor, with debug logs and a short backoff.
pub fn cfg() -> AgentConfig {
    let mut c = AgentConfig::new(exe());
    c.subscription_backoff_max = Duration::from_millis(500);
    c.extra_env.push(("RUST_LOG".into(), "debug".into()));
    c
}

/// Start the stand-in and the executor, and wait for the executor to subscribe.
pub async fn start(cfg: AgentConfig) -> Agent {
    let agent = Agent::start_with_executor(cfg)
        .await
        .expect("start the agent stand-in and the executor");
    if let Err(e) = agent.wait_subscribed(T).await {
        panic!(
            "executor did not subscribe: {e}\nexecutor log:\n{}",
            agent.executor_stderr()
        );
    }
    agent
}

/// Is `pid` alive (and not a zombie)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => match s.rfind(')') {
            Some(i) => !matches!(s[i + 1..].split_whitespace().next(), Some("Z") | Some("X")),
            None => false,
        },
        Err(_) => false,
    }
}

/// Wait until every pid is gone.
pub async fn wait_gone(pids: &[i32], timeout: Duration) -> Result<(), Vec<i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(left);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait for a file holding a pid and read it.
pub async fn read_pid(path: &Path, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(p) = s.trim().parse() {
                return p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no pid file {} after {timeout:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shut the executor down and check that it exits 0.
pub async fn shutdown_ok(agent: &mut Agent) {
    agent.shutdown().expect("send SHUTDOWN");
    let status = agent
        .wait_executor_exit(T)
        .await
        .expect("executor exits after SHUTDOWN");
    assert_eq!(
        status.code(),
        Some(0),
        "executor log:\n{}",
        agent.executor_stderr()
    );
}

/// A task's directory in custom mode.
pub fn task_dir(agent: &Agent, task_id: &str) -> PathBuf {
    agent.sandbox().join("tasks").join(task_id)
}
