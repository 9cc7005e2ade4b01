//! The host launch path: how a task's command becomes a process on the agent's own filesystem
//! (its environment, working directory, output streams and user), per mode. The container-image
//! launch path (`--rootfs`) is [`crate::container`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use croupier_proto::v1::{CommandInfo, Environment, TaskInfo};

use crate::command::{self, Env};
use crate::config::{Config, DropInFlags, Mode};
use crate::process::{self, Output, Program, SpawnSpec};

/// Builds the [`SpawnSpec`] of a task run on the host.
pub struct HostLauncher {
    cfg: Arc<Config>,
    /// The executor's own environment, read once at start-up.
    base_env: Vec<(String, String)>,
}

impl HostLauncher {
    pub fn new(cfg: Arc<Config>) -> HostLauncher {
        HostLauncher {
            cfg,
            base_env: std::env::vars().collect(),
        }
    }

    /// What to spawn for task `id` running `cmd` (as `program`) in `dir`.
    pub fn spec(
        &self,
        id: &str,
        info: &TaskInfo,
        cmd: &CommandInfo,
        program: Program,
        dir: &Path,
    ) -> SpawnSpec {
        let (stdout, stderr, cwd, user) = match &self.cfg.mode {
            Mode::DropIn(f) => (
                Output::Inherit,
                Output::Inherit,
                f.working_directory
                    .clone()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| self.cfg.sandbox.clone()),
                // As upstream: only `--user` (the agent passes it with a rootfs); without it
                // the agent already started us as the task's user, so `CommandInfo.user` is
                // never switched to (on `--switch_user=false` agents it is not the sandbox's
                // owner).
                f.user.clone(),
            ),
            Mode::Custom => (
                Output::File(dir.join("stdout")),
                Output::File(dir.join("stderr")),
                dir.to_path_buf(),
                cmd.user.clone(),
            ),
        };
        SpawnSpec {
            program,
            env: self.task_env(id, info, cmd, dir),
            cwd,
            stdout,
            stderr,
            user,
            mount_namespace_of: None,
        }
    }

    /// The executor's environment as handed to a launch helper (private variables removed).
    pub fn executor_env(&self) -> Vec<(String, String)> {
        Env::from_executor(self.base_env.iter().cloned(), false).into_vec()
    }

    /// What to spawn for a COMMAND health check or check of task `id` (`probe`), as upstream:
    /// drop-in mode runs it as the executor (its environment, working directory and user) plus
    /// the probe's own environment; custom mode runs it like the task (its environment,
    /// directory and user) plus the probe's environment. Output goes to the executor's stderr.
    pub fn probe_spec(
        &self,
        id: &str,
        info: &TaskInfo,
        task_cmd: Option<&CommandInfo>,
        task_pid: Option<i32>,
        probe: &CommandInfo,
        dir: &Path,
    ) -> Result<SpawnSpec, String> {
        let program = command::program(probe)?;
        let mut mount_namespace_of = None;
        let (mut env, cwd, user) = match &self.cfg.mode {
            // A container-image task: the probe runs in the task's mount namespace (as
            // upstream), so it sees the image's root, from the sandbox inside it.
            Mode::DropIn(DropInFlags {
                rootfs: Some(_),
                sandbox_directory,
                ..
            }) => {
                let Some(pid) = task_pid else {
                    return Err("the task has no process to probe".into());
                };
                mount_namespace_of = Some(pid);
                (
                    Env::from_executor(self.base_env.iter().cloned(), false),
                    PathBuf::from(sandbox_directory.as_deref().unwrap_or("/")),
                    None,
                )
            }
            Mode::DropIn(_) => (
                Env::from_executor(self.base_env.iter().cloned(), false),
                std::env::current_dir().unwrap_or_else(|_| self.cfg.sandbox.clone()),
                None,
            ),
            Mode::Custom => {
                let task_env = match task_cmd {
                    Some(c) => self.task_env(id, info, c, dir),
                    None => Vec::new(),
                };
                (
                    Env::from_executor(task_env, false),
                    dir.to_path_buf(),
                    task_cmd.and_then(|c| c.user.clone()),
                )
            }
        };
        if let Some(e) = &probe.environment {
            env.merge(e);
        }
        Ok(SpawnSpec {
            program,
            env: env.into_vec(),
            cwd,
            stdout: Output::ExecutorStderr,
            stderr: Output::ExecutorStderr,
            user,
            mount_namespace_of,
        })
    }

    /// The task's complete environment.
    pub fn task_env(
        &self,
        id: &str,
        info: &TaskInfo,
        cmd: &CommandInfo,
        dir: &Path,
    ) -> Vec<(String, String)> {
        let mut env;
        match &self.cfg.mode {
            Mode::DropIn(DropInFlags {
                task_environment, ..
            }) => {
                env = Env::from_executor(self.base_env.iter().cloned(), false);
                if let Some(json) = task_environment {
                    match croupier_proto::json::from_json_slice::<Environment>(json.as_bytes()) {
                        Ok(e) => env.merge(&e),
                        Err(e) => tracing::warn!(
                            "ignoring --task_environment: not a JSON Environment: {e}"
                        ),
                    }
                }
            }
            Mode::Custom => {
                env = Env::from_executor(self.base_env.iter().cloned(), true);
                env.set("MESOS_FRAMEWORK_ID", &self.cfg.framework_id);
                env.set("MESOS_EXECUTOR_ID", &self.cfg.executor_id);
                env.set("MESOS_TASK_ID", id);
                env.set("MESOS_SANDBOX", dir.to_string_lossy());
                env.set("MESOS_DIRECTORY", dir.to_string_lossy());
                if let Some(a) = &self.cfg.agent_id {
                    env.set("MESOS_SLAVE_ID", a);
                }
                env.set(process::TASK_MARKER_ENV, id);
            }
        }
        if let Some(role) = command::allocation_role(info) {
            env.set("MESOS_ALLOCATION_ROLE", role);
        }
        if let Some(e) = &cmd.environment {
            env.merge(e);
        }
        if !self.cfg.is_drop_in() {
            env.set(process::TASK_MARKER_ENV, id);
        }
        env.into_vec()
    }
}

/// Make a custom-mode task's directory, owned by the task's user.
pub fn prepare_task_dir(dir: &Path, user: Option<&str>) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("Failed to create the task directory {}: {e}", dir.display()))?;
    if let Ok(Some(creds)) = process::credentials_for(user) {
        nix::unistd::chown(dir, Some(creds.uid), Some(creds.gid))
            .map_err(|e| format!("Failed to chown the task directory {}: {e}", dir.display()))?;
    }
    Ok(())
}
