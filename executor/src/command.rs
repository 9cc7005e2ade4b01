//! From a `TaskInfo` to something to run: which `CommandInfo` applies (per mode), the program
//! (`sh -c` or argv), and the task's environment.

use std::collections::BTreeMap;

use croupier_proto::v1::{environment, CommandInfo, Environment, TaskInfo};
use prost::Message;

use crate::process::Program;

/// `PATH` when nothing provides one (the Mesos containerizer's host default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables of the executor itself that tasks never see.
const PRIVATE_VARS: &[&str] = &["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"];

/// The `CommandInfo` of a custom-mode task: `TaskInfo.command`, else `TaskInfo.data` holding a
/// `mesos.v1.CommandInfo` (protobuf, or Mesos JSON when the first byte is `{`).
pub fn custom_task_command(task: &TaskInfo) -> Result<CommandInfo, String> {
    const EXPECTED: &str =
        "expected TaskInfo.command, or TaskInfo.data holding a mesos.v1.CommandInfo \
                            (protobuf bytes, or Mesos JSON starting with '{')";
    if let Some(c) = &task.command {
        return Ok(c.clone());
    }
    let data = match task.data.as_deref() {
        Some(d) if !d.is_empty() => d,
        _ => {
            return Err(format!(
                "Task '{}' has neither a command nor data: {EXPECTED}",
                task.task_id.value
            ))
        }
    };
    let parsed = if data.first() == Some(&b'{') {
        croupier_proto::json::command_info_from_json(data)
            .map_err(|e| format!("TaskInfo.data is not a JSON CommandInfo: {e}"))
    } else {
        CommandInfo::decode(data)
            .map_err(|e| format!("TaskInfo.data is not a protobuf CommandInfo: {e}"))
    };
    match parsed {
        Ok(c) if c.value.as_deref().is_some_and(|v| !v.is_empty()) => Ok(c),
        Ok(_) => Err(format!(
            "Task '{}': TaskInfo.data decoded to a CommandInfo without a 'value'; {EXPECTED}",
            task.task_id.value
        )),
        Err(e) => Err(format!("Task '{}': {e}; {EXPECTED}", task.task_id.value)),
    }
}

/// The `CommandInfo` of a drop-in task: `--task_command` (JSON) if given, else `TaskInfo.command`.
pub fn drop_in_task_command(
    task: &TaskInfo,
    task_command: Option<&str>,
) -> Result<CommandInfo, String> {
    if let Some(json) = task_command {
        return croupier_proto::json::command_info_from_json(json.as_bytes())
            .map_err(|e| format!("Failed to parse --task_command as a JSON CommandInfo: {e}"));
    }
    task.command
        .clone()
        .ok_or_else(|| format!("Expecting task '{}' to have a command", task.task_id.value))
}

/// The program a `CommandInfo` describes.
pub fn program(cmd: &CommandInfo) -> Result<Program, String> {
    let value = cmd.value.clone().filter(|v| !v.is_empty());
    if cmd.shell.unwrap_or(true) {
        value
            .map(Program::Shell)
            .ok_or_else(|| "Shell command of the task is not specified".to_string())
    } else {
        let path = value.ok_or_else(|| "Executable of the task is not specified".to_string())?;
        let argv = if cmd.arguments.is_empty() {
            vec![path.clone()]
        } else {
            cmd.arguments.clone()
        };
        Ok(Program::Argv { path, argv })
    }
}

