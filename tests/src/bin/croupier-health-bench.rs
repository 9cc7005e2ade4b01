//! Health-check overhead of the command executor under a real Mesos 1.11 agent:
//! croupier-executor (drop-in) side by side with Mesos's own `mesos-executor`.
//!
//! One real agent serves both executors at the same time: `--http_command_executor` and a
//! `--launcher_dir` whose `mesos-executor` is a dispatch script exec'ing Mesos's own executor
//! for task ids starting `ref-` and croupier-executor otherwise (as `croupier-mesos-bench`).
//! Two `sleep` tasks (`ours`, `ref-theirs`) run side by side, each submitted by its own
//! `mesos-execute` with an HTTP health check every `--interval` seconds against its own HTTP
//! server in this process (so the probes of each are counted). Once both tasks are healthy, the executors' `/proc/<pid>/stat` and `VmRSS` are sampled every
//! `--sample` seconds for `--duration` seconds. CPU is reported for the executor process
//! itself and with its reaped children added (`cutime + cstime`: mesos-executor forks `curl`
//! for every probe; croupier-executor probes natively), per minute: over the whole run, and as
//! the median of the sampling intervals (clock ticks are 10 ms, so short samples are coarse).
//!
//! `croupier-health-bench --executor target/release/croupier-executor [--duration 300]`
//! (needs `MESOS_PREFIX`: `eval "$(bash ../shared/mesos/install.sh)"`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use croupier_testkit::bench::report::median;
use croupier_testkit::mesos::{
    tasks, ClusterOpts, Install, MesosCluster, MesosExecute, RunningExecute,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(about = "Health-check overhead: croupier-executor vs mesos-executor under real Mesos")]
struct Args {
    /// The croupier-executor binary (build it with --release).
    #[arg(long)]
    executor: std::path::PathBuf,
    /// Seconds of measurement once both tasks are healthy.
    #[arg(long, default_value_t = 300)]
    duration: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample: u64,
    /// The health check's interval_seconds.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

/// An HTTP server answering 200 to every request, counting them.
async fn http_server() -> anyhow::Result<(u16, Arc<AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                h.fetch_add(1, Ordering::Relaxed);
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok((port, hits))
}

/// CPU seconds of a process: (self, reaped children).
fn cpu(pid: u32) -> anyhow::Result<(f64, f64)> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .with_context(|| format!("{path}: no command name"))?;
    // After the command name: state is field 3; utime..cstime are fields 14..17.
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 4 {
        bail!("{path}: too few fields");
    }
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(((f[0] + f[1]) / tck, (f[2] + f[3]) / tck))
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{path}: no VmRSS"))
}

struct Side {
    name: &'static str,
    _run: RunningExecute,
    hits: Arc<AtomicU64>,
    pid: u32,
}

async fn start_side(
    name: &'static str,
    cluster: &MesosCluster,
    task_id: &'static str,
    comm: &'static str,
    interval: f64,
) -> anyhow::Result<Side> {
    let (port, hits) = http_server().await?;
    let mut task = tasks::command_task(task_id, "exec sleep 100000");
    task["health_check"] = json!({
        "type": "HTTP",
        "http": { "port": port, "path": "/health" },
        "delay_seconds": 0.0, "interval_seconds": interval, "timeout_seconds": 5.0,
        "grace_period_seconds": 10.0, "consecutive_failures": 3
    });
    let mut run = MesosExecute::new(cluster)
        .task(&task)?
        .timeout(Duration::from_secs(24 * 3600))
        .spawn()?;
    run.wait_state(task_id, "TASK_RUNNING", Duration::from_secs(60))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run.output().updates.iter().any(|u| u.healthy == Some(true)) {
        if Instant::now() > deadline {
            bail!(
                "{name}: the task did not turn healthy: {}",
                run.output().summary()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sandbox = cluster
        .sandbox_of(task_id)
        .with_context(|| format!("{name}: no sandbox of executor {task_id}"))?;
    let sandbox = std::fs::canonicalize(&sandbox).unwrap_or(sandbox);
    let pid = cluster
        .processes_in_sandboxes()
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim().starts_with(comm))
                && std::fs::read_link(format!("/proc/{p}/cwd")).ok().as_deref()
                    == Some(sandbox.as_path())
        })
        .with_context(|| format!("{name}: no {comm} process in {}", sandbox.display()))?;
    Ok(Side {
        name,
        _run: run,
        hits,
        pid,
    })
}

