//! Real-Mesos tier: Spark 3.5.7 on a real Mesos 1.11 master and agent, with croupier-executor as
//! the agent's command executor (drop-in) and croupier-shuffle-service as the agent's shuffle
//! service — the seed's Spark-on-Mesos flow, end to end, in both deploy modes.
//!
//! One cluster (master + agent on 127.0.0.1) serves both flows, which run at the same time as
//! two frameworks would on a real agent:
//!
//! - **Client mode** (`tests/interop/spark/mesos_client.py`): a pyspark driver on
//!   `mesos://<master>`, coarse-grained, `spark.shuffle.service.enabled=true`. The agent
//!   launches the executors as command tasks, through croupier-executor; they run the venv's
//!   pyspark in place (`spark.mesos.executor.home`). Two applications, so two frameworks:
//!   shuffle-heavy jobs with `spark.shuffle.readHostLocalDisk=false` (remote blocks come from
//!   the service), then dynamic allocation (the executors that wrote a map stage are killed
//!   through Mesos when idle; the driver lives on without executors for longer than its
//!   heartbeat timeout; new executors then read that map output from the service). Checked:
//!   exact results; the service's registrations carry the Mesos framework id as appId, with the
//!   driver's heartbeat timeout; the service served blocks; the shuffle files stay while the
//!   driver runs and are deleted within the heartbeat timeout (plus the cleaner's interval)
//!   after it stops; every executor ran through croupier-executor and ended as Spark expects
//!   (`TASK_FINISHED`, or `TASK_KILLED` once idle).
//! - **Cluster mode**: Spark's `MesosClusterDispatcher`, and `spark-submit --deploy-mode
//!   cluster --master mesos://<dispatcher>` of pyspark's own `examples/.../wordcount.py` on a
//!   file with known counts. The agent runs the driver through croupier-executor; the app path
//!   (local to this host) is fetched into the driver's sandbox by the agent; the job finishes
//!   and its output (exact counts) is in the sandbox's stdout. What it takes with 3.5.7:
//!   `spark.master.rest.enabled=true` for the REST submission; the driver's
//!   `MESOS_NATIVE_JAVA_LIBRARY` given through `spark.mesos.driverEnv.*` (the agent's
//!   environment points it at plain libmesos otherwise); and the dispatcher's `spark.home`
//!   is a directory whose `bin/spark-submit` rewrites the `--driver-cores 1.0` that the
//!   dispatcher passes (3.5.7's spark-submit rejects it) to `1` and execs pyspark's own
//!   (see `dispatcher_home`).
//!
//! Needs: `MESOS_PREFIX` (else it fails with "NOT RUN: real-Mesos tier ..."), the venv
//! (`CROUPIER_VENV`), Java 17, and both binaries built (`cargo test --workspace` builds them).
//! `CROUPIER_MESOS_SPARK_EXECUTOR=reference` runs the same test with Mesos's own
//! `mesos-executor` as the command executor: it must pass there too (not run in CI).
//! Every process is stopped by pid or process group, even on failure; the cluster's logs and
//! sandboxes are kept under `target/mesos-logs/` when the test fails.

mod mesos_spark_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use croupier_testkit::mesos::{ClusterOpts, MesosCluster};
use mesos_spark_support::{
    dispatcher_home, files_named, framework_ids, interop_script, mesos_tasks, native_library,
    read_log, sandbox, tail, workspace_bin, CommandExecutor, Dispatcher, Line, MesosTask, PyDriver,
    ShuffleService,
};

