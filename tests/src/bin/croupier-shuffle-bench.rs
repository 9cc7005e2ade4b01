//! `croupier-shuffle-bench`: load generator and measuring kit for Spark shuffle services
//! (ours, Spark's JVM `MesosExternalShuffleService`, and a raw `sendfile` limit). See
//! `bench/shuffle.sh` for the full side-by-side run and `croupier_testkit::bench` for the parts.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use clap::{Parser, Subcommand};
use croupier_testkit::bench::data::{Content, DataSet, Shape};
use croupier_testkit::bench::load::{self, Auth, AuthProtocol, LoadConfig, Mode, RunStats};
use croupier_testkit::bench::procfs::{Proc, RssSampler};
use croupier_testkit::bench::raw;
use croupier_testkit::bench::report::{self, median};

#[derive(Parser)]
#[command(
    name = "croupier-shuffle-bench",
    about = "Benchmark Spark external shuffle services: create Spark-layout shuffle files, drive concurrent \
             verified fetches, measure the server's CPU and memory, serve the same bytes raw for the limit.",
    after_help = "Typical flow (bench/shuffle.sh does all of this for ours, Spark's and the raw server):\n  \
        croupier-shuffle-bench gen --data-dir /tmp/d --shuffle-id 2 --maps 64 --reduces 64 --block-size 32768\n  \
        croupier-shuffle-service --host 127.0.0.1 --port 7337 &\n  \
        croupier-shuffle-bench run --data-dir /tmp/d --port 7337 --shuffle-id 2 --connections 64 --server-pid $!\n\n\
        Every received byte is compared with the data set's deterministic content; any difference, \
        RpcFailure or ChunkFetchFailure makes `run` exit non-zero."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write one shuffle (maps × reduces blocks of block-size bytes) in Spark's on-disk layout.
    Gen {
        /// Data set root; executors' local dirs are <root>/blockmgr-{0,1}.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 0)]
        shuffle_id: i32,
        #[arg(long, default_value_t = 64)]
        maps: u32,
        #[arg(long, default_value_t = 64)]
        reduces: u32,
        /// Bytes per (map, reduce) block.
        #[arg(long, default_value_t = 32 << 10)]
        block_size: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Register the data set's executor, then fetch and verify for a duration or a count.
    Run(RunArgs),
    /// Serve the data set with a minimal sendfile server (the physical limit).
    RawServer {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// 0 picks an ephemeral port; `listening on <addr>` goes to stderr once bound.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// RegisterExecutor load: CONNECTIONS clients each send RegisterExecutor RPCs back to back
    /// (one in flight per connection) for SECONDS, or COUNT RPCs in all when given (to preload
    /// a service's store). Prints `register server=<label> … rpcs_per_s=… p50_ms=… p99_ms=…`.
    Register {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "ours")]
        label: String,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Send exactly this many RPCs in all instead of running for SECONDS.
        #[arg(long)]
        count: Option<u64>,
        /// Mesos drivers too: one RPC in ten is a RegisterDriver (timed) followed by a
        /// ShuffleServiceHeartbeat (one-way, untimed), the rest RegisterExecutor.
        #[arg(long)]
        with_driver: bool,
    },
    /// Registration and heartbeat churn for a soak (bench/soak.sh): every PERIOD_MS one new
    /// app registers its driver (heartbeat timeout TIMEOUT_MS) and EXECUTORS executors (local
    /// dirs under WORK_DIR), and every live app heartbeats; an app goes silent after LIFE
    /// periods, for the service to clean up. Rides out service restarts: a refused or closed
    /// connection is reconnected (counted as `reconnects`); an RpcFailure the service answers is
    /// a failure. Prints a `churn ...` line every minute and at the end; exits non-zero on any
    /// failure.
    Churn {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 600.0)]
        seconds: f64,
        #[arg(long, default_value_t = 500)]
        period_ms: u64,
        #[arg(long, default_value_t = 2)]
        executors: u32,
        #[arg(long, default_value_t = 20)]
        life: u64,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: i64,
        #[arg(long)]
        work_dir: PathBuf,
    },
    /// Cold start-up: spawn COMMAND, time until 127.0.0.1:PORT accepts a connection, stop it
    /// (SIGTERM). Repeats RUNS times and prints `startup server=<label> ms=<median> …`.
    Startup {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "ours")]
        label: String,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Give up on one start after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// The server command line.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Many connections: opens connections in steps (e.g. 1000,5000,10000), prints the server's
    /// settled VmRSS at each (`conns server=<label> connections=N rss_kib=… kib_per_conn=…`),
    /// then sends one request on every connection and checks every answer (`phase=answered`).
    /// Raises its own open-file limit (as root, past the hard limit).
    Conns {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long)]
        port: u16,
        /// The server process whose VmRSS is read.
        #[arg(long)]
        server_pid: u32,
        #[arg(long, default_value = "ours")]
        label: String,
        /// Connection counts at which the RSS is read, ascending.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
        steps: Vec<usize>,
        /// Seconds to wait for each answer.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Print a process's memory in MB: current VmRSS, or VmHWM (peak) with --peak.
    Mem {
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        peak: bool,
    },
    /// Read `result`/`startup`/`rss`/`job` lines from FILEs and print the side-by-side table.
    Report { files: Vec<PathBuf> },
    /// Evict one shuffle's data and index files from the page cache
    /// (`posix_fadvise(POSIX_FADV_DONTNEED)` on each, after `fdatasync`): the cold-cache rows
    /// when the page cache cannot be dropped as a whole (`/proc/sys/vm/drop_caches` needs root).
    Evict {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        shuffle_id: i32,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    /// Which shuffle of the data set to fetch (its manifest gives maps, reduces, block size).
    #[arg(long, default_value_t = 0)]
    shuffle_id: i32,
    #[arg(long, value_enum, default_value_t = Mode::Fetch)]
    mode: Mode,
    /// Concurrent connections (one request in flight on each).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured seconds per repeat (ignored with --fetches).
    #[arg(long, default_value_t = 2.0)]
    duration_s: f64,
    /// Fixed number of fetches per connection instead of a duration.
    #[arg(long)]
    fetches: Option<u64>,
    /// Chunks per request (distinct maps; Spark groups a reducer's blocks per executor).
    #[arg(long, default_value_t = 8)]
    blocks_per_fetch: u32,
    /// Reduces per chunk in batch mode.
    #[arg(long, default_value_t = 4)]
    batch_reduces: u32,
    /// Repeats; throughput and latency quantiles are the medians over repeats.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Unmeasured seconds of the same load before the repeats.
    #[arg(long, default_value_t = 0.0)]
    warmup_s: f64,
    /// Server process to measure (CPU seconds, RSS) from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Server label for the result line (ours, java, raw).
    #[arg(long, default_value = "ours")]
    label: String,
    /// Extra tag for the result line (`tag=<TAG>`): `report` keeps tagged cells apart, e.g.
    /// `pinned` (client and server on different cores) or `cold` (page cache evicted first).
    #[arg(long)]
    tag: Option<String>,
    /// Skip RegisterExecutor (already registered).
    #[arg(long)]
    no_register: bool,
    /// Print a `slow_fetch` line (stderr) with per-step times for every fetch taking at least
    /// this many milliseconds (where a stalled fetch waited).
    #[arg(long)]
    trace_slow_ms: Option<u64>,
    /// Client runtime threads.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Authenticate every connection (the server runs with spark.authenticate=true).
    #[arg(long, value_enum)]
    auth: Option<AuthProtocol>,
    /// The shared secret for --auth.
    #[arg(long, default_value = "croupier-bench-secret")]
    secret: String,
    /// Instead of the load: open this many connections one after another (authenticate, one
    /// RegisterExecutor, close) and print a `handshake` line with the per-connection times.
    #[arg(long)]
    handshakes: Option<usize>,
}