#[derive(Default)]
struct Figures {
    self_per_min: Vec<f64>,
    all_per_min: Vec<f64>,
    rss_kb: Vec<f64>,
    self_total: f64,
    all_total: f64,
    probes: u64,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let install = Install::find().map_err(|e| anyhow::anyhow!("{e}"))?;
    let ours = std::fs::canonicalize(&args.executor)
        .with_context(|| format!("croupier-executor at {}", args.executor.display()))?;
    let scratch = tempfile::tempdir().context("temporary directory")?;
    let dispatch = scratch.path().join("dispatch-executor");
    std::fs::write(
        &dispatch,
        format!(
            "#!/bin/sh\ncase \"$MESOS_EXECUTOR_ID\" in\n  ref-*) exec '{}' \"$@\" ;;\n  *) exec '{}' \"$@\" ;;\nesac\n",
            install.libexec().join("mesos-executor").display(),
            ours.display()
        ),
    )
    .context("writing the dispatch script")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dispatch, std::fs::Permissions::from_mode(0o755))
            .context("chmod the dispatch script")?;
    }
    let mut opts = ClusterOpts::drop_in(&dispatch);
    opts.name = "croupier-health-bench".into();
    let cluster = MesosCluster::start(opts).await?;
    let (a, b) = tokio::join!(
        start_side(
            "croupier-executor",
            &cluster,
            "ours",
            "croupier-execut",
            args.interval
        ),
        start_side(
            "mesos-executor",
            &cluster,
            "ref-theirs",
            "mesos-executor",
            args.interval
        ),
    );
    let sides = [a?, b?];
    eprintln!(
        "measuring {} s: croupier-executor pid {}, mesos-executor pid {} (load {})",
        args.duration,
        sides[0].pid,
        sides[1].pid,
        loadavg()
    );
    let load_before = loadavg();
    let mut figs = [Figures::default(), Figures::default()];
    let mut last: Vec<(f64, f64)> = Vec::new();
    let mut hits0 = Vec::new();
    let mut first: Vec<(f64, f64)> = Vec::new();
    for s in &sides {
        let c = cpu(s.pid)?;
        last.push(c);
        first.push(c);
        hits0.push(s.hits.load(Ordering::Relaxed));
    }
    let start = Instant::now();
    let sample = Duration::from_secs(args.sample.max(1));
    let mut prev = start;
    while start.elapsed() < Duration::from_secs(args.duration) {
        tokio::time::sleep(sample).await;
        let dt = prev.elapsed().as_secs_f64();
        prev = Instant::now();
        for (i, s) in sides.iter().enumerate() {
            let c = cpu(s.pid).with_context(|| format!("{} (pid {}) went away", s.name, s.pid))?;
            let f = &mut figs[i];
            f.self_per_min.push((c.0 - last[i].0) / dt * 60.0);
            f.all_per_min
                .push(((c.0 + c.1) - (last[i].0 + last[i].1)) / dt * 60.0);
            f.rss_kb.push(rss_kb(s.pid)? as f64);
            last[i] = c;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    for (i, s) in sides.iter().enumerate() {
        let f = &mut figs[i];
        f.self_total = last[i].0 - first[i].0;
        f.all_total = (last[i].0 + last[i].1) - (first[i].0 + first[i].1);
        f.probes = s.hits.load(Ordering::Relaxed) - hits0[i];
    }
    let load_after = loadavg();

    let minutes = elapsed / 60.0;
    println!(
        "| executor | probes | CPU self, ms/min (run) | CPU self, ms/min (median of samples) | CPU self + probe processes, ms/min (run) | CPU self + probe processes, ms/min (median of samples) | RSS median MB | RSS max MB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, s) in sides.iter().enumerate() {
        let f = &figs[i];
        let max = f.rss_kb.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            s.name,
            f.probes,
            f.self_total / minutes * 1000.0,
            median(f.self_per_min.clone()) * 1000.0,
            f.all_total / minutes * 1000.0,
            median(f.all_per_min.clone()) * 1000.0,
            median(f.rss_kb.clone()) / 1024.0,
            max / 1024.0
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "| ratio (croupier / mesos) | | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
        ratio(figs[0].self_total, figs[1].self_total),
        ratio(
            median(figs[0].self_per_min.clone()),
            median(figs[1].self_per_min.clone())
        ),
        ratio(figs[0].all_total, figs[1].all_total),
        ratio(
            median(figs[0].all_per_min.clone()),
            median(figs[1].all_per_min.clone())
        ),
        ratio(
            median(figs[0].rss_kb.clone()),
            median(figs[1].rss_kb.clone())
        ),
        ratio(
            figs[0].rss_kb.iter().cloned().fold(0.0, f64::max),
            figs[1].rss_kb.iter().cloned().fold(0.0, f64::max)
        ),
    );
    println!();
    println!(
        "{} s measured, {} samples each, health check every {} s; load average {} before, {} after.",
        elapsed.round(),
        figs[0].rss_kb.len(),
        args.interval,
        load_before,
        load_after
    );
    drop(sides);
    drop(cluster);
    Ok(())
}
