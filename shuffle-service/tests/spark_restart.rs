//! The shuffle service SIGKILLed and restarted on the same port in the middle of a real Spark
//! 3.5.7 job (`tests/interop/spark/restart_job.py`: local-cluster[2,1,1024],
//! readHostLocalDisk=false, so every reduce task fetches through the service).
//!
//! Ours restores the executors' registrations from `croupier.state.dir`: the job's results are
//! exact and Spark's event log shows no FetchFailed task and no re-attempted stage. Spark's own
//! (JVM) Mesos service keeps registrations in memory only: the same run shows fetch failures
//! and a recomputed (or aborted) stage.

mod spark_support;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use spark_support::{free_port, run_python, serial, Flavour, PyRun, Service};

struct Outcome {
    py: PyRun,
    restarted_log: String,
}

fn wait_for_file(path: &Path, limit: Duration, py: &thread::JoinHandle<PyRun>) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(
            !py.is_finished(),
            "restart_job.py ended before its last map task reached {}",
            path.display()
        );
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {limit:?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn run(flavour: Flavour, conf: &[(&str, &str)]) -> Outcome {
    let _one_cluster_at_a_time = serial();
    let port = free_port();
    let sync = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let sync_path = sync.path().to_owned();
    let mut service = Service::start_as(flavour, Some(port), conf);
    let args = vec![port.to_string(), sync_path.display().to_string()];
    let py = thread::spawn(move || run_python("restart_job.py", &args, Duration::from_secs(300)));
    wait_for_file(
        &sync_path.join("map-waiting"),
        Duration::from_secs(240),
        &py,
    );
    // Both executors registered with this process; every fetch will go to the next one.
    let before = service.log();
    service.kill();
    let mut restarted = Service::start_as(flavour, Some(port), conf);
    std::fs::write(sync_path.join("go"), b"")
        .unwrap_or_else(|e| panic!("cannot write the go file: {e}"));
    let py = py
        .join()
        .unwrap_or_else(|_| panic!("restart_job.py runner panicked"));
    let restarted_log = restarted.log();
    eprintln!(
        "{flavour:?}: job took {:.1?}\nstdout:\n{}\nfirst service log tail:\n{}\nrestarted service log tail:\n{}",
        py.elapsed,
        py.stdout,
        tail(&before, 10),
        tail(&restarted_log, 20)
    );
    assert!(
        py.status.success(),
        "restart_job.py failed: {}\nstdout:\n{}\nstderr tail:\n{}",
        py.status,
        py.stdout,
        py.stderr_tail()
    );
    restarted.stop();
    Outcome { py, restarted_log }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn count(py: &PyRun, key: &str) -> u64 {
    py.info(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `INFO {key} <n>` line:\n{}", py.stdout))
}

#[test]
fn ours_restarted_mid_job_keeps_registrations_and_nothing_is_recomputed() {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir = state.path().display().to_string();
    let o = run(
        Flavour::Ours,
        &[
            ("croupier.state.dir", &dir),
            // No Mesos here: local-cluster apps never register a driver; keep Spark's rule.
            ("croupier.mesos.agent.address", "none"),
        ],
    );
    assert!(
        o.restarted_log
            .contains("restored 2 executor and 0 driver registration(s)"),
        "the restarted service did not restore both executors:\n{}",
        o.restarted_log
    );
    assert_eq!(
        o.py.lines("CHECK"),
        [
            "restart_job_collect ok",
            "restart_job_second_read ok",
            "done ok"
        ],
        "{}",
        o.py.stdout
    );
    assert_eq!(o.py.info("job_failed"), None, "{}", o.py.stdout);
    assert_eq!(count(&o.py, "fetch_failed"), 0, "{}", o.py.stdout);
    assert_eq!(count(&o.py, "stage_reattempts"), 0, "{}", o.py.stdout);
    // collect: map + reduce; the second job's map stage is skipped (not submitted).
    assert_eq!(count(&o.py, "stages_submitted"), 3, "{}", o.py.stdout);
}

#[test]
fn spark_jvm_service_restarted_mid_job_loses_registrations() {
    let o = run(Flavour::SparkMesos, &[]);
    let failed = count(&o.py, "fetch_failed");
    let reattempts = count(&o.py, "stage_reattempts");
    assert!(
        failed > 0,
        "Spark's service was expected to fail fetches after its restart (executors unknown):\n{}",
        o.py.stdout
    );
    assert!(
        reattempts > 0 || o.py.info("job_failed").is_some(),
        "a fetch failure must recompute a stage or fail the job:\n{}",
        o.py.stdout
    );
    eprintln!(
        "Spark's JVM service after a restart: {failed} FetchFailed task(s), {reattempts} stage re-attempt(s), job failed: {:?}",
        o.py.info("job_failed")
    );
}
