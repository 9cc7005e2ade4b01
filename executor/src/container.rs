//! The container-image launch path (drop-in mode with `--rootfs`): as Mesos 1.11's command
//! executor, the task is started through `<launcher_dir>/mesos-containerizer launch`, which
//! mounts what the isolators asked for, enters the image's root filesystem, switches to the
//! task's user and execs the command in place (so the pid we spawn is the task's).
//!
//! The `ContainerLaunchInfo` handed to it is built as upstream builds it (see
//! `launchTaskSubprocess` in `src/launcher/executor.cpp` of Mesos 1.11.0): the command, the
//! task's environment, `rootfs`, `working_directory` (`--working_directory`, else
//! `--sandbox_directory`), `user`, the capability flags verbatim, `supplementary_groups` from
//! `--task_supplementary_groups`, and `mounts`, `file_operations`, `pre_exec_commands` and
//! `clone_namespaces` copied from `--task_launch_info`. It travels as the protobuf JSON mapping
//! (`--launch_info=<JSON>`), so the isolators' parts are passed through as the agent wrote them.
//!
//! Custom mode has no image path: [`custom_mode_container`] says which `TaskInfo.container`
//! a task may carry there.

use std::path::{Path, PathBuf};

use croupier_proto::v1::{CommandInfo, ContainerInfo, Image};
use serde_json::{json, Map, Value};

use crate::config::DropInFlags;
use crate::process::{Output, Program, SpawnSpec};

/// The launch helper's name inside `--launcher_dir`.
pub const CONTAINERIZER: &str = "mesos-containerizer";

/// The parts of `--task_launch_info` the command executor hands on (as upstream).
const LAUNCH_INFO_PASSTHROUGH: &[&str] = &[
    "mounts",
    "file_operations",
    "pre_exec_commands",
    "clone_namespaces",
];

/// Why a container-image task cannot be launched; the message is the task's TASK_FAILED text.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container images (--rootfs={rootfs}) need the executor to run as root (it enters the image with mesos-containerizer), but it runs as uid {uid}")]
    NotRoot { rootfs: String, uid: u32 },
    #[error("--rootfs={rootfs} is set without --sandbox_directory (where the sandbox is mounted inside the image)")]
    NoSandboxDirectory { rootfs: String },
    #[error(
        "--rootfs={rootfs} is set without --launcher_dir (the directory holding {CONTAINERIZER})"
    )]
    NoLauncherDir { rootfs: String },
    #[error("{} (from --launcher_dir) does not exist: container-image tasks are launched through it", .path.display())]
    NoContainerizer { path: PathBuf },
    #[error("--{flag} is not valid JSON ({reason})")]
    BadJson { flag: &'static str, reason: String },
    #[error("--task_supplementary_groups={value:?}: {reason}")]
    BadGroups { value: String, reason: String },
    #[error("cannot give the sandbox {} to --user={user}: {reason}", .dir.display())]
    Chown {
        dir: PathBuf,
        user: String,
        reason: String,
    },
}

impl ContainerError {
    /// Never retryable: the agent's flags and the machine do not change between attempts.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The `ContainerLaunchInfo` (protobuf JSON) upstream's command executor builds.
pub fn launch_info(
    flags: &DropInFlags,
    rootfs: &str,
    cmd: &CommandInfo,
    env: &[(String, String)],
) -> Result<Value, ContainerError> {
    let mut info = Map::new();
    info.insert("command".into(), croupier_proto::json::to_json(cmd));
    info.insert(
        "environment".into(),
        json!({ "variables": env.iter().map(|(k, v)| json!({"name": k, "type": "VALUE", "value": v})).collect::<Vec<_>>() }),
    );
    info.insert("rootfs".into(), json!(rootfs));
    let Some(sandbox) = flags.sandbox_directory.as_deref() else {
        return Err(ContainerError::NoSandboxDirectory {
            rootfs: rootfs.into(),
        });
    };
    info.insert(
        "working_directory".into(),
        json!(flags.working_directory.as_deref().unwrap_or(sandbox)),
    );
    if let Some(u) = &flags.user {
        info.insert("user".into(), json!(u));
    }
    for (flag, field, value) in [
        (
            "effective_capabilities",
            "effective_capabilities",
            &flags.effective_capabilities,
        ),
        (
            "bounding_capabilities",
            "bounding_capabilities",
            &flags.bounding_capabilities,
        ),
    ] {
        if let Some(v) = value {
            info.insert(field.into(), parse_json(flag, v)?);
        }
    }
    if let Some(v) = &flags.task_launch_info {
        let given = parse_json("task_launch_info", v)?;
        for key in LAUNCH_INFO_PASSTHROUGH {
            if let Some(part) = given.get(*key) {
                info.insert((*key).into(), part.clone());
            }
        }
    }
    if let Some(v) = &flags.task_supplementary_groups {
        let groups = v
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.parse::<u32>().map_err(|e| ContainerError::BadGroups {
                    value: v.clone(),
                    reason: format!("{g:?} is not a gid: {e}"),
                })
            })
            .collect::<Result<Vec<u32>, _>>()?;
        info.insert("supplementary_groups".into(), json!(groups));
    }
    Ok(Value::Object(info))
}

