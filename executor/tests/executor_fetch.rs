//! Task URIs through whole executor processes: the fetcher cache configured the way an
//! operator does it (the agent's `--executor_environment_variables` passing
//! `CROUPIER_FETCHER_CACHE_DIR` / `CROUPIER_FETCHER_CACHE_SIZE`), shared by executors that run
//! at the same time and kept across executor restarts; and the drop-in mode, where the agent
//! has fetched already and the executor fetches nothing. And the issue's races with real
//! executor processes: 8 executors wanting one URI at once, and an executor SIGKILLed half way
//! through a download.

mod common;
mod fetcher_support;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use croupier_proto::v1::command_info::Uri;
use croupier_proto::v1::{TaskInfo, TaskState};
use croupier_testkit::agent::{Agent, AgentConfig};
use fetcher_support::{bytes, gzip, RawTar, Route, Server, Tmpfs};

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

/// A cacheable URI, not extracted.
fn cacheable(value: String) -> Uri {
    Uri {
        value,
        cache: Some(true),
        ..Default::default()
    }
}

/// A command task running `sh` after fetching `uris`.
fn task_with_uris(agent: &Agent, task_id: &str, sh: &str, uris: Vec<Uri>) -> TaskInfo {
    let mut task = agent.command_task(task_id, sh);
    if let Some(c) = task.command.as_mut() {
        c.uris = uris;
    }
    task
}

