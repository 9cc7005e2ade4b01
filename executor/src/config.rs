//! The executor's configuration: the agent's environment contract plus `mesos-executor`'s flags,
//! parsed once into [`Config`].
//!
//! Every problem is collected, so a misconfigured launch fails with one message that lists all
//! of them ([`ConfigError`]). Unknown flags are not errors: they are kept in
//! [`Config::unknown_flags`] and logged at start-up (the agent adds flags across Mesos versions).

use std::path::PathBuf;
use std::time::Duration;

use croupier_proto::duration;

/// Default `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD` (the agent's `--executor_shutdown_grace_period`).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Default `MESOS_RECOVERY_TIMEOUT` (the agent's `--recovery_timeout`).
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default `MESOS_SUBSCRIPTION_BACKOFF_MAX` (the agent's `--executor_reregistration_timeout`).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long to wait for the ACK of a terminal update before giving up (upstream: 60 s).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// `mesos-executor` flags that take a value. Any of them selects drop-in mode.
const DROP_IN_FLAGS: &[&str] = &[
    "launcher_dir",
    "task_command",
    "sandbox_directory",
    "working_directory",
    "user",
    "rootfs",
    "task_environment",
    "tty_slave_path",
    "task_launch_info",
    "effective_capabilities",
    "bounding_capabilities",
    "task_supplementary_groups",
];

/// Flags read by [`crate::fetcher`]'s own configuration; known, so not logged as unknown.
const FETCHER_FLAGS: &[&str] = &[
    "fetcher_cache_dir",
    "fetcher_cache_size",
    "fetcher_stall_timeout",
    "fetcher_cache_links",
    "fetcher_ca_file",
    "fetcher_progress_interval",
    "frameworks_home",
];

/// The log format flag, in our spelling and in Mesos' underscore style.
const LOG_FLAGS: &[&str] = &["log-format", "log_format"];

/// How the executor was started.
// One `Mode` exists per process (inside the `Arc<Config>`): its size does not matter, and
// boxing the flags would only add indirection to every pattern match on them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Started with `mesos-executor`'s flags: the command executor's contract (one task).
    DropIn(DropInFlags),
    /// Named in a framework's `ExecutorInfo`: several concurrent tasks.
    Custom,
}

/// The `mesos-executor` flags we honour in drop-in mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropInFlags {
    /// `--launcher_dir`: where `mesos-containerizer` lives (used for `--rootfs` launches).
    pub launcher_dir: Option<String>,
    /// `--task_command`: a JSON `CommandInfo` overriding `TaskInfo.command`.
    pub task_command: Option<String>,
    /// `--task_environment`: a JSON `Environment` merged below the task's own environment.
    pub task_environment: Option<String>,
    /// `--sandbox_directory`: the sandbox path inside a rootfs (informational without rootfs).
    pub sandbox_directory: Option<String>,
    /// `--working_directory`: the task's working directory, if not the sandbox.
    pub working_directory: Option<String>,
    /// `--user`: the user to run the task as (only switched to when running as root).
    pub user: Option<String>,
    /// `--rootfs`: the task's image root filesystem (prepared by the agent).
    pub rootfs: Option<String>,
    /// `--tty_slave_path`: the agent's TTY for the task (not supported; logged as known).
    pub tty_slave_path: Option<String>,
    /// `--task_launch_info`: a JSON `ContainerLaunchInfo` from the isolators (with `--rootfs`).
    pub task_launch_info: Option<String>,
    /// `--effective_capabilities`: a JSON `CapabilityInfo` (with `--rootfs`).
    pub effective_capabilities: Option<String>,
    /// `--bounding_capabilities`: a JSON `CapabilityInfo` (with `--rootfs`).
    pub bounding_capabilities: Option<String>,
    /// `--task_supplementary_groups`: comma-separated gids (with `--rootfs`).
    pub task_supplementary_groups: Option<String>,
}

