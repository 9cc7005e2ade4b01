//! What an operator meets first: `--version`/`--help`, shutdown when stderr's reader went
//! away, every configuration problem at once, and JSON log lines. Real executor processes
//! against the testkit's agent stand-in on 127.0.0.1.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{alive, exe, read_pid, T};
use croupier_proto::v1::{command_info::Uri, TaskState};
use croupier_testkit::agent::Agent;

#[test]
fn version_and_help() {
    let out = std::process::Command::new(exe())
        .arg("--version")
        .env_clear()
        .output()
        .expect("run croupier-executor --version");
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with(&format!(
            "croupier-executor {} (git ",
            env!("CARGO_PKG_VERSION")
        )) && line.contains(", target ")
            && line.contains("glibc ")
            && line.lines().count() == 1,
        "{line}"
    );
    // croupier-local (testkit) prints the same line with its own name.
    let local = std::process::Command::new(croupier_local())
        .arg("--version")
        .output()
        .expect("run croupier-local --version");
    // (Compared without the git revision: a croupier-local built at another commit is fine.)
    let shape = |l: &str| {
        let (head, rest) = l.split_once(" (git ").unwrap_or((l, ""));
        let tail = rest.split_once(", target ").map_or("", |(_, t)| t);
        format!("{head} | {tail}")
    };
    assert_eq!(
        shape(&String::from_utf8_lossy(&local.stdout)),
        shape(&line.replacen("croupier-executor", "croupier-local", 1))
    );
    let short = std::process::Command::new(exe())
        .arg("-V")
        .env_clear()
        .output()
        .expect("run croupier-executor -V");
    assert_eq!(short.stdout, out.stdout);

    let out = std::process::Command::new(exe())
        .arg("--help")
        .env_clear()
        .output()
        .expect("run croupier-executor --help");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Usage: croupier-executor [OPTIONS]",
        "--task_command <JSON>",
        "--log-format <text|json>",
        "-V, --version",
        "MESOS_AGENT_ENDPOINT",
        "CROUPIER_FETCHER_CACHE_DIR",
        "CROUPIER_LOG_FORMAT",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
}

#[test]
fn every_configuration_problem_in_one_message() {
    let out = std::process::Command::new(exe())
        .args(["--fetcher_stall_timeout=1", "--log-format=yaml", "--user"])
        .env_clear()
        .env("MESOS_EXECUTOR_ID", "ex")
        .env("MESOS_AGENT_ENDPOINT", "http://127.0.0.1:5051/")
        .env("MESOS_CHECKPOINT", "yes")
        .env("MESOS_RECOVERY_TIMEOUT", "15")
        .env("CROUPIER_FETCHER_CACHE_SIZE", "lots")
        .env("CROUPIER_FETCHER_CACHE_DIR", "relative/dir")
        .output()
        .expect("run croupier-executor");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = err.lines().filter(|l| l.starts_with("  - ")).collect();
    for needle in [
        "MESOS_FRAMEWORK_ID is not set",
        "MESOS_AGENT_ENDPOINT=\"http://127.0.0.1:5051/\" is not IP:PORT",
        "neither MESOS_SANDBOX nor MESOS_DIRECTORY is set",
        "MESOS_CHECKPOINT=\"yes\" is neither \"1\" nor \"0\"",
        "MESOS_RECOVERY_TIMEOUT",
        "--log-format=\"yaml\": expected text or json",
        "--user: expects a value",
        "CROUPIER_FETCHER_CACHE_SIZE=\"lots\"",
        "CROUPIER_FETCHER_CACHE_DIR=\"relative/dir\": must be an absolute path",
        "--fetcher_stall_timeout=\"1\"",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle} missing from:\n{err}"
        );
    }
    assert_eq!(problems.len(), 10, "{err}");
}

/// Starts the executor with its stderr a pipe, waits for it to subscribe and run a task, then
/// closes the pipe's reading end, sends `signal` and expects a clean exit well within the
/// shutdown grace period, with the task's process gone.
async fn stop_with_stderr_closed(signal: nix::sys::signal::Signal) {
    let mut cfg = common::cfg();
    cfg.shutdown_grace_period = Duration::from_secs(3);
    let agent = Agent::start(cfg).await.expect("start the agent stand-in");
    let mut child = tokio::process::Command::new(exe())
        .env_clear()
        .envs(agent.executor_env())
        .current_dir(agent.sandbox())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn croupier-executor");
    let pid = child.id().expect("executor pid") as i32;
    let stderr = child.stderr.take().expect("stderr pipe");
    agent
        .wait_subscribed(T)
        .await
        .expect("the executor subscribes");
    let task = agent.command_task("sleeper", "echo $$ > pid; exec sleep 600");
    agent.launch(task).expect("LAUNCH");
    agent
        .wait_update("sleeper", TaskState::TaskRunning, T)
        .await
        .expect("TASK_RUNNING");
    // TASK_RUNNING leaves once `sh` is exec'd, before it ran `echo`: on a loaded machine the
    // signal below could kill the task before it wrote its pid.
    let task_pid = read_pid(&agent.sandbox().join("tasks/sleeper/pid"), T).await;
    // The reader goes away: every log line from now on meets EPIPE.
    drop(stderr);
    // A few events that log, before and after the signal.
    agent.heartbeat().expect("HEARTBEAT");
    agent.message(b"hello").expect("MESSAGE");
    let started = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("send the signal");
    let status = match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(s) => s.expect("wait for the executor"),
        Err(_) => {
            panic!("croupier-executor did not stop within 30s of {signal} with stderr closed")
        }
    };
    let took = started.elapsed();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        None,
        "killed by a signal instead of exiting: {status:?}"
    );
    assert_ne!(status.code(), Some(101), "it panicked: {status:?}");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?} (grace 3s) to stop after {signal}"
    );
    assert!(
        common::wait_gone(&[task_pid], T).await.is_ok(),
        "the task's process {task_pid} outlived the executor"
    );
    assert!(!alive(pid));
}