fn main() -> Result<()> {
    // The same --version line as every Croupier binary.
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(
        &<Cli as clap::CommandFactory>::command()
            .version(croupier_ops::build_info::version())
            .get_matches(),
    )?;
    match cli.cmd {
        Cmd::Gen {
            data_dir,
            shuffle_id,
            maps,
            reduces,
            block_size,
            seed,
        } => {
            let ds = DataSet::at(&data_dir)?;
            let shape = Shape {
                shuffle_id,
                maps,
                reduces,
                block_size,
                seed,
            };
            let t = Instant::now();
            let wrote = ds.create(&shape)?;
            println!(
                "gen shuffle={shuffle_id} maps={maps} reduces={reduces} block={block_size} bytes={} {} in {:.2}s at {}",
                shape.total_bytes(),
                if wrote { "written" } else { "already present" },
                t.elapsed().as_secs_f64(),
                ds.root.display()
            );
        }
        Cmd::Run(args) => run(args)?,
        Cmd::Register {
            host,
            port,
            label,
            connections,
            seconds,
            count,
            with_driver,
        } => register_load(
            &host,
            port,
            &label,
            connections,
            seconds,
            count,
            with_driver,
        )?,
        Cmd::Churn {
            host,
            port,
            seconds,
            period_ms,
            executors,
            life,
            timeout_ms,
            work_dir,
        } => churn(
            &host,
            port,
            ChurnArgs {
                seconds,
                period: Duration::from_millis(period_ms.max(1)),
                executors,
                life,
                timeout_ms,
                work_dir,
            },
        )?,
        Cmd::RawServer {
            data_dir,
            host,
            port,
        } => {
            let ds = DataSet::at(&data_dir)?;
            let addr: SocketAddr = format!("{host}:{port}")
                .parse()
                .with_context(|| format!("bad --host/--port {host}:{port}"))?;
            raw::serve(&ds, addr)?;
        }
        Cmd::Startup {
            port,
            label,
            runs,
            timeout_s,
            command,
        } => startup(port, &label, runs, timeout_s, &command)?,
        Cmd::Conns {
            host,
            port,
            server_pid,
            label,
            steps,
            timeout_s,
        } => conns(&host, port, server_pid, &label, &steps, timeout_s)?,
        Cmd::Mem { pid, peak } => {
            let p = Proc(pid);
            let b = if peak { p.hwm() } else { p.rss() }
                .with_context(|| format!("reading memory of server pid {pid}"))?;
            println!("{:.1}", b as f64 / (1 << 20) as f64);
        }
        Cmd::Evict {
            data_dir,
            shuffle_id,
        } => {
            let ds = DataSet::at(&data_dir)?;
            let shape = ds.load(shuffle_id)?;
            let mut bytes = 0u64;
            for map in 0..shape.maps {
                for path in [
                    ds.data_path(shuffle_id, map),
                    ds.index_path(shuffle_id, map),
                ] {
                    bytes +=
                        evict(&path).with_context(|| format!("evicting {}", path.display()))?;
                }
            }
            println!(
                "evicted shuffle={shuffle_id} files={} bytes={bytes}",
                2 * shape.maps
            );
        }
        Cmd::Report { files } => {
            let mut recs = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading results file {}", f.display()))?;
                recs.extend(text.lines().filter_map(report::Record::parse));
            }
            print!("{}", report::render(&recs));
        }
    }
    Ok(())
}

