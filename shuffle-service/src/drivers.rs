//! Registered Mesos drivers: each registers with a heartbeat timeout and then heartbeats.
//!
//! Only silence removes an app — a closed TCP connection never does (SPARK-12583), and the
//! server never closes idle connections, since Spark's driver never re-opens its heartbeat
//! connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stamp::Stamp;

struct AppState {
    timeout: Duration,
    last_heartbeat: Instant,
    /// The same moment on the wall and boot clocks (what the store keeps across restarts).
    last_heartbeat_stamp: Stamp,
    /// A heartbeat arrived since the last [`Apps::take_unsaved`].
    unsaved: bool,
}

/// A driver's heartbeat state as the cleaner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverView {
    pub timeout: Duration,
    /// Time since the last RegisterDriver or heartbeat.
    pub silent_for: Duration,
}

impl DriverView {
    pub fn is_silent(&self) -> bool {
        self.silent_for > self.timeout
    }
}

/// Registered drivers.
#[derive(Default)]
pub struct Apps {
    apps: Mutex<HashMap<String, AppState>>,
}

impl Apps {
    /// Registers (or re-registers) an app; returns true if it was already known.
    pub fn register(&self, app_id: &str, timeout: Duration) -> bool {
        self.restore(app_id, timeout, Stamp::now())
    }

    /// Registers an app whose last sign of life was at `last` (a record read back from the
    /// store); returns true if it was already known. Its silence so far is `last`'s age: by the
    /// boot clock when `last` is of this boot, so a wall clock stepped while the service was
    /// down neither expires a live app at once nor keeps a silent one longer.
    pub fn restore(&self, app_id: &str, timeout: Duration, last: Stamp) -> bool {
        let ago = last.age_at(&Stamp::now());
        let now = Instant::now();
        let last_heartbeat = now.checked_sub(ago).unwrap_or(now);
        let mut a = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        a.insert(
            app_id.to_owned(),
            AppState {
                timeout,
                last_heartbeat,
                last_heartbeat_stamp: last,
                unsaved: false,
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
                s.last_heartbeat_stamp = Stamp::now();
                s.unsaved = true;
                true
            }
            None => false,
        }
    }

    /// Heartbeats received since the last call, for the store.
    pub fn take_unsaved(&self) -> Vec<(String, Stamp)> {
        let mut a = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        a.iter_mut()
            .filter(|(_, s)| s.unsaved)
            .map(|(k, s)| {
                s.unsaved = false;
                (k.clone(), s.last_heartbeat_stamp.clone())
            })
            .collect()
    }

    /// Every registered driver's state at `now`.
    pub fn snapshot(&self, now: Instant) -> HashMap<String, DriverView> {
        let a = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        a.iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    DriverView {
                        timeout: s.timeout,
                        silent_for: now.saturating_duration_since(s.last_heartbeat),
                    },
                )
            })
            .collect()
    }

    /// Forgets an app; returns whether it was registered.
    pub fn remove(&self, app_id: &str) -> bool {
        let mut a = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        a.remove(app_id).is_some()
    }

    pub fn len(&self) -> usize {
        self.apps.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn silence_and_restore() {
        let a = Apps::default();
        assert!(!a.register("x", Duration::from_millis(50)));
        assert!(a.register("x", Duration::from_millis(50)));
        a.register("y", Duration::from_secs(3600));
        assert!(a.heartbeat("x"));
        assert!(!a.heartbeat("nope"));
        assert!(a.snapshot(Instant::now()).values().all(|v| !v.is_silent()));
        let later = Instant::now() + Duration::from_millis(100);
        let s = a.snapshot(later);
        assert!(s["x"].is_silent());
        assert!(!s["y"].is_silent());
        assert_eq!(a.take_unsaved().len(), 1);
        assert!(a.take_unsaved().is_empty());
        assert!(a.remove("x"));
        assert_eq!(a.len(), 1);
        // A record whose last heartbeat was an hour ago is silent at once.
        a.restore(
            "z",
            Duration::from_secs(120),
            Stamp::wall_only(SystemTime::now() - Duration::from_secs(3600)),
        );
        assert!(a.snapshot(Instant::now())["z"].is_silent());
    }
}
