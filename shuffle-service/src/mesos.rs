//! The Mesos flavour's cleaner: removes the registered executors' directories of apps whose
//! drivers' heartbeats stopped (the drivers themselves are tracked in [`crate::drivers`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::state::Shared;

/// Runs the cleaner every `interval` until `shutdown`. Directory removal happens on the blocking
/// pool, so serving never waits for it.
pub async fn run_cleaner(shared: Arc<Shared>, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for app in shared.apps.take_expired(Instant::now()) {
            tracing::info!(app_id = %app, "Application {app} timed out. Removing shuffle files.");
            shared.metrics.cleanups.fetch_add(1, Ordering::Relaxed);
            let executors = shared.registry.remove_app(&app);
            if executors.is_empty() {
                tracing::info!(app_id = %app, "no executors of {app} were registered: nothing to delete");
                continue;
            }
            tokio::task::spawn_blocking(move || {
                for (exec, dirs) in executors {
                    for dir in dirs {
                        match std::fs::remove_dir_all(&dir) {
                            Ok(()) => {
                                tracing::info!(app_id = %app, exec_id = %exec, "deleted local dir {dir}")
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => {
                                tracing::warn!(app_id = %app, exec_id = %exec, "failed to delete local dir {dir}: {e}")
                            }
                        }
                    }
                }
            });
        }
    }
}