/// Drops one file's pages from the page cache; returns its size.
fn evict(path: &std::path::Path) -> Result<u64> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    f.sync_data()?;
    let len = f.metadata()?.len();
    // SAFETY: a valid open descriptor; offset 0, length 0 means the whole file.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        bail!(
            "posix_fadvise(DONTNEED): {}",
            std::io::Error::from_raw_os_error(r)
        );
    }
    Ok(len)
}

fn run(a: RunArgs) -> Result<()> {
    let ds = DataSet::at(&a.data_dir)?;
    let shape = ds.load(a.shuffle_id)?;
    let addr: SocketAddr = format!("{}:{}", a.host, a.port)
        .parse()
        .with_context(|| format!("bad --host/--port {}:{}", a.host, a.port))?;
    if a.connections == 0 || a.repeat == 0 {
        bail!("--connections and --repeat must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.client_threads.max(1))
        .enable_all()
        .build()?;
    let content = Arc::new(Content::new(&shape));
    let base = LoadConfig {
        addr,
        shape: shape.clone(),
        mode: a.mode,
        connections: a.connections,
        duration: a
            .fetches
            .is_none()
            .then(|| Duration::from_secs_f64(a.duration_s)),
        fetches_per_conn: a.fetches,
        blocks_per_fetch: a.blocks_per_fetch,
        batch_reduces: a.batch_reduces,
        auth: a.auth.map(|protocol| Auth {
            secret: a.secret.clone(),
            protocol,
        }),
        trace_slow: a.trace_slow_ms.map(Duration::from_millis),
    };
    let auth_name = a
        .auth
        .and_then(|p| p.to_possible_value())
        .map_or_else(|| "none".to_owned(), |v| v.get_name().to_owned());
    if let Some(n) = a.handshakes {
        let mut t = rt.block_on(load::handshakes(addr, &ds, base.auth.as_ref(), n.max(1)))?;
        t.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "handshake server={} auth={auth_name} n={} p50_ms={:.3} p90_ms={:.3} min_ms={:.3}",
            a.label,
            t.len(),
            ms(t[t.len() / 2]),
            ms(t[(t.len() * 9 / 10).min(t.len() - 1)]),
            ms(t[0])
        );
        return Ok(());
    }
    if !a.no_register {
        rt.block_on(load::register(addr, &ds, base.auth.as_ref()))?;
    }
    if a.warmup_s > 0.0 {
        let warm = LoadConfig {
            duration: Some(Duration::from_secs_f64(a.warmup_s)),
            fetches_per_conn: None,
            ..base.clone()
        };
        rt.block_on(load::run(Arc::new(warm), content.clone()))
            .context("warm-up")?;
    }
    let server = a.server_pid.map(Proc);
    let cpu0 = server.map(|p| p.cpu_seconds()).transpose()?;
    let sampler = server.map(|p| RssSampler::start(p, Duration::from_millis(20)));
    let wall = Instant::now();
    let cfg = Arc::new(base);
    let mut runs: Vec<RunStats> = Vec::new();
    for i in 0..a.repeat {
        let s = rt.block_on(load::run(cfg.clone(), content.clone()))?;
        eprintln!(
            "  [{} {} {}B x{} conns, repeat {}] {:.0} blocks/s {:.3} GB/s p50 {:.2} ms p99 {:.2} ms ({} fetches, {} bytes verified)",
            a.label,
            a.mode.name(),
            shape.block_size,
            a.connections,
            i + 1,
            s.blocks_per_s(),
            s.gb_per_s(),
            s.quantile_ms(0.5),
            s.quantile_ms(0.99),
            s.fetches,
            s.verified_bytes
        );
        runs.push(s);
    }
    let wall = wall.elapsed().as_secs_f64();
    let cpu = match (server, cpu0) {
        (Some(p), Some(c0)) => Some(p.cpu_seconds()? - c0),
        _ => None,
    };
    let peak = sampler.map(RssSampler::stop);
    let hwm = server.map(|p| p.hwm()).transpose()?;
    let m = |f: &dyn Fn(&RunStats) -> f64| median(runs.iter().map(f).collect());
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    let mut line = format!(
        "result server={} auth={auth_name} shuffle={} block={} conns={} mode={} blocks_per_fetch={} repeats={} blocks_per_s={:.1} gb_per_s={:.4} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} fetches={} blocks={} bytes={} verified_bytes={}",
        a.label,
        shape.shuffle_id,
        shape.block_size,
        a.connections,
        a.mode.name(),
        a.blocks_per_fetch.min(shape.maps),
        a.repeat,
        m(&|s| s.blocks_per_s()),
        m(&|s| s.gb_per_s()),
        m(&|s| s.quantile_ms(0.5)),
        m(&|s| s.quantile_ms(0.99)),
        m(&|s| s.quantile_ms(0.999)),
        runs.iter().map(|s| s.fetches).sum::<u64>(),
        runs.iter().map(|s| s.blocks).sum::<u64>(),
        runs.iter().map(|s| s.bytes).sum::<u64>(),
        runs.iter().map(|s| s.verified_bytes).sum::<u64>(),
    );
    if let Some(t) = &a.tag {
        line += &format!(" tag={t}");
    }
    if let Some(c) = cpu {
        line += &format!(
            " server_cpu_s={c:.3} server_cpu_pct={:.0}",
            100.0 * c / wall.max(1e-9)
        );
    }
    if let Some(p) = peak {
        line += &format!(" server_rss_peak_mb={:.1}", mb(p));
    }
    if let Some(h) = hwm {
        line += &format!(" server_hwm_mb={:.1}", mb(h));
    }
    println!("{line}");
    Ok(())
}

fn conns(
    host: &str,
    port: u16,
    pid: u32,
    label: &str,
    steps: &[usize],
    timeout_s: u64,
) -> Result<()> {
    use croupier_testkit::bench::conns;
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("bad --host/--port {host}:{port}"))?;
    let most = steps.iter().copied().max().unwrap_or(0);
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--steps must be ascending: {steps:?}");
    }
    let limit = conns::raise_nofile(most as u64 + 256)?;
    if limit < most as u64 + 16 {
        bail!("the open-file limit is {limit}, too low for {most} connections (raise ulimit -n)");
    }
    let server = Proc(pid);
    let settle = Duration::from_secs(10);
    let base = conns::settled_rss_kib(server, settle)?;
    println!("conns server={label} connections=0 phase=idle rss_kib={base} kib_per_conn=0");
    let mut held = Vec::with_capacity(most);
    let t = Instant::now();
    for &n in steps {
        conns::open_to(addr, &mut held, n)?;
        let rss = conns::settled_rss_kib(server, settle)?;
        println!(
            "conns server={label} connections={n} phase=idle rss_kib={rss} kib_per_conn={:.2} open_s={:.1}",
            rss.saturating_sub(base) as f64 / n.max(1) as f64,
            t.elapsed().as_secs_f64()
        );
    }
    let answered = conns::ask_all(addr, &mut held, Duration::from_secs(timeout_s))?;
    let rss = conns::settled_rss_kib(server, settle)?;
    println!(
        "conns server={label} connections={answered} phase=answered rss_kib={rss} kib_per_conn={:.2}",
        rss.saturating_sub(base) as f64 / answered.max(1) as f64
    );
    Ok(())
}

