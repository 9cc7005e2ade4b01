//! `croupier-local`: run one command task locally through a Mesos executor binary, under
//! Croupier's agent stand-in, without a cluster (like `mesos-execute`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use croupier_proto::v1::{environment, CommandInfo, Environment, KillPolicy, TaskState};
use croupier_testkit::agent::{duration_info, Agent, AgentConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
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
/// prints every status update, and exits with the task's exit status (0 for TASK_FINISHED,
/// N for "Command exited with status N", 128+signal when killed by a signal, 1 otherwise).
/// Ctrl-C sends KILL to the task (with --kill-grace), a second Ctrl-C exits at once.
///
/// Example:
///   croupier-local --executor target/debug/croupier-executor -- 'echo hi'
#[derive(Debug, Parser)]
#[command(name = "croupier-local", version, verbatim_doc_comment)]
struct Args {
    /// The executor binary to run (e.g. target/debug/croupier-executor).
    #[arg(long, value_name = "PATH")]
    executor: PathBuf,

    /// How the task is handed to the executor.
    #[arg(long, value_enum, default_value_t = Mode::DropIn)]
    mode: Mode,

    /// Task id (also the executor id in drop-in mode).
    #[arg(long, default_value = "croupier-local-task")]
    task_id: String,

    /// Run the command without a shell: the words after `--` are the argv (argv[0] is the
    /// program).
    #[arg(long)]
    no_shell: bool,

    /// Environment variable for the task, NAME=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,

    /// Run the task as this user (needs root).
    #[arg(long)]
    user: Option<String>,

    /// Kill policy grace period in the TaskInfo, Mesos duration syntax (e.g. 3secs).
    #[arg(long, value_name = "DURATION")]
    kill_grace: Option<String>,

    /// MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD, Mesos duration syntax.
    #[arg(long, default_value = "5secs", value_name = "DURATION")]
    shutdown_grace: String,

    /// Give up (KILL the task) after this long, Mesos duration syntax; unset = wait forever.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,

    /// Use this directory as the sandbox and keep it (default: a temporary one, removed).
    #[arg(long, value_name = "DIR")]
    sandbox: Option<PathBuf>,

    /// Pass MESOS_CHECKPOINT=0 (the executor then exits when the agent goes away).
    #[arg(long)]
    no_checkpoint: bool,

    /// Extra environment for the executor itself, NAME=VALUE (e.g. RUST_LOG=debug).
    #[arg(long = "executor-env", value_name = "NAME=VALUE")]
    executor_env: Vec<String>,

    /// The command: a shell command line (one word, quoted), or with --no-shell the argv.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_duration(what: &str, s: &str) -> anyhow::Result<Duration> {
    croupier_proto::duration::parse(s).with_context(|| format!("--{what}"))
}

fn split_env(what: &str, s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("--{what} {s:?}: expected NAME=VALUE"),
    }
}

