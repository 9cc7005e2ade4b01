//! The executor against a misbehaving or absent agent: restarts with unacknowledged updates,
//! loss of a non-checkpointing agent, authentication, garbage and oversized RecordIO frames.

mod common;

use std::time::Duration;

use common::*;
use croupier_proto::v1::TaskState;

#[tokio::test]
async fn agent_restarts_lose_no_update_and_duplicate_no_terminal() {
    const RESTARTS: usize = 3;
    let mut agent = start(cfg()).await;
    // A long-running task that must survive every restart.
    agent
        .launch(agent.command_task("survivor", "echo $$ > pid; exec sleep 1000"))
        .unwrap();
    agent
        .wait_update("survivor", TaskState::TaskRunning, T)
        .await
        .unwrap();
    let survivor = read_pid(&task_dir(&agent, "survivor").join("pid"), T).await;

    for i in 0..RESTARTS {
        let id = format!("quick{i}");
        // The agent accepts the updates (202) but dies before acknowledging them.
        agent.set_withhold_acks(true);
        agent.launch(agent.command_task(&id, "exit 0")).unwrap();
        agent.wait_terminal(&id, T).await.unwrap();
        agent.restart(Duration::from_millis(700));
        agent.set_withhold_acks(false);
        agent
            .wait_subscriptions(i + 2, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", agent.executor_stderr()));
        // The re-SUBSCRIBE carried the unacknowledged updates (and the task, never acked).
        let sub = agent.subscriptions().last().cloned().unwrap();
        let carried: Vec<i32> = sub
            .unacknowledged_updates
            .iter()
            .filter(|u| u.status.task_id.value == id)
            .map(|u| u.status.state)
            .collect();
        assert!(
            carried.contains(&(TaskState::TaskFinished as i32)),
            "restart {i}: {sub:?}"
        );
        assert!(
            sub.unacknowledged_tasks
                .iter()
                .any(|t| t.task_id.value == id),
            "restart {i}"
        );
        assert!(
            alive(survivor),
            "the task keeps running while the agent is away"
        );
    }
    // Everything is eventually acknowledged: nothing left for the next SUBSCRIBE.
    let rec = agent
        .wait_until("every update acknowledged", T, |r| {
            let all: std::collections::HashSet<Vec<u8>> = r
                .updates
                .iter()
                .filter_map(|u| u.status.uuid.clone())
                .collect();
            all.iter().all(|u| r.acked.contains(u)).then(|| r.clone())
        })
        .await
        .unwrap();
    for i in 0..RESTARTS {
        let id = format!("quick{i}");
        assert_eq!(
            rec.states(&id),
            vec![
                TaskState::TaskStarting,
                TaskState::TaskRunning,
                TaskState::TaskFinished
            ],
            "{id}: zero updates lost"
        );
        assert_eq!(
            rec.terminal_updates(&id).len(),
            1,
            "{id}: one terminal update"
        );
    }
    assert_eq!(
        rec.states("survivor"),
        vec![TaskState::TaskStarting, TaskState::TaskRunning]
    );
    // Backoff stays within MESOS_SUBSCRIPTION_BACKOFF_MAX: no 503 storm.
    let retries = rec.requests.iter().filter(|r| r.status == 503).count();
    assert!(retries <= RESTARTS * 10, "{retries} requests answered 503");
    shutdown_ok(&mut agent).await;
    wait_gone(&[survivor], Duration::from_secs(2))
        .await
        .unwrap();
}

#[tokio::test]
async fn without_checkpointing_a_lost_agent_kills_tasks_and_exits() {
    let mut c = cfg();
    c.checkpoint = false;
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("t", "echo $$ > pid; exec sleep 1000"))
        .unwrap();
    agent
        .wait_update("t", TaskState::TaskRunning, T)
        .await
        .unwrap();
    let pid = read_pid(&task_dir(&agent, "t").join("pid"), T).await;
    agent.disconnect();
    let status = agent.wait_executor_exit(T).await.unwrap();
    assert_eq!(status.code(), Some(1), "{}", agent.executor_stderr());
    wait_gone(&[pid], Duration::from_secs(2))
        .await
        .expect("task killed");
    assert_eq!(
        agent.subscriptions().len(),
        1,
        "no re-subscribe without checkpointing"
    );
    assert!(agent.executor_stderr().contains("not checkpointing"));
}

