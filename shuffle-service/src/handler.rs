//! RPC and one-way message dispatch (Spark's `ExternalBlockHandler` + the Mesos handler).
//!
//! In-memory work (registration, stream setup, local-dir lookup) is answered immediately;
//! disk work (RemoveBlocks, DiagnoseCorruption, resolving dirs under `spark.authenticate`) is
//! returned as a job for the blocking pool; a registration that only waits for the store is
//! returned as a future.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::metrics::ErrorKind;
use crate::protocol::BlockTransferMessage as M;
use crate::protocol::ExecutorShuffleInfo;
use crate::resolver::{removable_file_name, validate_executor, validate_id, BlockId, ResolveError};
use crate::state::Shared;
use crate::store::{StoreError, StoredDriver};
use crate::streams::{BlockRange, Source};

/// A blocking job producing the response body or the failure text.
pub type Job = Box<dyn FnOnce() -> Result<Bytes, String> + Send + 'static>;

/// Work that waits (on the registration store's writer) without blocking a thread.
pub type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>> + Send>>;

pub enum Reply {
    Now(Result<Bytes, String>),
    /// A refusal because the feature does not exist here (counted apart from bad requests).
    Unsupported(String),
    Blocking(Job),
    Async(Pending),
}

fn ok(m: M) -> Reply {
    Reply::Now(Ok(m.to_bytes()))
}

fn fail(s: impl Into<String>) -> Reply {
    Reply::Now(Err(s.into()))
}

fn unsupported(name: &str) -> Reply {
    Reply::Unsupported(format!(
        "Unexpected message: {name} is not supported by this shuffle service \
         (push-based shuffle and block upload are not available; Spark falls back to regular fetches)"
    ))
}

/// A stored (or storeless) executor registration taking effect in memory.
fn register_in_memory(
    shared: &Shared,
    peer: SocketAddr,
    desc: &str,
    app_id: &str,
    exec_id: &str,
    info: ExecutorShuffleInfo,
) -> Result<Bytes, String> {
    match shared.registry.register(app_id, exec_id, info) {
        Ok(()) => {
            tracing::info!(%peer, %app_id, %exec_id, "Registered executor {desc}");
            Ok(Bytes::new())
        }
        Err(e) => Err(format!("RegisterExecutor rejected: {e}")),
    }
}

/// The store refused an executor's record: counted, logged, and the failure the client gets.
/// Never is a registration that was not stored answered as a success: the client retries
/// (Spark's spark.shuffle.registration.maxAttempts); the store has already reopened its file
/// and retried once.
fn executor_not_stored(
    shared: &Shared,
    peer: SocketAddr,
    desc: &str,
    app_id: &str,
    exec_id: &str,
    e: &StoreError,
) -> String {
    shared
        .metrics
        .store_write_errors
        .fetch_add(1, Ordering::Relaxed);
    tracing::error!(%peer, "executor {desc} not registered: {e}");
    format!("RegisterExecutor (appId={app_id}, execId={exec_id}) failed and may be retried: {e}")
}

/// The appId a message acts on, where Spark's `ExternalBlockHandler.checkAuth` compares it
/// with the authenticated connection's. Spark's Mesos handler does not check RegisterDriver
/// (nor heartbeats); we do: an app holding the shared secret could otherwise shorten another
/// app's heartbeat timeout and have its files deleted. Spark's `MesosExternalBlockStoreClient`
/// authenticates as the appId it registers, so real drivers are not affected.
fn checked_app_id(msg: &M) -> Option<&str> {
    match msg {
        M::RegisterDriver { app_id, .. }
        | M::OpenBlocks { app_id, .. }
        | M::FetchShuffleBlocks { app_id, .. }
        | M::FetchShuffleBlockChunks { app_id, .. }
        | M::RegisterExecutor { app_id, .. }
        | M::RemoveBlocks { app_id, .. }
        | M::GetLocalDirsForExecutors { app_id, .. }
        | M::FinalizeShuffleMerge { app_id, .. }
        | M::RemoveShuffleMerge { app_id, .. }
        | M::DiagnoseCorruption { app_id, .. }
        | M::PushBlockStream { app_id, .. } => Some(app_id),
        _ => None,
    }
}

