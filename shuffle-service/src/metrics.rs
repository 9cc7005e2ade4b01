//! Counters, updated on the serving paths with relaxed atomic adds only (no lock, no
//! allocation): Spark's `shuffleService` source counters (logged at shutdown), the fetch
//! latency histogram and errors by kind. [`crate::admin`] turns them into Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a request or connection failed, the `kind` label of `croupier_shuffle_errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A frame that could not be decoded (unknown type, bad length, truncated).
    BadFrame,
    /// A well-framed request the service refused (undecodable body, invalid ids, an
    /// unregistered executor, a closed stream, an out-of-order chunk).
    BadRequest,
    /// A requested block whose executor, index entry or file does not exist.
    UnknownBlock,
    /// Reading or writing a socket or a shuffle file failed, or a file is corrupt.
    Io,
    /// A request for a feature this service does not have (push-based shuffle, uploads).
    Unsupported,
    /// A connection closed for exceeding `spark.shuffle.maxChunksBeingTransferred`.
    Limit,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::BadFrame,
        ErrorKind::BadRequest,
        ErrorKind::UnknownBlock,
        ErrorKind::Io,
        ErrorKind::Unsupported,
        ErrorKind::Limit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::BadFrame => "bad_frame",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UnknownBlock => "unknown_block",
            ErrorKind::Io => "io",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Limit => "limit",
        }
    }
}

/// Upper bounds of the latency buckets, in nanoseconds (100 µs … 10 s).
const LATENCY_BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A fixed-bucket histogram of durations: one relaxed add to a bucket and one to the sum per
/// observation. The count is the sum of the buckets, so it always equals the `+Inf` bucket.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

/// A consistent-enough copy for encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub sum_seconds: f64,
    pub count: u64,
    /// `(upper bound in seconds, count in this bucket)`, non-cumulative, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(LATENCY_BOUNDS_NS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let bound = LATENCY_BOUNDS_NS
                    .get(i)
                    .map(|&ns| ns as f64 / 1e9)
                    .unwrap_or(f64::INFINITY);
                (bound, c.load(Ordering::Relaxed))
            })
            .collect();
        HistogramSnapshot {
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: buckets.iter().map(|b| b.1).sum(),
            buckets,
        }
    }
}

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
    /// From the receipt of a ChunkFetchRequest/StreamRequest to the end of its `sendfile`.
    pub fetch_latency: LatencyHistogram,
    /// Applications whose shuffle files the Mesos cleaner removed.
    pub cleanups: AtomicU64,
    /// Bytes of shuffle files the cleaner deleted.
    pub cleanup_bytes: AtomicU64,
    /// Silent (or driverless) applications kept because the agent reported their framework
    /// active (counted once per app until that changes).
    pub kept_active: AtomicU64,
    /// Rounds in which the Mesos agent could not be asked.
    pub agent_unreachable: AtomicU64,
    /// Start-ups that found the registration store unreadable and moved it aside.
    pub store_corrupt: AtomicU64,
    /// 1 while registrations are kept in memory only although `croupier.state.dir` is set: the
    /// store could not be opened at start-up (held by another process, or unusable).
    pub store_unavailable: AtomicU64,
    /// Registration-store writes that failed after one reopen-and-retry (the registration is
    /// refused with an RPC failure the client may retry).
    pub store_write_errors: AtomicU64,
    /// Registrations read back from the store at start-up (executors + drivers).
    pub restored_registrations: AtomicU64,
    /// Failed authentications (wrong secret, garbage, requests before authenticating) and
    /// requests refused for acting on another application.
    pub auth_failures: AtomicU64,
    /// Local dirs of timed-out applications queued for deletion and not yet deleted.
    pub cleanup_pending_dirs: AtomicU64,
    /// Local dirs the cleaner failed to delete (other than already gone).
    pub cleanup_failures: AtomicU64,
    /// Failed `accept`s (descriptors exhausted, …), each followed by a back-off.
    pub accept_errors: AtomicU64,
    /// Connections closed for not authenticating within
    /// `croupier.authenticate.handshakeTimeout`.
    pub handshake_timeouts: AtomicU64,
    /// Connections closed because the peer read nothing of what was sent to it for
    /// `spark.shuffle.io.connectionTimeout`.
    pub send_timeouts: AtomicU64,
    /// Times a connection with chunks to send waited because every sending thread
    /// (`croupier.shuffle.io.sendThreads`) was busy.
    pub send_turn_waits: AtomicU64,
    /// Send jobs running now (each on a blocking thread).
    pub sending: AtomicU64,
    /// Send jobs that held their turn for 10 ms (waiting on the disk) and gave it to the next
    /// connection.
    pub slow_sends: AtomicU64,
    /// Bursts of small chunks sent from the reactor (all in memory), without a blocking thread.
    pub reactor_sends: AtomicU64,
    /// Chunks a reactor burst found not (all) in the page cache and gave to a blocking thread.
    pub reactor_give_backs: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
}

impl Metrics {
    pub fn record_transfer(&self, blocks: u64, bytes: u64) {
        self.block_transfer.fetch_add(blocks, Ordering::Relaxed);
        self.block_transfer_messages.fetch_add(1, Ordering::Relaxed);
        self.block_transfer_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_count() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), LATENCY_BOUNDS_NS.len() + 1);
        assert_eq!(s.buckets[0], (0.0001, 2));
        assert_eq!(s.buckets[5], (0.005, 1));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((s.sum_seconds - 60.00315).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn errors_by_kind() {
        let m = Metrics::default();
        m.error(ErrorKind::Io);
        m.error(ErrorKind::Io);
        m.error(ErrorKind::Limit);
        assert_eq!(m.errors(ErrorKind::Io), 2);
        assert_eq!(m.errors(ErrorKind::Limit), 1);
        assert_eq!(m.errors(ErrorKind::BadFrame), 0);
        let labels: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), 6);
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }
}