fn parse_json(flag: &'static str, v: &str) -> Result<Value, ContainerError> {
    serde_json::from_str(v).map_err(|e| ContainerError::BadJson {
        flag,
        reason: e.to_string(),
    })
}

/// What to spawn for a container-image task: `mesos-containerizer launch` with its launch info,
/// in the executor's own directory (the host sandbox), with the executor's environment, as
/// root (the helper switches to `--user` after entering the image).
pub fn spec(
    flags: &DropInFlags,
    rootfs: &str,
    cmd: &CommandInfo,
    task_env: &[(String, String)],
    executor_env: Vec<(String, String)>,
    host_sandbox: &Path,
) -> Result<SpawnSpec, ContainerError> {
    let uid = nix::unistd::Uid::effective();
    if !uid.is_root() {
        return Err(ContainerError::NotRoot {
            rootfs: rootfs.into(),
            uid: uid.as_raw(),
        });
    }
    let Some(dir) = flags.launcher_dir.as_deref() else {
        return Err(ContainerError::NoLauncherDir {
            rootfs: rootfs.into(),
        });
    };
    let helper = Path::new(dir).join(CONTAINERIZER);
    if !helper.is_file() {
        return Err(ContainerError::NoContainerizer { path: helper });
    }
    let info = launch_info(flags, rootfs, cmd, task_env)?;
    // As upstream: the sandbox (non-recursively) belongs to the task's user.
    if let Some(user) = &flags.user {
        let chown = |reason: String| ContainerError::Chown {
            dir: host_sandbox.to_path_buf(),
            user: user.clone(),
            reason,
        };
        let u = nix::unistd::User::from_name(user)
            .map_err(|e| chown(e.to_string()))?
            .ok_or_else(|| chown("no such user on the host".into()))?;
        nix::unistd::chown(host_sandbox, Some(u.uid), Some(u.gid))
            .map_err(|e| chown(e.to_string()))?;
    }
    Ok(SpawnSpec {
        program: Program::Argv {
            path: helper.to_string_lossy().into_owned(),
            argv: vec![
                CONTAINERIZER.into(),
                "launch".into(),
                format!("--launch_info={info}"),
                "--unshare_namespace_mnt=true".into(),
            ],
        },
        env: executor_env,
        cwd: host_sandbox.to_path_buf(),
        stdout: Output::Inherit,
        stderr: Output::Inherit,
        user: None,
        mount_namespace_of: None,
    })
}