/// Waits until a cache download is under way: a `.part` file under `cache` with some bytes.
async fn wait_download_started(cache: &std::path::Path, agent: &Agent) {
    let started = std::time::Instant::now();
    while !part_files(cache)
        .iter()
        .any(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
    {
        assert!(
            started.elapsed() < T,
            "no download started:\n{}",
            agent.executor_stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Launches `task_id` running `sh` after fetching `uri`, and waits for its terminal update.
async fn run_with_uri(agent: &Agent, task_id: &str, uri: Uri, sh: &str) -> TaskState {
    agent
        .launch(task_with_uris(agent, task_id, sh, vec![uri]))
        .unwrap();
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

#[tokio::test]
async fn eight_executors_racing_for_one_uri_download_it_once() {
    let srv = Server::start();
    let body = bytes(6 << 20, 77);
    srv.route(
        "/race/app.bin",
        Route::Slow {
            body: Arc::new(body.clone()),
            chunk: 512 << 10,
            delay: Duration::from_millis(200),
        },
    );
    let url = srv.url("/race/app.bin");
    let cache = tempfile::tempdir().unwrap();
    let agents = futures_util::future::join_all(
        (0..8).map(|i| start(with_cache(cache.path(), &format!("race-{i}")))),
    )
    .await;
    let uri = cacheable(url.clone());
    let states = futures_util::future::join_all(
        agents
            .iter()
            .map(|a| run_with_uri(a, "t", uri.clone(), "test -s app.bin")),
    )
    .await;
    for (a, st) in agents.iter().zip(&states) {
        assert_eq!(*st, TaskState::TaskFinished, "{}", a.executor_stderr());
        // Every task got the same bytes, in a file of its own.
        let got = std::fs::read(task_dir(a, "t").join("app.bin")).unwrap();
        assert!(
            got == body,
            "task of {} got different bytes",
            a.config().executor_id
        );
    }
    assert_eq!(srv.hits("/race/app.bin"), 1, "8 executors, one download");
    // They raced: the download takes about 2.4 s (12 parts, 200 ms apart; long enough that
    // every executor, however late the loaded machine starts it, joins while it runs), and
    // every executor's fetch took at least a part of it (the downloader, and 7 that waited for it), rather than an instant hit
    // after the others had finished.
    for a in &agents {
        let lines = fetched_lines(a);
        let secs: f64 = lines
            .first()
            .and_then(|l| l.split("secs=\"").nth(1))
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no secs in {lines:?}"));
        assert!(
            secs >= 0.2,
            "{} did not wait for the download: {lines:?}",
            a.config().executor_id
        );
    }
    let misses = agents
        .iter()
        .flat_map(fetched_lines)
        .filter(|l| l.contains("cache=miss"))
        .count();
    assert_eq!(misses, 1);
    for mut a in agents {
        shutdown_ok(&mut a).await;
    }
}

/// Every `.part` file (a download in flight) under the cache.
fn part_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "part") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn sigkill_of_an_executor_mid_download_then_a_new_one_fetches() {
    let srv = Server::start();
    let body = bytes(8 << 20, 5);
    // About 2.5 s in total: plenty of time to kill the first executor half way.
    srv.route(
        "/kill/app.bin",
        Route::Slow {
            body: Arc::new(body.clone()),
            chunk: 256 << 10,
            delay: Duration::from_millis(80),
        },
    );
    let url = srv.url("/kill/app.bin");
    let cache = tempfile::tempdir().unwrap();
    let uri = cacheable(url.clone());
    let mut a = start(with_cache(cache.path(), "victim")).await;
    a.launch(task_with_uris(
        &a,
        "t",
        "test -s app.bin",
        vec![uri.clone()],
    ))
    .unwrap();
    wait_download_started(cache.path(), &a).await;
    let pid = a.executor_pid().expect("executor pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = a.wait_executor_exit(T).await.unwrap();
    assert!(
        std::os::unix::process::ExitStatusExt::signal(&st) == Some(9),
        "{st:?}"
    );
    assert!(a.recorded().terminal_updates("t").is_empty());
    // The half-written download is not an entry.
    assert!(entry_files(cache.path()).is_empty());
    drop(a);

    // A new executor fetches the same URI: it downloads again, and the cache is consistent.
    let mut b = start(with_cache(cache.path(), "successor")).await;
    let st = run_with_uri(&b, "t2", uri, "test -s app.bin").await;
    assert_eq!(st, TaskState::TaskFinished, "{}", b.executor_stderr());
    assert_eq!(
        std::fs::read(task_dir(&b, "t2").join("app.bin")).unwrap(),
        body
    );
    assert_eq!(srv.hits("/kill/app.bin"), 2);
    let e = entry_files(cache.path());
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(std::fs::read(&e[0]).unwrap(), body);
    assert!(
        part_files(cache.path()).is_empty(),
        "{:?}",
        part_files(cache.path())
    );
    shutdown_ok(&mut b).await;
}

#[tokio::test]
async fn uris_of_launch_group_tasks_and_of_commands_in_data_are_fetched() {
    use croupier_proto::v1::CommandInfo;
    let srv = Server::start();
    srv.route(
        "/conf.tgz",
        Route::Ok(Arc::new(gzip(
            &RawTar::new()
                .file("conf/spark-defaults.conf", b"spark.master mesos://zk\n")
                .finish(),
        ))),
    );
    srv.route(
        "/run.sh",
        Route::Ok(Arc::new(b"#!/bin/sh\necho ran\n".to_vec())),
    );
    srv.route("/lib.jar", Route::Ok(Arc::new(b"jar bytes".to_vec())));
    let cache = tempfile::tempdir().unwrap();
    let mut agent = start(with_cache(cache.path(), "kinds")).await;
    let plain = |path: &str| Uri {
        value: srv.url(path),
        ..Default::default()
    };
    // LAUNCH_GROUP: each task's own command.uris, into its own directory.
    let mut g1 = agent.command_task("g1", "grep -q mesos conf/spark-defaults.conf");
    let mut g2 = agent.command_task("g2", "test \"$(./run.sh)\" = ran");
    if let Some(c) = g1.command.as_mut() {
        c.uris = vec![Uri {
            extract: Some(true),
            ..plain("/conf.tgz")
        }];
    }
    if let Some(c) = g2.command.as_mut() {
        c.uris = vec![Uri {
            executable: Some(true),
            ..plain("/run.sh")
        }];
    }
    agent.launch_group(vec![g1, g2]).unwrap();
    // LAUNCH with the CommandInfo in TaskInfo.data: as protobuf, and as Mesos JSON.
    let pb = CommandInfo {
        value: Some("test \"$(cat lib.jar)\" = 'jar bytes'".into()),
        shell: Some(true),
        uris: vec![plain("/lib.jar")],
        ..Default::default()
    };
    agent.launch(agent.data_task("pb", &pb)).unwrap();
    let mut js = agent.data_task("js", &CommandInfo::default());
    js.data = Some(
        format!(
            r#"{{"value":"test \"$(cat lib.jar)\" = 'jar bytes'","shell":true,"uris":[{{"value":"{}","cache":true}}]}}"#,
            srv.url("/lib.jar")
        )
        .into_bytes(),
    );
    agent.launch(js).unwrap();
    for id in ["g1", "g2", "pb", "js"] {
        let done = agent.wait_terminal(id, T).await.unwrap();
        assert_eq!(
            done.state,
            TaskState::TaskFinished as i32,
            "{id}: {done:?}\n{}",
            agent.executor_stderr()
        );
    }
    // Each task fetched into its own directory only.
    assert!(task_dir(&agent, "g1")
        .join("conf/spark-defaults.conf")
        .exists());
    assert!(!task_dir(&agent, "g2").join("conf").exists());
    assert!(!agent.sandbox().join("lib.jar").exists());
    assert_eq!(srv.hits("/conf.tgz"), 1);
    assert_eq!(srv.hits("/run.sh"), 1);
    assert_eq!(srv.hits("/lib.jar"), 2);
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn a_task_killed_while_fetching_ends_at_once_and_the_uri_stays_fetchable() {
    let srv = Server::start();
    let body = bytes(8 << 20, 11);
    // About 7.7 s in total.
    srv.route(
        "/big/app.bin",
        Route::Slow {
            body: Arc::new(body.clone()),
            chunk: 128 << 10,
            delay: Duration::from_millis(120),
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let mut agent = start(with_cache(cache.path(), "killer")).await;
    let uri = cacheable(srv.url("/big/app.bin"));
    agent
        .launch(task_with_uris(
            &agent,
            "k",
            "test -s app.bin",
            vec![uri.clone()],
        ))
        .unwrap();
    wait_download_started(cache.path(), &agent).await;
    let killed_at = std::time::Instant::now();
    agent.kill("k", None).unwrap();
    let done = agent.wait_terminal("k", T).await.unwrap();
    assert_eq!(done.state, TaskState::TaskKilled as i32, "{done:?}");
    assert!(
        // (well under the download's length, with room for a loaded machine)
        killed_at.elapsed() < Duration::from_secs(4),
        "the kill waited for the download: {:?}",
        killed_at.elapsed()
    );
    assert!(!agent
        .recorded()
        .states("k")
        .contains(&TaskState::TaskRunning));
    // The same URI for a new task: fetched whole, and it becomes one complete entry.
    let st = run_with_uri(&agent, "k2", uri, "test $(wc -c < app.bin) -eq 8388608").await;
    assert_eq!(st, TaskState::TaskFinished, "{}", agent.executor_stderr());
    assert_eq!(
        std::fs::read(task_dir(&agent, "k2").join("app.bin")).unwrap(),
        body
    );
    assert_eq!(srv.hits("/big/app.bin"), 2);
    assert!(
        part_files(cache.path()).is_empty(),
        "{:?}",
        part_files(cache.path())
    );
    shutdown_ok(&mut agent).await;
}

/// Every file of the cache entries under `dir`.
fn entry_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for user in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let e = user.path().join("entries");
        v.extend(
            std::fs::read_dir(e)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
    }
    v
}

#[tokio::test]
async fn a_task_user_owns_its_fetched_copy_and_cannot_change_the_cache_entry() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test runs a task as another user and must run as root, as the executor does on \
         an agent (CI runs scripts/test.sh as root)"
    );
    let srv = Server::start();
    let jar = b"original jar bytes\n".to_vec();
    srv.route("/app.jar", Route::Ok(Arc::new(jar.clone())));
    srv.route(
        "/conf.tgz",
        Route::Ok(Arc::new(gzip(
            &RawTar::new()
                .file("conf/spark-defaults.conf", b"spark.cores.max 4\n")
                .finish(),
        ))),
    );
    let cache = tempfile::tempdir().unwrap();
    let mut agent = start(with_cache(cache.path(), "users")).await;
    let uris = vec![
        cacheable(srv.url("/app.jar")),
        Uri {
            value: srv.url("/conf.tgz"),
            cache: Some(true),
            extract: Some(true),
            ..Default::default()
        },
    ];
    // Two tasks, as nobody, one after the other: each finds its files its own and the jar
    // intact, then rewrites its copy of the jar.
    let script = "test \"$(stat -c %U app.jar)\" = nobody \
                  && test \"$(stat -c %U conf/spark-defaults.conf)\" = nobody \
                  && grep -q cores conf/spark-defaults.conf \
                  && grep -qx 'original jar bytes' app.jar \
                  && echo tampered > app.jar";
    for id in ["u1", "u2"] {
        let mut task = agent.command_task(id, script);
        if let Some(c) = task.command.as_mut() {
            c.uris = uris.clone();
            c.user = Some("nobody".into());
        }
        agent.launch(task).unwrap();
        let done = agent.wait_terminal(id, T).await.unwrap();
        assert_eq!(
            done.state,
            TaskState::TaskFinished as i32,
            "{id}: {done:?}\n{}",
            agent.executor_stderr()
        );
        assert_eq!(
            std::fs::read(task_dir(&agent, id).join("app.jar")).unwrap(),
            b"tampered\n"
        );
    }
    // The second task found the original bytes (its script checks them), from the cache.
    assert_eq!(srv.hits("/app.jar"), 1);
    assert_eq!(srv.hits("/conf.tgz"), 1);
    let entries = entry_files(cache.path());
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries
            .iter()
            .any(|e| std::fs::read(e).map(|b| b == jar).unwrap_or(false)),
        "the jar's cache entry still holds the original bytes: {entries:?}"
    );
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn executors_waiting_for_a_failing_download_fail_with_it_instead_of_retrying_in_turn() {
    let srv = Server::start();
    // Sends a little, then nothing: each attempt ends at the stall timeout (3 s here: every
    // executor, however late the loaded machine starts it, joins the first attempt).
    srv.route(
        "/stall.bin",
        Route::Stall {
            len: 1 << 20,
            sent: 1000,
        },
    );
    let url = srv.url("/stall.bin");
    let cache = tempfile::tempdir().unwrap();
    let mut agents = Vec::new();
    for i in 0..3 {
        let mut c = with_cache(cache.path(), &format!("stall-{i}"));
        c.extra_env
            .push(("CROUPIER_FETCHER_STALL_TIMEOUT".into(), "3secs".into()));
        agents.push(start(c).await);
    }
    let uri = cacheable(url.clone());
    let started = std::time::Instant::now();
    for a in &agents {
        a.launch(task_with_uris(a, "t", "true", vec![uri.clone()]))
            .unwrap();
    }
    let mut messages = Vec::new();
    for a in &agents {
        let done = a.wait_terminal("t", T).await.unwrap();
        assert_eq!(done.state, TaskState::TaskFailed as i32, "{done:?}");
        assert_eq!(
            done.reason,
            Some(croupier_proto::v1::task_status::Reason::ContainerLaunchFailed as i32)
        );
        messages.push(done.message.unwrap_or_default());
    }
    // One stall, shared: not two or three in a row.
    assert!(
        started.elapsed() < Duration::from_millis(5500),
        "took {:?}: {messages:?}\n{}",
        started.elapsed(),
        agents
            .iter()
            .map(|a| a.executor_stderr())
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    assert_eq!(
        srv.hits("/stall.bin"),
        1,
        "{messages:?}\n{}",
        agents
            .iter()
            .map(|a| a.executor_stderr())
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    assert!(messages.iter().all(|m| m.contains(&url)), "{messages:?}");
    assert_eq!(
        messages.iter().filter(|m| m.contains("stalled")).count(),
        3,
        "each message names the cause: {messages:?}"
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.contains("another executor's download of this URI failed"))
            .count(),
        2,
        "{messages:?}"
    );
    for mut a in agents {
        shutdown_ok(&mut a).await;
    }
}

#[tokio::test]
async fn a_full_cache_file_system_fetches_directly_and_the_task_runs() {
    let t = tempfile::tempdir().unwrap();
    let small = t.path().join("cache");
    let _tmpfs = Tmpfs::mount(&small, "1m");
    let srv = Server::start();
    let body = bytes(4 << 20, 21);
    srv.route("/big.bin", Route::Ok(Arc::new(body.clone())));
    // The cache's cap (64MB) would take it; its file system cannot.
    let mut agent = start(with_cache(&small, "full")).await;
    let st = run_with_uri(
        &agent,
        "t",
        cacheable(srv.url("/big.bin")),
        "test $(wc -c < big.bin) -eq 4194304",
    )
    .await;
    assert_eq!(st, TaskState::TaskFinished, "{}", agent.executor_stderr());
    assert_eq!(
        std::fs::read(task_dir(&agent, "t").join("big.bin")).unwrap(),
        body
    );
    let log = agent.executor_stderr();
    assert!(
        log.contains("fetcher cache file system full; fetching directly"),
        "{log}"
    );
    let lines = fetched_lines(&agent);
    assert!(
        lines.len() == 1 && lines[0].contains("cache=bypass"),
        "{lines:?}"
    );
    assert!(part_files(&small).is_empty(), "{:?}", part_files(&small));
    shutdown_ok(&mut agent).await;
}

/// Bad input fails the task, through the whole executor: not started, TASK_FAILED with
/// REASON_CONTAINER_LAUNCH_FAILED and a message naming the URI and the cause.
#[tokio::test]
async fn bad_uris_fail_their_tasks_naming_uri_and_cause() {
    let srv = Server::start();
    srv.route("/gone.jar", Route::Status(404));
    srv.route(
        "/slip.tgz",
        Route::Ok(Arc::new(gzip(
            &RawTar::new().file("../outside.txt", b"escaped").finish(),
        ))),
    );
    srv.route(
        "/bad.tgz",
        Route::Ok(Arc::new(b"not gzip at all".repeat(10))),
    );
    srv.route(
        "/short.bin",
        Route::LieLength {
            body: Arc::new(vec![7u8; 1000]),
            claimed: 5000,
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let mut agent = start(with_cache(cache.path(), "bad")).await;
    let cases = [
        ("gone", "/gone.jar", "404"),
        ("slip", "/slip.tgz", "outside"),
        ("corrupt", "/bad.tgz", "archive"),
        ("short", "/short.bin", "truncated"),
    ];
    for (id, path, _) in &cases {
        let uri = Uri {
            value: srv.url(path),
            ..Default::default()
        };
        agent
            .launch(task_with_uris(&agent, id, "touch started", vec![uri]))
            .unwrap();
    }
    for (id, path, cause) in &cases {
        let done = agent.wait_terminal(id, T).await.unwrap();
        assert_eq!(done.state, TaskState::TaskFailed as i32, "{id}: {done:?}");
        assert_eq!(
            done.reason,
            Some(croupier_proto::v1::task_status::Reason::ContainerLaunchFailed as i32),
            "{id}"
        );
        let msg = done.message.unwrap_or_default();
        assert!(msg.contains(&srv.url(path)), "{id}: {msg}");
        assert!(
            msg.to_ascii_lowercase().contains(cause),
            "{id}: {cause} in {msg}"
        );
        assert!(
            !agent
                .recorded()
                .states(id)
                .contains(&TaskState::TaskRunning),
            "{id} was started"
        );
        assert!(!task_dir(&agent, id).join("started").exists(), "{id} ran");
    }
    // The tar-slip entry landed nowhere outside the task's directory.
    assert!(!agent.sandbox().join("tasks/outside.txt").exists());
    assert!(!agent.sandbox().join("outside.txt").exists());
    shutdown_ok(&mut agent).await;
}
