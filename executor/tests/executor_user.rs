//! The user switch (`CommandInfo.user` when the executor runs as root, as on a Mesos agent) and
//! the `croupier-local` CLI end to end.

mod common;

use std::process::Command;

use common::*;
use croupier_proto::v1::TaskState;

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test switches users and must run as root, as the executor does on an agent \
         (CI runs scripts/test.sh as root)"
    );
}

/// `id -u NAME` / `id -g NAME`, from the system rather than hard-coded.
fn id_of(flag: &str, user: &str) -> String {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .expect("run id(1)");
    assert!(out.status.success(), "id {flag} {user}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn task_runs_as_the_commandinfo_user() {
    require_root();
    let (uid, gid) = (id_of("-u", "nobody"), id_of("-g", "nobody"));
    let mut agent = start(cfg()).await;
    let mut task = agent.command_task("as-nobody", "id -u; id -g; touch made-by-task");
    if let Some(c) = task.command.as_mut() {
        c.user = Some("nobody".into());
    }
    agent.launch(task).expect("launch sent");
    let done = agent.wait_terminal("as-nobody", T).await.expect("terminal");
    assert_eq!(
        done.state,
        TaskState::TaskFinished as i32,
        "{done:?}\nexecutor log:\n{}",
        agent.executor_stderr()
    );
    let dir = task_dir(&agent, "as-nobody");
    let out = std::fs::read_to_string(dir.join("stdout")).expect("task stdout");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec![uid.as_str(), gid.as_str()], "stdout: {out}");
    // The task could write into its own directory, so that directory belongs to the user.
    let made = std::fs::metadata(dir.join("made-by-task")).expect("file made by the task");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(made.uid().to_string(), uid);
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn unknown_user_fails_the_task_naming_the_user() {
    require_root();
    let mut agent = start(cfg()).await;
    let mut task = agent.command_task("ghost", "true");
    if let Some(c) = task.command.as_mut() {
        c.user = Some("croupier-no-such-user".into());
    }
    agent.launch(task).expect("launch sent");
    let done = agent.wait_terminal("ghost", T).await.expect("terminal");
    assert_eq!(done.state, TaskState::TaskFailed as i32, "{done:?}");
    let msg = done.message.clone().unwrap_or_default();
    assert!(msg.contains("croupier-no-such-user"), "message: {msg}");
    shutdown_ok(&mut agent).await;
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
fn croupier_local_runs_a_task_in_both_modes_and_returns_its_exit_status() {
    let out = Command::new(croupier_local())
        .arg("--executor")
        .arg(exe())
        .args(["--", "echo hello-local; exit 3"])
        .output()
        .expect("run croupier-local");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "stdout: {stdout}");
    assert!(stdout.contains("TASK_RUNNING"), "stdout: {stdout}");
    assert!(
        stdout.contains("TASK_FAILED: Command exited with status 3"),
        "stdout: {stdout}"
    );
    assert!(stdout.contains("hello-local"), "stdout: {stdout}");

    let out = Command::new(croupier_local())
        .args(["--mode", "custom", "--executor"])
        .arg(exe())
        .args(["--", "echo in-$MESOS_TASK_ID"])
        .output()
        .expect("run croupier-local");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}");
    assert!(stdout.contains("TASK_FINISHED"), "stdout: {stdout}");
    assert!(
        stdout.contains("in-croupier-local-task"),
        "stdout: {stdout}"
    );
}