impl DropInFlags {
    /// The `mesos-executor` flags that were given but have no effect here, each with why, for
    /// the start-up log. The agent passes the container-image family only together with
    /// `--rootfs`; without it they mean nothing to upstream either.
    pub fn known_but_unused(&self) -> Vec<(&'static str, &str, &'static str)> {
        let mut out = Vec::new();
        if let Some(v) = &self.tty_slave_path {
            out.push((
                "tty_slave_path",
                v.as_str(),
                "TTYs are not supported: the task gets its own session and /dev/null as stdin",
            ));
        }
        if self.rootfs.is_none() {
            let family = [
                ("launcher_dir", &self.launcher_dir),
                ("sandbox_directory", &self.sandbox_directory),
                ("task_launch_info", &self.task_launch_info),
                ("effective_capabilities", &self.effective_capabilities),
                ("bounding_capabilities", &self.bounding_capabilities),
                ("task_supplementary_groups", &self.task_supplementary_groups),
            ];
            for (name, v) in family {
                if let Some(v) = v {
                    out.push((
                        name,
                        v.as_str(),
                        "only used with --rootfs (container images)",
                    ));
                }
            }
        }
        out
    }
}

/// The executor's typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MESOS_FRAMEWORK_ID`.
    pub framework_id: String,
    /// `MESOS_EXECUTOR_ID`.
    pub executor_id: String,
    /// `MESOS_AGENT_ENDPOINT` (`IP:PORT`, no scheme).
    pub agent_endpoint: String,
    /// `MESOS_SLAVE_ID`, if given.
    pub agent_id: Option<String>,
    /// `MESOS_SANDBOX`, else `MESOS_DIRECTORY`.
    pub sandbox: PathBuf,
    /// `MESOS_CHECKPOINT == "1"`.
    pub checkpoint: bool,
    /// `MESOS_RECOVERY_TIMEOUT`.
    pub recovery_timeout: Duration,
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX`.
    pub backoff_max: Duration,
    /// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`.
    pub shutdown_grace: Duration,
    /// `MESOS_EXECUTOR_AUTHENTICATION_TOKEN` (sent as `Authorization: Bearer`; never given to tasks).
    pub token: Option<String>,
    /// `CROUPIER_EXECUTOR_IDLE_TIMEOUT`: custom mode exits after this long without a task.
    pub idle_timeout: Option<Duration>,
    /// `CROUPIER_EXECUTOR_ACK_TIMEOUT`: how long terminal updates may wait for their ACK once
    /// the executor wants to exit (default 60 s, as upstream).
    pub ack_timeout: Duration,
    /// `MESOS_DOMAIN_SOCKET`, if the agent offered one: the agent is reached over it.
    pub domain_socket: Option<String>,
    /// `LIBPROCESS_SSL_*` when `LIBPROCESS_SSL_ENABLED` is on: https to the agent.
    pub tls: Option<crate::tls::TlsSettings>,
    /// Drop-in or custom mode.
    pub mode: Mode,
    /// Command-line arguments we did not recognise (logged, not fatal).
    pub unknown_flags: Vec<String>,
    /// `--log-format` / `CROUPIER_LOG_FORMAT`: text or json lines.
    pub log_format: croupier_ops::log::LogFormat,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run with this configuration.
    Run(Box<Config>),
    /// `--help`: print [`usage`] and exit 0.
    Help,
    /// `--version`: print the version line and exit 0.
    Version,
}

/// Every problem found in the environment and flags, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid croupier-executor configuration (run with --help for the contract):\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    /// One line per problem, each naming the variable or flag at fault.
    pub problems: Vec<String>,
}

impl ConfigError {
    /// Never retryable: the agent would start us with the same environment again.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl Config {
    /// Parse the process environment and `args` (without the program name).
    pub fn from_env_and_args(args: &[String]) -> Result<Parsed, ConfigError> {
        let names: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect();
        Self::parse_with_names(|k| std::env::var(k).ok(), &names, args)
    }

    /// Parse from an explicit environment lookup (for tests).
    pub fn parse(
        env: impl Fn(&str) -> Option<String>,
        args: &[String],
    ) -> Result<Parsed, ConfigError> {
        Self::parse_with_names(env, &[], args)
    }

