//! Task URIs through whole executor processes: the fetcher cache configured the way an
//! operator does it (the agent's `--executor_environment_variables` passing
//! `CROUPIER_FETCHER_CACHE_DIR` / `CROUPIER_FETCHER_CACHE_SIZE`), shared by executors that run
//! at the same time and kept across executor restarts; and the drop-in mode, where the agent
//! has fetched already and the executor fetches nothing.

mod common;
mod fetcher_support;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use croupier_proto::v1::command_info::Uri;
use croupier_proto::v1::TaskState;
use croupier_testkit::agent::{Agent, AgentConfig};
use fetcher_support::{bytes, gzip, RawTar, Route, Server};

fn with_cache(cache: &std::path::Path, executor_id: &str) -> AgentConfig {
    let mut c = cfg();
    c.executor_id = executor_id.into();
    c.extra_env.push((
        "CROUPIER_FETCHER_CACHE_DIR".into(),
        cache.display().to_string(),
    ));
    c.extra_env
        .push(("CROUPIER_FETCHER_CACHE_SIZE".into(), "64MB".into()));
    c
}

fn cached_uri(value: String) -> Uri {
    Uri {
        value,
        cache: Some(true),
        extract: Some(true),
        ..Default::default()
    }
}

/// Launches `task_id` running `sh` after fetching `uri`, and waits for its terminal update.
async fn run_with_uri(agent: &Agent, task_id: &str, uri: Uri, sh: &str) -> TaskState {
    let mut task = agent.command_task(task_id, sh);
    if let Some(c) = task.command.as_mut() {
        c.uris = vec![uri];
    }
    agent.launch(task).unwrap();
    let done = agent.wait_terminal(task_id, T).await.unwrap();
    TaskState::try_from(done.state).unwrap_or(TaskState::TaskError)
}

/// The lines of an executor's log that report a fetched URI.
fn fetched_lines(agent: &Agent) -> Vec<String> {
    agent
        .executor_stderr()
        .lines()
        .filter(|l| l.contains("fetched") && l.contains("uri="))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn executors_share_the_cache_at_once_and_across_restarts() {
    let srv = Server::start();
    let tgz = gzip(
        &RawTar::new()
            .file("spark/RELEASE", b"Spark 3.5.7\n")
            .file("spark/jars/big.bin", &bytes(4 << 20, 9))
            .finish(),
    );
    // Slow enough that both executors ask while the first download is still running.
    srv.route(
        "/dist/spark.tgz",
        Route::Slow {
            body: Arc::new(tgz),
            chunk: 256 << 10,
            delay: Duration::from_millis(30),
        },
    );
    let url = srv.url("/dist/spark.tgz");
    let cache = tempfile::tempdir().unwrap();
    let sh = "test \"$(cat spark/RELEASE)\" = 'Spark 3.5.7' && test $(wc -c < spark/jars/big.bin) -eq 4194304";

    // Two executor processes (two stand-ins), launching the same cacheable URI at once.
    let a = start(with_cache(cache.path(), "exec-a")).await;
    let b = start(with_cache(cache.path(), "exec-b")).await;
    let (sa, sb) = tokio::join!(
        run_with_uri(&a, "ta", cached_uri(url.clone()), sh),
        run_with_uri(&b, "tb", cached_uri(url.clone()), sh),
    );
    assert_eq!(sa, TaskState::TaskFinished, "{}", a.executor_stderr());
    assert_eq!(sb, TaskState::TaskFinished, "{}", b.executor_stderr());
    assert_eq!(
        srv.hits("/dist/spark.tgz"),
        1,
        "one download for two executors"
    );
    let outcomes: Vec<String> = fetched_lines(&a)
        .into_iter()
        .chain(fetched_lines(&b))
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|l| l.contains("cache=miss")).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|l| l.contains("cache=hit")).count(),
        1,
        "{outcomes:?}"
    );
    // Each line says what an operator wants to know about the URI.
    for l in &outcomes {
        for field in ["bytes=", "secs=", "rate_mib_s=", "extracted=true", &url] {
            assert!(l.contains(field), "{field} in {l}");
        }
    }
    for mut agent in [a, b] {
        shutdown_ok(&mut agent).await;
    }

    // A new executor process after both are gone: the entry is still there.
    let mut c = start(with_cache(cache.path(), "exec-c")).await;
    let sc = run_with_uri(&c, "tc", cached_uri(url.clone()), sh).await;
    assert_eq!(sc, TaskState::TaskFinished, "{}", c.executor_stderr());
    assert_eq!(
        srv.hits("/dist/spark.tgz"),
        1,
        "the restarted executor used the cache"
    );
    let lines = fetched_lines(&c);
    assert!(
        lines.len() == 1 && lines[0].contains("cache=hit"),
        "{lines:?}"
    );
    // The cache lives where the environment said, not in a sandbox.
    let log = c.executor_stderr();
    assert!(log.contains(&cache.path().display().to_string()), "{log}");
    shutdown_ok(&mut c).await;
}

#[tokio::test]
async fn drop_in_mode_fetches_nothing() {
    let srv = Server::start();
    srv.route("/app.jar", Route::Ok(Arc::new(b"jar".to_vec())));
    let mut c = cfg();
    c.executor_args = vec!["--launcher_dir=/usr/libexec/mesos".into()];
    let mut agent = start(c).await;
    // The agent fetched this before starting the command executor: it is in the sandbox.
    std::fs::write(agent.sandbox().join("app.jar"), b"fetched by the agent").unwrap();
    let st = run_with_uri(
        &agent,
        "only",
        cached_uri(srv.url("/app.jar")),
        "test \"$(cat app.jar)\" = 'fetched by the agent'",
    )
    .await;
    assert_eq!(st, TaskState::TaskFinished, "{}", agent.executor_stderr());
    assert_eq!(
        srv.hits("/app.jar"),
        0,
        "the drop-in executor fetched a URI"
    );
    assert!(fetched_lines(&agent).is_empty());
    assert_eq!(agent.wait_executor_exit(T).await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn a_long_download_logs_its_progress() {
    let srv = Server::start();
    // About 1.2 s: 2 MiB in 64 KiB chunks, 40 ms apart.
    srv.route(
        "/slow/app.jar",
        Route::Slow {
            body: Arc::new(bytes(2 << 20, 3)),
            chunk: 64 << 10,
            delay: Duration::from_millis(40),
        },
    );
    let mut c = cfg();
    c.extra_env
        .push(("CROUPIER_FETCHER_PROGRESS_INTERVAL".into(), "200ms".into()));
    let mut agent = start(c).await;
    let url = srv.url("/slow/app.jar");
    let st = run_with_uri(
        &agent,
        "slow",
        Uri {
            value: url.clone(),
            ..Default::default()
        },
        "test $(wc -c < app.jar) -eq 2097152",
    )
    .await;
    assert_eq!(st, TaskState::TaskFinished, "{}", agent.executor_stderr());
    let log = agent.executor_stderr();
    let progress: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("fetch progress"))
        .collect();
    assert!(progress.len() >= 3, "progress lines:\n{log}");
    for l in &progress {
        for field in [url.as_str(), "bytes=", "total=Some(2097152)", "rate_mib_s="] {
            assert!(l.contains(field), "{field} in {l}");
        }
    }
    let fetched = fetched_lines(&agent);
    assert!(
        fetched.len() == 1
            && fetched[0].contains("bytes=2097152")
            && fetched[0].contains("cache=off"),
        "{fetched:?}"
    );
    shutdown_ok(&mut agent).await;
}
