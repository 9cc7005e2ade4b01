//! `croupier-local`: run one command task locally through a Mesos executor binary, under
//! Croupier's agent stand-in, without a cluster (like `mesos-execute`).

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::FromArgMatches;
use croupier_proto::v1::{
    environment, task_status, CommandInfo, Environment, KillPolicy, TaskState,
};
use croupier_testkit::agent::{duration_info, Agent, AgentConfig};
use croupier_testkit::local::{parse_uri, Args, Mode};

fn parse_duration(what: &str, s: &str) -> anyhow::Result<Duration> {
    croupier_proto::duration::parse(s).with_context(|| format!("--{what}"))
}

fn split_env(what: &str, s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("--{what} {s:?}: expected NAME=VALUE"),
    }
}

/// Copies what was appended to a task's stdout or stderr file since the last call.
struct Tail {
    path: PathBuf,
    offset: u64,
    to_stderr: bool,
}

impl Tail {
    fn new(dir: &Path, name: &str) -> Tail {
        Tail {
            path: dir.join(name),
            offset: 0,
            to_stderr: name == "stderr",
        }
    }

    fn pump(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if let Ok(n) = f.read_to_end(&mut buf) {
            self.offset += n as u64;
        }
        if buf.is_empty() {
            return;
        }
        // A reader that went away must not stop croupier-local from ending the task.
        let _ = if self.to_stderr {
            std::io::stderr().write_all(&buf)
        } else {
            let mut out = std::io::stdout();
            out.write_all(&buf).and_then(|_| out.flush())
        };
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
    let args = Args::from_arg_matches(
        &croupier_testkit::local::command()
            .version(croupier_ops::build_info::version())
            .get_matches(),
    )?;
    let uris = args
        .uri
        .iter()
        .map(|u| parse_uri(u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !uris.is_empty() && args.mode == Mode::DropIn {
        bail!(
            "--uri needs --mode custom: in drop-in mode a real agent fetches the URIs before \
             starting the executor, and this stand-in does not"
        );
    }
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
    if args.mode == Mode::DropIn && !cfg.extra_env.iter().any(|(k, _)| k == "RUST_LOG") {
        // The task shares the executor's stderr: keep the executor's lines to warnings.
        cfg.extra_env.push(("RUST_LOG".into(), "warn".into()));
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
        uris,
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
    let task_dir = match args.mode {
        Mode::DropIn => agent.sandbox().to_path_buf(),
        Mode::Custom => agent.sandbox().join("tasks").join(&args.task_id),
    };
    let mut tails = [
        Tail::new(&task_dir, "stdout"),
        Tail::new(&task_dir, "stderr"),
    ];

    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut printed = 0;
    let mut interrupts = 0;
    let terminal = loop {
        let next = agent.wait_until("the next status update", Duration::from_millis(200), |r| {
            (r.updates.len() > printed).then(|| r.updates[printed..].to_vec())
        });
        tokio::select! {
            got = next => {
                tails.iter_mut().for_each(Tail::pump);
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
                            done = Some((
                                state,
                                u.status.message.clone().unwrap_or_default(),
                                u.status.reason,
                            ));
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
    tails.iter_mut().for_each(Tail::pump);
    let reason = terminal
        .2
        .and_then(|r| task_status::Reason::try_from(r).ok())
        .map(|r| r.as_str_name())
        .unwrap_or("none");
    println!(
        "croupier-local: task {} final state {}, reason {}{}",
        args.task_id,
        terminal.0.as_str_name(),
        reason,
        if terminal.1.is_empty() {
            String::new()
        } else {
            format!(": {}", terminal.1)
        }
    );
    if args.sandbox.is_none() {
        eprintln!(
            "croupier-local: the temporary sandbox is removed now; use --sandbox DIR to keep it"
        );
    }
    Ok(ExitCode::from(exit_code_for(terminal.0, &terminal.1)))
}