#[tokio::test]
async fn auth_token_is_sent_everywhere_and_hidden_from_tasks() {
    let mut c = cfg();
    c.auth_token = Some("s3cret-token".into());
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("env", "env > env.txt"))
        .unwrap();
    agent.wait_terminal("env", T).await.unwrap();
    let env = std::fs::read_to_string(task_dir(&agent, "env").join("env.txt")).unwrap();
    assert!(
        !env.contains("s3cret-token"),
        "token leaked into the task: {env}"
    );
    assert!(env.contains("MESOS_SANDBOX="), "{env}");
    shutdown_ok(&mut agent).await;
    let reqs = agent.requests();
    assert!(reqs.len() >= 4);
    for r in &reqs {
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer s3cret-token"),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn a_wrong_token_fails_fast_with_a_clear_error() {
    let mut c = cfg();
    c.auth_token = Some("right".into());
    c.extra_env
        .push(("MESOS_EXECUTOR_AUTHENTICATION_TOKEN".into(), "wrong".into()));
    let mut agent = Agent::start_with_executor(c).await.unwrap();
    let status = agent.wait_executor_exit(T).await.unwrap();
    assert_eq!(status.code(), Some(1));
    let log = agent.executor_stderr();
    assert!(log.contains("401"), "{log}");
    assert!(agent.requests().iter().all(|r| r.status == 401));
}

#[tokio::test]
async fn garbage_and_oversized_frames_drop_the_stream_not_the_tasks() {
    let mut agent = start(cfg()).await;
    agent
        .launch(agent.command_task("t", "echo $$ > pid; exec sleep 1000"))
        .unwrap();
    agent
        .wait_update("t", TaskState::TaskRunning, T)
        .await
        .unwrap();
    let pid = read_pid(&task_dir(&agent, "t").join("pid"), T).await;

    agent.send_raw(&b"12x\nnot a record"[..]).unwrap();
    agent.wait_subscriptions(2, T).await.unwrap();
    // A length far beyond the limit: refused from the header alone, nothing is buffered.
    agent.send_raw(&b"99999999999999\n"[..]).unwrap();
    agent.wait_subscriptions(3, T).await.unwrap();
    // A record that is well framed but not an Event.
    agent.send_raw(&b"3\n\xff\xff\xff"[..]).unwrap();
    agent.wait_subscriptions(4, T).await.unwrap();

    assert!(alive(pid));
    let log = agent.executor_stderr();
    assert!(log.contains("malformed RecordIO length line"), "{log}");
    assert!(log.contains("exceeds the limit"), "{log}");
    assert!(log.contains("undecodable event"), "{log}");
    let rss_kb = std::fs::read_to_string(format!("/proc/{}/status", agent.executor_pid().unwrap()))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:").map(|v| {
                v.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
        })
        .unwrap();
    assert!(rss_kb < 64 * 1024, "executor RSS {rss_kb} kB");
    // The executor still works on the new stream.
    agent.kill("t", None).unwrap();
    let done = agent.wait_terminal("t", T).await.unwrap();
    assert_eq!(done.state, TaskState::TaskKilled as i32);
    shutdown_ok(&mut agent).await;
}

use croupier_testkit::agent::Agent;

/// The agent link failing around UPDATE calls: a `500` (the update not taken) and a
/// connection dropped after the agent took an update but before its `202`. The executor
/// re-subscribes and re-sends what was not acknowledged: every update arrives, the terminal
/// one exactly once (a re-sent copy carries the same uuid), everything is acknowledged, and
/// the executor neither panics nor exits.
#[tokio::test]
async fn update_answered_500_or_dropped_before_202_is_resent_not_lost() {
    use croupier_testkit::agent::UpdateFault;
    let mut agent = start(cfg()).await;
    agent.fail_next_updates(&[UpdateFault::Status(500), UpdateFault::DropBeforeAccepted]);
    agent.launch(agent.command_task("t1", "exit 0")).unwrap();
    let rec = agent
        .wait_until("every update of t1 acknowledged", T, |r| {
            let uuids: std::collections::HashSet<Vec<u8>> = r
                .updates
                .iter()
                .filter_map(|u| u.status.uuid.clone())
                .collect();
            let done = r.states("t1").contains(&TaskState::TaskFinished);
            (done && uuids.iter().all(|u| r.acked.contains(u))).then(|| r.clone())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.executor_stderr()));
    let answered: Vec<u16> = rec
        .requests
        .iter()
        .filter(|r| r.call_type() == Some(croupier_proto::v1::executor::call::Type::Update))
        .map(|r| r.status)
        .collect();
    assert!(
        answered.contains(&500),
        "the 500 was injected: {answered:?}"
    );
    // Every update once and the terminal one last. The order of the first two is not
    // asserted: the update refused with 500 is re-sent with the re-SUBSCRIBE, after the next
    // one was already taken on the same keep-alive connection (so the agent sees RUNNING
    // before STARTING; reported for the agent link).
    let mut states = rec.states("t1");
    assert_eq!(states.last(), Some(&TaskState::TaskFinished), "{states:?}");
    states.sort_by_key(|s| *s as i32);
    let mut want = vec![
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskFinished,
    ];
    want.sort_by_key(|s| *s as i32);
    assert_eq!(states, want, "zero updates lost, none twice");
    assert_eq!(rec.terminal_updates("t1").len(), 1);
    // The link broke at least once and was re-established.
    assert!(
        agent.subscriptions().len() >= 2,
        "{:?}",
        agent.subscriptions().len()
    );
    let stderr = agent.executor_stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    shutdown_ok(&mut agent).await;
}
