//! A long-lived custom-mode executor: many short tasks, with agent restarts among them. The
//! executor must not grow per task (it forgets a task once its terminal update is acknowledged),
//! must lose and duplicate no terminal update across the restarts, and must leave no process
//! behind; each task keeps its own `tasks/<id>/` directory (the agent garbage-collects the
//! executor's sandbox, as with Mesos's default executor) and nothing else appears there.
//!
//! CI runs a bounded version (300 tasks, 5 restarts). `bench/executor-longlived.sh` runs the
//! same test with `CROUPIER_LONGLIVED_TASKS=5000 CROUPIER_LONGLIVED_RESTARTS=100` (and
//! `CROUPIER_LONGLIVED_EXECUTOR` naming a release build) and prints its figures.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use croupier_proto::v1::TaskState;
use croupier_testkit::agent::Agent;

/// Tasks launched together (they run side by side).
const BATCH: usize = 10;
/// RSS is first measured after this many tasks (allocator and runtime warmed up).
const WARM_UP: usize = 100;
/// Allowed RSS growth from the first measurement to the end.
const MAX_DRIFT_KB: i64 = 1024;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// A field of `/proc/<pid>/status` in KiB.
fn status_kb(pid: u32, field: &str) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// `VmRSS` of `pid` in KiB.
fn rss_kb(pid: u32) -> i64 {
    status_kb(pid, "VmRSS")
}

/// `RssAnon` of `pid` in KiB: heap, stacks, dirtied data (no pages of files).
fn anon_kb(pid: u32) -> i64 {
    status_kb(pid, "RssAnon")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("listing /proc/{pid}/fd: {e}"))
}

/// Live (not zombie) processes below `pid`, as (pid, command line).
fn descendants(pid: u32) -> Vec<(i32, String)> {
    let mut parent: HashMap<i32, i32> = HashMap::new();
    let mut live: HashSet<i32> = HashSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        if let Some(pp) = f.next().and_then(|s| s.parse().ok()) {
            parent.insert(p, pp);
        }
        if state != "Z" && state != "X" {
            live.insert(p);
        }
    }
    let root = pid as i32;
    let mut out = Vec::new();
    for &p in &live {
        let mut q = p;
        let mut hops = 0;
        while let Some(&pp) = parent.get(&q) {
            if pp == root {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default();
                out.push((p, cmd));
                break;
            }
            q = pp;
            hops += 1;
            if pp <= 1 || hops > 64 {
                break;
            }
        }
    }
    out
}

/// What task `n` runs, and the terminal state it must end in.
fn task_of(n: usize) -> (&'static str, TaskState) {
    if n % 50 == 7 {
        ("exit 3", TaskState::TaskFailed)
    } else if n % 10 == 3 {
        // A background child outliving the task's shell: the executor must kill it.
        ("sleep 600 & exit 0", TaskState::TaskFinished)
    } else {
        ("exit 0", TaskState::TaskFinished)
    }
}

