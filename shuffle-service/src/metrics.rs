//! Counters named after Spark's `shuffleService` metrics source; logged at shutdown.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct Metrics {
    /// `blockTransferRate` (blocks; a batch counts end - start).
    pub block_transfer: AtomicU64,
    /// `blockTransferMessageRate` (chunks).
    pub block_transfer_messages: AtomicU64,
    /// `blockTransferRateBytes`.
    pub block_transfer_bytes: AtomicU64,
    /// `numActiveConnections`.
    pub active_connections: AtomicU64,
    /// `numCaughtExceptions`.
    pub caught_exceptions: AtomicU64,
    /// RegisterExecutor requests served (`registerExecutorRequestLatencyMillis` count).
    pub register_executor_requests: AtomicU64,
    /// OpenBlocks/FetchShuffleBlocks served (`openBlockRequestLatencyMillis` count).
    pub open_block_requests: AtomicU64,
}

impl Metrics {
    pub fn record_transfer(&self, blocks: u64, bytes: u64) {
        self.block_transfer.fetch_add(blocks, Ordering::Relaxed);
        self.block_transfer_messages.fetch_add(1, Ordering::Relaxed);
        self.block_transfer_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// `name value` lines, Spark's metric names.
    pub fn render(&self, registered_executors: usize) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "blockTransferRate {} blockTransferMessageRate {} blockTransferRateBytes {} numActiveConnections {} \
             numCaughtExceptions {} registeredExecutorsSize {} registerExecutorRequests {} openBlockRequests {}",
            g(&self.block_transfer),
            g(&self.block_transfer_messages),
            g(&self.block_transfer_bytes),
            g(&self.active_connections),
            g(&self.caught_exceptions),
            registered_executors,
            g(&self.register_executor_requests),
            g(&self.open_block_requests),
        )
    }
}
