//! Executor benchmark under a real Mesos 1.11 agent: croupier-executor vs Mesos's own
//! `mesos-executor` as the agent's command executor, interleaved on ONE agent, each task
//! submitted by the stock `mesos-execute`. Prints Markdown tables (and writes them with --out).
//!
//! One agent serves both: `--http_command_executor` and a `--launcher_dir` whose
//! `mesos-executor` is a dispatch script exec'ing Mesos's own executor for task ids starting
//! `ref-` and croupier-executor otherwise (the agent gives a command executor its task's id as
//! `MESOS_EXECUTOR_ID`). Both pay the same two `/bin/sh` execs and one `date` (the script
//! records when it ran, splitting the agent's launch path from the executor's start-up).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use croupier_testkit::mesos::{tasks, ClusterOpts, Install, MesosCluster, MesosExecute};

/// Measure, per executor, over --tasks command tasks each (`sleep 1`): RSS and PSS of the
/// executor process while it supervises the task (from /proc/<pid>/smaps_rollup, 300 ms after
/// TASK_RUNNING), submit -> TASK_RUNNING as mesos-execute prints it, and where that time goes
/// (agent log, executor log timestamps).
#[derive(Debug, Parser)]
#[command(name = "croupier-mesos-bench", version)]
struct Args {
    /// The croupier-executor binary (build it with --release).
    #[arg(long, default_value = "target/release/croupier-executor")]
    executor: PathBuf,
    /// Tasks per executor (>= 30), interleaved, alternating which goes first.
    #[arg(long, default_value_t = 30)]
    tasks: usize,
    /// Also write the tables to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Default)]
struct Samples {
    rss_kb: Vec<f64>,
    pss_kb: Vec<f64>,
    latency_ms: Vec<f64>,
    /// Named segments of submit -> RUNNING, in ms.
    split: BTreeMap<&'static str, Vec<f64>>,
}

const SEGMENTS: [&str; 7] = [
    "1 submit → agent got task (master, offer path)",
    "2 agent: got task → forked container (sandbox, containerizer)",
    "3a fork → launcher script runs (mesos-containerizer launch: the agent's side)",
    "3b launcher script → executor's first log line (exec, executor start-up)",
    "4 executor's first log line → agent got SUBSCRIBE",
    "5 SUBSCRIBE → agent got TASK_RUNNING (task launch, spawn)",
    "6 agent got TASK_RUNNING → framework printed it",
];

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

fn p90(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() as f64 - 1.0) * 0.9).round() as usize]
}

/// Seconds since midnight UTC of a wall-clock time.
fn sod(t: SystemTime) -> f64 {
    let s = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    s % 86400.0
}

/// `I1203 09:02:31.013425 ...` (glog, local time = UTC here) -> seconds of day.
fn glog_sod(line: &str) -> Option<f64> {
    let mut it = line.split_whitespace();
    let head = it.next()?;
    if head.len() != 5 || !matches!(&head[..1], "I" | "W" | "E") {
        return None;
    }
    hms(it.next()?)
}

fn hms(t: &str) -> Option<f64> {
    let mut p = t.split(':');
    let h: f64 = p.next()?.parse().ok()?;
    let m: f64 = p.next()?.parse().ok()?;
    let s: f64 = p.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `2026-12-03T08:38:16.289084Z ...` (tracing, UTC) -> seconds of day.
fn rfc3339_sod(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let time = ts.split_once('T')?.1.trim_end_matches('Z');
    hms(time)
}

fn smaps_kb(pid: u32) -> anyhow::Result<(f64, f64)> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |k: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Ok((
        field("Rss:").with_context(|| format!("no Rss in {path}"))?,
        field("Pss:").with_context(|| format!("no Pss in {path}"))?,
    ))
}

/// The executor process in `sandbox`: the one whose cwd is the sandbox and whose command name
/// is an executor's.
fn executor_pid(cluster: &MesosCluster, sandbox: &Path) -> Option<u32> {
    cluster.processes_in_sandboxes().into_iter().find(|pid| {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        (comm.starts_with("croupier-execut") || comm.starts_with("mesos-executor"))
            && cwd.as_deref() == Some(sandbox)
    })
}

