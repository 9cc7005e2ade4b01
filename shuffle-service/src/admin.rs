//! The admin HTTP endpoint (`croupier.admin.address`, off by default), on its own listener:
//!
//! - `GET /healthz`: `200 ok` while the shuffle listener serves, `503 shutting down` after
//!   SIGTERM/SIGINT (it only runs once the shuffle listener is bound).
//! - `GET /metrics`: the counters of [`crate::metrics`] and the service's state, encoded by
//!   the `prometheus-client` crate. That crate writes OpenMetrics text, served as such to
//!   scrapers whose `Accept` names `application/openmetrics-text` (Prometheus does); everyone
//!   else gets the classic Prometheus text format 0.0.4, where a counter's `# TYPE` line names
//!   its `_total` sample (see [`openmetrics_to_prometheus_text`]).
//!
//! Gauges (registered executors and apps, open streams) are read from the shared state at
//! scrape time, so the serving paths do no extra work for them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::ErrorKind;
use crate::state::Shared;

/// Content type of `/metrics` in OpenMetrics (what `prometheus_client::encoding::text` writes).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of `/metrics` in the classic Prometheus text format.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Admin connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot bind the admin endpoint {addr} (croupier.admin.address): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl AdminError {
    /// A port in use may be freed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AdminError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
    }
}

/// Binds the admin listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })
}

/// Serves admin requests on `listener` for as long as the runtime lives; `shutdown` turns
/// `/healthz` to 503.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServiceCollector(shared)));
    let registry = Arc::new(registry);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("admin endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin endpoint: {MAX_CONNECTIONS} connections open; closing a new one");
            continue;
        };
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let r = respond(&req, &registry, &shutdown);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(sock), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "admin connection ended: {e}");
            }
            drop(permit);
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.method() != Method::GET {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed here: use GET\n", req.method()),
        );
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET"),
        );
        return r;
    }
    match req.uri().path() {
        "/healthz" if shutdown.is_cancelled() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get_all(hyper::header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            let mut body = String::with_capacity(4096);
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => {
                    let (body, ctype) = if openmetrics {
                        (body, OPENMETRICS_CONTENT_TYPE)
                    } else {
                        (
                            openmetrics_to_prometheus_text(&body),
                            PROMETHEUS_TEXT_CONTENT_TYPE,
                        )
                    };
                    let mut r = text(StatusCode::OK, body);
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(ctype),
                    );
                    r
                }
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the metrics: {e}\n"),
                ),
            }
        }
        other => text(
            StatusCode::NOT_FOUND,
            format!("no such endpoint {other}: try /healthz or /metrics\n"),
        ),
    }
}

/// Rewrites the OpenMetrics text written by `prometheus-client` (for the metrics of this
/// service: no units, exemplars or `_created` samples) into the Prometheus text format 0.0.4:
/// a counter family `x` becomes `# HELP x_total` / `# TYPE x_total counter` (the name of its
/// samples), and the `# EOF` line goes. Everything else is the same in both formats.
pub fn openmetrics_to_prometheus_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Reads the counters and the shared state at each scrape.
struct ServiceCollector(Arc<Shared>);

