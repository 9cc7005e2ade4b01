//! The user switch (custom mode: `CommandInfo.user` when the executor runs as root; drop-in
//! mode: only `--user`, as upstream), spawn failures naming what is missing, and
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

/// Drop-in mode (as `mesos-executor`): `CommandInfo.user` is never switched to (the agent
/// already started the executor as the task's user, or as itself on `--switch_user=false`
/// agents); `--user` is.
#[tokio::test]
async fn drop_in_switches_only_for_the_user_flag() {
    require_root();
    let nobody = id_of("-u", "nobody");
    for (flag_user, expect_uid) in [(None, "0".to_string()), (Some("nobody"), nobody)] {
        let mut c = cfg();
        c.executor_args = vec!["--launcher_dir=/usr/libexec/mesos".into()];
        if let Some(u) = flag_user {
            c.executor_args.push(format!("--user={u}"));
        }
        let mut agent = start(c).await;
        // The sandbox must be usable by the --user, as the agent makes it.
        if flag_user.is_some() {
            std::fs::set_permissions(
                agent.sandbox(),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .expect("chmod sandbox");
        }
        let mut task = agent.command_task("who", "id -u > whoami");
        if let Some(cmd) = task.command.as_mut() {
            cmd.user = Some("nobody".into());
        }
        agent.launch(task).expect("launch sent");
        let done = agent.wait_terminal("who", T).await.expect("terminal");
        assert_eq!(
            done.state,
            TaskState::TaskFinished as i32,
            "--user={flag_user:?}: {done:?}\nexecutor log:\n{}",
            agent.executor_stderr()
        );
        let got = std::fs::read_to_string(agent.sandbox().join("whoami")).expect("whoami");
        assert_eq!(got.trim(), expect_uid, "--user={flag_user:?}");
        let status = agent.wait_executor_exit(T).await.expect("executor exit");
        assert_eq!(status.code(), Some(0));
    }
}

/// A drop-in task that cannot start fails with a message naming what is missing.
#[tokio::test]
async fn drop_in_spawn_failures_name_what_is_missing() {
    use croupier_proto::v1::{environment, CommandInfo, Environment};
    let path_env = |p: &str| Environment {
        variables: vec![environment::Variable {
            name: "PATH".into(),
            value: Some(p.into()),
            ..Default::default()
        }],
    };
    let cases: Vec<(&str, Vec<String>, CommandInfo, Vec<&str>)> = vec![
        (
            "no-sh",
            vec![],
            CommandInfo {
                value: Some("echo hi".into()),
                shell: Some(true),
                environment: Some(path_env("/opt/nowhere/bin")),
                ..Default::default()
            },
            vec!["'sh'", "PATH=/opt/nowhere/bin"],
        ),
        (
            "no-binary",
            vec![],
            CommandInfo {
                value: Some("/opt/nowhere/bin/spark-class".into()),
                shell: Some(false),
                arguments: vec!["spark-class".into()],
                ..Default::default()
            },
            vec!["binary", "/opt/nowhere/bin/spark-class"],
        ),
        (
            "no-binary-on-path",
            vec![],
            CommandInfo {
                value: Some("croupier-no-such-tool".into()),
                shell: Some(false),
                arguments: vec!["croupier-no-such-tool".into()],
                environment: Some(path_env("/usr/bin:/bin")),
                ..Default::default()
            },
            vec!["croupier-no-such-tool", "PATH=/usr/bin:/bin"],
        ),
        (
            "no-dir",
            vec!["--working_directory=/opt/nowhere/work".into()],
            CommandInfo {
                value: Some("true".into()),
                shell: Some(true),
                ..Default::default()
            },
            vec!["working directory", "/opt/nowhere/work"],
        ),
    ];
    for (id, extra_args, command, needles) in cases {
        let mut c = cfg();
        c.executor_args = vec!["--launcher_dir=/usr/libexec/mesos".into()];
        c.executor_args.extend(extra_args);
        let mut agent = start(c).await;
        let mut task = agent.command_task(id, "");
        task.command = Some(command);
        agent.launch(task).expect("launch sent");
        let done = agent.wait_terminal(id, T).await.expect("terminal");
        assert_eq!(done.state, TaskState::TaskFailed as i32, "{id}: {done:?}");
        let msg = done.message.clone().unwrap_or_default();
        for n in needles {
            assert!(msg.contains(n), "{id}: {n:?} not in {msg:?}");
        }
        let status = agent.wait_executor_exit(T).await.expect("executor exit");
        assert_eq!(status.code(), Some(0), "{id}");
    }
}

/// Every `mesos-executor` flag is known: the ones without effect are logged as known and
/// unused, with the reason, never as unknown.
#[tokio::test]
async fn drop_in_logs_known_unused_flags_as_known() {
    let mut c = cfg();
    c.executor_args = vec![
        "--launcher_dir=/usr/libexec/mesos".into(),
        "--tty_slave_path=/dev/pts/9".into(),
        "--task_supplementary_groups=4".into(),
        "--some_future_flag=1".into(),
    ];
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("flags", "true"))
        .expect("launch sent");
    let done = agent.wait_terminal("flags", T).await.expect("terminal");
    assert_eq!(done.state, TaskState::TaskFinished as i32, "{done:?}");
    let log = agent.executor_stderr();
    for flag in [
        "tty_slave_path",
        "task_supplementary_groups",
        "launcher_dir",
    ] {
        assert!(
            log.contains(&format!("known mesos-executor flag --{flag}=")),
            "{flag}: {log}"
        );
        assert!(
            !log.contains(&format!("unknown flag --{flag}")),
            "{flag}: {log}"
        );
    }
    assert!(log.contains("unknown flag --some_future_flag=1"), "{log}");
    let status = agent.wait_executor_exit(T).await.expect("executor exit");
    assert_eq!(status.code(), Some(0));
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
