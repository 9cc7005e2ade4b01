//! Real-Mesos tier: the shuffle service decides an application's cleanup with a real Mesos 1.11
//! cluster: it asks the agent for its master (`GET_FLAGS`) and that master whether the framework
//! was removed (`GET_FRAMEWORKS`, whose `completed_frameworks` are the torn-down ones; an agent's
//! own list only says a framework is idle there). The applications are frameworks of the harness's
//! v1 scheduler, each running a `sleep` task on the agent so the agent knows them; the appId
//! the service sees is the framework id, as for Spark on Mesos.
//!
//! - files stay while the framework is active, even after the service was SIGKILLed and
//!   restarted and the driver's heartbeats stopped;
//! - once the framework's scheduler dies without a TEARDOWN (its connection dropped, as when the
//!   driver process is SIGKILLed; failover_timeout 0), the master reports it completed and the
//!   files go; a framework that never sent RegisterDriver is cleaned the same way;
//! - with the agent stopped nothing is deleted.
//!
//! Needs `MESOS_PREFIX` (scripts/test.sh installs ../shared/mesos); without it every test here
//! fails with `NOT RUN: real-Mesos tier (...)`.

mod shuffle_support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use croupier_testkit::mesos::{
    tasks, ClusterOpts, FrameworkOpts, Install, MesosCluster, Scheduler,
};
use croupier_testkit::ports::loopback_port as free_port;
use croupier_testkit::shuffle::layout::ExecutorDirs;
use croupier_testkit::shuffle::Client;
use serde_json::json;
use shuffle_support::Ess;

const T: Duration = Duration::from_secs(90);

