//! The service's shared state: configuration, registered executors and drivers, the index
//! cache, the stream table and the metrics. Everything above it (the accept loop, the RPC
//! handlers, the sender, the cleaner, the admin endpoint) imports it from here; it imports none
//! of them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::agent::AgentClient;
use crate::auth::pending::Pending;
use crate::config::Config;
use crate::data_files::DataFiles;
use crate::drivers::Apps;
use crate::index_cache::IndexCache;
use crate::metrics::Metrics;
use crate::resolver::{validate_id, Registry};
use crate::store::{Restored, Store};
use crate::streams::StreamTable;

/// State shared by every connection.
pub struct Shared {
    pub config: Config,
    pub registry: Registry,
    pub index_cache: IndexCache,
    /// Data files held open across chunks (bounded in count and age).
    pub data_files: DataFiles,
    pub streams: Arc<StreamTable>,
    pub apps: Apps,
    pub metrics: Metrics,
    /// Where registrations are persisted; `None` when `croupier.state.dir` is off or unusable.
    pub store: Option<Store>,
    /// The Mesos agent asked before deleting an app's files; `None` is heartbeat-only cleanup.
    pub agent: Option<AgentClient>,
    /// Connections still authenticating (`spark.authenticate`).
    pub pending: Arc<Pending>,
    /// Turns to send from a blocking thread (`croupier.shuffle.io.sendThreads`), handed out in
    /// the order connections asked.
    pub send_turns: tokio::sync::Semaphore,
}

impl Shared {
    pub fn new(config: Config, store: Option<Store>, agent: Option<AgentClient>) -> Arc<Shared> {
        Arc::new(Shared {
            pending: Arc::new(Pending::new(
                config.auth.max_pending,
                config.auth.pending_per_host(),
            )),
            index_cache: IndexCache::new(config.index_cache_size),
            send_turns: tokio::sync::Semaphore::new(config.send_threads),
            data_files: DataFiles::default(),
            config,
            registry: Registry::default(),
            streams: Arc::new(StreamTable::new()),
            apps: Apps::default(),
            metrics: Metrics::default(),
            store,
            agent,
        })
    }

    /// Loads what the store read back at start-up (before the port is bound). Records that no
    /// longer pass validation are skipped and logged. Returns (executors, drivers) restored.
    pub fn restore(&self, restored: Restored) -> (usize, usize) {
        let mut execs = 0;
        for (app_id, exec_id, info) in restored.executors {
            // Under spark.authenticate restored dirs are resolved too, so later registrations
            // of other applications are checked against them.
            let r = if self.config.auth.enabled {
                self.registry
                    .register_exclusive(&app_id, &exec_id, info)
                    .map(|_| ())
            } else {
                self.registry.register(&app_id, &exec_id, info)
            };
            match r {
                Ok(()) => execs += 1,
                Err(e) => tracing::warn!("skipping a stored executor registration: {e}"),
            }
        }
        let mut drivers = 0;
        // Heartbeat-only cleanup: a restored driver never heartbeats again (Spark's driver never
        // re-opens that connection), so its app would be deleted one timeout after every
        // restart. Spark's own service forgets drivers on restart and deletes nothing; so do we.
        let drivers_in = if self.agent.is_some() {
            restored.drivers
        } else {
            if !restored.drivers.is_empty() {
                tracing::info!(
                    "not restoring {} driver registration(s): with croupier.mesos.agent.address=none an application registered before the restart is kept, as Spark's service keeps it",
                    restored.drivers.len()
                );
            }
            Vec::new()
        };
        for d in drivers_in {
            if validate_id("appId", &d.app_id).is_err() || d.heartbeat_timeout.is_zero() {
                tracing::warn!(
                    "skipping a stored driver registration of app {:?}: invalid",
                    d.app_id
                );
                continue;
            }
            self.apps
                .restore(&d.app_id, d.heartbeat_timeout, d.last_heartbeat);
            drivers += 1;
        }
        for k in restored.bad_records {
            tracing::warn!("skipping an undecodable record {k:?} of the registration store");
        }
        self.metrics
            .restored_registrations
            .fetch_add((execs + drivers) as u64, Ordering::Relaxed);
        (execs, drivers)
    }
}