/// Handles one RpcRequest body. `client` is the appId the connection authenticated as (with
/// `spark.authenticate`): a message for another application is refused.
pub fn rpc(
    shared: &Arc<Shared>,
    body: &[u8],
    peer: SocketAddr,
    conn: u64,
    client: Option<&str>,
) -> Reply {
    let msg = match M::decode(body) {
        Ok(m) => m,
        Err(e) => return fail(format!("cannot decode RPC from {peer}: {e}")),
    };
    if let (Some(client), Some(app)) = (client, checked_app_id(&msg)) {
        if client != app {
            shared.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, app = client, "refused {} for application {app}: the connection authenticated as {client}", msg.name());
            return fail(format!(
                "java.lang.SecurityException: Client for {client} not authorized for application {app}."
            ));
        }
    }
    match msg {
        M::RegisterExecutor {
            app_id,
            exec_id,
            info,
        } => {
            shared
                .metrics
                .register_executor_requests
                .fetch_add(1, Ordering::Relaxed);
            let desc = format!(
                "AppExecId[appId={app_id},execId={exec_id}] with ExecutorShuffleInfo[localDirs={:?},subDirsPerLocalDir={},shuffleManager={}]",
                info.local_dirs, info.sub_dirs_per_local_dir, info.shuffle_manager
            );
            if let Err(e) = validate_executor(&app_id, &exec_id, &info) {
                return fail(format!("RegisterExecutor rejected: {e}"));
            }
            let exclusive = shared.config.auth.enabled;
            let store = shared.store.clone();
            if store.is_none() && !exclusive {
                return Reply::Now(register_in_memory(
                    shared, peer, &desc, &app_id, &exec_id, info,
                ));
            }
            if let (Some(store), false) = (store.clone(), exclusive) {
                // Durable before the answer, awaited without holding a thread.
                let shared = shared.clone();
                return Reply::Async(Box::pin(async move {
                    if let Err(e) = store.put_executor_async(&app_id, &exec_id, &info).await {
                        return Err(executor_not_stored(
                            &shared, peer, &desc, &app_id, &exec_id, &e,
                        ));
                    }
                    register_in_memory(&shared, peer, &desc, &app_id, &exec_id, info)
                }));
            }
            // spark.authenticate: dirs resolved (disk work) and checked against other
            // applications', then the store written, all off the reactor.
            let shared = shared.clone();
            Reply::Blocking(Box::new(move || {
                // Under spark.authenticate the check and the claim are one step in the
                // registry; should the store then fail, the claim is rolled back.
                let mut claimed = None;
                if exclusive {
                    match shared
                        .registry
                        .register_exclusive(&app_id, &exec_id, info.clone())
                    {
                        Ok(r) => claimed = Some(r),
                        Err(e) => {
                            if let ResolveError::DirInUse {
                                other_app,
                                resolved,
                                ..
                            } = &e
                            {
                                shared.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(%peer, app = %app_id, "refused RegisterExecutor of {app_id}/{exec_id}: local dir {resolved} overlaps one registered by application {other_app}");
                            }
                            return Err(format!("RegisterExecutor rejected: {e}"));
                        }
                    }
                }
                let Some(store) = store else {
                    tracing::info!(%peer, %app_id, %exec_id, "Registered executor {desc}");
                    return Ok(Bytes::new());
                };
                if let Err(e) = store.put_executor(&app_id, &exec_id, &info) {
                    if let Some(r) = claimed {
                        shared.registry.roll_back(&app_id, &exec_id, r);
                    }
                    return Err(executor_not_stored(
                        &shared, peer, &desc, &app_id, &exec_id, &e,
                    ));
                }
                if exclusive {
                    tracing::info!(%peer, %app_id, %exec_id, "Registered executor {desc}");
                    return Ok(Bytes::new());
                }
                register_in_memory(&shared, peer, &desc, &app_id, &exec_id, info)
            }))
        }
        M::RegisterDriver {
            app_id,
            heartbeat_timeout_ms,
        } => {
            if let Err(e) = validate_id("appId", &app_id) {
                return fail(format!("RegisterDriver rejected: {e}"));
            }
            if heartbeat_timeout_ms <= 0 {
                return fail(format!("RegisterDriver rejected: heartbeatTimeoutMs {heartbeat_timeout_ms} must be positive"));
            }
            let timeout = Duration::from_millis(heartbeat_timeout_ms as u64);
            tracing::info!(%peer, %app_id, "Received registration request from app {app_id} (heartbeat timeout {heartbeat_timeout_ms} ms)");
            let Some(store) = shared.store.clone() else {
                if shared.apps.register(&app_id, timeout) {
                    tracing::warn!(%peer, %app_id, "Received a registration request from app {app_id}, but it was already registered");
                }
                return Reply::Now(Ok(Bytes::new()));
            };
            let shared = shared.clone();
            Reply::Async(Box::pin(async move {
                let record = StoredDriver {
                    app_id: app_id.clone(),
                    heartbeat_timeout: timeout,
                    last_heartbeat: crate::stamp::Stamp::now(),
                };
                if let Err(e) = store.put_driver_async(record).await {
                    shared
                        .metrics
                        .store_write_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%peer, "driver of app {app_id} not registered: {e}");
                    return Err(format!(
                        "RegisterDriver (appId={app_id}) failed and may be retried: {e}"
                    ));
                }
                if shared.apps.register(&app_id, timeout) {
                    tracing::warn!(%peer, %app_id, "Received a registration request from app {app_id}, but it was already registered");
                }
                Ok(Bytes::new())
            }))
        }
        M::OpenBlocks {
            app_id,
            exec_id,
            block_ids,
        } => {
            shared
                .metrics
                .open_block_requests
                .fetch_add(1, Ordering::Relaxed);
            match open_blocks(shared, &app_id, &exec_id, &block_ids) {
                Ok(source) => ok(register_stream(shared, conn, &app_id, &exec_id, source)),
                Err(e) => fail(format!(
                    "OpenBlocks (appId={app_id}, execId={exec_id}) rejected: {e}"
                )),
            }
        }
        M::FetchShuffleBlocks {
            app_id,
            exec_id,
            shuffle_id,
            map_ids,
            reduce_ids,
            batch_fetch_enabled,
        } => {
            shared
                .metrics
                .open_block_requests
                .fetch_add(1, Ordering::Relaxed);
            match fetch_shuffle_blocks(
                &app_id,
                &exec_id,
                shuffle_id,
                &map_ids,
                &reduce_ids,
                batch_fetch_enabled,
            ) {
                Ok(source) => ok(register_stream(shared, conn, &app_id, &exec_id, source)),
                Err(e) => fail(format!(
                    "FetchShuffleBlocks (appId={app_id}, execId={exec_id}) rejected: {e}"
                )),
            }
        }
        M::GetLocalDirsForExecutors { app_id, exec_ids } => {
            let mut ids: Vec<String> = Vec::with_capacity(exec_ids.len());
            let mut counts = Vec::with_capacity(exec_ids.len());
            let mut dirs = Vec::new();
            for exec in exec_ids {
                if ids.contains(&exec) {
                    continue;
                }
                if exec == "shuffle-push-merger" {
                    return Reply::Unsupported("GetLocalDirsForExecutors: merged block dirs (shuffle-push-merger) are not supported: push-based shuffle is not available".into());
                }
                match shared.registry.get(&app_id, &exec) {
                    Ok(e) => {
                        counts.push(e.info.local_dirs.len() as i32);
                        dirs.extend(e.info.local_dirs.iter().cloned());
                        ids.push(exec);
                    }
                    Err(e) => return fail(format!("GetLocalDirsForExecutors: {e}")),
                }
            }
            ok(M::LocalDirsForExecutors {
                exec_ids: ids,
                num_local_dirs_by_exec: counts,
                all_local_dirs: dirs,
            })
        }
        M::RemoveBlocks {
            app_id,
            exec_id,
            block_ids,
        } => {
            let exec = match shared.registry.get(&app_id, &exec_id) {
                Ok(e) => e,
                Err(e) => return fail(format!("RemoveBlocks: {e}")),
            };
            let shared = shared.clone();
            Reply::Blocking(Box::new(move || {
                let mut removed = 0;
                for id in &block_ids {
                    let name = match removable_file_name(id) {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(
                                "RemoveBlocks (appId={app_id}, execId={exec_id}): refusing {e}"
                            );
                            continue;
                        }
                    };
                    let path = exec.path(&name);
                    match exec.remove(&path) {
                        Ok(()) => {
                            removed += 1;
                            let index = name.strip_suffix(".index");
                            if let Some(stem) = index.or_else(|| name.strip_suffix(".data")) {
                                if let Ok(BlockId::Shuffle {
                                    shuffle_id, map_id, ..
                                }) = BlockId::parse(stem)
                                {
                                    if index.is_some() {
                                        shared.index_cache.invalidate(&exec, shuffle_id, map_id);
                                    }
                                    shared.data_files.forget(&exec, shuffle_id, map_id);
                                }
                            }
                        }
                        Err(e) => tracing::warn!("Failed to delete block: {}: {e}", path.display()),
                    }
                }
                Ok(M::BlocksRemoved {
                    num_removed_blocks: removed,
                }
                .to_bytes())
            }))
        }
        M::DiagnoseCorruption {
            app_id,
            exec_id,
            shuffle_id,
            map_id,
            reduce_id,
            checksum,
            algorithm,
        } => {
            let shared = shared.clone();
            Reply::Blocking(Box::new(move || {
                let c = crate::checksum::diagnose(
                    &shared, &app_id, &exec_id, shuffle_id, map_id, reduce_id, checksum, &algorithm,
                );
                Ok(M::CorruptionCause { cause: c }.to_bytes())
            }))
        }
        M::UploadBlock { .. }
        | M::UploadBlockStream { .. }
        | M::PushBlockStream { .. }
        | M::FinalizeShuffleMerge { .. }
        | M::FetchShuffleBlockChunks { .. }
        | M::RemoveShuffleMerge { .. } => unsupported(msg.name()),
        M::ShuffleServiceHeartbeat { .. }
        | M::StreamHandle { .. }
        | M::BlocksRemoved { .. }
        | M::LocalDirsForExecutors { .. }
        | M::MergeStatuses { .. }
        | M::CorruptionCause { .. }
        | M::BlockPushReturnCode { .. } => fail(format!(
            "Unexpected message: {} is not a request",
            msg.name()
        )),
    }
}

