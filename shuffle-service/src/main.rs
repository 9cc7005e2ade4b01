//! The `croupier-shuffle-service` binary: parse configuration, bind, serve until SIGTERM/SIGINT.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use croupier_shuffle_service::{run, Cli, Config, Shared};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let opts = std::env::var("SPARK_SHUFFLE_OPTS").ok();
    let conf_dir = std::env::var_os("SPARK_CONF_DIR").map(std::path::PathBuf::from);
    let config = Config::load(&cli, opts.as_deref(), conf_dir.as_deref())?;
    tracing::info!(
        host = %config.host,
        port = config.port,
        index_cache_size = config.index_cache_size,
        max_chunks_being_transferred = config.max_chunks_being_transferred,
        fetch_rdd_enabled = config.fetch_rdd_enabled,
        cleaner_interval_ms = config.cleaner_interval.as_millis() as u64,
        server_threads = config.server_threads,
        max_request_frame = config.max_request_frame,
        "configuration"
    );
    for k in &config.unknown_keys {
        tracing::warn!("unknown setting {k} ignored");
    }
    for k in &config.inert_keys {
        tracing::info!("setting {k} accepted; it has no effect on this service");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server_threads)
        .thread_name("shuffle-server")
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let addr = std::net::SocketAddr::new(config.host, config.port);
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot bind {addr} (spark.shuffle.service.port / --host / --port)")
        })?;
        let local = listener
            .local_addr()
            .context("cannot read the bound address")?;
        tracing::info!("listening on {local}");
        let shared = Shared::new(config);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let sig = wait_for_signal().await;
            tracing::info!("received {sig}, shutting down");
            stop.cancel();
        });
        run(listener, shared.clone(), shutdown).await;
        tracing::info!("metrics: {}", shared.metrics.render(shared.registry.len()));
        anyhow::Ok(())
    })?;
    // Connections still open are dropped with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, only a kill ends us; wait forever.
        std::future::pending::<()>().await;
        return "nothing";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
