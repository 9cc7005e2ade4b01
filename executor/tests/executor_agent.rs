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
/// re-subscribes and re-sends what was not acknowledged: every update arrives, in the order
/// it was made, the terminal one exactly once (a re-sent copy carries the same uuid),
/// everything is acknowledged, and the executor neither panics nor exits.
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
    // Every update once, in the order the executor made them: the update refused with 500
    // goes out again in the re-SUBSCRIBE, and the one queued behind it is not sent ahead of
    // it on the keep-alive connection (the agent saw RUNNING before STARTING before that).
    let states = rec.states("t1");
    assert_eq!(
        states,
        vec![
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished,
        ],
        "zero updates lost, none twice, in order; {}",
        agent.executor_stderr()
    );
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

/// libfaketime (Debian/Ubuntu package `libfaketime`): preloaded into the executor, it moves the
/// executor's wall clock (`CLOCK_REALTIME`) by the offset written in a file, leaving its
/// monotonic clock true (`FAKETIME_DONT_FAKE_MONOTONIC=1`).
#[cfg(target_arch = "aarch64")]
const LIBFAKETIME: &str = "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1";
#[cfg(not(target_arch = "aarch64"))]
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A wall-clock jump of a day (forward, then back) the moment a task that ignores SIGTERM is
/// killed with a 2 s grace: SIGKILL comes after the grace, neither at once (a forward jump
/// firing the timer) nor never (a backward jump delaying it a day). The executor's timers
/// (kill grace, health-check intervals and delays, recovery timeout, ACK fail-safe, subscribe
/// backoff) all run on the monotonic clock; the wall clock only stamps the updates, which the
/// test reads to see that the jump reached the executor.
#[tokio::test]
async fn wall_clock_jumps_neither_fire_nor_delay_the_kill_grace() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install it with `apt-get install libfaketime` (this test moves \
         the executor's wall clock with it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let mut c = cfg();
    c.extra_env.extend([
        ("LD_PRELOAD".to_string(), LIBFAKETIME.to_string()),
        (
            "FAKETIME_TIMESTAMP_FILE".to_string(),
            offset.display().to_string(),
        ),
        ("FAKETIME_NO_CACHE".to_string(), "1".to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
    ]);
    let mut agent = start(c).await;
    let day = 86_400.0;
    for (id, jump, shift) in [("fwd", "+1d", day), ("back", "-1d", -day)] {
        agent
            .launch(agent.command_task(
                id,
                "trap '' TERM; echo $$ > trapped.pid; while :; do sleep 1; done",
            ))
            .unwrap();
        agent
            .wait_update(id, TaskState::TaskRunning, T)
            .await
            .unwrap();
        // TASK_RUNNING comes as soon as the shell is spawned; kill only once it ignores SIGTERM.
        read_pid(&task_dir(&agent, id).join("trapped.pid"), T).await;
        std::fs::write(&offset, format!("{jump}\n")).unwrap();
        let started = std::time::Instant::now();
        agent.kill(id, Some(Duration::from_secs(2))).unwrap();
        let done = agent
            .wait_terminal(id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}\n{}", agent.executor_stderr()));
        let took = started.elapsed();
        assert_eq!(done.state, TaskState::TaskKilled as i32, "{id}");
        assert!(
            took >= Duration::from_millis(1500),
            "{id}: killed after {took:?}, before its 2 s grace\n{}",
            agent.executor_stderr()
        );
        // The update is stamped with the jumped wall clock: the jump reached the executor.
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let stamped = done.timestamp.unwrap_or_default();
        assert!(
            (stamped - (real + shift)).abs() < 3600.0,
            "{id}: TASK_KILLED stamped {stamped}, real time {real}: libfaketime did not move the clock"
        );
        std::fs::write(&offset, "+0\n").unwrap();
    }
    shutdown_ok(&mut agent).await;
}

/// Shutting down without checkpointing, nothing re-subscribes: an UPDATE the agent answers
/// with a `500` must not hold back the updates queued behind it. Here TASK_KILLING (sent first
/// on shutdown, the framework being TASK_KILLING_STATE-capable) is refused, and TASK_KILLED
/// must still reach the agent before the executor exits. The task takes a second to die, so
/// the 500 is always in before TASK_KILLED is made.
#[tokio::test]
async fn shutting_down_without_checkpoint_a_refused_update_holds_nothing_back() {
    use croupier_proto::v1::framework_info::capability;
    use croupier_testkit::agent::UpdateFault;
    let mut c = cfg();
    c.checkpoint = false;
    c.framework_capabilities = vec![capability::Type::TaskKillingState];
    let agent = start(c).await;
    agent
        .launch(agent.command_task(
            "t",
            "trap 'sleep 1; exit 0' TERM; echo $$ > trapped.pid; while :; do sleep 0.1; done",
        ))
        .unwrap();
    agent
        .wait_update("t", TaskState::TaskRunning, T)
        .await
        .unwrap();
    read_pid(&task_dir(&agent, "t").join("trapped.pid"), T).await;
    agent.fail_next_updates(&[UpdateFault::Status(500)]);
    agent.shutdown().unwrap();
    let rec = agent
        .wait_until("TASK_KILLED at the agent", T, |r| {
            r.states("t")
                .contains(&TaskState::TaskKilled)
                .then(|| r.clone())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.executor_stderr()));
    let refused: Vec<TaskState> = rec
        .requests
        .iter()
        .filter(|r| r.status == 500)
        .filter_map(|r| r.call.as_ref()?.update.as_ref())
        .filter_map(|u| TaskState::try_from(u.status.state).ok())
        .collect();
    assert_eq!(
        refused,
        vec![TaskState::TaskKilling],
        "the 500 went to TASK_KILLING"
    );
    let stderr = agent.executor_stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