/// Handles one OneWayMessage body (no reply possible).
pub fn one_way(shared: &Shared, body: &[u8], peer: SocketAddr, client: Option<&str>) {
    match M::decode(body) {
        Ok(M::ShuffleServiceHeartbeat { app_id }) if client.is_some_and(|c| c != app_id) => {
            // Another app's heartbeats would keep its files forever (see `checked_app_id`).
            shared.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, app = ?client, "ignoring ShuffleServiceHeartbeat for application {app_id:?}: the connection authenticated as another application");
        }
        Ok(M::ShuffleServiceHeartbeat { app_id }) => {
            if !shared.apps.heartbeat(&app_id) {
                tracing::warn!(%peer, "Received ShuffleServiceHeartbeat from an unknown app {app_id}");
            } else {
                tracing::trace!(%peer, "heartbeat from {app_id}");
            }
        }
        Ok(M::RemoveShuffleMerge { app_id, .. }) => {
            tracing::debug!(%peer, "ignoring RemoveShuffleMerge from {app_id}: push-based shuffle is not available")
        }
        Ok(other) => {
            shared.metrics.error(ErrorKind::BadRequest);
            tracing::warn!(%peer, "ignoring one-way {}: not a one-way message", other.name())
        }
        Err(e) => {
            shared.metrics.error(ErrorKind::BadRequest);
            tracing::warn!(%peer, "ignoring undecodable one-way message: {e}")
        }
    }
}

