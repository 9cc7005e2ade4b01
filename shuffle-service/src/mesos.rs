//! The Mesos flavour: drivers register with a heartbeat timeout and then heartbeat; a cleaner
//! removes the registered executors' directories of apps whose heartbeats stopped.
//!
//! Only silence removes an app — a closed TCP connection never does (SPARK-12583), and the
//! server never closes idle connections, since Spark's driver never re-opens its heartbeat
//! connection.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::server::Shared;

struct AppState {
    timeout: Duration,
    last_heartbeat: Instant,
}

/// Registered drivers.
#[derive(Default)]
pub struct Apps {
    apps: Mutex<HashMap<String, AppState>>,
}

impl Apps {
    /// Registers (or re-registers) an app; returns true if it was already known.
    pub fn register(&self, app_id: &str, timeout: Duration) -> bool {
        let mut a = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        a.insert(
            app_id.to_owned(),
            AppState {
                timeout,
                last_heartbeat: Instant::now(),
            },
        )
        .is_some()
    }

    /// Records a heartbeat; returns false for an unknown app.
    pub fn heartbeat(&self, app_id: &str) -> bool {
        let mut a = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        match a.get_mut(app_id) {
            Some(s) => {
                s.last_heartbeat = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Removes and returns the apps silent for longer than their timeout at `now`.
    pub fn take_expired(&self, now: Instant) -> Vec<String> {
        let mut a = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let dead: Vec<String> = a
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_heartbeat) > s.timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dead {
            a.remove(k);
        }
        dead
    }

    pub fn len(&self) -> usize {
        self.apps.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
            let queued: usize = executors.iter().map(|(_, dirs)| dirs.len()).sum();
            shared
                .metrics
                .cleanup_pending_dirs
                .fetch_add(queued as u64, Ordering::Relaxed);
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || {
                for (exec, dirs) in executors {
                    for dir in dirs {
                        match std::fs::remove_dir_all(&dir) {
                            Ok(()) => {
                                tracing::info!(app_id = %app, exec_id = %exec, "deleted local dir {dir}")
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => {
                                shared
                                    .metrics
                                    .cleanup_failures
                                    .fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(app_id = %app, exec_id = %exec, "failed to delete local dir {dir}: {e}")
                            }
                        }
                        shared
                            .metrics
                            .cleanup_pending_dirs
                            .fetch_sub(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let a = Apps::default();
        assert!(!a.register("x", Duration::from_millis(50)));
        assert!(a.register("x", Duration::from_millis(50)));
        a.register("y", Duration::from_secs(3600));
        assert!(a.heartbeat("x"));
        assert!(!a.heartbeat("nope"));
        assert!(a.take_expired(Instant::now()).is_empty());
        let later = Instant::now() + Duration::from_millis(100);
        assert_eq!(a.take_expired(later), vec!["x".to_string()]);
        assert_eq!(a.len(), 1);
    }
}