/// An ordered environment without duplicate names.
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The executor's own environment minus the variables tasks must not see; with
    /// `clean`, also minus every `MESOS_*`, `LIBPROCESS_*` and `CROUPIER_*` variable (custom
    /// mode: those describe the executor, not the task).
    pub fn from_executor(vars: impl IntoIterator<Item = (String, String)>, clean: bool) -> Env {
        let mut m = BTreeMap::new();
        for (k, v) in vars {
            if PRIVATE_VARS.contains(&k.as_str()) {
                continue;
            }
            if clean
                && (k.starts_with("MESOS_")
                    || k.starts_with("LIBPROCESS_")
                    || k.starts_with("CROUPIER_"))
            {
                continue;
            }
            m.insert(k, v);
        }
        m.entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_PATH.to_string());
        Env(m)
    }

    pub fn set(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.0.insert(k.into(), v.into());
    }

    /// Merge an `Environment` over this one; `SECRET` variables are skipped (no secret resolver).
    pub fn merge(&mut self, env: &Environment) {
        for var in &env.variables {
            let ty = var
                .r#type
                .unwrap_or(environment::variable::Type::Value as i32);
            if ty == environment::variable::Type::Secret as i32 {
                tracing::warn!(
                    "skipping SECRET environment variable {} (no secret resolver)",
                    var.name
                );
                continue;
            }
            self.0
                .insert(var.name.clone(), var.value.clone().unwrap_or_default());
        }
        for k in PRIVATE_VARS {
            self.0.remove(*k);
        }
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.as_str())
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0.into_iter().collect()
    }
}

/// `MESOS_ALLOCATION_ROLE`: the role of the first resource's allocation info.
pub fn allocation_role(task: &TaskInfo) -> Option<String> {
    task.resources
        .iter()
        .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use croupier_proto::v1::{AgentId, TaskId};

    fn task() -> TaskInfo {
        TaskInfo {
            name: "t".into(),
            task_id: TaskId { value: "t1".into() },
            agent_id: AgentId { value: "a".into() },
            ..Default::default()
        }
    }

    #[test]
    fn command_from_protobuf_and_json_data() {
        let cmd = CommandInfo {
            value: Some("echo hi".into()),
            ..Default::default()
        };
        let mut t = task();
        t.data = Some(cmd.encode_to_vec());
        assert_eq!(
            custom_task_command(&t).unwrap().value.as_deref(),
            Some("echo hi")
        );
        t.data = Some(br#"{"value":"echo json","shell":true}"#.to_vec());
        assert_eq!(
            custom_task_command(&t).unwrap().value.as_deref(),
            Some("echo json")
        );
        t.data = None;
        let e = custom_task_command(&t).unwrap_err();
        assert!(
            e.contains("TaskInfo.data holding a mesos.v1.CommandInfo"),
            "{e}"
        );
        t.data = Some(b"{not json".to_vec());
        assert!(custom_task_command(&t).unwrap_err().contains("JSON"));
    }

    #[test]
    fn argv_and_shell_programs() {
        let c = CommandInfo {
            value: Some("/bin/echo".into()),
            shell: Some(false),
            arguments: vec!["echo".into(), "x".into()],
            ..Default::default()
        };
        assert_eq!(
            program(&c).unwrap(),
            Program::Argv {
                path: "/bin/echo".into(),
                argv: vec!["echo".into(), "x".into()]
            }
        );
        let c = CommandInfo {
            value: Some("exit 3".into()),
            ..Default::default()
        };
        assert_eq!(program(&c).unwrap(), Program::Shell("exit 3".into()));
        assert!(program(&CommandInfo::default()).is_err());
    }

    #[test]
    fn env_scrubs_token_and_merges() {
        let mut e = Env::from_executor(
            vec![
                (
                    "MESOS_EXECUTOR_AUTHENTICATION_TOKEN".to_string(),
                    "secret".to_string(),
                ),
                ("MESOS_FRAMEWORK_ID".to_string(), "f".to_string()),
                ("HOME".to_string(), "/root".to_string()),
            ],
            true,
        );
        assert!(e.get("MESOS_EXECUTOR_AUTHENTICATION_TOKEN").is_none());
        assert!(e.get("MESOS_FRAMEWORK_ID").is_none());
        assert_eq!(e.get("PATH"), Some(DEFAULT_PATH));
        e.merge(&Environment {
            variables: vec![
                environment::Variable {
                    name: "HOME".into(),
                    value: Some("/h".into()),
                    ..Default::default()
                },
                environment::Variable {
                    name: "S".into(),
                    value: Some("x".into()),
                    r#type: Some(environment::variable::Type::Secret as i32),
                    ..Default::default()
                },
            ],
        });
        assert_eq!(e.get("HOME"), Some("/h"));
        assert!(e.get("S").is_none());
    }
}