/// A framework with one long `sleep` task running on the agent.
async fn framework(c: &MesosCluster, name: &str) -> Scheduler {
    let s = Scheduler::subscribe(
        c.master_addr(),
        FrameworkOpts {
            name: name.into(),
            ..FrameworkOpts::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let offer = s.next_offer(T).await.unwrap_or_else(|e| panic!("{e}"));
    let task = format!("{name}-sleep");
    let mut t = tasks::command_task(&task, "sleep 600");
    t["agent_id"] = offer["agent_id"].clone();
    // The rest of the agent is refused for an hour, so the next framework gets the offers.
    s.call(json!({
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [offer["id"].clone()],
            "operations": [{ "type": "LAUNCH", "launch": { "task_infos": [t] } }],
            "filters": { "refuse_seconds": 3600.0 },
        }
    }))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    s.wait_update(&task, "TASK_RUNNING", T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.summary()));
    while let Ok(o) = s.next_offer(Duration::from_millis(200)).await {
        s.call(json!({
            "type": "DECLINE",
            "decline": { "offer_ids": [o["id"].clone()], "filters": { "refuse_seconds": 3600.0 } }
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    s
}

fn start_service(port: u16, state: &Path, agent: &str) -> Ess {
    let args: Vec<String> = [
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--conf",
        &format!("croupier.state.dir={}", state.display()),
        "--conf",
        &format!("croupier.mesos.agent.address={agent}"),
        "--conf",
        "croupier.mesos.agent.confirm.interval=1s",
        "--conf",
        "spark.shuffle.cleaner.interval=200ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Ess::start_with(&args, &[])
}

fn wait_log(ess: &Ess, needle: &str, within: Duration) -> String {
    ess.wait_log(needle, within).unwrap_or_else(|| {
        panic!(
            "no log line with {needle:?} within {within:?}; log:\n{}",
            ess.log().join("\n")
        )
    })
}

fn count_lines(ess: &Ess, needle: &str) -> usize {
    ess.log().iter().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_follow_the_framework_not_the_heartbeats() {
    Install::require();
    let cluster = MesosCluster::start(ClusterOpts::reference())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let with_driver = framework(&cluster, "with-driver").await;
    let driverless = framework(&cluster, "driverless").await;
    let (f1, f2) = (with_driver.framework_id(), driverless.framework_id());
    let agent = cluster.agent_addr().to_string();
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let port = free_port();

    let mut ess = start_service(port, state.path(), &agent);
    let d1 = ExecutorDirs::create(files.path(), "f1-exec", 2);
    d1.write_map_output(0, 3, &[b"kept while active", b"x"]);
    let d2 = ExecutorDirs::create(files.path(), "f2-exec", 2);
    d2.write_map_output(0, 4, &[b"never a driver"]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(&f1, "1", d1.info.clone())
        .await
        .unwrap();
    c.register_driver(&f1, 1000).await.unwrap();
    c.heartbeat(&f1).await.unwrap();
    c.register_executor(&f2, "1", d2.info.clone())
        .await
        .unwrap();
    drop(c);

    // A crash and a restart: the driver's heartbeat connection is gone for good.
    ess.kill();
    let ess = start_service(port, state.path(), &agent);
    wait_log(
        &ess,
        "restored 2 executor and 1 driver",
        Duration::from_secs(10),
    );
    wait_log(
        &ess,
        &format!("keeping the shuffle files of {f1}: its driver is silent"),
        Duration::from_secs(30),
    );
    wait_log(
        &ess,
        &format!("keeping the shuffle files of {f2}: its driver is not registered"),
        Duration::from_secs(30),
    );
    // Several rounds past the driver's timeout and the confirmation interval: still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(d1.info.local_dirs.iter().all(|d| Path::new(d).exists()));
    assert!(d2.info.local_dirs.iter().all(|d| Path::new(d).exists()));
    assert_eq!(
        count_lines(&ess, &format!("keeping the shuffle files of {f1}")),
        1,
        "logged once"
    );
    let c = Client::connect(ess.addr).await.unwrap();
    let got = c.fetch_blocks(&f1, "1", &["shuffle_0_3_0"]).await.unwrap();
    assert_eq!(
        got[0].1.as_ref().unwrap(),
        &Bytes::from_static(b"kept while active")
    );
    drop(c);

    // The driver dies without a TEARDOWN: the master removes the framework (failover_timeout 0),
    // its task is killed and the agent lists it completed.
    let t0 = Instant::now();
    drop(with_driver);
    wait_log(
        &ess,
        &format!("the Mesos master reports framework {f1} completed"),
        T,
    );
    wait_log(&ess, &format!("removed the shuffle files of {f1}"), T);
    eprintln!(
        "framework {f1} cleaned {:?} after its scheduler died",
        t0.elapsed()
    );
    assert!(d1.info.local_dirs.iter().all(|d| !Path::new(d).exists()));
    assert!(
        d2.info.local_dirs.iter().all(|d| Path::new(d).exists()),
        "the other framework is still active"
    );

    // The framework that never registered a driver is cleaned when it completes.
    driverless
        .teardown()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_log(&ess, &format!("removed the shuffle files of {f2}"), T);
    assert!(d2.info.local_dirs.iter().all(|d| !Path::new(d).exists()));
    let removed = ess
        .log()
        .into_iter()
        .find(|l| l.contains(&format!("removed the shuffle files of {f1}")))
        .unwrap();
    assert!(!removed.contains(" 0 bytes"), "{removed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_agent_stopped_nothing_is_deleted() {
    Install::require();
    let mut cluster = MesosCluster::start(ClusterOpts::reference())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let fw = framework(&cluster, "agent-down").await;
    let f = fw.framework_id();
    let agent = cluster.agent_addr().to_string();
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // The agent goes away first (crash, upgrade): every question fails from the start.
    cluster.kill_agent();
    drop(fw);
    let ess = start_service(free_port(), state.path(), &agent);
    let d = ExecutorDirs::create(files.path(), "exec", 2);
    d.write_map_output(1, 1, &[b"keep me"]);
    let silent = ExecutorDirs::create(files.path(), "silent", 1);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(&f, "1", d.info.clone()).await.unwrap();
    // An app the agent never knew, with a driver that goes silent at once.
    c.register_executor("app-unknown-to-agent", "1", silent.info.clone())
        .await
        .unwrap();
    c.register_driver("app-unknown-to-agent", 200)
        .await
        .unwrap();
    drop(c);
    // Well past the driver's timeout and the confirmation interval, many rounds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_lines(&ess, "cannot reach the Mesos agent") < 10 {
        assert!(
            Instant::now() < deadline,
            "no repeated unreachable warnings; log:\n{}",
            ess.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.info.local_dirs.iter().all(|p| Path::new(p).exists()));
    assert!(silent.info.local_dirs.iter().all(|p| Path::new(p).exists()));
    assert_eq!(
        count_lines(&ess, "Removing shuffle files"),
        0,
        "{:?}",
        ess.log()
    );
    let c = Client::connect(ess.addr).await.unwrap();
    let got = c.fetch_blocks(&f, "1", &["shuffle_1_1_0"]).await.unwrap();
    assert_eq!(got[0].1.as_ref().unwrap(), &Bytes::from_static(b"keep me"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_http_authentication_is_asked_with_credentials() {
    Install::require();
    let secrets = tempfile::tempdir().unwrap();
    let creds = secrets.path().join("credentials.json");
    std::fs::write(
        &creds,
        r#"{"credentials":[{"principal":"croupier","secret":"s3cr3t"}]}"#,
    )
    .unwrap();
    let good = secrets.path().join("good");
    std::fs::write(&good, "s3cr3t\n").unwrap();
    let bad = secrets.path().join("bad");
    std::fs::write(&bad, "wrong\n").unwrap();
    let mut opts = ClusterOpts::reference();
    // /api/v1 is in the agent's read-write realm (src/slave/slave.cpp of 1.11.0).
    opts.agent_flags = vec![
        "--authenticate_http_readwrite".into(),
        format!("--http_credentials={}", creds.display()),
    ];
    let cluster = MesosCluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let fw = framework(&cluster, "authenticated").await;
    let f = fw.framework_id();
    let agent = cluster.agent_addr().to_string();
    let files = tempfile::tempdir().unwrap();
    let d = ExecutorDirs::create(files.path(), "exec", 1);
    let mut services = Vec::new();
    for secret in [&good, &bad] {
        let state = tempfile::tempdir().unwrap();
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--conf",
            &format!("croupier.state.dir={}", state.path().display()),
            "--conf",
            &format!("croupier.mesos.agent.address={agent}"),
            "--conf",
            "croupier.mesos.agent.principal=croupier",
            "--conf",
            &format!("croupier.mesos.agent.secret.file={}", secret.display()),
            "--conf",
            "croupier.mesos.agent.confirm.interval=0s",
            "--conf",
            "spark.shuffle.cleaner.interval=200ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let ess = Ess::start_with(&args, &[]);
        let c = Client::connect(ess.addr).await.unwrap();
        c.register_executor(&f, "1", d.info.clone()).await.unwrap();
        services.push((ess, state));
    }
    let (with_good, _) = &services[0];
    let (with_bad, _) = &services[1];
    wait_log(
        with_good,
        &format!("keeping the shuffle files of {f}: its driver is not registered"),
        Duration::from_secs(30),
    );
    let refused = wait_log(with_bad, "answered with HTTP 401", Duration::from_secs(30));
    assert!(
        !refused.contains("wrong") && !refused.contains("s3cr3t"),
        "{refused}"
    );
    assert!(
        !with_good
            .log()
            .iter()
            .chain(with_bad.log().iter())
            .any(|l| l.contains("s3cr3t")),
        "a secret reached the log"
    );
    assert!(d.info.local_dirs.iter().all(|p| Path::new(p).exists()));
    drop(fw);
}
