//! Real-Mesos tier: health checks, checks and `max_completion_time` of command tasks under a
//! real Mesos 1.11 agent, croupier-executor (drop-in) side by side with Mesos's own
//! `mesos-executor` (reference) in the same test. Every TaskInfo goes as full JSON through
//! `mesos-execute --task=`; both clusters run the same five scenarios at once, and the
//! sequences of updates the framework received (state, reason, healthy, check status,
//! message, source) must be the same - and the expected one.
//!
//! Needs `MESOS_PREFIX` (scripts/test.sh installs ../shared/mesos); without it the test fails
//! with `NOT RUN: real-Mesos tier (...)`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use croupier_testkit::mesos::{
    tasks, ClusterOpts, ExecuteOutput, Install, MesosCluster, MesosExecute, SeenUpdate,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(60);

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_croupier-executor"))
}

/// An HTTP server on 127.0.0.1 answering every request 200 (the probe target of both
/// executors: the posix launcher shares the host's network).
async fn http_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (port, handle)
}

/// One scenario: a task and the `mesos-execute` flags it needs.
struct Scenario {
    id: &'static str,
    task: Value,
    args: Vec<String>,
}

fn scenarios(http_port: u16, tcp_port: u16) -> Vec<Scenario> {
    let timing = |v: &mut Value| {
        v["delay_seconds"] = json!(0.0);
        v["timeout_seconds"] = json!(5.0);
    };
    let mut http = json!({
        "type": "HTTP",
        "http": { "port": http_port, "path": "/health" },
        "interval_seconds": 1.0, "grace_period_seconds": 0.0, "consecutive_failures": 3
    });
    timing(&mut http);
    let mut tcp = json!({
        "type": "TCP",
        "tcp": { "port": tcp_port },
        "interval_seconds": 1.0, "grace_period_seconds": 0.0, "consecutive_failures": 3
    });
    timing(&mut tcp);
    let mut failing = json!({
        "type": "COMMAND",
        "command": { "value": "exit 1", "shell": true },
        "interval_seconds": 0.5, "grace_period_seconds": 0.0, "consecutive_failures": 3
    });
    timing(&mut failing);
    let mut check = json!({
        "type": "HTTP",
        "http": { "port": http_port, "path": "/ready" },
        "interval_seconds": 1.0
    });
    timing(&mut check);

    let task = |id: &str, key: &str, v: Value| {
        let mut t = tasks::command_task(id, "exec sleep 1000");
        t[key] = v;
        t
    };
    // Long enough for the first probe results even on a loaded machine.
    let kill_after = vec!["--kill_after=6secs".to_string()];
    vec![
        Scenario {
            id: "http",
            task: task("http", "health_check", http),
            args: kill_after.clone(),
        },
        Scenario {
            id: "tcp",
            task: task("tcp", "health_check", tcp),
            args: kill_after.clone(),
        },
        Scenario {
            id: "command",
            task: task("command", "health_check", failing),
            args: vec![],
        },
        Scenario {
            id: "check",
            task: task("check", "check", check),
            args: kill_after,
        },
        Scenario {
            id: "deadline",
            task: task(
                "deadline",
                "max_completion_time",
                json!({ "nanoseconds": 1_000_000_000i64 }),
            ),
            args: vec![],
        },
    ]
}

/// Start a cluster and run every scenario through `mesos-execute` at once.
async fn run_all(
    opts: ClusterOpts,
    http_port: u16,
    tcp_port: u16,
) -> (MesosCluster, BTreeMap<&'static str, ExecuteOutput>) {
    let cluster = MesosCluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut runs = tokio::task::JoinSet::new();
    for s in scenarios(http_port, tcp_port) {
        let mut exec = MesosExecute::new(&cluster)
            .task(&s.task)
            .expect("task JSON file")
            .timeout(T);
        for a in s.args {
            exec = exec.arg(a);
        }
        runs.spawn(async move { (s.id, exec.run().await) });
    }
    let mut out = BTreeMap::new();
    while let Some(r) = runs.join_next().await {
        let (id, r) = r.expect("mesos-execute task");
        out.insert(
            id,
            r.unwrap_or_else(|e| panic!("mesos-execute for {id}: {e}")),
        );
    }
    (cluster, out)
}

