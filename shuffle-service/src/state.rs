//! The service's shared state: configuration, registered executors and drivers, the index
//! cache, the stream table and the metrics. Everything above it (the accept loop, the RPC
//! handlers, the sender, the cleaner, the admin endpoint) imports it from here; it imports none
//! of them.

use std::sync::Arc;

use crate::config::Config;
use crate::drivers::Apps;
use crate::index_cache::IndexCache;
use crate::metrics::Metrics;
use crate::resolver::Registry;
use crate::streams::StreamTable;

/// State shared by every connection.
pub struct Shared {
    pub config: Config,
    pub registry: Registry,
    pub index_cache: IndexCache,
    pub streams: Arc<StreamTable>,
    pub apps: Apps,
    pub metrics: Metrics,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        Arc::new(Shared {
            index_cache: IndexCache::new(config.index_cache_size),
            config,
            registry: Registry::default(),
            streams: Arc::new(StreamTable::new()),
            apps: Apps::default(),
            metrics: Metrics::default(),
        })
    }
}