/// Wait until every task of `ids` has a terminal update (recorded at or after update index
/// `from`) and the stand-in acknowledged it.
async fn wait_settled(agent: &Agent, ids: &[String], from: usize) {
    let want: HashSet<&str> = ids.iter().map(|s| s.as_str()).collect();
    let what = format!(
        "acknowledged terminal updates of {} .. {}",
        ids[0],
        ids[ids.len() - 1]
    );
    let r = agent
        .wait_until(&what, T, |r| {
            let done: HashSet<&str> = r.updates[from.min(r.updates.len())..]
                .iter()
                .filter(|u| want.contains(u.status.task_id.value.as_str()))
                .filter(|u| {
                    TaskState::try_from(u.status.state).is_ok_and(croupier_proto::is_terminal)
                })
                .filter(|u| u.status.uuid.as_ref().is_some_and(|x| r.acked.contains(x)))
                .map(|u| u.status.task_id.value.as_str())
                .collect();
            (done.len() == want.len()).then_some(())
        })
        .await;
    if let Err(e) = r {
        panic!(
            "{e}\nexecutor log tail:\n{}",
            tail(&agent.executor_stderr())
        );
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

#[tokio::test]
async fn thousands_of_tasks_with_agent_restarts_leave_nothing_behind() {
    let tasks = env_usize("CROUPIER_LONGLIVED_TASKS", 300);
    let restarts = env_usize("CROUPIER_LONGLIVED_RESTARTS", 5);
    assert!(
        tasks >= 2 * WARM_UP && tasks.is_multiple_of(BATCH),
        "CROUPIER_LONGLIVED_TASKS must be a multiple of {BATCH} of at least {}",
        2 * WARM_UP
    );
    let mut c = cfg();
    if let Ok(exe) = std::env::var("CROUPIER_LONGLIVED_EXECUTOR") {
        c.executor = PathBuf::from(exe);
    }
    c.subscription_backoff_max = Duration::from_millis(100);
    // Info lines, and the task module's debug line for each forgotten task.
    c.extra_env.retain(|(k, _)| k != "RUST_LOG");
    c.extra_env.push((
        "RUST_LOG".into(),
        "info,croupier_executor::task=debug".into(),
    ));
    let mut agent = start(c).await;
    let pid = agent.executor_pid().expect("the executor's pid");
    let batches = tasks / BATCH;
    // The first restart falls inside the warm-up (so the code of a re-SUBSCRIBE has run before
    // RSS is first measured), the others in evenly spaced batches after it.
    let warm = WARM_UP / BATCH;
    let restart_at: BTreeSet<usize> = (0..restarts)
        .map(|i| match i {
            0 => warm / 2,
            _ => warm + 1 + (i - 1) * (batches - warm - 1) / (restarts - 1).max(1),
        })
        .collect();
    assert_eq!(
        restart_at.len(),
        restarts,
        "too many restarts for {tasks} tasks"
    );

    let started = Instant::now();
    let mut subscriptions = 1;
    let mut rss_warm = None;
    let mut fds_warm = 0;
    let mut samples: Vec<(usize, i64, u64)> = Vec::new();
    for b in 0..batches {
        let ids: Vec<String> = (b * BATCH..(b + 1) * BATCH)
            .map(|n| format!("t{n:05}"))
            .collect();
        let from = agent.update_count();
        let restart = restart_at.contains(&b);
        if restart {
            // The agent takes the updates (202) but goes away before acknowledging them.
            agent.set_withhold_acks(true);
        }
        for (i, id) in ids.iter().enumerate() {
            let (cmd, _) = task_of(b * BATCH + i);
            agent.launch(agent.command_task(id, cmd)).unwrap();
        }
        if restart {
            for id in &ids {
                if let Err(e) = agent.wait_terminal(id, T).await {
                    panic!("{e}\n{}", tail(&agent.executor_stderr()));
                }
            }
            agent.restart(Duration::from_millis(100));
            agent.set_withhold_acks(false);
            subscriptions += 1;
            if let Err(e) = agent.wait_subscriptions(subscriptions, T).await {
                panic!("{e}\n{}", tail(&agent.executor_stderr()));
            }
        }
        wait_settled(&agent, &ids, from).await;
        let done = (b + 1) * BATCH;
        if done == WARM_UP {
            rss_warm = Some((rss_kb(pid), anon_kb(pid)));
            fds_warm = open_fds(pid);
        }
        if done.is_multiple_of((tasks / 10).max(BATCH)) {
            samples.push((done, rss_kb(pid), started.elapsed().as_secs()));
        }
    }
    let elapsed = started.elapsed();

    // No process of any task is left (the background sleeps were killed with their tasks).
    let deadline = Instant::now() + T;
    let mut left = descendants(pid);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = descendants(pid);
    }
    assert!(left.is_empty(), "processes left behind: {left:?}");

    let (rss_end, anon_end) = (rss_kb(pid), anon_kb(pid));
    let fds_end = open_fds(pid);
    let (rss_warm, anon_warm) = rss_warm.expect("measured after the warm-up");

    // Every task: exactly one terminal update (by uuid), in the expected state, acknowledged.
    let rec = agent.recorded();
    let mut terminal: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut states: HashMap<String, i32> = HashMap::new();
    let mut resent = 0;
    for u in &rec.updates {
        if !TaskState::try_from(u.status.state).is_ok_and(croupier_proto::is_terminal) {
            continue;
        }
        if u.duplicate {
            resent += 1;
            continue;
        }
        let id = u.status.task_id.value.clone();
        terminal
            .entry(id.clone())
            .or_default()
            .insert(u.status.uuid.clone().unwrap_or_default());
        states.insert(id, u.status.state);
    }
    let lost: Vec<String> = (0..tasks)
        .map(|n| format!("t{n:05}"))
        .filter(|id| !terminal.contains_key(id))
        .collect();
    let duplicated: Vec<&String> = terminal
        .iter()
        .filter(|(_, u)| u.len() != 1)
        .map(|(id, _)| id)
        .collect();
    assert!(lost.is_empty(), "lost terminal updates: {lost:?}");
    assert!(
        duplicated.is_empty(),
        "duplicated terminal updates: {duplicated:?}"
    );
    for n in 0..tasks {
        let id = format!("t{n:05}");
        assert_eq!(states[&id], task_of(n).1 as i32, "{id}");
    }
    let unacked: Vec<&String> = terminal
        .iter()
        .filter(|(_, u)| u.iter().any(|x| !rec.acked.contains(x)))
        .map(|(id, _)| id)
        .collect();
    assert!(unacked.is_empty(), "not acknowledged: {unacked:?}");

    // The executor forgot every task once its terminal update was acknowledged (it logs that
    // when it reads the ACK, a moment after the agent sent it: waited for, bounded).
    let count_forgotten = || {
        agent
            .executor_stderr()
            .lines()
            .filter(|l| l.contains("forgotten (terminal update acknowledged)"))
            .count()
    };
    let until = Instant::now() + T;
    while count_forgotten() < tasks && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count_forgotten(), tasks, "tasks forgotten by the executor");

    // One directory per task under tasks/, nothing else.
    let dirs: BTreeSet<String> = std::fs::read_dir(agent.sandbox().join("tasks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = (0..tasks).map(|n| format!("t{n:05}")).collect();
    assert_eq!(dirs, expected, "task directories");

    let drift = rss_end - rss_warm;
    println!(
        "long-lived executor: {tasks} tasks, {restarts} agent restarts, {subscriptions} SUBSCRIBEs, {elapsed:.1?}"
    );
    println!(
        "  RSS after {WARM_UP} tasks {rss_warm} KiB, at the end {rss_end} KiB, drift {drift:+} KiB"
    );
    println!(
        "  of which anonymous (RssAnon): {anon_warm} KiB, at the end {anon_end} KiB, drift {:+} KiB",
        anon_end - anon_warm
    );
    println!("  RSS samples (tasks done, KiB, seconds): {samples:?}");
    println!("  open fds after {WARM_UP} tasks {fds_warm}, at the end {fds_end}");
    println!(
        "  terminal updates: {} tasks, {} lost, {} duplicated, {resent} re-sent copies (same uuid)",
        terminal.len(),
        lost.len(),
        duplicated.len()
    );
    assert!(
        drift <= MAX_DRIFT_KB,
        "RSS grew by {drift} KiB between task {WARM_UP} and task {tasks}: {samples:?}"
    );
    assert!(
        fds_end <= fds_warm + 2,
        "open descriptors grew from {fds_warm} to {fds_end}"
    );
    shutdown_ok(&mut agent).await;
}
