//! `croupier-local`'s command line: the definition behind its `--help` and its man page.

use anyhow::bail;
use clap::{CommandFactory, ValueEnum};
use croupier_proto::v1::command_info::Uri;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// As the agent runs its command executor for a command task: the executor gets
    /// `mesos-executor` flags (`--launcher_dir=...`), executor id = task id, and a LAUNCH
    /// whose TaskInfo carries the command.
    DropIn,
    /// As a framework runs a custom executor (ExecutorInfo type CUSTOM): LAUNCH of a TaskInfo
    /// without `command`, its CommandInfo (protobuf) in `data`.
    Custom,
}

/// Run one command task locally through a Mesos v1 HTTP executor.
///
/// Starts a Mesos agent stand-in on 127.0.0.1 (v1 executor API, protobuf and JSON), launches
/// the executor with the agent's environment contract in a fresh sandbox, sends one LAUNCH,
/// prints every status update and, at the end, the final state and reason. The task's stdout
/// and stderr are passed through to croupier-local's own as they are written (in drop-in
/// mode the task shares the executor's, as under a real agent, so the executor's log lines
/// appear too; it logs warnings only unless --executor-env RUST_LOG=... says otherwise).
/// Exits with the task's exit status (0 for TASK_FINISHED, N for "Command exited with
/// status N", 128+signal when killed by a signal, 1 otherwise).
/// Ctrl-C sends KILL to the task (with --kill-grace), a second Ctrl-C exits at once.
///
/// Examples:
///   croupier-local --executor target/debug/croupier-executor -- 'echo hi'
///   croupier-local --mode custom --executor target/debug/croupier-executor \
///     --uri https://example.com/app.tgz --uri 'file:///opt/tool.sh,executable,output_file=tool' \
///     -- './tool --input app/data'
#[derive(Debug, clap::Parser)]
#[command(name = "croupier-local", verbatim_doc_comment)]
pub struct Args {
    /// The executor binary to run (e.g. target/debug/croupier-executor).
    #[arg(long, value_name = "PATH")]
    pub executor: PathBuf,

    /// How the task is handed to the executor.
    #[arg(long, value_enum, default_value_t = Mode::DropIn)]
    pub mode: Mode,

    /// Task id (also the executor id in drop-in mode).
    #[arg(long, default_value = "croupier-local-task")]
    pub task_id: String,

    /// Run the command without a shell: the words after `--` are the argv (argv[0] is the
    /// program).
    #[arg(long)]
    pub no_shell: bool,

    /// Environment variable for the task, NAME=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub env: Vec<String>,

    /// Run the task as this user (needs root).
    #[arg(long)]
    pub user: Option<String>,

    /// Kill policy grace period in the TaskInfo, Mesos duration syntax (e.g. 3secs).
    #[arg(long, value_name = "DURATION")]
    pub kill_grace: Option<String>,

    /// MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD, Mesos duration syntax.
    #[arg(long, default_value = "5secs", value_name = "DURATION")]
    pub shutdown_grace: String,

    /// Give up (KILL the task) after this long, Mesos duration syntax; unset = wait forever.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// Use this directory as the sandbox and keep it (default: a temporary one, removed).
    #[arg(long, value_name = "DIR")]
    pub sandbox: Option<PathBuf>,

    /// Pass MESOS_CHECKPOINT=0 (the executor then exits when the agent goes away).
    #[arg(long)]
    pub no_checkpoint: bool,

    /// Extra environment for the executor itself, NAME=VALUE (e.g. RUST_LOG=debug).
    #[arg(long = "executor-env", value_name = "NAME=VALUE")]
    pub executor_env: Vec<String>,

    /// A URI the executor fetches into the task's directory before starting it (custom mode;
    /// repeatable), with options after commas, as in CommandInfo.URI: extract (archives are
    /// unpacked; the default), cache (through the shared fetcher cache), executable (chmod
    /// +x), each as `opt` or `opt=true|false`, and output_file=NAME.
    /// Example: --uri 'https://example.com/run.sh,executable,extract=false,output_file=run'
    #[arg(long = "uri", value_name = "URI[,OPTION]...", verbatim_doc_comment)]
    pub uri: Vec<String>,

    /// The command: a shell command line (one word, quoted), or with --no-shell the argv.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The clap definition (the man page's source too).
pub fn command() -> clap::Command {
    Args::command().version(croupier_ops::build_info::VERSION)
}

/// `URI[,extract[=BOOL]][,cache[=BOOL]][,executable[=BOOL]][,output_file=NAME]`. A URI may
/// itself hold commas: only the trailing comma-separated items that are options count as such.
pub fn parse_uri(spec: &str) -> anyhow::Result<Uri> {
    let parts: Vec<&str> = spec.split(',').collect();
    let is_option = |p: &str| {
        let key = p.split_once('=').map_or(p, |(k, _)| k).trim();
        matches!(key, "extract" | "cache" | "executable" | "output_file")
    };
    let first_option = (1..parts.len())
        .rev()
        .take_while(|&i| is_option(parts[i]))
        .last()
        .unwrap_or(parts.len());
    let mut uri = Uri {
        value: parts[..first_option].join(","),
        ..Default::default()
    };
    if uri.value.is_empty() {
        bail!("--uri {spec:?}: the URI is empty");
    }
    for p in &parts[first_option..] {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        let flag = || -> anyhow::Result<bool> {
            match value {
                None | Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(other) => bail!("--uri {spec:?}: {key}={other:?}: expected true or false"),
            }
        };
        match key {
            "extract" => uri.extract = Some(flag()?),
            "cache" => uri.cache = Some(flag()?),
            "executable" => uri.executable = Some(flag()?),
            _ => match value {
                Some(name) if !name.is_empty() => uri.output_file = Some(name.to_string()),
                _ => bail!("--uri {spec:?}: output_file needs a name (output_file=NAME)"),
            },
        }
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_options() {
        let u = parse_uri("https://h/a,b.tgz,extract=false,cache,executable=true,output_file=x")
            .unwrap();
        assert_eq!(u.value, "https://h/a,b.tgz");
        assert_eq!(
            (u.extract, u.cache, u.executable),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(u.output_file.as_deref(), Some("x"));
        let u = parse_uri("/opt/app.tgz").unwrap();
        assert_eq!(
            (u.value.as_str(), u.extract, u.cache),
            ("/opt/app.tgz", None, None)
        );
        assert!(parse_uri("/a,cache=maybe")
            .unwrap_err()
            .to_string()
            .contains("cache=\"maybe\""));
        assert!(parse_uri("/a,output_file").is_err());
        assert!(parse_uri(",cache").is_err());
    }
}