impl std::fmt::Debug for ServiceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceCollector")
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn as_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Collector for ServiceCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.0;
        let m = &s.metrics;
        gauge(
            &mut enc,
            "croupier_shuffle_registered_executors",
            "Executors registered with this service (RegisterExecutor), across applications.",
            as_i64(s.registry.len()),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_registered_apps",
            "Spark drivers registered with this service (Mesos RegisterDriver) and still heartbeating.",
            as_i64(s.apps.len()),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_open_streams",
            "Block streams opened (OpenBlocks/FetchShuffleBlocks) and not yet fully fetched.",
            as_i64(s.streams.len()),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_chunks_in_flight",
            "Chunks queued or being sent, across connections (see spark.shuffle.maxChunksBeingTransferred).",
            as_i64(s.streams.in_flight()),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_connections",
            "Open client connections to the shuffle port.",
            as_i64(m.active_connections.load(Relaxed)),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_sending",
            "Send jobs running now, each on a blocking thread (at most croupier.shuffle.io.sendThreads, plus those that gave up their turn while waiting on the disk).",
            as_i64(m.sending.load(Relaxed)),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_index_cache_bytes",
            "Bytes of shuffle index files held in the index cache.",
            as_i64(s.index_cache.weight()),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_blocks_served",
            "Shuffle/RDD blocks sent (a batch chunk counts each reduce partition it covers).",
            m.block_transfer.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_chunks_served",
            "Chunks sent (ChunkFetchSuccess and StreamResponse).",
            m.block_transfer_messages.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_bytes_served",
            "Block bytes sent (frame headers excluded).",
            m.block_transfer_bytes.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_register_executor_requests",
            "RegisterExecutor requests received.",
            m.register_executor_requests.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_open_block_requests",
            "OpenBlocks and FetchShuffleBlocks requests received.",
            m.open_block_requests.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_cleanups",
            "Applications whose shuffle files the cleaner removed (framework completed or unknown to the agent, or heartbeat timeout without an agent).",
            m.cleanups.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_cleanup_bytes",
            "Bytes of shuffle files deleted by the cleaner.",
            m.cleanup_bytes.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_kept_active",
            "Applications with a silent or unregistered driver kept because the Mesos agent reported their framework active (once per app).",
            m.kept_active.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_agent_unreachable",
            "Cleaner rounds in which the Mesos agent could not be asked (nothing is deleted then).",
            m.agent_unreachable.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_store_corrupt",
            "Start-ups that found the registration store unreadable (it is moved aside).",
            m.store_corrupt.load(Relaxed),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_store_unavailable",
            "1 while registrations are kept in memory only although croupier.state.dir is set: the store could not be opened at start-up (in use by another process, or unusable; see the log). A restart then loses them.",
            as_i64(m.store_unavailable.load(Relaxed)),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_store_write_errors",
            "Registration-store writes that failed after one reopen-and-retry (the registration was refused; the client may retry).",
            m.store_write_errors.load(Relaxed),
        )?;
        let store = self.0.store.as_ref();
        counter(
            &mut enc,
            "croupier_shuffle_store_commit_failures",
            "Registration-store commits that failed after one reopen-and-retry, including those of registrations already answered from the journal (kept and retried).",
            store.map_or(0, |s| s.commit_failures()),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_store_commits",
            "Registration-store commits that succeeded (each one transaction and one fsync; with croupier.state.sync=background, at most about one per 50 ms under a stream of registrations).",
            store.map_or(0, |s| s.commits()),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_store_uncommitted_bytes",
            "Journal bytes of answered registrations not yet committed to the store file (croupier.state.sync=background).",
            as_i64(store.map_or(0, |s| s.uncommitted_bytes())),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_restored_registrations",
            "Executor and driver registrations read back from the store at start-up.",
            m.restored_registrations.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_auth_failures",
            "Connections that failed to authenticate or sent requests before authenticating, and requests refused for another application's data (spark.authenticate).",
            m.auth_failures.load(Relaxed),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_unauthenticated_connections",
            "Connections open and not yet authenticated (bounded by croupier.authenticate.maxPendingConnections).",
            as_i64(s.pending.len() as u64),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_unauthenticated_evicted",
            "Unauthenticated connections closed to make room for newer ones (croupier.authenticate.maxPendingConnections).",
            s.pending.evicted.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_handshake_timeouts",
            "Connections closed for not authenticating within croupier.authenticate.handshakeTimeout.",
            m.handshake_timeouts.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_send_timeouts",
            "Connections closed because the peer read nothing sent to it for spark.shuffle.io.connectionTimeout.",
            m.send_timeouts.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_send_turn_waits",
            "Times a connection with chunks to send waited because every sending thread (croupier.shuffle.io.sendThreads) was busy.",
            m.send_turn_waits.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_slow_sends",
            "Send jobs that kept their sending turn for 10 ms (waiting on the disk) and gave it to the next connection.",
            m.slow_sends.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_reactor_sends",
            "Bursts of small chunks sent from the reactor thread, without a blocking thread: data in the page cache, files already open.",
            m.reactor_sends.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_reactor_give_backs",
            "Chunks a burst on the reactor thread found not in the page cache (or unreadable) and gave to a blocking thread.",
            m.reactor_give_backs.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_accept_errors",
            "Failed accepts on the shuffle port (e.g. out of file descriptors), each followed by a back-off.",
            m.accept_errors.load(Relaxed),
        )?;
        gauge(
            &mut enc,
            "croupier_shuffle_cleanup_pending_dirs",
            "Local dirs of removed applications queued for deletion and not yet deleted.",
            as_i64(m.cleanup_pending_dirs.load(Relaxed)),
        )?;
        counter(
            &mut enc,
            "croupier_shuffle_cleanup_failures",
            "Local dirs of removed applications the cleaner failed to delete.",
            m.cleanup_failures.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "croupier_log_lines_dropped",
            "Log lines lost: writes to stderr that failed (its reader gone) or lines dropped while stderr was stalled.",
            croupier_ops::log::dropped_lines(),
        )?;
        {
            let mut e = enc.encode_descriptor(
                "croupier_shuffle_errors",
                "Failed requests and connections closed on errors, by kind.",
                None,
                MetricType::Counter,
            )?;
            for kind in ErrorKind::ALL {
                let labels = [("kind", kind.label())];
                ConstCounter::new(m.errors(kind)).encode(e.encode_family(&labels)?)?;
            }
        }
        let h = m.fetch_latency.snapshot();
        let mut e = enc.encode_descriptor(
            "croupier_shuffle_fetch_latency_seconds",
            "Time from the receipt of a ChunkFetchRequest (or StreamRequest) to the end of its sendfile.",
            None,
            MetricType::Histogram,
        )?;
        e.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_by_their_samples() {
        let om = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total 3\n\
                  # HELP b Level.\n# TYPE b gauge\nb 2\n\
                  # HELP e Errors.\n# TYPE e counter\ne_total{kind=\"io\"} 1\n\
                  # HELP h_seconds Latency.\n# TYPE h_seconds histogram\nh_seconds_sum 0.5\n\
                  h_seconds_count 1\nh_seconds_bucket{le=\"1.0\"} 1\nh_seconds_bucket{le=\"+Inf\"} 1\n# EOF\n";
        let classic = openmetrics_to_prometheus_text(om);
        assert_eq!(
            classic,
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\na_things_total 3\n\
             # HELP b Level.\n# TYPE b gauge\nb 2\n\
             # HELP e_total Errors.\n# TYPE e_total counter\ne_total{kind=\"io\"} 1\n\
             # HELP h_seconds Latency.\n# TYPE h_seconds histogram\nh_seconds_sum 0.5\n\
             h_seconds_count 1\nh_seconds_bucket{le=\"1.0\"} 1\nh_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }
}