/// The client-mode driver's `spark.storage.blockManagerHeartbeatTimeoutMs`: how long the
/// service keeps an application's files after its last heartbeat.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
/// `spark.executor.heartbeatInterval` in `mesos_client.py` (the driver's heartbeats to the
/// service come this often).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// The service's `spark.shuffle.cleaner.interval`.
const CLEANER_INTERVAL: Duration = Duration::from_secs(1);
/// Longest silence accepted from a driver script between two lines.
const STEP: Duration = Duration::from_secs(240);
/// JVM options for the dispatcher, the cluster-mode driver and executors (as
/// `mesos_client.py` uses for its own): short-lived JVMs on a 2-core box, so the client
/// compiler only and one GC thread; nothing Spark or Mesos sees differently.
const JVM_OPTS: &str = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC";
/// Bound on each flow as a whole.
const FLOW: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_on_mesos_client_and_cluster_mode() {
    let executor = workspace_bin(
        "croupier-executor",
        &["executor/src", "proto/src", "proto/proto"],
    );
    let service_bin = workspace_bin("croupier-shuffle-service", &["shuffle-service/src"]);
    let spark_home = croupier_testkit::env::spark_home();

    let mut opts = match CommandExecutor::from_env() {
        CommandExecutor::Croupier => ClusterOpts::drop_in(&executor),
        CommandExecutor::Reference => ClusterOpts::reference(),
    };
    opts.name = "mesos_spark".into();
    // client mode: 2 executors of 1 cpu and 512m + 384m overhead; cluster mode: a driver of
    // 1 cpu and 896m, one executor like the above
    opts.resources = "cpus:6;mem:6144;disk:4096".into();
    let cluster = MesosCluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::Builder::new()
        .prefix("croupier-mesos-spark-")
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"));
    // The service asks this agent whether a silent driver's framework has completed before it
    // deletes the application's files (one second of confirmation).
    let service = ShuffleService::start(
        &service_bin,
        dir.path(),
        CLEANER_INTERVAL,
        cluster.agent_addr(),
    )
    .await;

    let started = Instant::now();
    let (client, cluster_mode) = tokio::join!(
        tokio::time::timeout(FLOW, client_mode(&cluster, &service, dir.path())),
        tokio::time::timeout(FLOW, cluster_mode(&cluster, &spark_home, dir.path())),
    );
    let flatten = |r: Result<Result<String, String>, _>, what: &str| match r {
        Ok(r) => r,
        Err(_) => Err(format!("{what} did not finish within {FLOW:?}")),
    };
    let client = flatten(client, "client mode");
    let cluster_mode = flatten(cluster_mode, "cluster mode");
    eprintln!(
        "mesos_spark: both flows done in {:.1?}\n{}\n{}",
        started.elapsed(),
        client.as_deref().unwrap_or("client mode failed"),
        cluster_mode.as_deref().unwrap_or("cluster mode failed"),
    );
    let mut failures = Vec::new();
    if let Err(e) = &client {
        failures.push(format!(
            "CLIENT MODE: {e}\nshuffle service log tail:\n{}",
            tail(&service.log(), 40)
        ));
    }
    if let Err(e) = &cluster_mode {
        failures.push(format!("CLUSTER MODE: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{}\nagent log tail:\n{}",
        failures.join("\n\n"),
        tail(&cluster.agent_log(), 30)
    );
    service.stop_cleanly();
}

// ---------------------------------------------------------------------------------------------
// Client mode

/// Where one client-mode application stands, as the flow sees it.
struct App {
    name: &'static str,
    id: String,
    dirs: Vec<PathBuf>,
    released_at: Option<Instant>,
    stopped_at: Option<Instant>,
}

async fn client_mode(
    cluster: &MesosCluster,
    service: &ShuffleService,
    dir: &Path,
) -> Result<String, String> {
    let local = dir.join("spark-local");
    std::fs::create_dir_all(&local).map_err(|e| format!("create {}: {e}", local.display()))?;
    let mut py = PyDriver::spawn(
        &interop_script("mesos_client.py"),
        &[
            format!("mesos://{}", cluster.master_addr()),
            service.port.to_string(),
            HEARTBEAT_TIMEOUT.as_millis().to_string(),
            local.display().to_string(),
        ],
        &[
            ("MESOS_NATIVE_JAVA_LIBRARY", native_library(cluster)),
            ("SPARK_LOCAL_IP", "127.0.0.1".into()),
            ("LIBPROCESS_IP", "127.0.0.1".into()),
        ],
        &dir.join("client-driver.stderr"),
    );
    let result = drive_client(cluster, service, &mut py).await;
    match result {
        Ok(report) => Ok(format!(
            "{report}\n  driver timeline:\n    {}",
            py.seen.join("\n    ")
        )),
        Err(e) => Err(format!("{e}\n{}", py.context())),
    }
}

async fn drive_client(
    cluster: &MesosCluster,
    service: &ShuffleService,
    py: &mut PyDriver,
) -> Result<String, String> {
    let mut apps: Vec<App> = Vec::new();
    let mut checks = Vec::new();
    let mut watchers = Vec::new();
    let mut report = Vec::new();
    let served_at_start = service.metric("croupier_shuffle_blocks_served_total").await;
    let mut served_after_fetch = served_at_start;

    while let Some(line) = py.next(STEP).await? {
        match line {
            Line::Check(name) => checks.push(name),
            Line::Info(key, value) => {
                if let Some(name) = key.strip_prefix("app_") {
                    let name = match name {
                        "fetch" => "fetch",
                        "dynalloc" => "dynalloc",
                        other => return Err(format!("unknown application {other}")),
                    };
                    apps.push(App {
                        name,
                        id: value,
                        dirs: Vec::new(),
                        released_at: None,
                        stopped_at: None,
                    });
                }
            }
            Line::Hold(point, app_id) => {
                let app = apps
                    .iter_mut()
                    .find(|a| a.id == app_id)
                    .ok_or_else(|| format!("HOLD for unknown app {app_id}"))?;
                let note = at_hold(cluster, service, app, &point).await?;
                report.push(note);
                if point == "fetch_done" {
                    served_after_fetch =
                        service.metric("croupier_shuffle_blocks_served_total").await;
                    if served_after_fetch <= served_at_start {
                        return Err(format!(
                            "the fetch jobs read no block through the service \
                             (croupier_shuffle_blocks_served_total {served_at_start} -> {served_after_fetch}) \
                             although spark.shuffle.readHostLocalDisk=false"
                        ));
                    }
                }
                app.released_at = Some(Instant::now());
                py.release().await?;
            }
            Line::Stopped(app_id) => {
                let app = apps
                    .iter_mut()
                    .find(|a| a.id == app_id)
                    .ok_or_else(|| format!("STOPPED for unknown app {app_id}"))?;
                let stopped = Instant::now();
                app.stopped_at = Some(stopped);
                let released = app.released_at.unwrap_or(stopped);
                let dirs = app.dirs.clone();
                let name = app.name;
                // watched while the script goes on with the next application
                watchers.push(tokio::spawn(watch_removal(name, dirs, released, stopped)));
            }
            Line::Other(_) => {}
        }
    }
    let status = py.wait(Duration::from_secs(60)).await?;
    if !status.success() {
        return Err(format!("mesos_client.py exited with {status}"));
    }
    let want = [
        "rdd_reduce_by_key",
        "rdd_group_by_key_strings",
        "dataframe_join",
        "dynalloc_first_count",
        "dynalloc_idle_executors_removed",
        "dynalloc_collect_after_idle",
        "dynalloc_new_executors",
        "done",
    ];
    if checks != want {
        return Err(format!("CHECK lines {checks:?}, want {want:?}"));
    }
    let served_at_end = service.metric("croupier_shuffle_blocks_served_total").await;
    if served_at_end <= served_after_fetch {
        return Err(format!(
            "after dynamic allocation the new executors read no block through the service \
             (croupier_shuffle_blocks_served_total {served_after_fetch} -> {served_at_end})"
        ));
    }
    report.push(format!(
        "blocks served by the service: {} (fetch app), {} (dynalloc app)",
        served_after_fetch - served_at_start,
        served_at_end - served_after_fetch
    ));
    for w in watchers {
        report.push(w.await.map_err(|e| format!("removal watcher: {e}"))??);
    }

    // The service's side of the story: both drivers registered with their framework id and
    // timeout, and the cleaner deleted exactly their executors' dirs.
    let tasks = mesos_tasks(cluster).await;
    for app in &apps {
        let seen = service.app(&app.id);
        let mut deleted = seen.deleted.clone();
        deleted.sort();
        if deleted != app.dirs {
            return Err(format!(
                "the service deleted {deleted:?} for {}, want its executors' dirs {:?}",
                app.id, app.dirs
            ));
        }
        report.push(check_executor_tasks(cluster, &tasks, app)?);
    }
    Ok(format!("client mode:\n  {}", report.join("\n  ")))
}

/// What the test checks at each `HOLD` of `mesos_client.py`.
async fn at_hold(
    cluster: &MesosCluster,
    service: &ShuffleService,
    app: &mut App,
    point: &str,
) -> Result<String, String> {
    // The appId the service saw is the Mesos framework id of this application.
    let state = cluster
        .master_state()
        .await
        .map_err(|e| format!("master /state: {e}"))?;
    let fw_name = format!("croupier-mesos-{}", app.name);
    let ids = framework_ids(&state, &fw_name);
    if ids != [app.id.clone()] {
        return Err(format!(
            "the master knows framework {fw_name:?} as {ids:?}; the driver's application id is {}",
            app.id
        ));
    }
    let seen = service.app(&app.id);
    if seen.driver_timeout_ms != Some(HEARTBEAT_TIMEOUT.as_millis() as u64) {
        return Err(format!(
            "no RegisterDriver for appId {} with heartbeat timeout {} ms in the service's log (saw {:?})",
            app.id,
            HEARTBEAT_TIMEOUT.as_millis(),
            seen.driver_timeout_ms
        ));
    }
    if seen.executors.is_empty() {
        return Err(format!(
            "no executor of appId {} registered with the service",
            app.id
        ));
    }
    app.dirs = seen.dirs();
    let shuffle_files: Vec<PathBuf> = app
        .dirs
        .iter()
        .flat_map(|d| files_named(d, "shuffle_"))
        .collect();
    if shuffle_files.is_empty() {
        return Err(format!(
            "no shuffle_* file under the registered local dirs {:?} of {}",
            app.dirs, app.id
        ));
    }
    let mut note = format!(
        "{} = framework {}: RegisterDriver (timeout {} ms), executors {:?} registered, {} shuffle files at {point}",
        app.name,
        app.id,
        HEARTBEAT_TIMEOUT.as_millis(),
        seen.executors.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
        shuffle_files.len()
    );
    if point == "dynalloc_idle" {
        // No executor is left: Mesos killed their tasks. The driver lives on; its map output
        // must outlive the heartbeat timeout on disk.
        let tasks = mesos_tasks(cluster).await;
        let running: Vec<&MesosTask> = tasks
            .iter()
            .filter(|t| t.framework_id == app.id && !is_terminal(&t.state))
            .collect();
        if !running.is_empty() {
            return Err(format!(
                "executors still running while the driver says none: {running:?}"
            ));
        }
        let hold = HEARTBEAT_TIMEOUT + Duration::from_secs(3);
        let until = Instant::now() + hold;
        while Instant::now() < until {
            if let Some(gone) = shuffle_files.iter().find(|f| !f.exists()) {
                return Err(format!(
                    "{} vanished while the driver of {} was alive (no executors)",
                    gone.display(),
                    app.id
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        note.push_str(&format!(
            "; all {} kept for {hold:?} with the driver alive and no executor",
            shuffle_files.len()
        ));
    }
    Ok(note)
}

/// Waits until an application's dirs are gone; checks when that happened.
async fn watch_removal(
    name: &'static str,
    dirs: Vec<PathBuf>,
    released: Instant,
    stopped: Instant,
) -> Result<String, String> {
    // The driver heartbeats until its SparkContext has stopped (released..stopped), so the
    // service may delete from (released + timeout - interval) on, and must by
    // (stopped + timeout + cleaner interval); a few seconds of slack for a loaded machine.
    // The agent's confirmation (1 s) overlaps the heartbeat timeout: the framework has
    // completed long before the timeout runs out.
    let slack = Duration::from_secs(5);
    let latest = HEARTBEAT_TIMEOUT + CLEANER_INTERVAL + slack;
    loop {
        if dirs.iter().all(|d| !d.exists()) {
            break;
        }
        if stopped.elapsed() > latest + Duration::from_secs(30) {
            let left: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
            return Err(format!(
                "{name}: {left:?} still on disk {:.1?} after the driver stopped (heartbeat timeout {HEARTBEAT_TIMEOUT:?})",
                stopped.elapsed()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after_stop = stopped.elapsed();
    let after_release = released.elapsed();
    if after_release + Duration::from_millis(500) < HEARTBEAT_TIMEOUT - HEARTBEAT_INTERVAL {
        return Err(format!(
            "{name}: files deleted {after_release:.1?} after the driver began to stop, before its \
             heartbeat timeout {HEARTBEAT_TIMEOUT:?} could have passed"
        ));
    }
    if after_stop > latest {
        return Err(format!(
            "{name}: files deleted {after_stop:.1?} after the driver stopped; want within the \
             heartbeat timeout {HEARTBEAT_TIMEOUT:?} + cleaner interval {CLEANER_INTERVAL:?} (+{slack:?})"
        ));
    }
    Ok(format!(
        "{name}: {} dirs deleted {after_stop:.1?} after the driver stopped (timeout {HEARTBEAT_TIMEOUT:?})",
        dirs.len()
    ))
}

/// Every executor of `app` ran as a command task through croupier-executor and ended as Spark
/// expects.
fn check_executor_tasks(
    cluster: &MesosCluster,
    tasks: &[MesosTask],
    app: &App,
) -> Result<String, String> {
    let mine: Vec<&MesosTask> = tasks.iter().filter(|t| t.framework_id == app.id).collect();
    if mine.is_empty() {
        return Err(format!("the master shows no task of framework {}", app.id));
    }
    for t in &mine {
        let sb = sandbox(cluster, &app.id, &t.task_id)
            .ok_or_else(|| format!("no sandbox for task {} of {}", t.task_id, app.id))?;
        if !CommandExecutor::from_env().ran(&sb, &app.id, &t.task_id) {
            return Err(format!(
                "task {} of {} did not run through {}; its stderr:\n{}",
                t.task_id,
                CommandExecutor::from_env().name(),
                app.id,
                tail(&read_log(&sb.join("stderr")), 20)
            ));
        }
    }
    let states: Vec<String> = mine
        .iter()
        .map(|t| format!("{}:{}", t.task_id, t.state))
        .collect();
    let count = |s: &str| mine.iter().filter(|t| t.state == s).count();
    let ok = match app.name {
        // the driver stopped its executors: each exits 0
        "fetch" => count("TASK_FINISHED") == mine.len() && mine.len() >= 2,
        // the first was killed through Mesos once idle; the one started for the second job
        // either stopped with the driver or went idle (and was killed) before that
        _ => {
            mine.len() >= 2
                && count("TASK_KILLED") >= 1
                && count("TASK_KILLED") + count("TASK_FINISHED") == mine.len()
        }
    };
    if !ok {
        return Err(format!(
            "executor tasks of {} ({}) ended {states:?}",
            app.name, app.id
        ));
    }
    Ok(format!(
        "{} executors through {}: {}",
        app.name,
        CommandExecutor::from_env().name(),
        states.join(" ")
    ))
}

fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_LOST"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}

// ---------------------------------------------------------------------------------------------
// Cluster mode

/// Words and how often each occurs in the input of the cluster-mode word count.
const WORDS: [(&str, usize); 3] = [("alpha", 300), ("beta", 600), ("gamma", 300)];

async fn cluster_mode(
    cluster: &MesosCluster,
    spark_home: &Path,
    dir: &Path,
) -> Result<String, String> {
    let dir = dir.join("cluster-mode");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    // 300 lines: "alpha beta beta" and i % 3 times "gamma" (0 + 1 + 2 per 3 lines: 300 in all)
    let input = dir.join("words.txt");
    let text: String = (0..300)
        .map(|i| {
            let mut l = String::from("alpha beta beta");
            for _ in 0..(i % 3) {
                l.push_str(" gamma");
            }
            l.push('\n');
            l
        })
        .collect();
    std::fs::write(&input, text).map_err(|e| format!("write {}: {e}", input.display()))?;

    // every JVM's temp files in the test's dir: Spark leaves empty /tmp/spark-* dirs behind
    // (with mesos-executor too)
    let local = dir.join("spark-local");
    std::fs::create_dir_all(&local).map_err(|e| format!("create {}: {e}", local.display()))?;
    let t0 = Instant::now();
    let home = dispatcher_home(&dir, spark_home);
    let dispatcher = Dispatcher::start(
        cluster,
        &dir,
        spark_home,
        &home,
        &format!("{JVM_OPTS} -Djava.io.tmpdir={}", local.display()),
    )
    .await;
    let dispatcher_up = t0.elapsed();
    let context = |msg: String| {
        format!(
            "{msg}\ndispatcher log tail:\n{}",
            tail(&dispatcher.log(), 40)
        )
    };

    let app = spark_home.join("examples/src/main/python/wordcount.py");
    let submit_log = dir.join("spark-submit.log");
    let log_file = std::fs::File::create(&submit_log)
        .map_err(|e| format!("create {}: {e}", submit_log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("dup {}: {e}", submit_log.display()))?;
    let python = croupier_testkit::env::python();
    let mut cmd = tokio::process::Command::new(spark_home.join("bin/spark-submit"));
    cmd.args(["--deploy-mode", "cluster"])
        .arg("--master")
        .arg(format!("mesos://127.0.0.1:{}", dispatcher.port))
        .args(["--conf", "spark.master.rest.enabled=true"])
        .args(["--driver-memory", "512m", "--executor-memory", "512m"])
        .args(["--conf", "spark.cores.max=1"])
        .args(["--conf", "spark.ui.enabled=false"])
        .args(["--conf", "spark.driver.host=127.0.0.1"])
        .arg("--conf")
        .arg(format!(
            "spark.mesos.driverEnv.MESOS_NATIVE_JAVA_LIBRARY={}",
            native_library(cluster)
        ))
        .arg("--conf")
        .arg(format!(
            "spark.mesos.driverEnv.PYSPARK_PYTHON={}",
            python.display()
        ))
        .args(["--conf", "spark.mesos.driverEnv.SPARK_LOCAL_IP=127.0.0.1"])
        .args(["--conf", "spark.mesos.driverEnv.LIBPROCESS_IP=127.0.0.1"])
        .arg("--conf")
        .arg(format!(
            "spark.executorEnv.PYSPARK_PYTHON={}",
            python.display()
        ))
        .args(["--conf", "spark.executorEnv.SPARK_LOCAL_IP=127.0.0.1"])
        .arg("--conf")
        .arg(format!("spark.local.dir={}", local.display()))
        .arg("--conf")
        .arg(format!(
            "spark.driver.extraJavaOptions={JVM_OPTS} -Djava.io.tmpdir={}",
            local.display()
        ))
        .arg("--conf")
        .arg(format!(
            "spark.executor.extraJavaOptions={JVM_OPTS} -Djava.io.tmpdir={}",
            local.display()
        ))
        .arg(&app)
        .arg(&input)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env(
            "SPARK_SUBMIT_OPTS",
            format!("{JVM_OPTS} -Djava.io.tmpdir={}", local.display()),
        )
        .env_remove("SPARK_HOME")
        .env_remove("SPARK_CONF_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(true);
    let t_submit = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("spark-submit: {e}"))?;
    let status = match tokio::time::timeout(Duration::from_secs(180), child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("spark-submit: {e}")),
        Err(_) => {
            return Err(context(format!(
                "spark-submit --deploy-mode cluster did not return within 180 s:\n{}",
                tail(&read_log(&submit_log), 30)
            )))
        }
    };
    let submitted = read_log(&submit_log);
    let submission = submitted
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"submissionId\" : \""))
        .map(|s| s.trim_end_matches(['"', ',']).to_string());
    let Some(submission) = submission.filter(|_| status.success()) else {
        return Err(context(format!(
            "spark-submit exited {status} without a submission id:\n{}",
            tail(&submitted, 40)
        )));
    };

    let submit_took = t_submit.elapsed();
    // The dispatcher's framework launches the driver as a command task named after the
    // submission; wait for it to end.
    let deadline = Instant::now() + Duration::from_secs(400);
    let driver = loop {
        let tasks = mesos_tasks(cluster).await;
        if let Some(t) = tasks
            .iter()
            .find(|t| t.task_id == submission && is_terminal(&t.state))
        {
            break t.clone();
        }
        if Instant::now() > deadline {
            return Err(context(format!(
                "driver task {submission} not ended within 400 s of submission; tasks: {tasks:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let driver_took = t_submit.elapsed();
    let sb = sandbox(cluster, &driver.framework_id, &submission)
        .ok_or_else(|| context(format!("no sandbox for driver task {submission}")))?;
    let stdout = read_log(&sb.join("stdout"));
    let stderr = read_log(&sb.join("stderr"));
    let sandbox_context = |msg: String| {
        context(format!(
            "{msg}\ndriver sandbox {}\nstdout tail:\n{}\nstderr tail:\n{}",
            sb.display(),
            tail(&stdout, 20),
            tail(&stderr, 40)
        ))
    };
    if driver.state != "TASK_FINISHED" {
        return Err(sandbox_context(format!(
            "driver task {submission} ended {}",
            driver.state
        )));
    }
    let exec = CommandExecutor::from_env();
    if !exec.ran(&sb, &driver.framework_id, &submission) {
        return Err(sandbox_context(format!(
            "the driver did not run through {}",
            exec.name()
        )));
    }
    if !stderr.contains("dispatcher-spark-home: --driver-cores 1.0 -> 1") {
        return Err(sandbox_context(
            "the driver was not started through the dispatcher's spark.home wrapper with --driver-cores 1.0".into(),
        ));
    }
    if !sb.join("wordcount.py").is_file() {
        return Err(sandbox_context(
            "the application file was not fetched into the driver's sandbox".into(),
        ));
    }
    let mut got: Vec<String> = stdout
        .lines()
        .filter(|l| WORDS.iter().any(|(w, _)| l.starts_with(&format!("{w}: "))))
        .map(str::to_string)
        .collect();
    got.sort();
    let want: Vec<String> = WORDS.iter().map(|(w, n)| format!("{w}: {n}")).collect();
    if got != want {
        return Err(sandbox_context(format!(
            "wordcount printed {got:?}, want {want:?}"
        )));
    }

    // The driver's own executors (its framework is "<dispatcher id>-<submission>") ran through
    // croupier-executor too and were stopped by the driver.
    let tasks = mesos_tasks(cluster).await;
    let driver_fw = format!("{}-{submission}", driver.framework_id);
    let executors: Vec<&MesosTask> = tasks
        .iter()
        .filter(|t| t.framework_id == driver_fw)
        .collect();
    if executors.is_empty() {
        return Err(sandbox_context(format!(
            "no executor task of the driver's framework {driver_fw}; tasks: {tasks:?}"
        )));
    }
    for t in &executors {
        let esb = sandbox(cluster, &driver_fw, &t.task_id)
            .ok_or_else(|| format!("no sandbox for executor task {} of {driver_fw}", t.task_id))?;
        if !exec.ran(&esb, &driver_fw, &t.task_id) || t.state != "TASK_FINISHED" {
            return Err(sandbox_context(format!(
                "executor task {} of {driver_fw} ended {} (through {}: {}); its stderr:\n{}",
                t.task_id,
                t.state,
                exec.name(),
                exec.ran(&esb, &driver_fw, &t.task_id),
                tail(&read_log(&esb.join("stderr")), 20)
            )));
        }
    }
    Ok(format!(
        "cluster mode: submission {submission} of framework {} ran through {}, \
         TASK_FINISHED, wordcount.py fetched into its sandbox, stdout {got:?}; its {} executor(s) \
         TASK_FINISHED through {}\n  timings: dispatcher up {dispatcher_up:.1?}, \
         spark-submit {submit_took:.1?}, submission to driver's end {driver_took:.1?}",
        driver.framework_id,
        exec.name(),
        executors.len(),
        exec.name(),
    ))
}