    /// Parse from an environment lookup; `names` lists the environment's variables (to point
    /// out unknown `LIBPROCESS_SSL_*` ones).
    pub fn parse_with_names(
        env: impl Fn(&str) -> Option<String>,
        names: &[String],
        args: &[String],
    ) -> Result<Parsed, ConfigError> {
        let mut problems = Vec::new();
        let flags = parse_flags(args);
        if flags.help {
            return Ok(Parsed::Help);
        }
        if flags.version {
            return Ok(Parsed::Version);
        }

        let mut required = |name: &str| -> String {
            match env(name) {
                Some(v) if !v.is_empty() => v,
                _ => {
                    problems.push(format!("{name} is not set"));
                    String::new()
                }
            }
        };
        let framework_id = required("MESOS_FRAMEWORK_ID");
        let executor_id = required("MESOS_EXECUTOR_ID");
        let agent_endpoint = required("MESOS_AGENT_ENDPOINT");
        if !agent_endpoint.is_empty() && !valid_endpoint(&agent_endpoint) {
            problems.push(format!(
                "MESOS_AGENT_ENDPOINT={agent_endpoint:?} is not IP:PORT (no scheme, no path)"
            ));
        }

        let sandbox = match env("MESOS_SANDBOX")
            .filter(|s| !s.is_empty())
            .or_else(|| env("MESOS_DIRECTORY").filter(|s| !s.is_empty()))
        {
            Some(s) => PathBuf::from(s),
            None => {
                problems.push("neither MESOS_SANDBOX nor MESOS_DIRECTORY is set".to_string());
                PathBuf::new()
            }
        };

        let checkpoint = match env("MESOS_CHECKPOINT").as_deref() {
            None | Some("0") | Some("") => false,
            Some("1") => true,
            Some(other) => {
                problems.push(format!(
                    "MESOS_CHECKPOINT={other:?} is neither \"1\" nor \"0\""
                ));
                false
            }
        };

        let mut dur = |name: &str, default: Option<Duration>| -> Option<Duration> {
            match env(name) {
                None => default,
                Some(v) if v.is_empty() => default,
                Some(v) => match duration::parse(&v) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        problems.push(format!("{name}: {e}"));
                        default
                    }
                },
            }
        };
        let recovery_timeout = dur("MESOS_RECOVERY_TIMEOUT", Some(DEFAULT_RECOVERY_TIMEOUT))
            .unwrap_or(DEFAULT_RECOVERY_TIMEOUT);
        let backoff_max = dur("MESOS_SUBSCRIPTION_BACKOFF_MAX", Some(DEFAULT_BACKOFF_MAX))
            .unwrap_or(DEFAULT_BACKOFF_MAX);
        let shutdown_grace = dur(
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
            Some(DEFAULT_SHUTDOWN_GRACE),
        )
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        let idle_timeout = dur("CROUPIER_EXECUTOR_IDLE_TIMEOUT", None);
        let ack_timeout = dur("CROUPIER_EXECUTOR_ACK_TIMEOUT", Some(DEFAULT_ACK_TIMEOUT))
            .unwrap_or(DEFAULT_ACK_TIMEOUT);

        let token = env("MESOS_EXECUTOR_AUTHENTICATION_TOKEN").filter(|t| !t.is_empty());
        let agent_id = env("MESOS_SLAVE_ID").filter(|t| !t.is_empty());
        let domain_socket = env("MESOS_DOMAIN_SOCKET").filter(|t| !t.is_empty());
        let tls = crate::tls::TlsSettings::parse(&env, names, &mut problems);

        let log_format = match flags
            .log_format
            .clone()
            .map(|v| ("--log-format", v))
            .or_else(|| {
                env(croupier_ops::log::FORMAT_ENV).map(|v| (croupier_ops::log::FORMAT_ENV, v))
            }) {
            None => Default::default(),
            Some((origin, v)) => v.parse().unwrap_or_else(|_| {
                problems.push(format!(
                    "{origin}={v:?}: expected {}",
                    croupier_ops::log::LogFormat::ACCEPTED
                ));
                Default::default()
            }),
        };

        for (flag, problem) in &flags.problems {
            problems.push(format!("--{flag}: {problem}"));
        }

        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let mode = if flags.drop_in_seen {
            Mode::DropIn(flags.drop_in)
        } else {
            Mode::Custom
        };
        Ok(Parsed::Run(Box::new(Config {
            framework_id,
            executor_id,
            agent_endpoint,
            agent_id,
            sandbox,
            checkpoint,
            recovery_timeout,
            backoff_max,
            shutdown_grace,
            token,
            idle_timeout,
            ack_timeout,
            domain_socket,
            tls,
            mode,
            unknown_flags: flags.unknown,
            log_format,
        })))
    }

    /// Is this the command executor's drop-in?
    pub fn is_drop_in(&self) -> bool {
        matches!(self.mode, Mode::DropIn(_))
    }

    /// A one-line summary for the start-up log (no token).
    pub fn summary(&self) -> String {
        format!(
            "mode={} framework_id={} executor_id={} agent={} sandbox={} checkpoint={} recovery_timeout={:?} \
             backoff_max={:?} shutdown_grace={:?} idle_timeout={:?} ack_timeout={:?} token={}",
            if self.is_drop_in() { "drop-in" } else { "custom" },
            self.framework_id,
            self.executor_id,
            self.agent_endpoint,
            self.sandbox.display(),
            self.checkpoint,
            self.recovery_timeout,
            self.backoff_max,
            self.shutdown_grace,
            self.idle_timeout,
            self.ack_timeout,
            if self.token.is_some() { "present" } else { "absent" },
        )
    }
}

