//! Real-Mesos tier, custom mode: a framework of ours (the harness's v1 HTTP scheduler) names
//! croupier-executor in a CUSTOM `ExecutorInfo` and launches on a real Mesos 1.11 agent: task
//! groups, several LAUNCHes with the CommandInfo in `TaskInfo.data` (JSON and protobuf), URIs
//! fetched by the executor, two executors sharing one download, and an agent restart.
//!
//! Needs `MESOS_PREFIX` (scripts/test.sh installs ../shared/mesos); without it every test here
//! fails with `NOT RUN: real-Mesos tier (...)`.

mod fetcher_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use croupier_testkit::mesos::{
    tasks, ClusterOpts, FrameworkOpts, Install, MesosCluster, Scheduler,
};
use fetcher_support::{bytes, gzip, RawTar, Route, Server};
use prost::Message;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(90);

fn exe() -> String {
    env!("CARGO_BIN_EXE_croupier-executor").to_string()
}

async fn setup(checkpoint: bool) -> (MesosCluster, Scheduler) {
    Install::require();
    let c = MesosCluster::start(ClusterOpts::reference())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = Scheduler::subscribe(
        c.master_addr(),
        FrameworkOpts {
            checkpoint,
            ..FrameworkOpts::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (c, s)
}

/// A CUSTOM ExecutorInfo for croupier-executor with its fetcher cache in the cluster's dir.
fn executor(c: &MesosCluster, s: &Scheduler, id: &str) -> Value {
    let cache = c.dir().join("croupier-cache").display().to_string();
    s.with_framework(tasks::custom_executor(
        id,
        &exe(),
        &[
            ("CROUPIER_FETCHER_CACHE_DIR", cache.as_str()),
            ("RUST_LOG", "info"),
        ],
    ))
}

/// A task for a custom executor: no `command`, the CommandInfo JSON in `data`.
fn data_task(id: &str, executor: &Value, command: &Value) -> Value {
    let mut t = tasks::bare_task(id);
    t["executor"] = executor.clone();
    tasks::with_data(t, &serde_json::to_vec(command).unwrap_or_default())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("<{}: {e}>", p.display()))
}

fn executor_log(c: &MesosCluster, id: &str) -> String {
    c.sandbox_of(id)
        .map(|s| read(&s.join("stderr")))
        .unwrap_or_default()
}

async fn finished(s: &Scheduler, c: &MesosCluster, task: &str, executor_id: &str) {
    let st = s
        .wait_terminal(task, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\nexecutor log:\n{}", executor_log(c, executor_id)));
    assert_eq!(
        st["state"],
        "TASK_FINISHED",
        "{task}: {st}\nexecutor log:\n{}",
        executor_log(c, executor_id)
    );
    assert_eq!(st["source"], "SOURCE_EXECUTOR");
}

async fn teardown_clean(s: &Scheduler, c: &MesosCluster) {
    s.teardown().await.unwrap_or_else(|e| panic!("{e}"));
    let left = c.wait_no_processes(T).await;
    assert!(left.is_empty(), "after TEARDOWN: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_custom_launch_group_runs_each_task_in_its_own_dir() {
    let (c, s) = setup(false).await;
    let e = executor(&c, &s, "group-exec");
    let offer = s.next_offer(T).await.unwrap_or_else(|e| panic!("{e}"));
    let mut t1 = tasks::bare_task("g1");
    t1["command"] = json!({ "value": "pwd > where; echo one > mine", "shell": true });
    let mut t2 = tasks::bare_task("g2");
    t2["command"] = json!({ "value": "pwd > where; echo two > mine", "shell": true });
    s.launch_group(&offer, e, vec![t1, t2])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    finished(&s, &c, "g1", "group-exec").await;
    finished(&s, &c, "g2", "group-exec").await;
    for t in ["g1", "g2"] {
        let states = s.states(t);
        assert!(
            states.ends_with(&["TASK_RUNNING".to_string(), "TASK_FINISHED".to_string()]),
            "{t}: {states:?}"
        );
    }
    let sandbox = c.sandbox_of("group-exec").expect("executor sandbox");
    let d1 = sandbox.join("tasks/g1");
    let d2 = sandbox.join("tasks/g2");
    assert_eq!(read(&d1.join("mine")), "one\n");
    assert_eq!(read(&d2.join("mine")), "two\n");
    assert_eq!(PathBuf::from(read(&d1.join("where")).trim()), d1);
    assert_eq!(PathBuf::from(read(&d2.join("where")).trim()), d2);
    // One executor (one container) ran both.
    assert_eq!(c.sandboxes().len(), 1);
    teardown_clean(&s, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_custom_launch_with_command_in_data_json_and_protobuf() {
    let (c, s) = setup(false).await;
    let e = executor(&c, &s, "data-exec");
    let offer = s.next_offer(T).await.unwrap_or_else(|e| panic!("{e}"));
    let json_cmd = json!({ "value": "echo from-json > out", "shell": true });
    s.launch(&offer, vec![data_task("tj", &e, &json_cmd)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    finished(&s, &c, "tj", "data-exec").await;

    // A second LAUNCH on the same (running) executor, CommandInfo as protobuf bytes.
    let pb = croupier_proto::v1::CommandInfo {
        value: Some("echo from-protobuf > out".into()),
        shell: Some(true),
        ..Default::default()
    }
    .encode_to_vec();
    let mut tp = tasks::bare_task("tp");
    tp["executor"] = e.clone();
    let tp = tasks::with_data(tp, &pb);
    let offer = s.next_offer(T).await.unwrap_or_else(|e| panic!("{e}"));
    s.launch(&offer, vec![tp])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    finished(&s, &c, "tp", "data-exec").await;

    // A third, killed by the framework (KILL with a kill-policy grace).
    let long = json!({ "value": "echo up; exec sleep 1000", "shell": true });
    let offer = s.next_offer(T).await.unwrap_or_else(|e| panic!("{e}"));
    s.launch(&offer, vec![data_task("tk", &e, &long)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.wait_update("tk", "TASK_RUNNING", T)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.kill("tk", c.agent_id(), Some(Duration::from_secs(1)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let killed = s
        .wait_terminal("tk", T)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(killed["state"], "TASK_KILLED", "{killed}");
    assert!(
        s.states("tk").contains(&"TASK_KILLING".to_string()),
        "{:?}",
        s.states("tk")
    );

    let sandbox = c.sandbox_of("data-exec").expect("executor sandbox");
    assert_eq!(read(&sandbox.join("tasks/tj/out")), "from-json\n");
    assert_eq!(read(&sandbox.join("tasks/tp/out")), "from-protobuf\n");
    assert_eq!(c.sandboxes().len(), 1, "all three tasks on one executor");
    teardown_clean(&s, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_custom_task_uris_fetched_by_croupier() {
    let srv = Server::start();
    let tgz = gzip(
        &RawTar::new()
            .file("app/VERSION", b"1.2.3\n")
            .file("app/lib.bin", &bytes(64 << 10, 3))
            .finish(),
    );
    srv.route("/app.tgz", Route::Ok(Arc::new(tgz)));
    srv.route("/conf.txt", Route::Ok(Arc::new(b"key=value\n".to_vec())));
    let (c, s) = setup(false).await;
    let e = executor(&c, &s, "fetch-exec");
    let cmd = json!({
        "value": "test \"$(cat app/VERSION)\" = 1.2.3 && test $(wc -c < app/lib.bin) -eq 65536 && cat conf.txt",
        "shell": true,
        "uris": [
            { "value": srv.url("/app.tgz"), "extract": true },
            { "value": srv.url("/conf.txt") },
        ],
    });
    let offer = s.next_offer(T).await.unwrap_or_else(|e| panic!("{e}"));
    s.launch(&offer, vec![data_task("tf", &e, &cmd)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    finished(&s, &c, "tf", "fetch-exec").await;
    let sandbox = c.sandbox_of("fetch-exec").expect("executor sandbox");
    assert_eq!(read(&sandbox.join("tasks/tf/stdout")), "key=value\n");
    assert_eq!(srv.hits("/app.tgz"), 1);
    assert_eq!(srv.hits("/conf.txt"), 1);
    let log = executor_log(&c, "fetch-exec");
    assert!(log.contains("fetch_uris=2"), "{log}");
    teardown_clean(&s, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_custom_two_executors_share_one_download() {
    let srv = Server::start();
    let tgz = gzip(
        &RawTar::new()
            .file("spark/RELEASE", b"Spark 3.5.7\n")
            .file("spark/jars/big.bin", &bytes(2 << 20, 5))
            .finish(),
    );
    // Slow enough that the second executor asks while the first download runs.
    srv.route(
        "/spark.tgz",
        Route::Slow {
            body: Arc::new(tgz),
            chunk: 128 << 10,
            delay: Duration::from_millis(40),
        },
    );
    let (c, s) = setup(false).await;
    let cmd = json!({
        "value": "test \"$(cat spark/RELEASE)\" = 'Spark 3.5.7' && test $(wc -c < spark/jars/big.bin) -eq 2097152",
        "shell": true,
        "uris": [ { "value": srv.url("/spark.tgz"), "extract": true, "cache": true } ],
    });
    let ea = executor(&c, &s, "exec-a");
    let eb = executor(&c, &s, "exec-b");
    let offer = s.next_offer(T).await.unwrap_or_else(|e| panic!("{e}"));
    s.launch(
        &offer,
        vec![data_task("ta", &ea, &cmd), data_task("tb", &eb, &cmd)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    finished(&s, &c, "ta", "exec-a").await;
    finished(&s, &c, "tb", "exec-b").await;
    assert_eq!(srv.hits("/spark.tgz"), 1, "one download for two executors");
    let logs = executor_log(&c, "exec-a") + &executor_log(&c, "exec-b");
    assert_eq!(logs.matches("cache_misses=1").count(), 1, "{logs}");
    assert_eq!(logs.matches("cache_hits=1").count(), 1, "{logs}");
    assert_eq!(c.sandboxes().len(), 2, "two executors");
    teardown_clean(&s, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_custom_executor_survives_agent_restart() {
    let (mut c, s) = setup(true).await;
    let e = executor(&c, &s, "restart-exec");
    let cmd = json!({ "value": "echo begin; sleep 6; echo end", "shell": true });
    let offer = s.next_offer(T).await.unwrap_or_else(|e| panic!("{e}"));
    s.launch(&offer, vec![data_task("tr", &e, &cmd)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.wait_update("tr", "TASK_RUNNING", T)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c.restart_agent().await.unwrap_or_else(|e| panic!("{e}"));
    finished(&s, &c, "tr", "restart-exec").await;
    let mut states = s.states("tr");
    states.dedup();
    assert!(
        states.ends_with(&["TASK_RUNNING".to_string(), "TASK_FINISHED".to_string()]),
        "{states:?}"
    );
    let sandbox = c.sandbox_of("restart-exec").expect("executor sandbox");
    assert_eq!(read(&sandbox.join("tasks/tr/stdout")), "begin\nend\n");
    let log = executor_log(&c, "restart-exec");
    assert!(log.matches("subscribed to agent").count() >= 2, "{log}");
    teardown_clean(&s, &c).await;
}
