//! Health checks, checks and `max_completion_time` through the real executor binary against
//! the agent stand-in, in drop-in mode (Mesos's command executor) and custom mode (per task, as
//! Mesos's default executor). Each test asserts the exact sequence of updates (state, reason,
//! `healthy`, `check_status`, message) Mesos 1.11 produces for the same TaskInfo
//! (`src/launcher/executor.cpp`, `src/checks/health_checker.cpp`, `src/checks/checker.cpp`).
//!
//! Probes run every 0.1-0.3 s here; every wait is bounded and generous, and no assertion
//! depends on how fast the machine is: sequences are asserted once the task has ended (or after
//! the probe server has seen enough requests).

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use croupier_proto::v1::{
    check_info, check_status_info, framework_info::capability, health_check, task_status,
    CheckInfo, CheckStatusInfo, CommandInfo, DurationInfo, HealthCheck, KillPolicy, TaskInfo,
    TaskState, TaskStatus,
};
use croupier_testkit::agent::{Agent, AgentConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RUNNING: TaskState = TaskState::TaskRunning;
const HEALTH: task_status::Reason = task_status::Reason::TaskHealthCheckStatusUpdated;
const CHECK: task_status::Reason = task_status::Reason::TaskCheckStatusUpdated;

/// Drop-in mode (mesos-executor's flags), framework with TASK_KILLING_STATE.
fn drop_in() -> AgentConfig {
    let mut c = cfg();
    c.executor_args = vec!["--launcher_dir=/usr/libexec/mesos".into()];
    c.framework_capabilities = vec![capability::Type::TaskKillingState];
    c
}

/// Custom mode, framework with TASK_KILLING_STATE.
fn custom() -> AgentConfig {
    let mut c = cfg();
    c.framework_capabilities = vec![capability::Type::TaskKillingState];
    c
}

/// An HTTP server on 127.0.0.1 answering each request with the next code of a script (the
/// last code repeats), counting requests. Stopped when dropped.
struct HttpScript {
    port: u16,
    hits: Arc<Mutex<usize>>,
    server: tokio::task::JoinHandle<()>,
}

impl HttpScript {
    async fn start(codes: &[u16]) -> HttpScript {
        Self::gated(codes, None).await
    }

    /// As [`HttpScript::start`], but until the file `gate` exists every request gets the
    /// script's first code and the script does not move on.
    async fn gated(codes: &[u16], gate: Option<std::path::PathBuf>) -> HttpScript {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let codes = Arc::new(Mutex::new(codes.iter().copied().collect::<VecDeque<u16>>()));
        let hits = Arc::new(Mutex::new(0usize));
        let h = hits.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let open = gate.as_ref().is_none_or(|g| g.exists());
                let code = {
                    let mut q = codes.lock().unwrap();
                    if q.len() > 1 && open {
                        q.pop_front().unwrap()
                    } else {
                        q[0]
                    }
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    *h.lock().unwrap() += 1;
                    let resp = format!(
                        "HTTP/1.1 {code} Scripted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        HttpScript { port, hits, server }
    }

    fn hits(&self) -> usize {
        *self.hits.lock().unwrap()
    }

    async fn wait_hits(&self, n: usize) {
        let deadline = std::time::Instant::now() + T;
        while self.hits() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} probe requests after {T:?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An HTTPS-only server on 127.0.0.1 (self-signed certificate) answering 204 to every request.
async fn https_server() -> (u16, tokio::task::JoinHandle<()>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server_cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, server)
}

impl Drop for HttpScript {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn health(ty: health_check::Type) -> HealthCheck {
    HealthCheck {
        r#type: Some(ty as i32),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.1),
        timeout_seconds: Some(5.0),
        grace_period_seconds: Some(0.0),
        consecutive_failures: Some(3),
        ..Default::default()
    }
}

fn http_health(port: u16, path: &str) -> HealthCheck {
    HealthCheck {
        http: Some(health_check::HttpCheckInfo {
            port: u32::from(port),
            path: Some(path.into()),
            scheme: None,
            statuses: vec![],
            protocol: None,
        }),
        ..health(health_check::Type::Http)
    }
}

fn command_health(script: &str) -> HealthCheck {
    HealthCheck {
        command: Some(CommandInfo {
            value: Some(script.into()),
            shell: Some(true),
            ..Default::default()
        }),
        ..health(health_check::Type::Command)
    }
}

fn tcp_health(port: u16) -> HealthCheck {
    HealthCheck {
        tcp: Some(health_check::TcpCheckInfo {
            port: u32::from(port),
            protocol: None,
        }),
        ..health(health_check::Type::Tcp)
    }
}

fn grace(d: Duration) -> Option<KillPolicy> {
    Some(KillPolicy {
        grace_period: Some(DurationInfo {
            nanoseconds: d.as_nanos() as i64,
        }),
    })
}

/// The non-duplicate updates of a task, in arrival order.
fn updates(agent: &Agent, id: &str) -> Vec<TaskStatus> {
    agent
        .recorded()
        .updates
        .into_iter()
        .filter(|u| !u.duplicate && u.status.task_id.value == id)
        .map(|u| u.status)
        .collect()
}

/// Waits (bounded) for the first `healthy=true` update of task `id`.
async fn wait_healthy(agent: &Agent, id: &str) {
    agent
        .wait_until(&format!("a healthy update of {id}"), T, |r| {
            r.updates
                .iter()
                .any(|u| {
                    !u.duplicate && u.status.task_id.value == id && u.status.healthy == Some(true)
                })
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dump(agent, id)));
}

/// A task script that waits for the file `go`, then runs a second more and exits `code`.
fn finish_after(go: &std::path::Path, code: i32) -> String {
    format!(
        "until [ -e {} ]; do sleep 0.1; done; sleep 1; exit {code}",
        go.display()
    )
}

/// (state, reason, healthy) of each update: the shape every test compares.
type Shape = (TaskState, Option<task_status::Reason>, Option<bool>);

fn shape(s: &TaskStatus) -> Shape {
    (
        TaskState::try_from(s.state).unwrap(),
        s.reason.and_then(|r| task_status::Reason::try_from(r).ok()),
        s.healthy,
    )
}

fn shapes(agent: &Agent, id: &str) -> Vec<Shape> {
    updates(agent, id).iter().map(shape).collect()
}

fn dump(agent: &Agent, id: &str) -> String {
    format!(
        "updates of {id}:\n{:#?}\nexecutor log:\n{}",
        updates(agent, id)
            .iter()
            .map(|s| (shape(s), s.message.clone(), s.check_status))
            .collect::<Vec<_>>(),
        agent.executor_stderr()
    )
}

/// A health or check update must be a copy of the update before it: everything equal but the
/// uuid, timestamp, reason and the field it reports.
fn assert_copy_of(prev: &TaskStatus, upd: &TaskStatus) {
    let mut a = prev.clone();
    let mut b = upd.clone();
    assert_ne!(a.uuid, b.uuid, "a fresh uuid");
    for s in [&mut a, &mut b] {
        s.uuid = None;
        s.timestamp = None;
        s.reason = None;
        s.healthy = None;
        s.check_status = None;
    }
    assert_eq!(a, b, "a copy of the previous update");
}

const S: Option<task_status::Reason> = None;

#[tokio::test]
async fn http_health_check_that_passes_sends_one_healthy_update() {
    let server = HttpScript::start(&[200]).await;
    let agent = start(drop_in()).await;
    let mut task = agent.command_task("web", "exec sleep 1000");
    task.health_check = Some(http_health(server.port, "/health"));
    agent.launch(task).unwrap();
    // Several probes after the first success: still one healthy=true.
    server.wait_hits(5).await;
    agent.kill("web", None).unwrap();
    let done = agent.wait_terminal("web", T).await.unwrap();
    assert_eq!(
        shapes(&agent, "web"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (RUNNING, Some(HEALTH), Some(true)),
            (TaskState::TaskKilling, S, None),
            (TaskState::TaskKilled, S, None),
        ],
        "{}",
        dump(&agent, "web")
    );
    let u = updates(&agent, "web");
    assert_copy_of(&u[1], &u[2]);
    assert_eq!(
        done.message.as_deref(),
        Some("Command terminated with signal Terminated")
    );
    // No check configured: no check_status anywhere.
    assert!(u.iter().all(|s| s.check_status.is_none()));
}

#[tokio::test]
async fn https_health_check_accepts_a_self_signed_certificate() {
    // As `curl -k`: the certificate is not verified; the server speaks TLS only.
    let (port, server) = https_server().await;
    let agent = start(drop_in()).await;
    let mut task = agent.command_task("tls", "exec sleep 1000");
    let mut hc = http_health(port, "/health");
    hc.http.as_mut().unwrap().scheme = Some("https".into());
    task.health_check = Some(hc);
    agent.launch(task).unwrap();
    agent
        .wait_until("a health update", T, |r| {
            r.updates
                .iter()
                .find(|u| u.status.reason == Some(HEALTH as i32))
                .map(|u| u.status.healthy)
        })
        .await
        .unwrap();
    agent.kill("tls", None).unwrap();
    agent.wait_terminal("tls", T).await.unwrap();
    server.abort();
    assert_eq!(
        shapes(&agent, "tls"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (RUNNING, Some(HEALTH), Some(true)),
            (TaskState::TaskKilling, S, None),
            (TaskState::TaskKilled, S, None),
        ],
        "{}",
        dump(&agent, "tls")
    );
}

#[tokio::test]
async fn http_399_is_healthy_400_is_not_and_consecutive_failures_kill() {
    // 399 healthy; then 400s: three failures in a row kill the task with its kill policy's
    // grace (the task ignores SIGTERM, so it dies of SIGKILL after 0.5 s). The 400s start
    // only once the task ignores SIGTERM.
    let agent = start(drop_in()).await;
    let trapped = agent.sandbox().join("trapped");
    let server = HttpScript::gated(&[399, 399, 400], Some(trapped.clone())).await;
    let mut task = agent.command_task(
        "web",
        &format!(
            "trap '' TERM; touch {}; while :; do sleep 0.1; done",
            trapped.display()
        ),
    );
    task.health_check = Some(http_health(server.port, "/"));
    task.kill_policy = grace(Duration::from_millis(500));
    agent.launch(task).unwrap();
    let done = agent.wait_terminal("web", T).await.unwrap();
    assert_eq!(
        shapes(&agent, "web"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (RUNNING, Some(HEALTH), Some(true)),
            (RUNNING, Some(HEALTH), Some(false)),
            (RUNNING, Some(HEALTH), Some(false)),
            (RUNNING, Some(HEALTH), Some(false)),
            (TaskState::TaskKilling, S, None),
            (TaskState::TaskKilled, S, Some(false)),
        ],
        "{}",
        dump(&agent, "web")
    );
    let u = updates(&agent, "web");
    for i in 3..6 {
        assert_copy_of(&u[i - 1], &u[i]);
    }
    assert_eq!(
        done.message.as_deref(),
        Some("Command terminated with signal Killed")
    );
    assert!(server.hits() >= 5);
}

#[tokio::test]
async fn grace_period_hides_failures_only_before_the_first_success_and_recovery_is_reported() {
    // The probe's n-th run: 1-2 fail (inside the grace period, ignored), 3 passes, 4 fails
    // (still inside the grace period, but after a success: reported), 5 and later pass.
    let agent = start(drop_in()).await;
    let count = agent.sandbox().join("probe-count");
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
         case $n in 1|2|4) exit 1;; *) exit 0;; esac",
        c = count.display()
    );
    let mut task = agent.command_task("g", "exec sleep 1000");
    let mut hc = command_health(&script);
    hc.grace_period_seconds = Some(600.0);
    task.health_check = Some(hc);
    agent.launch(task).unwrap();
    let runs = || {
        std::fs::read_to_string(&count)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    let until = std::time::Instant::now() + T;
    while runs() < 8 {
        assert!(std::time::Instant::now() < until, "{}", dump(&agent, "g"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.kill("g", None).unwrap();
    agent.wait_terminal("g", T).await.unwrap();
    assert_eq!(
        shapes(&agent, "g"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (RUNNING, Some(HEALTH), Some(true)),
            (RUNNING, Some(HEALTH), Some(false)),
            (RUNNING, Some(HEALTH), Some(true)),
            (TaskState::TaskKilling, S, None),
            (TaskState::TaskKilled, S, None),
        ],
        "{}",
        dump(&agent, "g")
    );
}

#[tokio::test]
async fn a_probe_timeout_is_a_failure_and_its_process_is_killed() {
    // The probe hangs; timeout 2 s (time enough, on a loaded machine, for its shell to start
    // and write its pid), one failure kills. The probe process is gone after.
    let agent = start(drop_in()).await;
    let pid_file = agent.sandbox().join("probe.pid");
    let mut task = agent.command_task("slow", "exec sleep 1000");
    let mut hc = command_health(&format!(
        "echo $$ > {}; exec sleep 1000",
        pid_file.display()
    ));
    hc.timeout_seconds = Some(2.0);
    hc.consecutive_failures = Some(1);
    task.health_check = Some(hc);
    agent.launch(task).unwrap();
    let done = agent.wait_terminal("slow", T).await.unwrap();
    assert_eq!(
        shapes(&agent, "slow"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (RUNNING, Some(HEALTH), Some(false)),
            (TaskState::TaskKilling, S, None),
            (TaskState::TaskKilled, S, Some(false)),
        ],
        "{}",
        dump(&agent, "slow")
    );
    assert_eq!(
        done.message.as_deref(),
        Some("Command terminated with signal Terminated")
    );
    let probe = read_pid(&pid_file, T).await;
    wait_gone(&[probe], Duration::from_secs(5))
        .await
        .expect("the timed-out probe was killed");
    assert!(
        agent.executor_stderr().contains("timed out after"),
        "{}",
        agent.executor_stderr()
    );
}

#[tokio::test]
async fn tcp_health_check_and_probes_that_do_not_disturb_the_task() {
    // TCP: healthy while the port listens; the task itself finishes on its own with status 0
    // while COMMAND-free TCP probes and the task's own exit are told apart.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut agent = start(drop_in()).await;
    // The task ends a second after the test saw it healthy (however slow the machine is).
    let go = agent.sandbox().join("go");
    let mut task = agent.command_task("tcp", &finish_after(&go, 0));
    task.health_check = Some(tcp_health(port));
    agent.launch(task).unwrap();
    wait_healthy(&agent, "tcp").await;
    std::fs::write(&go, "").unwrap();
    let done = agent.wait_terminal("tcp", T).await.unwrap();
    drop(listener);
    assert_eq!(
        shapes(&agent, "tcp"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (RUNNING, Some(HEALTH), Some(true)),
            (TaskState::TaskFinished, S, None),
        ],
        "{}",
        dump(&agent, "tcp")
    );
    assert_eq!(
        done.message.as_deref(),
        Some("Command exited with status 0")
    );
    assert_eq!(agent.wait_executor_exit(T).await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn command_probes_are_not_the_tasks_processes() {
    // A COMMAND probe runs most of the time (0.3 s of every 0.4 s): the task ends with its own
    // status, and the drop-in executor never mistakes a probe for the task (or an orphan of it).
    let mut agent = start(drop_in()).await;
    let go = agent.sandbox().join("go");
    let mut task = agent.command_task("p", &finish_after(&go, 7));
    task.health_check = Some(command_health("sleep 0.3; exit 0"));
    agent.launch(task).unwrap();
    wait_healthy(&agent, "p").await;
    std::fs::write(&go, "").unwrap();
    let done = agent.wait_terminal("p", T).await.unwrap();
    assert_eq!(
        shapes(&agent, "p"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (RUNNING, Some(HEALTH), Some(true)),
            (TaskState::TaskFailed, S, None),
        ],
        "{}",
        dump(&agent, "p")
    );
    assert_eq!(
        done.message.as_deref(),
        Some("Command exited with status 7")
    );
    assert_eq!(agent.wait_executor_exit(T).await.unwrap().code(), Some(0));
}

fn http_status(code: Option<u32>) -> CheckStatusInfo {
    CheckStatusInfo {
        r#type: Some(check_info::Type::Http as i32),
        http: Some(check_status_info::Http { status_code: code }),
        ..Default::default()
    }
}

#[tokio::test]
async fn http_check_reports_each_change_carries_an_empty_status_and_never_kills() {
    // 200 twice, then 500 for good; a check never kills and never sets `healthy`.
    let server = HttpScript::start(&[200, 200, 500]).await;
    let agent = start(drop_in()).await;
    let mut task = agent.command_task("c", "exec sleep 1000");
    task.check = Some(CheckInfo {
        r#type: Some(check_info::Type::Http as i32),
        http: Some(check_info::Http {
            port: u32::from(server.port),
            path: Some("/ready".into()),
        }),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.1),
        timeout_seconds: Some(5.0),
        ..Default::default()
    });
    agent.launch(task).unwrap();
    server.wait_hits(8).await;
    agent.kill("c", None).unwrap();
    agent.wait_terminal("c", T).await.unwrap();
    let u = updates(&agent, "c");
    assert_eq!(
        shapes(&agent, "c"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (RUNNING, Some(CHECK), None),
            (RUNNING, Some(CHECK), None),
            (TaskState::TaskKilling, S, None),
            (TaskState::TaskKilled, S, None),
        ],
        "{}",
        dump(&agent, "c")
    );
    let checks: Vec<CheckStatusInfo> = u.iter().map(|s| s.check_status.unwrap()).collect();
    assert_eq!(
        checks,
        vec![
            http_status(None),
            http_status(None),
            http_status(Some(200)),
            http_status(Some(500)),
            http_status(None),
            http_status(None),
        ]
    );
    assert_copy_of(&u[1], &u[2]);
    assert_copy_of(&u[2], &u[3]);
}

#[tokio::test]
async fn max_completion_time_fails_the_task_without_killing_state() {
    let agent = start(drop_in()).await;
    let mut task = agent.command_task("late", "exec sleep 1000");
    task.max_completion_time = Some(DurationInfo {
        nanoseconds: 1_000_000_000,
    });
    task.kill_policy = grace(Duration::from_secs(30));
    agent.launch(task).unwrap();
    let done = agent.wait_terminal("late", T).await.unwrap();
    assert_eq!(
        shapes(&agent, "late"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (
                TaskState::TaskFailed,
                Some(task_status::Reason::MaxCompletionTimeReached),
                None
            ),
        ],
        "{}",
        dump(&agent, "late")
    );
    let msg = done.message.unwrap_or_default();
    assert!(msg.starts_with("Command terminated with signal "), "{msg}");
}

#[tokio::test]
async fn custom_mode_runs_health_checks_checks_and_deadlines_per_task() {
    // A LAUNCH_GROUP of two tasks: `sick` fails its COMMAND health check until killed; its
    // sibling `ok` (a TCP check that succeeds) is then killed with the group, and - as Mesos's
    // default executor - every terminal update after a health kill says healthy=false. A
    // LAUNCH task with its CommandInfo in `data` hits its max_completion_time; another one
    // finishes before its deadline.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut agent = start(custom()).await;
    let mut deadline = agent.data_task(
        "deadline",
        &CommandInfo {
            value: Some("exec sleep 1000".into()),
            ..Default::default()
        },
    );
    deadline.max_completion_time = Some(DurationInfo {
        nanoseconds: 500_000_000,
    });
    let mut quick = agent.command_task("quick", "exit 0");
    quick.max_completion_time = Some(DurationInfo {
        nanoseconds: 60_000_000_000,
    });
    agent.launch(deadline).unwrap();
    agent.launch(quick).unwrap();
    let d = agent.wait_terminal("deadline", T).await.unwrap();
    let q = agent.wait_terminal("quick", T).await.unwrap();
    assert_eq!(
        shapes(&agent, "deadline"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (
                TaskState::TaskFailed,
                Some(task_status::Reason::MaxCompletionTimeReached),
                None
            ),
        ],
        "{}",
        dump(&agent, "deadline")
    );
    assert!(d
        .message
        .unwrap_or_default()
        .starts_with("Command terminated with signal "));
    assert_eq!(q.state, TaskState::TaskFinished as i32);

    let mut sick: TaskInfo = agent.command_task("sick", "exec sleep 1000");
    let mut hc = command_health("echo probing >&2; exit 3");
    hc.consecutive_failures = Some(2);
    sick.health_check = Some(hc);
    let mut ok = agent.command_task("ok", "exec sleep 1000");
    ok.check = Some(CheckInfo {
        r#type: Some(check_info::Type::Tcp as i32),
        tcp: Some(check_info::Tcp {
            port: u32::from(port),
        }),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.1),
        timeout_seconds: Some(5.0),
        ..Default::default()
    });
    ok.kill_policy = grace(Duration::from_secs(1));
    // `ok` reports its first check result before `sick` is started.
    agent.launch_group(vec![ok, sick]).unwrap();
    let s = agent.wait_terminal("sick", T).await.unwrap();
    let o = agent.wait_terminal("ok", T).await.unwrap();
    drop(listener);
    assert_eq!(
        shapes(&agent, "sick"),
        vec![
            (TaskState::TaskStarting, S, None),
            (RUNNING, S, None),
            (RUNNING, Some(HEALTH), Some(false)),
            (RUNNING, Some(HEALTH), Some(false)),
            (TaskState::TaskKilling, S, None),
            (TaskState::TaskKilled, S, Some(false)),
        ],
        "{}",
        dump(&agent, "sick")
    );
    assert_eq!(
        s.message.as_deref(),
        Some("Command terminated with signal Terminated")
    );
    let ok_shapes = shapes(&agent, "ok");
    assert_eq!(
        ok_shapes[..2],
        [(TaskState::TaskStarting, S, None), (RUNNING, S, None)]
    );
    assert_eq!(
        ok_shapes[ok_shapes.len() - 2..],
        [
            (TaskState::TaskKilling, S, None),
            (TaskState::TaskKilled, S, Some(false))
        ],
        "{}",
        dump(&agent, "ok")
    );
    // The check: reported once as succeeded (unless `ok` was killed before its first probe).
    let ok_updates = updates(&agent, "ok");
    let tcp_empty = CheckStatusInfo {
        r#type: Some(check_info::Type::Tcp as i32),
        tcp: Some(check_status_info::Tcp { succeeded: None }),
        ..Default::default()
    };
    let checks: Vec<_> = ok_updates
        .iter()
        .filter(|s| s.reason == Some(CHECK as i32))
        .map(|s| s.check_status.unwrap())
        .collect();
    assert!(checks.len() <= 1, "{}", dump(&agent, "ok"));
    for c in &checks {
        assert_eq!(c.tcp.and_then(|t| t.succeeded), Some(true));
    }
    assert_eq!(o.check_status, Some(tcp_empty));
    // The probe's output goes to the executor's stderr, not the task's.
    assert!(agent.executor_stderr().contains("probing"));
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn an_invalid_health_check_fails_the_task_naming_the_problem() {
    let agent = start(drop_in()).await;
    let mut task = agent.command_task("bad", "exec sleep 1000");
    task.health_check = Some(http_health(8080, "no-slash"));
    agent.launch(task).unwrap();
    let done = agent.wait_terminal("bad", T).await.unwrap();
    assert_eq!(done.state, TaskState::TaskFailed as i32);
    assert_eq!(done.reason, Some(task_status::Reason::TaskInvalid as i32));
    let msg = done.message.unwrap_or_default();
    assert!(
        msg.contains("health_check") && msg.contains("'no-slash'"),
        "{msg}"
    );
}

#[tokio::test]
async fn custom_mode_pauses_checking_while_the_agent_is_away() {
    // As Mesos's default executor: no probe runs while the agent is gone (a failing health
    // check cannot kill the task then); probing resumes at once after re-subscribing. The
    // first probe is due 1.5 s after the task starts; the agent goes away right after
    // TASK_RUNNING for 4 s.
    let mut c = custom();
    c.checkpoint = true;
    let agent = start(c).await;
    let log = agent.sandbox().join("probe-times");
    let mut task = agent.command_task("away", "exec sleep 1000");
    let mut hc = command_health(&format!("date +%s.%N >> {}; exit 1", log.display()));
    hc.delay_seconds = Some(1.5);
    hc.interval_seconds = Some(0.2);
    task.health_check = Some(hc);
    agent.launch(task).unwrap();
    agent.wait_update("away", RUNNING, T).await.unwrap();
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let down_at = wall();
    agent.restart(Duration::from_secs(4));
    let done = agent.wait_terminal("away", T).await.unwrap();
    assert_eq!(done.state, TaskState::TaskKilled as i32);
    assert_eq!(
        shapes(&agent, "away")[2..],
        [
            (RUNNING, Some(HEALTH), Some(false)),
            (RUNNING, Some(HEALTH), Some(false)),
            (RUNNING, Some(HEALTH), Some(false)),
            (TaskState::TaskKilling, S, None),
            (TaskState::TaskKilled, S, Some(false)),
        ],
        "{}",
        dump(&agent, "away")
    );
    let times: Vec<f64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let during: Vec<f64> = times
        .iter()
        .map(|t| t - down_at)
        .filter(|d| (1.0..3.5).contains(d))
        .collect();
    assert!(
        during.is_empty(),
        "probes ran {during:?} s after the agent went away\n{}",
        dump(&agent, "away")
    );
    assert!(times.len() >= 3, "{times:?}");
}
