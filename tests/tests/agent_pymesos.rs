//! pymesos 0.3.15's v1 HTTP executor (JSON) against the agent stand-in: shows the stand-in
//! speaks the real v1 JSON dialect (SUBSCRIBED it accepts, UPDATEs it sends, ACKNOWLEDGED it
//! understands, MESSAGE both ways, SHUTDOWN).

use std::path::PathBuf;
use std::time::Duration;

use croupier_proto::v1::TaskState;
use croupier_testkit::agent::{Agent, AgentConfig};
use croupier_testkit::env;

const T: Duration = Duration::from_secs(30);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/mesos/pymesos_executor.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_executor_runs_a_task_over_json() {
    croupier_testkit::require_venv!();
    let mut cfg = AgentConfig::new(env::python());
    cfg.executor_args = vec![script().display().to_string()];
    // pymesos treats any non-empty MESOS_CHECKPOINT as true; irrelevant here.
    cfg.checkpoint = false;
    let mut agent = Agent::start_with_executor(cfg)
        .await
        .expect("stand-in starts");

    agent
        .wait_subscribed(T)
        .await
        .unwrap_or_else(|e| panic!("{e}\nexecutor stderr:\n{}", agent.executor_stderr()));
    assert_eq!(agent.stream_is_json(), Some(true), "pymesos asks for JSON");
    let sub = &agent.requests()[0];
    assert_eq!(sub.content_type.as_deref(), Some("application/json"));
    assert_eq!(sub.accept.as_deref(), Some("application/json"));
    assert_eq!(sub.status, 200);

    agent
        .launch(agent.command_task("t1", "true"))
        .expect("launch sent");
    let finished = agent
        .wait_update("t1", TaskState::TaskFinished, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\nexecutor stderr:\n{}", agent.executor_stderr()));
    assert_eq!(finished.message.as_deref(), Some("done by pymesos"));
    let rec = agent.recorded();
    assert_eq!(
        rec.states("t1"),
        vec![TaskState::TaskRunning, TaskState::TaskFinished]
    );
    for u in &rec.updates {
        assert_eq!(u.status.source, Some(2), "SOURCE_EXECUTOR");
        assert_eq!(u.status.uuid.as_ref().map(Vec::len), Some(16));
        assert!(u.status.timestamp.unwrap_or(0.0) > 1.0e9);
        // Acknowledged on the stream (pymesos drops its copy when it sees the ACK).
        assert!(rec.acked.contains(u.status.uuid.as_ref().expect("uuid")));
    }
    // Every call pymesos made was accepted with the agent's codes.
    for r in &rec.requests {
        assert!(r.status == 200 || r.status == 202, "{r:?}");
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }

    // MESSAGE both ways: the script echoes the framework message.
    agent.message(b"ping from the agent").expect("message sent");
    agent
        .wait_until("pymesos to echo the MESSAGE", T, |r| {
            (r.messages.first().map(Vec::as_slice) == Some(&b"ping from the agent"[..]))
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nexecutor stderr:\n{}", agent.executor_stderr()));

    // SHUTDOWN: pymesos aborts its driver and exits.
    agent.shutdown().expect("shutdown sent");
    let status = agent
        .wait_executor_exit(T)
        .await
        .unwrap_or_else(|e| panic!("{e}\nexecutor stderr:\n{}", agent.executor_stderr()));
    let log = agent.executor_stderr();
    assert_eq!(
        status.code(),
        Some(0),
        "pymesos exit after SHUTDOWN; log:\n{log}"
    );
    assert!(
        log.contains("shutdown"),
        "executor.shutdown() was called; log:\n{log}"
    );
}