fn register_load(
    host: &str,
    port: u16,
    label: &str,
    connections: usize,
    seconds: f64,
    count: Option<u64>,
    with_driver: bool,
) -> Result<()> {
    use croupier_shuffle_service::protocol::ExecutorShuffleInfo;
    use croupier_testkit::shuffle::Client;
    use std::sync::atomic::{AtomicU64, Ordering};
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("bad --host/--port {host}:{port}"))?;
    if connections == 0 {
        bail!("--connections must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let issued = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(seconds);
    let mut lat: Vec<Duration> = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..connections {
            let issued = issued.clone();
            tasks.push(tokio::spawn(async move {
                let client = Client::connect(addr).await?;
                let mut lat = Vec::new();
                loop {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    let more = match count {
                        Some(total) => n < total,
                        None => Instant::now() < deadline,
                    };
                    if !more {
                        break;
                    }
                    // Ten executors per app, as a busy agent would see them.
                    let app = format!("app-20261203000000-{:04}", n / 10);
                    let info = ExecutorShuffleInfo {
                        local_dirs: vec![
                            format!("/var/lib/mesos/slaves/S0/frameworks/{app}/executors/{n}/runs/latest/blockmgr-{c}"),
                            format!("/tmp/spark-{app}/blockmgr-{n}"),
                        ],
                        sub_dirs_per_local_dir: 64,
                        shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
                    };
                    let t = Instant::now();
                    if with_driver && n.is_multiple_of(10) {
                        client.register_driver(&app, 120_000).await?;
                        lat.push(t.elapsed());
                        client.heartbeat(&app).await?;
                    } else {
                        client.register_executor(&app, &n.to_string(), info).await?;
                        lat.push(t.elapsed());
                    }
                }
                anyhow::Ok(lat)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.context("load task panicked")??);
        }
        anyhow::Ok(all)
    })?;
    let wall = t0.elapsed().as_secs_f64();
    lat.sort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    println!(
        "register server={label} conns={connections} rpcs={} seconds={wall:.2} rpcs_per_s={:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        lat.len(),
        lat.len() as f64 / wall.max(1e-9),
        q(0.5),
        q(0.99),
        q(1.0)
    );
    Ok(())
}

struct ChurnArgs {
    seconds: f64,
    period: Duration,
    executors: u32,
    life: u64,
    timeout_ms: i64,
    work_dir: PathBuf,
}

#[derive(Default, Debug)]
struct ChurnStats {
    apps: u64,
    registrations: u64,
    heartbeats: u64,
    reconnects: u64,
    connect_refused: u64,
    failures: u64,
    silent: u64,
}

impl ChurnStats {
    fn line(&self, secs: f64) -> String {
        format!(
            "churn t={secs:.0}s apps={} registrations={} heartbeats={} silent_apps={} reconnects={} connects_refused={} failures={}",
            self.apps,
            self.registrations,
            self.heartbeats,
            self.silent,
            self.reconnects,
            self.connect_refused,
            self.failures
        )
    }
}

fn churn(host: &str, port: u16, a: ChurnArgs) -> Result<()> {
    use croupier_shuffle_service::protocol::ExecutorShuffleInfo;
    use croupier_testkit::shuffle::{Client, ClientError};
    use std::collections::VecDeque;
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("bad --host/--port {host}:{port}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(a.seconds);
    let stats = rt.block_on(async {
        let mut st = ChurnStats::default();
        let mut client: Option<Client> = None;
        // (app id, the period it registered in)
        let mut live: VecDeque<(String, u64)> = VecDeque::new();
        let mut tick = tokio::time::interval(a.period);
        let mut next_report = t0 + Duration::from_secs(60);
        let mut k: u64 = 0;
        while Instant::now() < deadline {
            tick.tick().await;
            k += 1;
            if Instant::now() >= next_report {
                println!("{}", st.line(t0.elapsed().as_secs_f64()));
                next_report += Duration::from_secs(60);
            }
            while live.front().is_some_and(|(_, born)| k - born > a.life) {
                live.pop_front();
                st.silent += 1;
            }
            if client.is_none() {
                match Client::connect(addr).await {
                    Ok(c) => client = Some(c),
                    Err(_) => {
                        // The service is restarting.
                        st.connect_refused += 1;
                        continue;
                    }
                }
            }
            let Some(c) = client.as_ref() else {
                continue;
            };
            let app = format!("app-20261203000000-churn-{k:06}");
            let step: Result<(), ClientError> = async {
                c.register_driver(&app, a.timeout_ms).await?;
                st.registrations += 1;
                for e in 0..a.executors {
                    let dir = a.work_dir.join(&app).join(format!("blockmgr-{e}"));
                    std::fs::create_dir_all(&dir)
                        .map_err(|source| ClientError::Io { peer: addr, source })?;
                    let info = ExecutorShuffleInfo {
                        local_dirs: vec![dir.display().to_string()],
                        sub_dirs_per_local_dir: 64,
                        shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
                    };
                    c.register_executor(&app, &e.to_string(), info).await?;
                    st.registrations += 1;
                }
                st.apps += 1;
                live.push_back((app.clone(), k));
                for (id, _) in &live {
                    c.heartbeat(id).await?;
                    st.heartbeats += 1;
                }
                Ok(())
            }
            .await;
            match step {
                Ok(()) => {}
                Err(e @ (ClientError::Rpc { .. } | ClientError::Protocol { .. })) => {
                    st.failures += 1;
                    eprintln!("churn: {app}: {e}");
                }
                Err(_) => {
                    // The connection broke (a restart): reconnect at the next period.
                    st.reconnects += 1;
                    client = None;
                }
            }
        }
        st
    });
    println!("{}", stats.line(t0.elapsed().as_secs_f64()));
    if stats.failures > 0 {
        bail!("{} registrations or heartbeats failed", stats.failures);
    }
    Ok(())
}

fn startup(port: u16, label: &str, runs: usize, timeout_s: u64, command: &[String]) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (prog, args) = command
        .split_first()
        .context("startup needs a command after --")?;
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            bail!("{addr} already accepts connections before the server was started: pick a free --port");
        }
        let t0 = Instant::now();
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning server {prog}"))?;
        let limit = Duration::from_secs(timeout_s);
        let up = loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_ok() {
                break Some(t0.elapsed());
            }
            if let Ok(Some(st)) = child.try_wait() {
                bail!("server {prog} exited with {st} before accepting on {addr}");
            }
            if t0.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stop = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if stop.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match up {
            Some(d) => times.push(d.as_secs_f64() * 1000.0),
            None => bail!("server {prog} did not accept on {addr} within {timeout_s}s"),
        }
    }
    let all: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    println!(
        "startup server={label} ms={:.1} runs={}",
        median(times.clone()),
        all.join(",")
    );
    Ok(())
}
