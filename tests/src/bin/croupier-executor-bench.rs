//! Executor benchmark: memory while supervising a task and LAUNCH -> TASK_RUNNING latency,
//! croupier-executor side by side with pymesos 0.3.15's executor, both under the same agent
//! stand-in on 127.0.0.1. Prints a Markdown table (and writes it with --out).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use croupier_proto::v1::{CommandInfo, TaskInfo, TaskState};
use croupier_testkit::agent::{Agent, AgentConfig};

/// Measure executor RSS (VmRSS/VmHWM of the executor process while it supervises a `sleep`
/// task) and LAUNCH -> TASK_RUNNING latency (median and p90 over --launches sequential
/// launches), for croupier-executor (custom-executor mode, LAUNCH with CommandInfo in `data`)
/// and pymesos 0.3.15's executor (JSON; tests/interop/mesos/pymesos_executor.py), under the
/// same agent stand-in.
#[derive(Debug, Parser)]
#[command(name = "croupier-executor-bench", version)]
struct Args {
    /// The croupier-executor binary (build it with --release for meaningful numbers).
    #[arg(long, default_value = "target/release/croupier-executor")]
    executor: PathBuf,
    /// Python of the venv with pymesos (default: $CROUPIER_VENV/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Sequential launches for the latency median (>= 50).
    #[arg(long, default_value_t = 60)]
    launches: usize,
    /// Also write the Markdown table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

struct Result1 {
    name: String,
    rss_kb: u64,
    hwm_kb: u64,
    median: Duration,
    p90: Duration,
    /// Median LAUNCH -> TASK_STARTING, if the executor sends TASK_STARTING.
    starting: Option<Duration>,
    n: usize,
}

fn proc_status_kb(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in {path}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn measure(
    name: &str,
    cfg: AgentConfig,
    launches: usize,
    task_for: impl Fn(&Agent, &str, bool) -> TaskInfo,
) -> anyhow::Result<Result1> {
    let limit = Duration::from_secs(30);
    let mut agent = Agent::start_with_executor(cfg).await?;
    if let Err(e) = agent.wait_subscribed(limit).await {
        bail!("{name}: {e}\nexecutor stderr:\n{}", agent.executor_stderr());
    }
    let pid = agent.executor_pid().context("executor pid")?;

    // Warm-up launch, not counted.
    let mut latencies = Vec::with_capacity(launches);
    let mut startings = Vec::with_capacity(launches);
    for i in 0..=launches {
        let id = format!("lat-{i}");
        let sent = Instant::now();
        agent.launch(task_for(&agent, &id, false))?;
        let at = agent
            .wait_until(&format!("{name}: TASK_RUNNING of {id}"), limit, |r| {
                r.updates
                    .iter()
                    .find(|u| {
                        u.status.task_id.value == id
                            && u.status.state == TaskState::TaskRunning as i32
                    })
                    .map(|u| u.at)
            })
            .await
            .with_context(|| format!("{name}: executor stderr:\n{}", agent.executor_stderr()))?;
        agent.wait_terminal(&id, limit).await?;
        if i > 0 {
            latencies.push(at.saturating_duration_since(sent));
            let starting = agent.recorded().updates.iter().find_map(|u| {
                (u.status.task_id.value == id && u.status.state == TaskState::TaskStarting as i32)
                    .then_some(u.at)
            });
            if let Some(s) = starting {
                startings.push(s.saturating_duration_since(sent));
            }
        }
    }
    latencies.sort();
    startings.sort();

    // Memory while supervising one long task.
    agent.launch(task_for(&agent, "rss", true))?;
    agent
        .wait_update("rss", TaskState::TaskRunning, limit)
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_kb = proc_status_kb(pid, "VmRSS:")?;
    let hwm_kb = proc_status_kb(pid, "VmHWM:")?;
    agent.kill("rss", Some(Duration::from_millis(500)))?;
    agent.wait_terminal("rss", limit).await?;
    let _ = agent.shutdown();
    let _ = agent.wait_executor_exit(Duration::from_secs(10)).await;

    Ok(Result1 {
        name: name.to_string(),
        rss_kb,
        hwm_kb,
        median: percentile(&latencies, 0.5),
        p90: percentile(&latencies, 0.9),
        starting: (!startings.is_empty()).then(|| percentile(&startings, 0.5)),
        n: latencies.len(),
    })
}

fn croupier_task(agent: &Agent, id: &str, long: bool) -> TaskInfo {
    let cmd = CommandInfo {
        value: Some(if long { "sleep 30" } else { "true" }.into()),
        shell: Some(true),
        ..Default::default()
    };
    agent.data_task(id, &cmd)
}

fn pymesos_task(agent: &Agent, id: &str, long: bool) -> TaskInfo {
    let mut t = agent.command_task(id, "true");
    if long {
        t.data = Some(b"stay".to_vec());
    }
    t
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/mesos/pymesos_executor.py")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // The same --version line as every Croupier binary.
    let args = <Args as clap::FromArgMatches>::from_arg_matches(
        &<Args as clap::CommandFactory>::command()
            .version(croupier_ops::build_info::version())
            .get_matches(),
    )?;
    if args.launches < 50 {
        bail!("--launches {}: use at least 50", args.launches);
    }
    let executor = std::fs::canonicalize(&args.executor).with_context(|| {
        format!(
            "--executor {}: build it first (cargo build --release -p croupier-executor)",
            args.executor.display()
        )
    })?;
    let python = match &args.python {
        Some(p) => p.clone(),
        None => croupier_testkit::env::python(),
    };

    let load_before = loadavg();
    let croupier = measure(
        "croupier-executor",
        AgentConfig::new(&executor),
        args.launches,
        croupier_task,
    )
    .await?;

    let mut py = AgentConfig::new(&python);
    py.executor_args = vec![script().display().to_string()];
    py.checkpoint = false;
    let pymesos = measure("pymesos 0.3.15", py, args.launches, pymesos_task).await?;

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let mut table = String::new();
    table.push_str("| executor | VmRSS supervising `sleep` | VmHWM | LAUNCH→TASK_RUNNING median | p90 | LAUNCH→TASK_STARTING median | launches |\n");
    table.push_str("|---|---|---|---|---|---|---|\n");
    for r in [&croupier, &pymesos] {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            mb(r.rss_kb),
            mb(r.hwm_kb),
            ms(r.median),
            ms(r.p90),
            r.starting.map(ms).unwrap_or_else(|| "(not sent)".into()),
            r.n
        ));
    }
    table.push_str(&format!(
        "| ratio croupier/pymesos | {:.2} | {:.2} | {:.2} | {:.2} | | |\n",
        ratio(croupier.rss_kb as f64, pymesos.rss_kb as f64),
        ratio(croupier.hwm_kb as f64, pymesos.hwm_kb as f64),
        ratio(croupier.median.as_secs_f64(), pymesos.median.as_secs_f64()),
        ratio(croupier.p90.as_secs_f64(), pymesos.p90.as_secs_f64()),
    ));
    table.push_str(&format!(
        "\nmachine: {} CPUs ({}), load average (1/5/15 min) {} before, {} after\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        load_before,
        loadavg(),
    ));
    print!("{table}");
    if let Some(out) = &args.out {
        write_out(out, &table)?;
    }
    Ok(())
}

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn write_out(path: &Path, table: &str) -> anyhow::Result<()> {
    std::fs::write(path, table).with_context(|| format!("writing {}", path.display()))
}