fn exit_code_for(state: TaskState, message: &str) -> u8 {
    if state == TaskState::TaskFinished {
        return 0;
    }
    if let Some(n) = message
        .strip_prefix("Command exited with status ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u8>().ok())
    {
        return n;
    }
    if state == TaskState::TaskKilled {
        return 128 + 15;
    }
    1
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if !args.executor.exists() {
        bail!("--executor {}: no such file", args.executor.display());
    }
    let executor = std::fs::canonicalize(&args.executor)
        .with_context(|| format!("--executor {}", args.executor.display()))?;

    let mut cfg = AgentConfig::new(&executor);
    cfg.shutdown_grace_period = parse_duration("shutdown-grace", &args.shutdown_grace)?;
    cfg.checkpoint = !args.no_checkpoint;
    cfg.sandbox_dir = args.sandbox.clone();
    for e in &args.executor_env {
        cfg.extra_env.push(split_env("executor-env", e)?);
    }
    if args.mode == Mode::DropIn {
        cfg.executor_id = args.task_id.clone();
        let dir = executor
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| ".".into());
        cfg.executor_args = vec![format!("--launcher_dir={dir}")];
    }
    let kill_grace = args
        .kill_grace
        .as_deref()
        .map(|g| parse_duration("kill-grace", g))
        .transpose()?;
    let timeout = args
        .timeout
        .as_deref()
        .map(|t| parse_duration("timeout", t))
        .transpose()?;

    let mut command = CommandInfo {
        user: args.user.clone(),
        ..Default::default()
    };
    if args.no_shell {
        command.shell = Some(false);
        command.value = args.command.first().cloned();
        command.arguments = args.command.clone();
    } else {
        command.shell = Some(true);
        command.value = Some(args.command.join(" "));
    }
    if !args.env.is_empty() {
        let mut variables = Vec::new();
        for e in &args.env {
            let (name, value) = split_env("env", e)?;
            variables.push(environment::Variable {
                name,
                value: Some(value),
                r#type: Some(environment::variable::Type::Value as i32),
                secret: None,
            });
        }
        command.environment = Some(Environment { variables });
    }

    let mut agent = Agent::start_with_executor(cfg)
        .await
        .context("starting the agent stand-in and the executor")?;
    eprintln!(
        "croupier-local: agent stand-in on {}, sandbox {}, executor pid {}",
        agent.addr(),
        agent.sandbox().display(),
        agent.executor_pid().unwrap_or(0)
    );
    let subscribe_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = agent.wait_subscribed(Duration::from_millis(100)).await {
        if !agent.executor_running() || tokio::time::Instant::now() >= subscribe_deadline {
            bail!(
                "the executor did not subscribe ({}): {e}\nexecutor stderr:\n{}",
                if agent.executor_running() {
                    "gave up after 30s"
                } else {
                    "it exited"
                },
                agent.executor_stderr()
            );
        }
    }

    let mut task = match args.mode {
        Mode::DropIn => {
            let mut t = agent.command_task(&args.task_id, "");
            t.command = Some(command);
            t
        }
        Mode::Custom => agent.data_task(&args.task_id, &command),
    };
    task.kill_policy = kill_grace.map(|g| KillPolicy {
        grace_period: Some(duration_info(g)),
    });
    agent.launch(task).context("sending LAUNCH")?;

    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut printed = 0;
    let mut interrupts = 0;
    let terminal = loop {
        let next = agent.wait_until("the next status update", Duration::from_millis(200), |r| {
            (r.updates.len() > printed).then(|| r.updates[printed..].to_vec())
        });
        tokio::select! {
            got = next => {
                if let Ok(updates) = got {
                    printed += updates.len();
                    let mut done = None;
                    for u in updates {
                        let state = TaskState::try_from(u.status.state).unwrap_or(TaskState::TaskUnknown);
                        println!(
                            "{} {}{}{}",
                            u.status.task_id.value,
                            state.as_str_name(),
                            u.status.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(),
                            if u.duplicate { " (re-sent)" } else { "" }
                        );
                        if croupier_proto::is_terminal(state) && done.is_none() {
                            done = Some((state, u.status.message.clone().unwrap_or_default()));
                        }
                    }
                    if let Some(d) = done {
                        break d;
                    }
                }
                if !agent.executor_running() && agent.recorded().terminal_updates(&args.task_id).is_empty() {
                    bail!(
                        "the executor exited before the task ended\nexecutor stderr:\n{}",
                        agent.executor_stderr()
                    );
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) && interrupts == 0 {
                    eprintln!("croupier-local: --timeout reached, killing the task");
                    interrupts = 1;
                    agent.kill(&args.task_id, kill_grace).context("sending KILL")?;
                }
            }
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if interrupts > 1 {
                    eprintln!("croupier-local: interrupted twice, exiting");
                    return Ok(ExitCode::from(130));
                }
                eprintln!("croupier-local: interrupted, killing the task (Ctrl-C again to exit now)");
                agent.kill(&args.task_id, kill_grace).context("sending KILL")?;
            }
        }
    };

    // Let the executor see its ACK and exit (drop-in mode exits after the terminal ACK).
    let _ = agent.wait_executor_exit(Duration::from_secs(5)).await;
    if agent.executor_running() {
        let _ = agent.shutdown();
        let _ = agent.wait_executor_exit(Duration::from_secs(10)).await;
    }
    let task_dir = match args.mode {
        Mode::DropIn => agent.sandbox().to_path_buf(),
        Mode::Custom => agent.sandbox().join("tasks").join(&args.task_id),
    };
    for name in ["stdout", "stderr"] {
        let path = task_dir.join(name);
        let text = std::fs::read(&path).unwrap_or_default();
        if name == "stdout" && !text.is_empty() {
            eprintln!("croupier-local: task stdout ({}):", path.display());
            print!("{}", String::from_utf8_lossy(&text));
        }
    }
    if args.sandbox.is_none() {
        eprintln!(
            "croupier-local: the temporary sandbox is removed now; use --sandbox DIR to keep it"
        );
    }
    Ok(ExitCode::from(exit_code_for(terminal.0, &terminal.1)))
}