fn valid_endpoint(s: &str) -> bool {
    if s.contains("://") || s.contains('/') {
        return false;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

#[derive(Default)]
struct Flags {
    help: bool,
    version: bool,
    log_format: Option<String>,
    drop_in_seen: bool,
    drop_in: DropInFlags,
    unknown: Vec<String>,
    problems: Vec<(String, String)>,
}

fn parse_flags(args: &[String]) -> Flags {
    let mut f = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--help" || arg == "-h" {
            f.help = true;
            continue;
        }
        if arg == "--version" || arg == "-V" {
            f.version = true;
            continue;
        }
        let Some(body) = arg.strip_prefix("--") else {
            f.unknown.push(arg.clone());
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let known_value_flag = DROP_IN_FLAGS.contains(&name.as_str())
            || FETCHER_FLAGS.contains(&name.as_str())
            || LOG_FLAGS.contains(&name.as_str());
        let value = match value {
            Some(v) => Some(v),
            // `--flag value` form for our known flags.
            None if known_value_flag && i < args.len() && !args[i].starts_with("--") => {
                i += 1;
                Some(args[i - 1].clone())
            }
            None => None,
        };
        if FETCHER_FLAGS.contains(&name.as_str()) {
            continue;
        }
        if LOG_FLAGS.contains(&name.as_str()) {
            match value {
                Some(v) => f.log_format = Some(v),
                None => f
                    .problems
                    .push((name, "expects a value: text or json".into())),
            }
            continue;
        }
        if !DROP_IN_FLAGS.contains(&name.as_str()) {
            f.unknown.push(arg.clone());
            continue;
        }
        let Some(value) = value else {
            f.problems
                .push((name, "expects a value (--name=value)".into()));
            continue;
        };
        f.drop_in_seen = true;
        let d = &mut f.drop_in;
        match name.as_str() {
            "launcher_dir" => d.launcher_dir = Some(value),
            "task_command" => d.task_command = Some(value),
            "task_environment" => d.task_environment = Some(value),
            "sandbox_directory" => d.sandbox_directory = Some(value),
            "working_directory" => d.working_directory = Some(value),
            "user" => d.user = Some(value),
            "rootfs" => d.rootfs = Some(value),
            "tty_slave_path" => d.tty_slave_path = Some(value),
            "task_launch_info" => d.task_launch_info = Some(value),
            "effective_capabilities" => d.effective_capabilities = Some(value),
            "bounding_capabilities" => d.bounding_capabilities = Some(value),
            "task_supplementary_groups" => d.task_supplementary_groups = Some(value),
            _ => f.unknown.push(format!("--{name}={value}")),
        }
    }
    f
}

/// The `--help` text: both modes, the flags and the environment contract.
pub fn usage() -> String {
    command().render_long_help().to_string()
}

/// The definition behind `--help` and the man page. The executor parses its own flags (the
/// agent adds flags across Mesos versions and unknown ones must not be fatal), so this is
/// used to describe them, never to parse.
pub fn command() -> clap::Command {
    use clap::{Arg, ArgAction};
    let value = |name: &'static str, meta: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name(meta)
            .action(ArgAction::Set)
            .help(help)
    };
    clap::Command::new("croupier-executor")
        .version(croupier_ops::build_info::VERSION)
        .about("A Mesos v1 HTTP executor: custom executor, or drop-in for mesos-executor")
        .long_about(MODES)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .next_line_help(false)
        .arg(value("launcher_dir", "DIR", "Selects drop-in mode; accepted, otherwise unused"))
        .arg(value("task_command", "JSON", "Drop-in: a CommandInfo (JSON) overriding TaskInfo.command"))
        .arg(value("task_environment", "JSON", "Drop-in: an Environment (JSON) merged below the task's own"))
        .arg(value("working_directory", "DIR", "Drop-in: the task's working directory (default: the sandbox)"))
        .arg(value("user", "USER", "Drop-in: run the task as USER (when the executor runs as root)"))
        .arg(value("sandbox_directory", "DIR", "Drop-in: accepted and ignored (no container root file system)"))
        .arg(value("rootfs", "DIR", "Drop-in: not supported; logged and ignored (the task runs on the host)"))
        .arg(value("fetcher_cache_dir", "DIR", "As CROUPIER_FETCHER_CACHE_DIR (wins over it)"))
        .arg(value("fetcher_cache_size", "BYTES", "As CROUPIER_FETCHER_CACHE_SIZE (wins over it)"))
        .arg(value("fetcher_stall_timeout", "DURATION", "As CROUPIER_FETCHER_STALL_TIMEOUT (wins over it)"))
        .arg(
            Arg::new("fetcher_cache_links")
                .long("fetcher_cache_links")
                .action(ArgAction::SetTrue)
                .help("As CROUPIER_FETCHER_CACHE_LINKS=1"),
        )
        .arg(value("fetcher_ca_file", "FILE", "As CROUPIER_FETCHER_CA_FILE (wins over it)"))
        .arg(value("fetcher_progress_interval", "DURATION", "As CROUPIER_FETCHER_PROGRESS_INTERVAL (wins over it)"))
        .arg(value("frameworks_home", "DIR", "As MESOS_FRAMEWORKS_HOME (wins over it)"))
        .arg(value("log-format", "text|json", "Log lines as text (default) or one JSON object per line; also --log_format, or CROUPIER_LOG_FORMAT"))
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::Help)
                .help("Print this help"),
        )
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::Version)
                .help("Print the version, git revision, target and glibc"),
        )
        .after_long_help(ENVIRONMENT)
}