#[tokio::test]
async fn sigterm_with_stderr_reader_gone() {
    stop_with_stderr_closed(nix::sys::signal::Signal::SIGTERM).await;
}

#[tokio::test]
async fn sigint_with_stderr_reader_gone() {
    stop_with_stderr_closed(nix::sys::signal::Signal::SIGINT).await;
}

#[tokio::test]
async fn json_log_lines() {
    let mut cfg = common::cfg();
    cfg.extra_env
        .push(("CROUPIER_LOG_FORMAT".into(), "json".into()));
    let src = tempfile::tempdir().expect("tempdir");
    let file = src.path().join("payload.txt");
    std::fs::write(&file, b"payload").expect("write the payload");
    let mut agent = common::start(cfg).await;
    let mut task = agent.command_task("json-task", "cat payload.txt");
    if let Some(c) = task.command.as_mut() {
        c.uris = vec![Uri {
            value: format!("file://{}", file.display()),
            ..Default::default()
        }];
    }
    agent.launch(task).expect("LAUNCH");
    let status = agent
        .wait_terminal("json-task", T)
        .await
        .expect("the task ends");
    assert_eq!(status.state, TaskState::TaskFinished as i32, "{status:?}");
    agent.shutdown().expect("SHUTDOWN");
    agent
        .wait_executor_exit(T)
        .await
        .expect("the executor exits");
    let log = agent.executor_stderr();
    let framework_id = agent.config().framework_id.as_str();
    let executor_id = agent.config().executor_id.as_str();
    let mut lines = 0;
    let mut with_task_id = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}\nwhole log:\n{log}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        assert_eq!(v["framework_id"], framework_id, "{line}");
        assert_eq!(v["executor_id"], executor_id, "{line}");
        if v["task_id"] == "json-task" {
            with_task_id.push(v["message"].as_str().unwrap_or_default().to_string());
        }
        lines += 1;
    }
    assert!(lines >= 5, "only {lines} lines:\n{log}");
    for wanted in ["fetched", "TASK_RUNNING", "TASK_FINISHED", "task summary"] {
        assert!(
            with_task_id.iter().any(|m| m.contains(wanted)),
            "no line with task_id about {wanted:?}: {with_task_id:#?}\nwhole log:\n{log}"
        );
    }
}

/// `croupier-local` lives in the testkit package; `cargo test --workspace` (scripts/test.sh)
/// builds it next to this package's executor binary.
fn croupier_local() -> std::path::PathBuf {
    let p = exe().with_file_name("croupier-local");
    assert!(
        p.exists(),
        "{} is not built: run the suite with scripts/test.sh (cargo test --workspace), \
         or cargo build -p croupier-testkit first",
        p.display()
    );
    p
}

#[test]
fn croupier_local_fetches_uris_passes_stderr_and_prints_the_final_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join("src/app")).expect("mkdir");
    std::fs::write(d.join("src/app/inner.txt"), "inner-data\n").expect("write");
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(d.join("src"))
        .arg("-czf")
        .arg(d.join("app.tgz"))
        .arg("app")
        .status()
        .expect("run tar");
    assert!(tar.success());
    std::fs::write(d.join("tool.sh"), "#!/bin/sh\necho tool-ran\n").expect("write");
    let out = std::process::Command::new(croupier_local())
        .args(["--mode", "custom", "--executor"])
        .arg(exe())
        .arg("--executor-env")
        .arg(format!(
            "CROUPIER_FETCHER_CACHE_DIR={}",
            d.join("cache").display()
        ))
        .arg("--uri")
        .arg(format!("file://{},cache", d.join("app.tgz").display()))
        .arg("--uri")
        .arg(format!(
            "{},executable,extract=false,output_file=run",
            d.join("tool.sh").display()
        ))
        .args([
            "--",
            "./run; cat app/inner.txt; echo to-stderr-$MESOS_TASK_ID >&2; exit 4",
        ])
        .output()
        .expect("run croupier-local");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    // The task's output is passed through as it comes, between the update lines.
    let task_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("croupier-local"))
        .collect();
    assert_eq!(task_lines, ["tool-ran", "inner-data"], "{stdout}");
    assert!(
        stderr.contains("to-stderr-croupier-local-task"),
        "task stderr not passed through: {stderr}"
    );
    assert!(
        stdout.lines().any(|l| l
            == "croupier-local: task croupier-local-task final state TASK_FAILED, reason none: \
                Command exited with status 4"),
        "{stdout}"
    );
    assert!(
        std::fs::read_dir(d.join("cache"))
            .map(|r| r.count() > 0)
            .unwrap_or(false),
        "the cache=true URI did not go through the cache"
    );

    let out = std::process::Command::new(croupier_local())
        .arg("--executor")
        .arg(exe())
        .args(["--uri", "/x.tgz", "--", "true"])
        .output()
        .expect("run croupier-local");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--uri needs --mode custom"),
        "{out:?}"
    );
}
