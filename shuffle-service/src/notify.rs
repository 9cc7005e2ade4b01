//! systemd's notification protocol (`Type=notify`, `WatchdogSec=`), through the `sd-notify`
//! crate. Everything here is a no-op when `NOTIFY_SOCKET` is unset (scripts, Marathon, tests).
//!
//! - `READY=1` once the shuffle listener is bound and the configuration is loaded;
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, from a task on the serving runtime, so a
//!   wedged runtime stops the pings and systemd restarts the service;
//! - `STOPPING=1` when SIGTERM/SIGINT arrives.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn send(what: &str, states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        let socket = std::env::var("NOTIFY_SOCKET").unwrap_or_default();
        tracing::warn!("cannot notify systemd of {what} through NOTIFY_SOCKET={socket}: {e}");
    }
}

/// Is a service manager listening?
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// `READY=1`, with a status line.
pub fn ready(status: &str) {
    send(
        "readiness",
        &[NotifyState::Ready, NotifyState::Status(status)],
    );
}

/// `STOPPING=1`.
pub fn stopping() {
    send(
        "stopping",
        &[NotifyState::Stopping, NotifyState::Status("shutting down")],
    );
}

/// The watchdog period asked for by the service manager (`WATCHDOG_USEC`, for this pid).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Pings the watchdog at half `interval` until `shutdown`. Spawn it on the serving runtime.
pub async fn watchdog(interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => send("watchdog ping", &[NotifyState::Watchdog]),
        }
    }
}
