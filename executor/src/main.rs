//! The `croupier-executor` binary: parse the configuration, become a subreaper, run the event
//! loop on a `current_thread` runtime, exit with its code.

use std::io::Write;

use anyhow::Context;
use croupier_executor::config::{self, Config, ConfigError, Parsed};
use croupier_executor::executor::Executor;
use croupier_executor::fetcher::FetchConfig;
use croupier_executor::process;

fn main() {
    std::process::exit(match run() {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!: it panics when stderr is gone.
            let _ = writeln!(std::io::stderr(), "croupier-executor: {e:#}");
            1
        }
    })
}

fn run() -> anyhow::Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Every problem of both the executor's and the fetcher's settings, in one message.
    let (cfg, fetch_cfg) = match (
        Config::from_env_and_args(&args),
        FetchConfig::check_env_and_flags(&args),
    ) {
        (Ok(Parsed::Help), _) => {
            let _ = std::io::stdout().write_all(config::usage().as_bytes());
            return Ok(0);
        }
        (Ok(Parsed::Version), _) => {
            let line = croupier_ops::build_info::version_line("croupier-executor");
            let _ = writeln!(std::io::stdout(), "{line}");
            return Ok(0);
        }
        (Ok(Parsed::Run(cfg)), Ok(fetch_cfg)) => (*cfg, fetch_cfg),
        (cfg, fetch) => {
            let mut problems = cfg.err().map(|e| e.problems).unwrap_or_default();
            problems.extend(fetch.err().into_iter().flatten().map(|e| e.to_string()));
            return Err(ConfigError { problems }.into());
        }
    };
    // Held for the life of the process.
    let _log = croupier_ops::log::init(cfg.log_format);
    // Every line the executor logs carries these fields (as JSON fields with --log-format=json).
    let span = tracing::info_span!(
        "executor",
        framework_id = %cfg.framework_id,
        executor_id = %cfg.executor_id
    );
    let _entered = span.enter();
    tracing::info!(
        "croupier-executor {} starting: {}",
        croupier_ops::build_info::version(),
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
    // TLS files are read (and the agent's reverse-DNS name looked up) here, before the
    // runtime: a bad file ends the executor at once with its name.
    let tls = match &cfg.tls {
        None => None,
        Some(_) if cfg.domain_socket.is_some() => {
            tracing::info!(
                "LIBPROCESS_SSL_ENABLED is set, but the agent is reached over MESOS_DOMAIN_SOCKET, \
                 which carries plain HTTP (as libprocess's http+unix)"
            );
            None
        }
        Some(s) => {
            tracing::info!("TLS to the agent: {}", s.summary());
            for note in &s.notes {
                tracing::warn!("{note}");
            }
            if cfg.token.is_some() && !s.verify_server_cert {
                tracing::warn!(
                    "MESOS_EXECUTOR_AUTHENTICATION_TOKEN is set but the agent's certificate is \
                     not verified (LIBPROCESS_SSL_VERIFY_SERVER_CERT is off): the token is sent \
                     to whatever answers at {}",
                    cfg.agent_endpoint
                );
            }
            let ip = agent_ip(&cfg.agent_endpoint)?;
            Some(std::sync::Arc::new(
                croupier_executor::tls::AgentTls::new(s, ip).context("TLS to the agent")?,
            ))
        }
    };
    if let Err(e) = process::become_subreaper() {
        tracing::warn!("cannot become a child subreaper ({e}); orphans of tasks may escape");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    // The span stays entered on this (the runtime's only) thread, so every task's lines
    // carry it too.
    Ok(rt.block_on(async move {
        sigint_means_sigterm();
        Executor::new(cfg, fetch_cfg, tls).run().await
    }))
}

/// The IP of `MESOS_AGENT_ENDPOINT` (`IP:PORT`), which TLS verifies the agent by.
fn agent_ip(endpoint: &str) -> anyhow::Result<std::net::IpAddr> {
    endpoint
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .with_context(|| {
            format!("MESOS_AGENT_ENDPOINT={endpoint:?} is not IP:PORT, which TLS needs to verify the agent")
        })
}

/// SIGINT (Ctrl-C in a terminal, some supervisors) stops the executor as SIGTERM does: the
/// event loop watches SIGTERM, so SIGINT is turned into one.
fn sigint_means_sigterm() {
    use tokio::signal::unix::{signal, SignalKind};
    // Registering SIGTERM here too means a SIGTERM raised below is never the default action
    // (exit), even before the event loop has registered its own listener.
    let (Ok(mut int), Ok(term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot watch SIGINT; only SIGTERM stops the executor gracefully");
        return;
    };
    tokio::spawn(async move {
        let _keep = term;
        while int.recv().await.is_some() {
            tracing::info!("received SIGINT: shutting down as for SIGTERM");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
        }
    });
}