/// What is compared, one line per update: state, reason, healthy, check status and message
/// (everything the framework sees but uuids and times). A kill racing its own SIGKILL
/// (max_completion_time: grace 0) may end by either signal, upstream too.
fn sequence(out: &ExecuteOutput, id: &str) -> Vec<String> {
    out.updates
        .iter()
        .filter(|u| u.task_id == id)
        .map(|u: &SeenUpdate| {
            let message = u.message.clone().map(|m| {
                if u.reason.as_deref() == Some("REASON_MAX_COMPLETION_TIME_REACHED") {
                    m.replace("signal Killed", "signal Terminated")
                } else {
                    m
                }
            });
            let mut s = u.state.clone();
            for (k, v) in [
                ("reason", u.reason.clone()),
                ("healthy", u.healthy.map(|h| h.to_string())),
                ("check", u.check_status.clone()),
                ("message", message),
            ] {
                if let Some(v) = v {
                    s.push_str(&format!(" {k}={v}"));
                }
            }
            s
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_health_checks_checks_and_deadlines_match_mesos_executor() {
    Install::require();
    let (http_port, server) = http_server().await;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();

    let started = std::time::Instant::now();
    let ((ours_cluster, ours), (theirs_cluster, theirs)) = tokio::join!(
        run_all(ClusterOpts::drop_in(exe()), http_port, tcp_port),
        run_all(ClusterOpts::reference(), http_port, tcp_port),
    );
    eprintln!(
        "both clusters ran every scenario in {:?}",
        started.elapsed()
    );
    server.abort();
    drop(tcp);

    let killed = "TASK_KILLED message=Command terminated with signal Terminated";
    let expected: BTreeMap<&str, Vec<String>> = BTreeMap::from([
        (
            "http",
            vec![
                "TASK_STARTING".to_string(),
                "TASK_RUNNING".into(),
                "TASK_RUNNING reason=REASON_TASK_HEALTH_CHECK_STATUS_UPDATED healthy=true".into(),
                "TASK_KILLING".into(),
                killed.into(),
            ],
        ),
        (
            "tcp",
            vec![
                "TASK_STARTING".to_string(),
                "TASK_RUNNING".into(),
                "TASK_RUNNING reason=REASON_TASK_HEALTH_CHECK_STATUS_UPDATED healthy=true".into(),
                "TASK_KILLING".into(),
                killed.into(),
            ],
        ),
        (
            "command",
            vec![
                "TASK_STARTING".to_string(),
                "TASK_RUNNING".into(),
                "TASK_RUNNING reason=REASON_TASK_HEALTH_CHECK_STATUS_UPDATED healthy=false".into(),
                "TASK_RUNNING reason=REASON_TASK_HEALTH_CHECK_STATUS_UPDATED healthy=false".into(),
                "TASK_RUNNING reason=REASON_TASK_HEALTH_CHECK_STATUS_UPDATED healthy=false".into(),
                "TASK_KILLING".into(),
                "TASK_KILLED healthy=false message=Command terminated with signal Terminated"
                    .into(),
            ],
        ),
        (
            "check",
            vec![
                "TASK_STARTING check=HTTP".to_string(),
                "TASK_RUNNING check=HTTP".into(),
                "TASK_RUNNING reason=REASON_TASK_CHECK_STATUS_UPDATED check=HTTP status code 200"
                    .into(),
                "TASK_KILLING check=HTTP".into(),
                "TASK_KILLED check=HTTP message=Command terminated with signal Terminated".into(),
            ],
        ),
        (
            "deadline",
            vec![
                "TASK_STARTING".to_string(),
                "TASK_RUNNING".into(),
                "TASK_FAILED reason=REASON_MAX_COMPLETION_TIME_REACHED \
                 message=Command terminated with signal Terminated"
                    .into(),
            ],
        ),
    ]);
    let mut report = String::new();
    for (id, want) in &expected {
        let a = sequence(&ours[id], id);
        let b = sequence(&theirs[id], id);
        if &a != want || &b != want {
            report.push_str(&format!(
                "\n== {id}\ncroupier-executor:\n  {}\nmesos-executor:\n  {}\nexpected:\n  {}\n\
                 croupier mesos-execute output:\n{}\n",
                a.join("\n  "),
                b.join("\n  "),
                want.join("\n  "),
                ours[id].summary()
            ));
        }
        // Every update comes from the executor in both.
        for out in [&ours[id], &theirs[id]] {
            assert!(
                out.updates
                    .iter()
                    .all(|u| u.source.as_deref() == Some("SOURCE_EXECUTOR")),
                "{id}: {}",
                out.summary()
            );
        }
    }
    // It really was croupier-executor on one side and mesos-executor on the other.
    for id in expected.keys() {
        let log = |c: &MesosCluster| {
            c.sandbox_of(id)
                .and_then(|d| std::fs::read_to_string(d.join("stderr")).ok())
                .unwrap_or_default()
        };
        assert!(log(&ours_cluster).contains("mode=drop-in"), "{id}");
        assert!(!log(&theirs_cluster).contains("croupier-executor"), "{id}");
    }
    if !report.is_empty() {
        ours_cluster.keep_logs();
        theirs_cluster.keep_logs();
        panic!("update sequences differ:{report}");
    }
    for c in [&ours_cluster, &theirs_cluster] {
        assert!(c.wait_no_processes(T).await.is_empty(), "executors exited");
    }
}
