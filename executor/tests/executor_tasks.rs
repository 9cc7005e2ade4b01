//! Task lifecycle through the real executor binary: finish, failure, signals, kill (with a
//! SIGTERM-ignoring child and an escaped `setsid` grandchild), shutdown, events that must not
//! disturb a task, and drop-in mode.

mod common;

use std::time::Duration;

use common::*;
use croupier_proto::v1::executor::{event, Event};
use croupier_proto::v1::{framework_info::capability, task_status, TaskState};

#[tokio::test]
async fn finished_task_reports_upstream_fields_and_output() {
    let mut agent = start(cfg()).await;
    agent
        .launch(agent.command_task("t1", "echo hello-from-task; exit 0"))
        .unwrap();
    let done = agent.wait_terminal("t1", T).await.unwrap();
    assert_eq!(done.state, TaskState::TaskFinished as i32, "{done:?}");
    assert_eq!(
        done.message.as_deref(),
        Some("Command exited with status 0")
    );
    let rec = agent.recorded();
    assert_eq!(
        rec.states("t1"),
        vec![
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
    let mut uuids = std::collections::HashSet::new();
    for u in rec
        .updates
        .iter()
        .filter(|u| u.status.task_id.value == "t1")
    {
        let s = &u.status;
        assert_eq!(s.source, Some(task_status::Source::Executor as i32));
        assert_eq!(
            s.executor_id.as_ref().map(|e| e.value.as_str()),
            Some("croupier-test-executor")
        );
        assert!(s.agent_id.is_none(), "agent_id must be left to the agent");
        assert!(s.timestamp.unwrap_or(0.0) > 1.6e9);
        let uuid = s.uuid.clone().expect("uuid");
        assert_eq!(uuid.len(), 16);
        assert_eq!(uuid[6] >> 4, 4, "UUID version 4");
        assert!(uuids.insert(uuid), "fresh uuid per update");
    }
    // Exactly the protobuf media types, on every request.
    for r in &rec.requests {
        assert_eq!(r.content_type.as_deref(), Some("application/x-protobuf"));
        assert_eq!(r.accept.as_deref(), Some("application/x-protobuf"));
    }
    assert_eq!(agent.stream_is_json(), Some(false));
    let out = std::fs::read_to_string(task_dir(&agent, "t1").join("stdout")).unwrap();
    assert!(out.contains("hello-from-task"), "stdout: {out:?}");
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn failing_exit_code_and_death_by_signal() {
    let mut agent = start(cfg()).await;
    agent.launch(agent.command_task("exit3", "exit 3")).unwrap();
    agent
        .launch(agent.command_task("sig", "kill -USR1 $$"))
        .unwrap();
    let a = agent.wait_terminal("exit3", T).await.unwrap();
    assert_eq!(a.state, TaskState::TaskFailed as i32);
    assert_eq!(a.message.as_deref(), Some("Command exited with status 3"));
    let b = agent.wait_terminal("sig", T).await.unwrap();
    assert_eq!(b.state, TaskState::TaskFailed as i32);
    assert_eq!(
        b.message.as_deref(),
        Some("Command terminated with signal User defined signal 1")
    );
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn kill_reaches_term_ignoring_child_and_setsid_grandchild() {
    let mut c = cfg();
    c.framework_capabilities = vec![capability::Type::TaskKillingState];
    let mut agent = start(c).await;
    // The task ignores SIGTERM, has a child that ignores it too, and a grandchild that escaped
    // into its own session through a double fork (reparented to the executor, the subreaper).
    let script = r#"
        trap '' TERM
        echo $$ > main.pid
        sh -c 'trap "" TERM; echo $$ > child.pid; while :; do sleep 1; done' &
        ( setsid sh -c 'echo $$ > grandchild.pid; exec sleep 1000' & )
        wait
    "#;
    agent.launch(agent.command_task("victim", script)).unwrap();
    agent
        .wait_update("victim", TaskState::TaskRunning, T)
        .await
        .unwrap();
    let dir = task_dir(&agent, "victim");
    let pids = [
        read_pid(&dir.join("main.pid"), T).await,
        read_pid(&dir.join("child.pid"), T).await,
        read_pid(&dir.join("grandchild.pid"), T).await,
    ];
    // The grandchild really left the task's session.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pids.iter().all(|p| alive(*p)));
    // A long grace, then a retry that shortens it: SIGKILL comes after ~1 s, not 60 s.
    agent.kill("victim", Some(Duration::from_secs(60))).unwrap();
    agent
        .wait_update("victim", TaskState::TaskKilling, T)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alive(pids[0]), "the task ignores SIGTERM");
    agent
        .kill("victim", Some(Duration::from_millis(700)))
        .unwrap();
    let done = agent
        .wait_terminal("victim", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::TaskKilled as i32);
    assert_eq!(
        done.message.as_deref(),
        Some("Command terminated with signal Killed")
    );
    if let Err(left) = wait_gone(&pids, Duration::from_secs(5)).await {
        panic!(
            "processes survived the kill: {left:?}\n{}",
            agent.executor_stderr()
        );
    }
    assert_eq!(agent.recorded().terminal_updates("victim").len(), 1);
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn shutdown_kills_every_task_and_exits_within_grace() {
    let mut agent = start(cfg()).await;
    for id in ["s1", "s2"] {
        agent
            .launch(agent.command_task(id, "echo $$ > pid; exec sleep 1000"))
            .unwrap();
    }
    let mut pids = Vec::new();
    for id in ["s1", "s2"] {
        agent
            .wait_update(id, TaskState::TaskRunning, T)
            .await
            .unwrap();
        pids.push(read_pid(&task_dir(&agent, id).join("pid"), T).await);
    }
    let started = std::time::Instant::now();
    shutdown_ok(&mut agent).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    for id in ["s1", "s2"] {
        let t = agent
            .recorded()
            .terminal_updates(id)
            .first()
            .map(|s| s.state);
        assert_eq!(t, Some(TaskState::TaskKilled as i32), "{id}");
    }
    wait_gone(&pids, Duration::from_secs(2))
        .await
        .expect("task processes gone");
}

#[tokio::test]
async fn message_heartbeat_error_and_unknown_events_do_not_disturb_tasks() {
    let mut c = cfg();
    c.supports_heartbeat_calls = false; // a pre-1.8 agent: a HEARTBEAT call would get 400
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("steady", "sleep 1; exit 0"))
        .unwrap();
    agent
        .wait_update("steady", TaskState::TaskRunning, T)
        .await
        .unwrap();
    agent.message(b"hello executor").unwrap();
    agent.error("something the agent wants logged").unwrap();
    agent.heartbeat().unwrap();
    agent
        .send_event(Event {
            r#type: Some(42),
            ..Default::default()
        })
        .unwrap();
    agent
        .send_event(Event {
            r#type: Some(event::Type::Unknown as i32),
            ..Default::default()
        })
        .unwrap();
    let done = agent.wait_terminal("steady", T).await.unwrap();
    assert_eq!(done.state, TaskState::TaskFinished as i32);
    let rec = agent.recorded();
    assert_eq!(rec.subscriptions.len(), 1, "the stream was never dropped");
    assert!(
        rec.requests
            .iter()
            .all(|r| r.call_type() != Some(croupier_proto::v1::executor::call::Type::Heartbeat)),
        "no HEARTBEAT call within 30 minutes"
    );
    assert!(
        rec.requests.iter().all(|r| r.status < 400),
        "{:?}",
        rec.requests
    );
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn drop_in_mode_runs_one_task_and_exits_after_the_ack() {
    let mut c = cfg();
    c.executor_args = vec![
        "--launcher_dir=/usr/libexec/mesos".into(),
        "--sandbox_directory=/mnt/mesos/sandbox".into(),
        "--some_future_flag=1".into(),
    ];
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("only", "echo drop-in-output; sleep 1; exit 0"))
        .unwrap();
    agent
        .wait_update("only", TaskState::TaskRunning, T)
        .await
        .unwrap();
    agent.launch(agent.command_task("second", "true")).unwrap();
    let second = agent.wait_terminal("second", T).await.unwrap();
    assert_eq!(second.state, TaskState::TaskFailed as i32);
    assert_eq!(
        second.message.as_deref(),
        Some("Attempted to run multiple tasks using a \"command\" executor")
    );
    let done = agent.wait_terminal("only", T).await.unwrap();
    assert_eq!(done.state, TaskState::TaskFinished as i32);
    let status = agent.wait_executor_exit(T).await.unwrap();
    assert_eq!(status.code(), Some(0));
    // The command executor's task writes into the sandbox's own stdout.
    let out = std::fs::read_to_string(agent.sandbox().join("stdout")).unwrap();
    assert!(out.contains("drop-in-output"), "{out:?}");
    let log = agent.executor_stderr();
    assert!(log.contains("mode=drop-in"), "{log}");
    assert!(
        log.contains("--some_future_flag=1"),
        "unknown flag logged: {log}"
    );
}

#[tokio::test]
async fn drop_in_kill_of_a_daemonizing_task_leaves_nothing() {
    let mut c = cfg();
    c.executor_args = vec!["--launcher_dir=/usr/libexec/mesos".into()];
    let mut agent = start(c).await;
    let script = r#"echo $$ > main.pid; ( setsid sh -c 'echo $$ > daemon.pid; exec sleep 1000' & ); exec sleep 1000"#;
    agent.launch(agent.command_task("d", script)).unwrap();
    agent
        .wait_update("d", TaskState::TaskRunning, T)
        .await
        .unwrap();
    let pids = [
        read_pid(&agent.sandbox().join("main.pid"), T).await,
        read_pid(&agent.sandbox().join("daemon.pid"), T).await,
    ];
    agent.kill("d", None).unwrap();
    let done = agent.wait_terminal("d", T).await.unwrap();
    assert_eq!(done.state, TaskState::TaskKilled as i32);
    assert_eq!(
        done.message.as_deref(),
        Some("Command terminated with signal Terminated")
    );
    assert_eq!(agent.wait_executor_exit(T).await.unwrap().code(), Some(0));
    wait_gone(&pids, Duration::from_secs(3))
        .await
        .expect("no orphan survives");
}