fn register_stream(shared: &Shared, conn: u64, app_id: &str, exec_id: &str, source: Source) -> M {
    let num_chunks = source.len() as i32;
    let stream_id = shared
        .streams
        .register(conn, app_id.into(), exec_id.into(), source);
    M::StreamHandle {
        stream_id,
        num_chunks,
    }
}

fn open_blocks(
    shared: &Shared,
    app_id: &str,
    exec_id: &str,
    ids: &[String],
) -> Result<Source, String> {
    validate_id("appId", app_id).map_err(|e| e.to_string())?;
    validate_id("execId", exec_id).map_err(|e| e.to_string())?;
    let first = ids.first().ok_or("no block ids")?;
    let parse = |s: &String| BlockId::parse(s).map_err(|e| e.to_string());
    match parse(first)? {
        BlockId::Shuffle { shuffle_id, .. } => {
            let mut blocks = Vec::with_capacity(ids.len());
            for id in ids {
                match parse(id)? {
                    BlockId::Shuffle {
                        shuffle_id: s,
                        map_id,
                        reduce_id,
                    } if s == shuffle_id => blocks.push(BlockRange {
                        map_id,
                        start: reduce_id,
                        end: reduce_id + 1,
                    }),
                    BlockId::Shuffle { .. } => {
                        return Err(format!("Expected shuffleId={shuffle_id}, got: {id}"))
                    }
                    _ => return Err(format!("Unexpected shuffle block id format: {id}")),
                }
            }
            Ok(Source::Shuffle {
                shuffle_id,
                blocks: blocks.into(),
            })
        }
        BlockId::Rdd { .. } => {
            if !shared.config.fetch_rdd_enabled {
                return Err("RDD block fetching is disabled (spark.shuffle.service.fetch.rdd.enabled=false)".into());
            }
            let mut blocks = Vec::with_capacity(ids.len());
            for id in ids {
                match parse(id)? {
                    BlockId::Rdd { rdd_id, split } => blocks.push((rdd_id, split)),
                    _ => return Err(format!("Unexpected RDD block id format: {id}")),
                }
            }
            Ok(Source::Rdd {
                blocks: blocks.into(),
            })
        }
        BlockId::ShuffleBatch { .. } => Err(format!("Unexpected block id format: {first}")),
    }
}