const MODES: &str = r#"A Mesos v1 HTTP executor (protobuf + RecordIO), in one of two modes.

MODES
  Custom-executor mode (no mesos-executor flags): name croupier-executor in an ExecutorInfo of
  type CUSTOM. Runs several tasks concurrently, each in <sandbox>/tasks/<task id>/ (its working
  directory and MESOS_SANDBOX, with its own stdout/stderr). A task's command comes from
    - LAUNCH_GROUP: each TaskInfo.command (group semantics: one task FAILED/KILLED kills the rest);
    - LAUNCH: TaskInfo.command, or TaskInfo.data holding a mesos.v1.CommandInfo as protobuf bytes
      or as Mesos JSON (data starting with '{').
  The executor fetches each task's CommandInfo.uris itself, and stays up until SHUTDOWN or until
  it has had no task for CROUPIER_EXECUTOR_IDLE_TIMEOUT.

  Drop-in mode (started with mesos-executor's flags, e.g. --launcher_dir=...): the command
  executor's contract for an agent run with --http_command_executor. One task (TaskInfo.command
  or --task_command); a second LAUNCH gets TASK_FAILED; exits 0 once the terminal update is
  acknowledged. Flags honoured: --task_command, --task_environment, --working_directory, --user
  (the only user switch in this mode, as upstream: CommandInfo.user is not switched to, the agent
  already started the executor as the task's user). With --rootfs (a command task with a
  container image) the task runs inside its image through <launcher_dir>/mesos-containerizer
  launch, as upstream. --tty_slave_path is known but not supported. Unknown flags are logged,
  never fatal.