/// Custom mode: can a task's `TaskInfo.container` be honoured? Tasks run as processes of the
/// executor's own container (upstream's default executor would launch each as a nested
/// container through the agent's API, which Croupier does not do), so only a `MESOS`
/// container asking for nothing of its own is accepted. The error names the first field that
/// asks for more, and why it cannot be given; the task then ends TASK_FAILED with it.
pub fn custom_mode_container(ci: &ContainerInfo) -> Result<(), String> {
    use croupier_proto::v1::container_info::Type;
    let why = "croupier-executor runs custom-mode tasks as processes in its own container \
               (no nested containers)";
    let refuse = |field: &str, what: &str| {
        Err(format!(
            "TaskInfo.container.{field} asks for {what}, which cannot be honoured: {why}"
        ))
    };
    match Type::try_from(ci.r#type) {
        Ok(Type::Mesos) => {}
        Ok(Type::Docker) => {
            return refuse(
                "type",
                "a DOCKER container (the Docker containerizer launches whole executors, not \
                 tasks of a custom executor)",
            )
        }
        Err(_) => return refuse("type", &format!("an unknown container type {}", ci.r#type)),
    }
    if let Some(d) = &ci.docker {
        return refuse("docker", &format!("the Docker image '{}'", d.image));
    }
    if let Some(image) = ci.mesos.as_ref().and_then(|m| m.image.as_ref()) {
        return refuse("mesos.image", &format!("the image {}", image_name(image)));
    }
    if let Some(v) = ci.volumes.first() {
        return refuse(
            "volumes",
            &format!(
                "a volume at '{}' ({} in all)",
                v.container_path,
                ci.volumes.len()
            ),
        );
    }
    if let Some(h) = &ci.hostname {
        return refuse("hostname", &format!("its own hostname '{h}'"));
    }
    if let Some(n) = ci.network_infos.first() {
        let name = n.name.as_deref().unwrap_or("<unnamed>");
        return refuse("network_infos", &format!("joining the network '{name}'"));
    }
    if ci.linux_info.is_some() {
        return refuse(
            "linux_info",
            "Linux settings of its own (capabilities, namespaces, seccomp, shared memory)",
        );
    }
    if ci.rlimit_info.is_some() {
        return refuse("rlimit_info", "resource limits of its own");
    }
    if ci.tty_info.is_some() {
        return refuse("tty_info", "a terminal");
    }
    Ok(())
}

fn image_name(image: &Image) -> String {
    use croupier_proto::v1::image::Type;
    match Type::try_from(image.r#type) {
        Ok(Type::Docker) => format!(
            "docker '{}'",
            image.docker.as_ref().map_or("", |d| d.name.as_str())
        ),
        Ok(Type::Appc) => format!(
            "appc '{}'",
            image.appc.as_ref().map_or("", |a| a.name.as_str())
        ),
        Err(_) => format!("of unknown type {}", image.r#type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_info_is_built_as_upstream() {
        let flags = DropInFlags {
            sandbox_directory: Some("/mnt/mesos/sandbox".into()),
            user: Some("nobody".into()),
            effective_capabilities: Some(r#"{"capabilities":["NET_RAW"]}"#.into()),
            task_launch_info: Some(
                r#"{"mounts":[{"source":"/s","target":"/r/mnt/mesos/sandbox","flags":20480}],
                    "clone_namespaces":[131072],"rootfs":"/ignored","user":"ignored"}"#
                    .into(),
            ),
            task_supplementary_groups: Some("4,27".into()),
            ..Default::default()
        };
        let cmd = CommandInfo {
            value: Some("echo hi".into()),
            shell: Some(true),
            ..Default::default()
        };
        let env = vec![("A".to_string(), "1".to_string())];
        let v = launch_info(&flags, "/r", &cmd, &env).unwrap();
        assert_eq!(v["rootfs"], "/r");
        assert_eq!(v["working_directory"], "/mnt/mesos/sandbox");
        assert_eq!(v["user"], "nobody");
        assert_eq!(v["command"]["value"], "echo hi");
        assert_eq!(v["environment"]["variables"][0]["name"], "A");
        assert_eq!(v["effective_capabilities"]["capabilities"][0], "NET_RAW");
        assert_eq!(v["mounts"][0]["target"], "/r/mnt/mesos/sandbox");
        assert_eq!(v["clone_namespaces"][0], 131072);
        assert_eq!(v["supplementary_groups"], json!([4, 27]));
        assert!(v.get("bounding_capabilities").is_none());

        let bad = DropInFlags {
            task_supplementary_groups: Some("4,wheel".into()),
            ..flags
        };
        let e = launch_info(&bad, "/r", &cmd, &env).unwrap_err().to_string();
        assert!(
            e.contains("--task_supplementary_groups") && e.contains("wheel"),
            "{e}"
        );
    }

    #[test]
    fn custom_mode_containers_name_the_field_asking_for_more() {
        use croupier_proto::v1::{container_info, LinuxInfo, RLimitInfo, TtyInfo};
        let mesos = ContainerInfo {
            r#type: container_info::Type::Mesos as i32,
            ..Default::default()
        };
        assert!(custom_mode_container(&mesos).is_ok());
        let with = |f: &dyn Fn(&mut ContainerInfo)| {
            let mut c = mesos.clone();
            f(&mut c);
            custom_mode_container(&c).unwrap_err()
        };
        assert!(with(&|c| c.hostname = Some("h".into())).contains("container.hostname"));
        assert!(with(&|c| c.linux_info = Some(LinuxInfo {})).contains("container.linux_info"));
        assert!(with(&|c| c.rlimit_info = Some(RLimitInfo {})).contains("container.rlimit_info"));
        assert!(with(&|c| c.tty_info = Some(TtyInfo {})).contains("container.tty_info"));
        assert!(with(&|c| c.r#type = 7).contains("container.type"));
    }
}
