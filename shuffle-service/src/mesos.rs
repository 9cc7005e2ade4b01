//! The Mesos flavour's cleaner. Every `spark.shuffle.cleaner.interval` it saves the drivers'
//! heartbeats to the store, then looks at every application it knows (registered executors or
//! a registered driver), asks the Mesos agent about the ones whose driver is silent or never
//! registered, and acts on [`crate::cleanup::decide`]. Deleting files happens on the blocking
//! pool, so serving never waits for it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::agent::{AgentClient, Frameworks};
use crate::cleanup::{self, Action, Agent, Delete, Driver, Keep, Track};
use crate::state::Shared;

/// What the cleaner remembers per app between rounds.
#[derive(Default)]
struct AppMemo {
    track: Track,
    /// "kept: framework active" was logged (and counted) since the last change.
    said_active: bool,
    said_confirming: bool,
    said_unknown: bool,
}

/// Runs the cleaner every `interval` until `shutdown`.
pub async fn run_cleaner(shared: Arc<Shared>, interval: Duration, shutdown: CancellationToken) {
    let agent: Option<AgentClient> = shared.agent.clone();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut memo: HashMap<String, AppMemo> = HashMap::new();
    let mut agent_was_down = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        save_heartbeats(&shared).await;
        let now = Instant::now();
        let drivers = shared.apps.snapshot(now);
        let mut apps: HashSet<String> = shared.registry.app_ids().into_iter().collect();
        apps.extend(drivers.keys().cloned());
        memo.retain(|k, _| apps.contains(k));
        let driver_of = |app: &str| match drivers.get(app) {
            None => Driver::NeverRegistered,
            Some(v) if v.is_silent() => Driver::Silent,
            Some(_) => Driver::Heartbeating,
        };
        // One question to the agent per round, only when some app's fate depends on it.
        let needs_agent = apps.iter().any(|a| driver_of(a) != Driver::Heartbeating);
        let answer: Option<Result<Frameworks, String>> = match &agent {
            Some(client) if needs_agent => {
                Some(client.frameworks().await.map_err(|e| e.to_string()))
            }
            _ => None,
        };
        match &answer {
            Some(Err(e)) => {
                shared
                    .metrics
                    .agent_unreachable
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "{e}; keeping every application's shuffle files, asking again in {interval:?}"
                );
                agent_was_down = true;
            }
            Some(Ok(_)) if agent_was_down => {
                tracing::info!("the Mesos agent answers again");
                agent_was_down = false;
            }
            _ => {}
        }
        let confirm = shared.config.agent_confirm_interval;
        for app in apps {
            let driver = driver_of(&app);
            let agent_says = match &answer {
                None if agent.is_none() => Agent::NotAsked,
                // Nothing asked because the driver heartbeats (decide keeps it without asking).
                None => Agent::Unreachable,
                Some(Ok(f)) => f.about(&app),
                Some(Err(_)) => Agent::Unreachable,
            };
            let m = memo.entry(app.clone()).or_default();
            let (action, track) = cleanup::decide(driver, agent_says, m.track, now, confirm);
            m.track = track;
            match action {
                Action::Keep(Keep::FrameworkActive) => {
                    m.said_confirming = false;
                    if !m.said_active {
                        m.said_active = true;
                        shared.metrics.kept_active.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            app_id = %app,
                            "keeping the shuffle files of {app}: its driver is {}, but the Mesos master reports framework {app} registered",
                            if driver == Driver::Silent { "silent" } else { "not registered" }
                        );
                    }
                }
                Action::Keep(Keep::Confirming { remaining }) => {
                    m.said_active = false;
                    if !m.said_confirming {
                        m.said_confirming = true;
                        tracing::info!(
                            app_id = %app,
                            "the Mesos master reports framework {app} completed; its shuffle files go if that still holds in {remaining:?}"
                        );
                    }
                }
                Action::Keep(Keep::Heartbeating) => {
                    m.said_active = false;
                    m.said_confirming = false;
                }
                Action::Keep(Keep::FrameworkUnknown) => {
                    m.said_confirming = false;
                    if !m.said_unknown {
                        m.said_unknown = true;
                        tracing::info!(
                            app_id = %app,
                            "keeping the shuffle files of {app}: its driver is {}, and the Mesos master does not know framework {app} (not a framework id, forgotten after a master failover, or not visible to the principal): that does not prove it ended",
                            if driver == Driver::Silent { "silent" } else { "not registered" }
                        );
                    }
                }
                Action::Keep(_) => {}
                Action::Delete(why) => {
                    memo.remove(&app);
                    remove_app(&shared, &app, why);
                }
            }
        }
    }
}