fn fetch_shuffle_blocks(
    app_id: &str,
    exec_id: &str,
    shuffle_id: i32,
    map_ids: &[i64],
    reduce_ids: &[Vec<i32>],
    batch: bool,
) -> Result<Source, String> {
    validate_id("appId", app_id).map_err(|e| e.to_string())?;
    validate_id("execId", exec_id).map_err(|e| e.to_string())?;
    if shuffle_id < 0 {
        return Err(format!("negative shuffleId {shuffle_id}"));
    }
    if map_ids.is_empty() || map_ids.len() != reduce_ids.len() {
        return Err(format!(
            "{} mapIds but {} reduceId arrays (must be equal and non-zero)",
            map_ids.len(),
            reduce_ids.len()
        ));
    }
    let mut blocks = Vec::new();
    for (&map_id, reduces) in map_ids.iter().zip(reduce_ids) {
        if map_id < 0 {
            return Err(format!("negative mapId {map_id}"));
        }
        if batch {
            match reduces.as_slice() {
                &[start, end] if 0 <= start && start <= end => blocks.push(BlockRange { map_id, start, end }),
                other => return Err(format!("batch fetch for map {map_id} needs [startReduceId, endReduceId), got {other:?}")),
            }
        } else {
            if reduces.is_empty() {
                return Err(format!("no reduceIds for map {map_id}"));
            }
            for &r in reduces {
                if !(0..i32::MAX).contains(&r) {
                    return Err(format!("invalid reduceId {r} for map {map_id}"));
                }
                blocks.push(BlockRange {
                    map_id,
                    start: r,
                    end: r + 1,
                });
            }
        }
    }
    Ok(Source::Shuffle {
        shuffle_id,
        blocks: blocks.into(),
    })
}
