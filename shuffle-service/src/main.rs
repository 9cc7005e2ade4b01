//! The `croupier-shuffle-service` binary: parse configuration, bind, serve until SIGTERM/SIGINT.

use std::io::Write;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use croupier_shuffle_service::agent::AgentClient;
use croupier_shuffle_service::store::{Opened, Restored, Store};
use croupier_shuffle_service::{admin, notify, run, Cli, Config, Shared};
use tokio_util::sync::CancellationToken;

fn main() -> std::process::ExitCode {
    match start() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: it panics when stderr is gone.
            let _ = writeln!(std::io::stderr(), "croupier-shuffle-service: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The clap definition behind `--help`, `--version` and the man page.
fn command() -> clap::Command {
    Cli::command().version(croupier_ops::build_info::version())
}

fn start() -> anyhow::Result<()> {
    let cli = Cli::from_arg_matches(&command().get_matches())?;
    let opts = std::env::var("SPARK_SHUFFLE_OPTS").ok();
    let conf_dir = std::env::var_os("SPARK_CONF_DIR").map(std::path::PathBuf::from);
    let config = Config::load(&cli, opts.as_deref(), conf_dir.as_deref())?;
    // Held for the life of the process.
    let _log = croupier_ops::log::init(config.log_format);
    croupier_shuffle_service::faults::configure_from_env();
    tracing::info!(
        version = croupier_ops::build_info::version(),
        host = %config.host,
        port = config.port,
        index_cache_size = config.index_cache_size,
        max_chunks_being_transferred = config.max_chunks_being_transferred,
        fetch_rdd_enabled = config.fetch_rdd_enabled,
        cleaner_interval_ms = config.cleaner_interval.as_millis() as u64,
        server_threads = config.server_threads,
        blocking_threads = config.blocking_threads,
        send_threads = config.send_threads,
        max_request_frame = config.max_request_frame,
        connection_timeout_ms = config.connection_timeout.as_millis() as u64,
        tcp_keepalive = config.tcp_keepalive,
        admin_address = config
            .admin_address
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
        state_dir = ?config.state_dir,
        state_sync = config.state_sync.as_str(),
        agent_address = config.agent_address.as_deref().unwrap_or("none (heartbeat-only cleanup)"),
        agent_principal = config.agent_principal.as_deref().unwrap_or("-"),
        agent_secret_file = ?config.agent_secret_file,
        agent_confirm_interval_ms = config.agent_confirm_interval.as_millis() as u64,
        auth = %config.auth.describe(),
        systemd_notify = notify::enabled(),
        log_format = %config.log_format,
        "configuration"
    );
    for k in &config.unknown_keys {
        tracing::warn!("unknown setting {k} ignored");
    }
    for (k, why) in &config.ignored_keys {
        tracing::warn!(
            "setting {k} is honoured by Spark's shuffle service but ignored here: {why}"
        );
    }
    for k in &config.inert_keys {
        tracing::info!("setting {k} accepted; it has no effect on this service");
    }
    let agent = match &config.agent_address {
        Some(addr) => Some(
            AgentClient::new(
                addr,
                config.agent_principal.as_deref(),
                config.agent_secret_file.as_deref(),
            )
            .context("cannot set up the Mesos agent client")?,
        ),
        None => None,
    };
    // Registrations are read back before the port is bound: the first request after a restart
    // already finds them.
    let started = std::time::Instant::now();
    let (store, restored, start) = open_store(&config)?;
    let shared = Shared::new(config, store, agent);
    match start {
        StoreStart::Opened | StoreStart::NotConfigured => {}
        StoreStart::MovedAside => {
            shared
                .metrics
                .store_corrupt
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        StoreStart::Unavailable => {
            shared
                .metrics
                .store_unavailable
                .store(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    if let Some(r) = restored {
        let (execs, drivers) = shared.restore(r);
        tracing::info!(
            "restored {execs} executor and {drivers} driver registration(s) in {:?}",
            started.elapsed()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(shared.config.server_threads)
        .max_blocking_threads(shared.config.blocking_threads)
        .thread_name("shuffle-server")
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        // Handlers first: a SIGTERM arriving right after the "listening on" line must already
        // mean a clean shutdown.
        let signals = Signals::install().context("cannot install SIGTERM/SIGINT handlers")?;
        let config = &shared.config;
        let addr = std::net::SocketAddr::new(config.host, config.port);
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot bind {addr} (spark.shuffle.service.port / --host / --port)")
        })?;
        let local = listener
            .local_addr()
            .context("cannot read the bound address")?;
        // The admin listener is bound before the "listening on" line (which start scripts and
        // tests wait for), so a bad croupier.admin.address fails the start visibly.
        let admin_listener = match config.admin_address {
            Some(addr) => Some(admin::bind(addr).await?),
            None => None,
        };
        let shutdown = CancellationToken::new();
        tracing::info!("listening on {local}");
        if let Some(admin_listener) = admin_listener {
            let bound = admin_listener
                .local_addr()
                .context("cannot read the admin endpoint's bound address")?;
            tracing::info!("admin endpoint listening on {bound}");
            tokio::spawn(admin::serve(
                admin_listener,
                shared.clone(),
                shutdown.clone(),
            ));
        }
        notify::ready(&format!("serving on {local}"));
        if let Some(interval) = notify::watchdog_interval() {
            tracing::info!("systemd watchdog: pinging every {:?}", interval / 2);
            tokio::spawn(notify::watchdog(interval, shutdown.clone()));
        }
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let sig = signals.wait().await;
            // Stop first: nothing after this line may keep the service from stopping.
            stop.cancel();
            notify::stopping();
            tracing::info!("received {sig}, shutting down");
        });
        run(listener, shared.clone(), shutdown).await;
        if let Some(store) = shared.store.clone() {
            // A clean close spares the next start-up redb's repair pass.
            match tokio::task::spawn_blocking(move || store.close()).await {
                Ok(Ok(())) => tracing::info!("registration store closed"),
                Ok(Err(e)) => tracing::warn!("{e}"),
                Err(e) => tracing::warn!("closing the registration store failed: {e}"),
            }
        }
        tracing::info!("metrics: {}", shared.metrics.render(shared.registry.len()));
        anyhow::Ok(())
    })?;
    // Connections still open are dropped with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// Opens the registration store named by `croupier.state.dir`. An unreadable store never stops
/// the service (it is moved aside, and the service starts empty); only a store held by another
/// process does. Returns the store, what it held, and whether it had to be moved aside.
/// How the registration store came up.
enum StoreStart {
    Opened,
    /// In memory by configuration (`croupier.state.dir=none`, or `--port 0`).
    NotConfigured,
    /// Opened after moving an unreadable file aside: counted as corrupt.
    MovedAside,
    /// Configured but not opened (in use, or unusable): in memory only until a restart.
    Unavailable,
}

fn open_store(config: &Config) -> anyhow::Result<(Option<Store>, Option<Restored>, StoreStart)> {
    let xdg = std::env::var_os("XDG_STATE_HOME");
    let home = std::env::var_os("HOME");
    let Some(dir) = config.state_dir.resolve(xdg.as_deref(), home.as_deref()) else {
        tracing::info!(
            "registrations are kept in memory only (croupier.state.dir is none, or unset with neither $XDG_STATE_HOME nor $HOME)"
        );
        return Ok((None, None, StoreStart::NotConfigured));
    };
    if config.port == 0 {
        tracing::info!(
            "registrations are kept in memory only: with an ephemeral port (--port 0) a restarted service could not be reached at the same port"
        );
        return Ok((None, None, StoreStart::NotConfigured));
    }
    match Store::open_with(&dir, config.port, config.state_sync) {
        Ok((store, restored, Opened::Clean)) => {
            tracing::info!(
                "registration store: {} (croupier.state.sync={})",
                store.path().display(),
                config.state_sync.as_str()
            );
            Ok((Some(store), Some(restored), StoreStart::Opened))
        }
        Ok((store, restored, Opened::MovedAside { reason, moved_to })) => {
            tracing::error!(
                "REGISTRATION STORE CORRUPT: {} could not be read ({reason}); it was moved to {} and the service starts with no registrations (executors registered before will fail to serve fetches until they re-register)",
                store.path().display(),
                moved_to.display()
            );
            Ok((Some(store), Some(restored), StoreStart::MovedAside))
        }
        Err(e @ croupier_shuffle_service::store::StoreError::InUse { .. }) => {
            // Another process holds it (an old instance still stopping, a second service with
            // another --host on this port, a backup tool): serve anyway rather than crash-loop
            // under systemd; its records stay untouched for their owner.
            tracing::error!(
                "REGISTRATION STORE IN USE: {e}; this service keeps its registrations in memory only until restarted"
            );
            Ok((None, None, StoreStart::Unavailable))
        }
        Err(e) => {
            tracing::error!(
                "REGISTRATION STORE UNUSABLE: {e}; registrations are kept in memory only"
            );
            Ok((None, None, StoreStart::Unavailable))
        }
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