async fn save_heartbeats(shared: &Arc<Shared>) {
    let Some(store) = shared.store.clone() else {
        return;
    };
    let beats = shared.apps.take_unsaved();
    if beats.is_empty() {
        return;
    }
    let sh = shared.clone();
    let r = tokio::task::spawn_blocking(move || store.heartbeats(beats)).await;
    if let Ok(Err(e)) = r {
        sh.metrics
            .store_write_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!("cannot save the drivers' last heartbeats: {e}");
    }
}

fn reason(why: Delete, app: &str) -> String {
    match why {
        // Spark's own words, which operators grep for.
        Delete::HeartbeatTimeout => format!("Application {app} timed out"),
        Delete::FrameworkCompleted => {
            format!("the Mesos master reports framework {app} completed")
        }
    }
}

/// Forgets the app at once (new fetches fail from here on) and deletes its files and records
/// on the blocking pool.
fn remove_app(shared: &Arc<Shared>, app: &str, why: Delete) {
    let why = reason(why, app);
    shared.apps.remove(app);
    let executors = shared.registry.remove_app(app);
    shared.metrics.cleanups.fetch_add(1, Ordering::Relaxed);
    tracing::info!(app_id = %app, executors = executors.len(), "{why}. Removing shuffle files.");
    let queued: usize = executors.iter().map(|(_, dirs)| dirs.len()).sum();
    shared
        .metrics
        .cleanup_pending_dirs
        .fetch_add(queued as u64, Ordering::Relaxed);
    let shared = shared.clone();
    let app = app.to_owned();
    tokio::task::spawn_blocking(move || {
        // No open data file outlives the deletion (the app's fetches already fail from here
        // on). Closed here, off the reactor: a file deleted by someone else meanwhile would
        // have its blocks freed by this close.
        shared.data_files.clear();
        if let Some(store) = &shared.store {
            if let Err(e) = store.remove_app(&app) {
                shared
                    .metrics
                    .store_write_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(app_id = %app, "cannot remove the stored registrations of {app}: {e}");
            }
        }
        let mut total = 0u64;
        let mut dirs_deleted = 0usize;
        for (exec, dirs) in executors {
            for dir in dirs {
                if !is_block_manager_dir(Path::new(&dir)) {
                    // The dirs come from a client's RegisterExecutor: deleting whatever it named
                    // would let any peer have any directory the service can write removed.
                    shared
                        .metrics
                        .cleanup_failures
                        .fetch_add(1, Ordering::Relaxed);
                    shared
                        .metrics
                        .cleanup_pending_dirs
                        .fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(app_id = %app, exec_id = %exec, "not deleting local dir {dir:?}: not a Spark block manager directory (blockmgr-*)");
                    continue;
                }
                let bytes = tree_bytes(Path::new(&dir));
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {
                        total += bytes;
                        dirs_deleted += 1;
                        tracing::info!(app_id = %app, exec_id = %exec, bytes, "deleted local dir {dir}")
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
        shared
            .metrics
            .cleanup_bytes
            .fetch_add(total, Ordering::Relaxed);
        tracing::info!(app_id = %app, bytes = total, dirs = dirs_deleted, "removed the shuffle files of {app}: {dirs_deleted} dir(s), {total} bytes");
    });
}

/// Spark's executors register the directories their `DiskBlockManager` made:
/// `<spark.local.dir>/.../blockmgr-<uuid>`. Only such a directory (not a link) is deleted.
fn is_block_manager_dir(dir: &Path) -> bool {
    let named = crate::resolver::is_block_manager_name(dir);
    let not_a_link = std::fs::symlink_metadata(dir).map_or(true, |m| !m.file_type().is_symlink());
    named && not_a_link
}

/// Bytes of the regular files under `dir` (symlinks not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::is_block_manager_dir;
    use std::path::Path;

    #[test]
    fn only_block_manager_dirs_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        let bm = d.path().join("blockmgr-3f2a");
        std::fs::create_dir(&bm).unwrap();
        assert!(is_block_manager_dir(&bm));
        assert!(is_block_manager_dir(&d.path().join("blockmgr-gone")));
        assert!(!is_block_manager_dir(d.path()));
        assert!(!is_block_manager_dir(Path::new(
            "/var/lib/croupier/shuffle"
        )));
        let link = d.path().join("blockmgr-link");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        assert!(!is_block_manager_dir(&link));
    }
}
