//! The `croupier-executor` binary: parse the configuration, become a subreaper, run the event
//! loop on a `current_thread` runtime, exit with its code.

use anyhow::Context;
use croupier_executor::config::{self, Config, Parsed};
use croupier_executor::executor::Executor;
use croupier_executor::fetcher::FetchConfig;
use croupier_executor::process;

fn main() {
    std::process::exit(match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("croupier-executor: {e:#}");
            1
        }
    })
}

fn run() -> anyhow::Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match Config::from_env_and_args(&args)? {
        Parsed::Help => {
            print!("{}", config::usage());
            return Ok(0);
        }
        Parsed::Run(cfg) => *cfg,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let fetch_cfg = FetchConfig::from_env_and_flags(&args).context("fetcher configuration")?;
    tracing::info!(
        "croupier-executor {} starting: {}",
        env!("CARGO_PKG_VERSION"),
        cfg.summary()
    );
    tracing::info!("fetcher: {fetch_cfg:?}");
    for f in &cfg.unknown_flags {
        tracing::warn!("ignoring unknown flag {f}");
    }
    if let config::Mode::DropIn(f) = &cfg.mode {
        for (name, value, why) in f.known_but_unused() {
            tracing::info!("known mesos-executor flag --{name}={value} is not used: {why}");
        }
    }
    if let Some(sock) = &cfg.domain_socket {
        tracing::info!("MESOS_DOMAIN_SOCKET is set: talking to the agent over {sock}");
    }
    if let Err(e) = process::become_subreaper() {
        tracing::warn!("cannot become a child subreaper ({e}); orphans of tasks may escape");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    Ok(rt.block_on(async move { Executor::new(cfg, fetch_cfg).run().await }))
}