"#;

const ENVIRONMENT: &str = r#"ENVIRONMENT (set by the Mesos agent)
  MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID     required
  MESOS_AGENT_ENDPOINT                      required, IP:PORT of the agent
  MESOS_SANDBOX (or MESOS_DIRECTORY)        required, the sandbox directory
  MESOS_CHECKPOINT                          "1" to survive agent restarts (re-subscribe)
  MESOS_RECOVERY_TIMEOUT                    how long to wait for a restarted agent (15mins)
  MESOS_SUBSCRIPTION_BACKOFF_MAX            max random delay between re-subscribes (2secs)
  MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD      SHUTDOWN budget (5secs)
  MESOS_EXECUTOR_AUTHENTICATION_TOKEN       sent as Authorization: Bearer; hidden from tasks
  MESOS_SLAVE_ID                            the agent id (informational)
ENVIRONMENT (Croupier)
  CROUPIER_EXECUTOR_IDLE_TIMEOUT            custom mode: exit after this long without a task
                                            (Mesos duration, e.g. 10mins; unset = never)
  CROUPIER_EXECUTOR_ACK_TIMEOUT             wait at most this long for terminal ACKs (60secs)
  RUST_LOG                                  log filter (default info); logs go to stderr
  CROUPIER_LOG_FORMAT                       text (default) or json: one JSON object per line
                                            (timestamp, level, target, message, framework_id,
                                            executor_id, task_id and the event's fields)
FETCHER (custom mode; pass these through the agent's --executor_environment_variables, or as
the flag in brackets on the executor's command line, which wins)
  CROUPIER_FETCHER_CACHE_DIR                cache shared by every executor on the host
    [--fetcher_cache_dir]                   (/var/cache/croupier/fetcher)
  CROUPIER_FETCHER_CACHE_SIZE               cap, Mesos bytes syntax, e.g. 2GB (2GB); least
    [--fetcher_cache_size]                  recently used unreferenced entries are evicted
  CROUPIER_FETCHER_CACHE_LINKS              1 = hardlink read-only entries into sandboxes
    [--fetcher_cache_links]                 instead of copying (reflink where possible)
  CROUPIER_FETCHER_STALL_TIMEOUT            fail a download that sends nothing this long
    [--fetcher_stall_timeout]               (60secs)
  CROUPIER_FETCHER_PROGRESS_INTERVAL        log a long download's progress this often (10secs)
    [--fetcher_progress_interval]
  CROUPIER_FETCHER_CA_FILE                  extra PEM CAs trusted for https:// URIs
    [--fetcher_ca_file]
  MESOS_FRAMEWORKS_HOME [--frameworks_home] base for relative local paths
  AWS_ACCESS_KEY_ID, AWS_PROFILE, ...       s3:// credentials (env, then ~/.aws profile, then
  AWS_REGION, AWS_ENDPOINT_URL              instance metadata); region; non-AWS endpoint
  HADOOP_CONF_DIR                           hdfs:// nameservices (core-site.xml, hdfs-site.xml)

Durations use the Mesos syntax: a number and one of ns, us, ms, secs, mins, hrs, days, weeks.

Every invalid variable or flag is reported at once, each with its value and what is accepted.
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("MESOS_FRAMEWORK_ID", "fw"),
            ("MESOS_EXECUTOR_ID", "ex"),
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
            ("MESOS_SANDBOX", "/tmp/sb"),
            ("MESOS_CHECKPOINT", "1"),
        ]
    }

    fn run(pairs: &[(&str, &str)], args: &[&str]) -> Result<Config, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match Config::parse(env(pairs), &args)? {
            Parsed::Run(c) => Ok(*c),
            Parsed::Help | Parsed::Version => panic!("unexpected help/version"),
        }
    }

    #[test]
    fn full_env_custom_mode() {
        let mut e = base();
        e.push(("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "7secs"));
        e.push(("CROUPIER_EXECUTOR_IDLE_TIMEOUT", "1.5mins"));
        let c = run(&e, &[]).unwrap();
        assert_eq!(c.mode, Mode::Custom);
        assert!(c.checkpoint);
        assert_eq!(c.shutdown_grace, Duration::from_secs(7));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.backoff_max, DEFAULT_BACKOFF_MAX);
    }

    #[test]
    fn all_problems_listed_at_once() {
        let err = run(
            &[
                ("MESOS_CHECKPOINT", "yes"),
                ("MESOS_RECOVERY_TIMEOUT", "soon"),
                ("MESOS_AGENT_ENDPOINT", "http://x/"),
            ],
            &[],
        )
        .unwrap_err();
        let msg = err.to_string();
        for needle in [
            "MESOS_FRAMEWORK_ID",
            "MESOS_EXECUTOR_ID",
            "MESOS_AGENT_ENDPOINT",
            "MESOS_SANDBOX",
            "MESOS_CHECKPOINT",
            "MESOS_RECOVERY_TIMEOUT",
        ] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
        assert_eq!(err.problems.len(), 6, "{msg}");
        let mut e = base();
        e.push(("CROUPIER_LOG_FORMAT", "xml"));
        let msg = run(&e, &["--user"]).unwrap_err().to_string();
        assert!(
            msg.contains("CROUPIER_LOG_FORMAT=\"xml\": expected text or json"),
            "{msg}"
        );
        assert!(msg.contains("--user"), "{msg}");
        let c = run(&e, &["--log_format=json"]).unwrap();
        assert_eq!(c.log_format, croupier_ops::log::LogFormat::Json);
    }

    #[test]
    fn drop_in_flags_and_unknown_flags() {
        let c = run(
            &base(),
            &[
                "--launcher_dir=/usr/libexec/mesos",
                "--task_command",
                "{\"value\":\"true\"}",
                "--frobnicate=1",
                "--fetcher_cache_dir=/x",
            ],
        )
        .unwrap();
        match &c.mode {
            Mode::DropIn(f) => {
                assert_eq!(f.launcher_dir.as_deref(), Some("/usr/libexec/mesos"));
                assert_eq!(f.task_command.as_deref(), Some("{\"value\":\"true\"}"));
            }
            Mode::Custom => panic!("expected drop-in"),
        }
        assert_eq!(c.unknown_flags, vec!["--frobnicate=1".to_string()]);
    }

    #[test]
    fn every_mesos_executor_flag_is_known() {
        let c = run(
            &base(),
            &[
                "--launcher_dir=/usr/libexec/mesos",
                "--sandbox_directory=/mnt/mesos/sandbox",
                "--tty_slave_path=/dev/pts/3",
                "--task_launch_info={}",
                "--effective_capabilities={}",
                "--bounding_capabilities={}",
                "--task_supplementary_groups=4,5",
            ],
        )
        .unwrap();
        assert!(c.unknown_flags.is_empty(), "{:?}", c.unknown_flags);
        let Mode::DropIn(f) = &c.mode else {
            panic!("expected drop-in")
        };
        assert_eq!(f.task_supplementary_groups.as_deref(), Some("4,5"));
        let unused: Vec<&str> = f.known_but_unused().iter().map(|u| u.0).collect();
        assert_eq!(
            unused,
            vec![
                "tty_slave_path",
                "launcher_dir",
                "sandbox_directory",
                "task_launch_info",
                "effective_capabilities",
                "bounding_capabilities",
                "task_supplementary_groups"
            ]
        );
    }

    #[test]
    fn help_wins() {
        let r = Config::parse(env(&[]), &["--help".to_string()]).unwrap();
        assert!(matches!(r, Parsed::Help));
        let r = Config::parse(env(&[]), &["-V".to_string()]).unwrap();
        assert!(matches!(r, Parsed::Version));
        let text = usage();
        for needle in [
            "CROUPIER_EXECUTOR_IDLE_TIMEOUT",
            "--task_command <JSON>",
            "--log-format <text|json>",
            "Drop-in mode",
            "MESOS_AGENT_ENDPOINT",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