/// The first agent-log line at or after `from` containing all of `needles`, as seconds of day.
fn agent_event(log: &[&str], needles: &[&str]) -> Option<f64> {
    log.iter()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| glog_sod(l))
}

async fn one(
    cluster: &MesosCluster,
    task_id: &str,
    clock: (Instant, SystemTime),
    s: &mut Samples,
) -> anyhow::Result<()> {
    let to_sod = |i: Instant| -> f64 { sod(clock.1 + i.saturating_duration_since(clock.0)) };
    let mut run = MesosExecute::new(cluster)
        .task(&tasks::command_task(task_id, "sleep 1"))?
        .timeout(Duration::from_secs(60))
        .spawn()?;
    run.wait_state(task_id, "TASK_RUNNING", Duration::from_secs(60))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sandbox = cluster
        .sandbox_of(task_id)
        .with_context(|| format!("no sandbox for {task_id}"))?;
    let sandbox = std::fs::canonicalize(&sandbox).unwrap_or(sandbox);
    let pid = executor_pid(cluster, &sandbox)
        .with_context(|| format!("no executor process in {}", sandbox.display()))?;
    let (rss, pss) = smaps_kb(pid)?;
    let out = run.finish().await?;
    if out.states(task_id).last().map(String::as_str) != Some("TASK_FINISHED") {
        bail!("{task_id} did not finish: {}", out.summary());
    }
    let latency = out
        .submit_to_running(task_id)
        .with_context(|| format!("no submit/RUNNING for {task_id}"))?;
    s.rss_kb.push(rss);
    s.pss_kb.push(pss);
    s.latency_ms.push(latency.as_secs_f64() * 1000.0);

    // Where the time went.
    let submit = to_sod(out.submitted.context("submit time")?);
    let running_seen = to_sod(out.update(task_id, "TASK_RUNNING").context("RUNNING")?.at);
    let log_text = cluster.agent_log();
    let log: Vec<&str> = log_text.lines().collect();
    let quoted = format!("'{task_id}'");
    let got = agent_event(&log, &["Got assigned task", &quoted]);
    let fork = log
        .iter()
        .find(|l| l.contains("Launching container") && l.contains(&format!("executor {quoted}")))
        .and_then(|l| {
            l.split_whitespace()
                .find(|w| w.len() == 36 && w.matches('-').count() == 4)
        })
        .and_then(|cid| agent_event(&log, &["Forked child with pid", cid]));
    let subscribe = agent_event(&log, &["Received Subscribe request", &quoted]);
    let running_agent = agent_event(
        &log,
        &[
            "Handling status update TASK_RUNNING",
            &format!("for task {task_id} "),
        ],
    );
    let stderr = std::fs::read_to_string(sandbox.join("stderr")).unwrap_or_default();
    let first_exec_line = stderr
        .lines()
        .find_map(|l| rfc3339_sod(l).or_else(|| glog_sod(l)));
    let script_ran = std::fs::read_to_string(sandbox.join(".launcher-script-ran"))
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map(|epoch| epoch % 86400.0);
    let points = [
        Some(submit),
        got,
        fork,
        script_ran,
        first_exec_line,
        subscribe,
        running_agent,
        Some(running_seen),
    ];
    for (i, name) in SEGMENTS.iter().enumerate() {
        if let (Some(a), Some(b)) = (points[i], points[i + 1]) {
            s.split.entry(name).or_default().push((b - a) * 1000.0);
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.tasks < 30 {
        bail!("--tasks must be at least 30 (got {})", args.tasks);
    }
    let install = Install::find()?;
    let ours = std::fs::canonicalize(&args.executor)
        .with_context(|| format!("croupier-executor at {}", args.executor.display()))?;
    let scratch = tempfile::tempdir().context("temporary directory")?;
    let dispatch = scratch.path().join("dispatch-executor");
    std::fs::write(
        &dispatch,
        format!(
            "#!/bin/sh\ndate +%s.%N > \"$MESOS_SANDBOX/.launcher-script-ran\"\ncase \"$MESOS_EXECUTOR_ID\" in\n  ref-*) exec '{}' \"$@\" ;;\n  *) exec '{}' \"$@\" ;;\nesac\n",
            install.libexec().join("mesos-executor").display(),
            ours.display()
        ),
    )
    .context("writing the dispatch script")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dispatch, std::fs::Permissions::from_mode(0o755))
            .context("chmod dispatch script")?;
    }
    let mut opts = ClusterOpts::drop_in(&dispatch);
    opts.name = "croupier-mesos-bench".into();
    opts.agent_env.push(("TZ".into(), "UTC".into()));
    opts.executor_env.insert("RUST_LOG".into(), "info".into());
    let cluster = MesosCluster::start(opts).await?;
    let clock = (Instant::now(), SystemTime::now());
    let load_before = loadavg();

    let mut ours_s = Samples::default();
    let mut ref_s = Samples::default();
    // One warm-up each (page cache, first fetcher-cache use), not counted.
    one(&cluster, "warm-ours", clock, &mut Samples::default()).await?;
    one(&cluster, "ref-warm", clock, &mut Samples::default()).await?;
    for i in 0..args.tasks {
        if i % 2 == 0 {
            one(&cluster, &format!("ours-{i}"), clock, &mut ours_s).await?;
            one(&cluster, &format!("ref-{i}"), clock, &mut ref_s).await?;
        } else {
            one(&cluster, &format!("ref-{i}"), clock, &mut ref_s).await?;
            one(&cluster, &format!("ours-{i}"), clock, &mut ours_s).await?;
        }
        eprintln!("round {}/{} done", i + 1, args.tasks);
    }

    let mut t = String::new();
    t.push_str("| executor | tasks | RSS supervising (median) | PSS supervising (median) | submit→TASK_RUNNING median | p90 |\n|---|---|---|---|---|---|\n");
    for (name, s) in [
        ("croupier-executor", &ours_s),
        ("mesos-executor 1.11.0", &ref_s),
    ] {
        t.push_str(&format!(
            "| {name} | {} | {:.1} MB | {:.1} MB | {:.0} ms | {:.0} ms |\n",
            s.latency_ms.len(),
            median(&s.rss_kb) / 1024.0,
            median(&s.pss_kb) / 1024.0,
            median(&s.latency_ms),
            p90(&s.latency_ms)
        ));
    }
    t.push_str(&format!(
        "| ratio croupier/mesos | | {:.2} | {:.2} | {:.2} | {:.2} |\n",
        median(&ours_s.rss_kb) / median(&ref_s.rss_kb),
        median(&ours_s.pss_kb) / median(&ref_s.pss_kb),
        median(&ours_s.latency_ms) / median(&ref_s.latency_ms),
        p90(&ours_s.latency_ms) / p90(&ref_s.latency_ms),
    ));
    t.push_str("\nWhere submit→TASK_RUNNING goes (medians of each segment, ms; the segments' medians need not add up to the total's):\n\n| segment | croupier-executor | mesos-executor |\n|---|---|---|\n");
    for seg in SEGMENTS {
        let m = |s: &Samples| {
            s.split
                .get(seg)
                .map(|v| format!("{:.1} (n={})", median(v), v.len()))
                .unwrap_or_else(|| "n/a".into())
        };
        t.push_str(&format!("| {seg} | {} | {} |\n", m(&ours_s), m(&ref_s)));
    }
    t.push_str(&format!(
        "\nmachine: {} CPUs ({}), load average (1/5/15 min) {} before, {} after\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model(),
        load_before,
        loadavg()
    ));
    println!("{t}");
    if let Some(out) = &args.out {
        std::fs::write(out, &t).with_context(|| format!("writing {}", out.display()))?;
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
