//! Container-image tasks in drop-in mode (`--rootfs` and its family), launched through Mesos
//! 1.11's real `mesos-containerizer launch` into a root filesystem the test builds from
//! Debian's `busybox-static`: the task sees the image's root, its sandbox mounted where
//! `--sandbox_directory` says, runs as `--user`, and a COMMAND health check runs inside the
//! task's mount namespace.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::*;
use croupier_proto::v1::{health_check, CommandInfo, HealthCheck, TaskState};

const LAUNCHER_DIR: &str = "/opt/mesos-1.11/libexec/mesos";
const BUSYBOX: &str = "/bin/busybox";

fn require_peers() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "container-image launches need root (mesos-containerizer enters the image), as on an agent"
    );
    assert!(
        Path::new(LAUNCHER_DIR)
            .join("mesos-containerizer")
            .is_file(),
        "{LAUNCHER_DIR}/mesos-containerizer is missing: install Mesos 1.11 \
         (bash /work/shared/mesos/install.sh)"
    );
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
}

/// A minimal image: a static busybox with its applets, the mount points mesos-containerizer
/// and the sandbox need, and a marker only the image has.
fn build_rootfs(root: &Path) {
    for d in [
        "bin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "etc",
        "mnt/mesos/sandbox",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "id", "cat", "pwd", "sleep", "test", "ls", "echo"] {
        symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    symlink("/proc/self/fd", root.join("dev/fd")).expect("/dev/fd link");
    std::fs::write(root.join("image-marker"), "inside-the-image\n").expect("marker");
}

#[tokio::test]
async fn rootfs_task_runs_in_its_image_as_the_user_with_its_sandbox_mounted() {
    require_peers();
    let tmp = tempfile::tempdir().expect("tempdir");
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let mut c = cfg();
    c.sandbox_dir = Some(tmp.path().join("sandbox"));
    std::fs::create_dir_all(tmp.path().join("sandbox")).expect("sandbox");
    let sandbox: PathBuf = tmp.path().join("sandbox");
    // What the filesystem/linux isolator hands the executor (trimmed to what this image
    // needs): a new mount namespace, the root bind-mounted onto itself (pivot_root needs a
    // mount point), /proc, and the sandbox bind-mounted into the image.
    let r = |p: &str| rootfs.join(p).to_string_lossy().into_owned();
    let bind_rec = libc::MS_BIND | libc::MS_REC;
    let launch_info = serde_json::json!({
        "clone_namespaces": [libc::CLONE_NEWNS],
        "mounts": [
            {"source": r(""), "target": r(""), "flags": bind_rec},
            {"source": "proc", "target": r("proc"), "type": "proc",
             "flags": libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV},
            {"source": sandbox.to_string_lossy(), "target": r("mnt/mesos/sandbox"), "flags": bind_rec},
        ]
    });
    c.executor_args = vec![
        format!("--launcher_dir={LAUNCHER_DIR}"),
        format!("--rootfs={}", rootfs.display()),
        "--sandbox_directory=/mnt/mesos/sandbox".into(),
        "--user=nobody".into(),
        format!("--task_launch_info={launch_info}"),
    ];
    let mut agent = start(c).await;
    let mut task = agent.command_task(
        "in-image",
        "id -u > whoami; pwd > cwd; cat /image-marker > seen; \
         test -e /usr/bin || echo no-host-usr > host; sleep 4",
    );
    task.health_check = Some(HealthCheck {
        r#type: Some(health_check::Type::Command as i32),
        command: Some(CommandInfo {
            value: Some("test -f /image-marker".into()),
            shell: Some(true),
            ..Default::default()
        }),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.5),
        timeout_seconds: Some(5.0),
        grace_period_seconds: Some(10.0),
        consecutive_failures: Some(3),
        ..Default::default()
    });
    agent.launch(task).expect("launch sent");
    let done = agent.wait_terminal("in-image", T).await.expect("terminal");
    let log = agent.executor_stderr();
    assert_eq!(
        done.state,
        TaskState::TaskFinished as i32,
        "{done:?}\nexecutor log:\n{log}"
    );
    let read = |name: &str| {
        std::fs::read_to_string(sandbox.join(name))
            .unwrap_or_else(|e| panic!("{name} in the sandbox: {e}\nexecutor log:\n{log}"))
    };
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("user nobody");
    assert_eq!(read("whoami").trim(), nobody.uid.to_string());
    assert_eq!(read("cwd").trim(), "/mnt/mesos/sandbox");
    assert_eq!(read("seen").trim(), "inside-the-image");
    assert_eq!(read("host").trim(), "no-host-usr");
    // The health probe only passes inside the image (the host has no /image-marker).
    assert!(!Path::new("/image-marker").exists());
    let healthy = agent
        .updates()
        .iter()
        .any(|u| u.status.task_id.value == "in-image" && u.status.healthy == Some(true));
    assert!(healthy, "no healthy=true update\nexecutor log:\n{log}");
    let status = agent.wait_executor_exit(T).await.expect("executor exit");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn rootfs_task_without_the_launcher_fails_saying_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut c = cfg();
    c.executor_args = vec![
        format!("--launcher_dir={}", tmp.path().display()),
        format!("--rootfs={}", tmp.path().display()),
        "--sandbox_directory=/mnt/mesos/sandbox".into(),
    ];
    let agent = start(c).await;
    agent
        .launch(agent.command_task("no-helper", "true"))
        .expect("launch sent");
    let done = agent.wait_terminal("no-helper", T).await.expect("terminal");
    assert_eq!(done.state, TaskState::TaskFailed as i32, "{done:?}");
    let msg = done.message.unwrap_or_default();
    assert!(msg.contains("mesos-containerizer"), "{msg}");
    let log = agent.executor_stderr();
    assert!(!log.contains("runs on the host filesystem"), "{log}");
}
