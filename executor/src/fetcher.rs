//! Fetching a task's `CommandInfo.URI`s into its sandbox, through a fetcher cache shared by
//! every executor process on the agent (spec: `mesos-executor-api.md` §6).
//!
//! # API (stable; the executor calls this before starting a custom-mode task)
//! ```text
//! let cfg = FetchConfig::from_env_and_flags(&args)?;   // once, at start-up; log it
//! let summary = fetcher::fetch_all(&command.uris, &work_dir, user.as_deref(), &cfg).await?;
//! ```
//! - [`FetchConfig`]: cache dir (default `/var/cache/croupier/fetcher`, env
//!   `CROUPIER_FETCHER_CACHE_DIR`, flag `--fetcher_cache_dir`), cache size (default 2GB, env
//!   `CROUPIER_FETCHER_CACHE_SIZE`, flag `--fetcher_cache_size`, Mesos byte syntax `512MB`),
//!   stall timeout (default 60secs, `CROUPIER_FETCHER_STALL_TIMEOUT`,
//!   `--fetcher_stall_timeout`), hardlink mode (`CROUPIER_FETCHER_CACHE_LINKS=1`,
//!   `--fetcher_cache_links`), extra CA bundle for https (`CROUPIER_FETCHER_CA_FILE`,
//!   `--fetcher_ca_file`), progress log interval for long downloads (default 10secs,
//!   `CROUPIER_FETCHER_PROGRESS_INTERVAL`, `--fetcher_progress_interval`). Flags override the
//!   environment.
//! - [`fetch_all`]: fetches every URI in order, stops at the first failure and returns a
//!   [`FetchError`] whose `Display` is `failed to fetch '<uri>': <cause>` (HTTP status, DNS,
//!   disk full, bad archive, ...) and whose [`FetchError::retryable`] says whether to try again.
//!   On failure the executor sends `TASK_FAILED` / `REASON_CONTAINER_LAUNCH_FAILED` with that
//!   message and does not start the task.
//!
//! # Semantics (upstream `mesos-fetcher`, §6.2)
//! Destination = `output_file` (relative, no `..`) or the basename of the URI (query kept, as
//! upstream; empty, `.` and `..` refused). `executable` → mode 0755, no extraction. `extract`
//! (default on) for `.tar .tgz .tar.gz .tbz2 .tar.bz2 .txz .tar.xz .zip` into the sandbox root
//! and bare `.gz` gunzipped; archive entries that would land outside the sandbox are refused.
//! Schemes: `http(s)://` (200 only, redirects followed, streamed to disk, stall timeout,
//! short bodies detected), `file://` and absolute paths, `hdfs://` (native client),
//! `s3://`/`s3a://`/`s3n://` (native client). With `cache: true` the URI goes through the shared
//! cache ([`cache`] module docs: layout, locking, eviction); any cache trouble falls back to a
//! direct fetch, as upstream.
//!
//! When the executor runs as root and `user` is given, fetched files are chowned to the user and
//! local paths are opened with the user's permissions (MESOS-5845; [`local`]), so a path the
//! user could not read is refused at the moment of the open, with no check-then-open race.
//!
//! # Layout
//! - [`config`]: typed settings; [`error`]: the error type.
//! - [`uri`]: URI → plan (source, destination, post-processing).
//! - `source` (+ `s3`, `hdfs`): opening a source and streaming it to disk; `stream`: the
//!   byte stream they all yield (below all three).
//! - [`cache`]: the shared cache; `place`: entry → sandbox (reflink, copy, hardlink).
//! - [`extract`]: safe archive extraction.

pub mod cache;
pub mod config;
pub mod error;
pub mod extract;
mod hdfs;
mod local;
mod place;
mod s3;
mod source;
mod stream;
pub mod uri;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub use config::{ConfigError, FetchConfig};
pub use error::{FetchError, FetchErrorKind};
pub use extract::Owner;
pub use place::Method;

use cache::{Cache, Key};
use error::io_kind;
use source::{Clients, Landed, Sink};
use uri::Plan;

/// One `CommandInfo.URI` (`None` means unset, with Mesos's defaults: executable false,
/// extract true, cache false).
pub use croupier_proto::v1::command_info::Uri;

/// How the cache was involved for one URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// `cache` was false (or the cache is disabled): fetched straight into the sandbox.
    Off,
    /// Served from an existing entry: no download.
    Hit,
    /// Downloaded into the cache, then placed.
    Miss,
    /// Cacheable but fetched directly (too large, no room, or cache unusable).
    Bypass,
}

impl std::fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CacheOutcome::Off => "off",
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
        })
    }
}

/// What happened to one URI.
#[derive(Debug, Clone)]
pub struct FetchedUri {
    pub uri: String,
    /// The file in the sandbox (for a cached archive, the archive itself is not placed).
    pub dest: PathBuf,
    pub bytes: u64,
    pub cache: CacheOutcome,
    /// How a cache entry reached the sandbox (`None` when downloaded directly or extracted).
    pub method: Option<Method>,
    pub extracted: bool,
    pub elapsed: Duration,
}

/// The result of [`fetch_all`].
#[derive(Debug, Clone, Default)]
pub struct FetchSummary {
    pub items: Vec<FetchedUri>,
}

impl FetchSummary {
    pub fn total_bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }
}

struct Ctx<'a> {
    work_dir: PathBuf,
    user: Option<&'a str>,
    owner: Option<Owner>,
    groups: Vec<u32>,
    cfg: &'a FetchConfig,
    clients: std::sync::OnceLock<Clients>,
    cache: Option<Cache>,
}

async fn blocking<T, F>(f: F) -> Result<T, FetchErrorKind>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, FetchErrorKind> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FetchErrorKind::Internal(format!("blocking task: {e}")))?
}

/// Fetches `uris` into `work_dir` (the task's sandbox), in order; see the module docs.
pub async fn fetch_all(
    uris: &[Uri],
    work_dir: &Path,
    user: Option<&str>,
    cfg: &FetchConfig,
) -> Result<FetchSummary, FetchError> {
    let mut summary = FetchSummary::default();
    // Fully identical URI messages collapse into one, as upstream.
    let mut unique: Vec<&Uri> = Vec::new();
    for u in uris {
        if !unique.contains(&u) {
            unique.push(u);
        }
    }
    let Some(first) = unique.first() else {
        return Ok(summary);
    };
    let first_uri = first.value.trim_start().to_string();
    let mut plans = Vec::with_capacity(unique.len());
    for u in &unique {
        plans.push(uri::plan(
            &u.value,
            u.executable.unwrap_or(false),
            u.extract.unwrap_or(true),
            u.cache.unwrap_or(false),
            u.output_file.as_deref(),
            cfg,
        )?);
    }
    // User and group lookups may ask NSS (LDAP, SSSD): off the reactor.
    let u = user.map(str::to_string);
    let (owner, groups) = blocking(move || resolve_owner(u.as_deref()))
        .await
        .map_err(|k| FetchError::new(&first_uri, k))?;
    let clients = std::sync::OnceLock::new();
    let cache = if cfg.cache_size > 0 && plans.iter().any(|p| p.cache) {
        let (dir, size, links) = (cfg.cache_dir.clone(), cfg.cache_size, cfg.cache_links);
        match blocking(move || Cache::open(&dir, size, links)).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(cache_dir = %cfg.cache_dir.display(), error = %e, "fetcher cache unusable; fetching directly");
                None
            }
        }
    } else {
        None
    };
    let wd = work_dir.to_path_buf();
    let work_dir = blocking(move || std::fs::canonicalize(&wd).map_err(|e| io_kind(&wd, e)))
        .await
        .map_err(|k| FetchError::new(&first_uri, k))?;
    let ctx = Ctx {
        work_dir,
        user,
        owner,
        groups,
        cfg,
        clients,
        cache,
    };
    for plan in &plans {
        let started = Instant::now();
        let item = fetch_one(plan, &ctx)
            .await
            .map_err(|k| FetchError::new(&plan.uri, k))?;
        let elapsed = started.elapsed();
        let item = FetchedUri { elapsed, ..item };
        tracing::info!(
            uri = %item.uri,
            dest = %item.dest.display(),
            bytes = item.bytes,
            secs = format!("{:.3}", elapsed.as_secs_f64()),
            rate_mib_s = format!("{:.1}", item.bytes as f64 / elapsed.as_secs_f64().max(1e-6) / 1048576.0),
            cache = %item.cache,
            method = item.method.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            extracted = item.extracted,
            "fetched"
        );
        summary.items.push(item);
    }
    Ok(summary)
}

fn resolve_owner(user: Option<&str>) -> Result<(Option<Owner>, Vec<u32>), FetchErrorKind> {
    let Some(name) = user else {
        return Ok((None, Vec::new()));
    };
    if !nix::unistd::geteuid().is_root() {
        return Ok((None, Vec::new()));
    }
    let u = nix::unistd::User::from_name(name)
        .map_err(|e| FetchErrorKind::PermissionDenied(format!("looking up user {name:?}: {e}")))?
        .ok_or_else(|| FetchErrorKind::PermissionDenied(format!("unknown user {name:?}")))?;
    if u.uid.is_root() {
        return Ok((None, Vec::new()));
    }
    let cname = std::ffi::CString::new(name)
        .map_err(|_| FetchErrorKind::PermissionDenied(format!("bad user name {name:?}")))?;
    let groups = nix::unistd::getgrouplist(&cname, u.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![u.gid.as_raw()]);
    Ok((
        Some(Owner {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        groups,
    ))
}

async fn fetch_one(plan: &Plan, ctx: &Ctx<'_>) -> Result<FetchedUri, FetchErrorKind> {
    let dest = ctx.work_dir.join(&plan.dest_rel);
    if let Some(parent) = dest.parent() {
        let parent = parent.to_path_buf();
        blocking(move || std::fs::create_dir_all(&parent).map_err(|e| io_kind(&parent, e))).await?;
    }
    let mut item = FetchedUri {
        uri: plan.uri.clone(),
        dest: dest.clone(),
        bytes: 0,
        cache: CacheOutcome::Off,
        method: None,
        extracted: false,
        elapsed: Duration::ZERO,
    };
    match (&ctx.cache, plan.cache) {
        (Some(cache), true) => {
            let (bytes, outcome, method) = fetch_cached(plan, ctx, cache, &dest).await?;
            item.bytes = bytes;
            item.cache = outcome;
            item.method = method;
        }
        (None, true) => {
            item.bytes = fetch_direct(plan, ctx, &dest, None).await?;
            item.cache = CacheOutcome::Bypass;
        }
        (_, false) => {
            item.bytes = fetch_direct(plan, ctx, &dest, None).await?;
        }
    }
    item.extracted = plan.archive.is_some();
    Ok(item)
}

/// Downloads straight into the sandbox, then post-processes. `opened` reuses a source that
/// was already opened (a cache bypass decided after the response headers).
async fn fetch_direct(
    plan: &Plan,
    ctx: &Ctx<'_>,
    dest: &Path,
    opened: Option<source::Opened>,
) -> Result<u64, FetchErrorKind> {
    let opened = match opened {
        Some(o) => o,
        None => {
            source::open(
                &plan.source,
                &ctx.clients,
                ctx.user,
                (ctx.owner, &ctx.groups),
                ctx.cfg,
            )
            .await?
        }
    };
    let progress = source::Progress {
        uri: plan.uri.clone(),
        interval: ctx.cfg.progress_interval,
    };
    let sink = Sink {
        path: dest.to_path_buf(),
        overflow: None,
    };
    let (n, _) = match source::transfer(opened, sink, ctx.cfg, &progress).await {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(dest);
            return Err(e);
        }
    };
    finish_in_sandbox(plan, ctx, dest).await?;
    Ok(n)
}

/// Post-processing of a file fetched into the sandbox: chmod, extract, chown.
async fn finish_in_sandbox(plan: &Plan, ctx: &Ctx<'_>, dest: &Path) -> Result<(), FetchErrorKind> {
    let (plan, dest, root, owner) = (
        plan.clone(),
        dest.to_path_buf(),
        ctx.work_dir.clone(),
        ctx.owner,
    );
    blocking(move || {
        use std::os::unix::fs::PermissionsExt;
        if plan.executable {
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io_kind(&dest, e))?;
        }
        if let Some(o) = owner {
            std::os::unix::fs::chown(&dest, Some(o.uid), Some(o.gid))
                .map_err(|e| io_kind(&dest, e))?;
        }
        if let Some(kind) = plan.archive {
            let name = file_name(&dest);
            extract::extract(&dest, kind, &root, &name, owner)?;
        }
        Ok(())
    })
    .await
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Puts a cache entry into the sandbox (the caller holds the entry lock).
async fn place_entry(
    plan: &Plan,
    ctx: &Ctx<'_>,
    entry: &Path,
    dest: &Path,
    links: bool,
) -> Result<Option<Method>, FetchErrorKind> {
    let (plan, entry, dest, root, owner) = (
        plan.clone(),
        entry.to_path_buf(),
        dest.to_path_buf(),
        ctx.work_dir.clone(),
        ctx.owner,
    );
    blocking(move || {
        use std::os::unix::fs::PermissionsExt;
        if let Some(kind) = plan.archive {
            extract::extract(&entry, kind, &root, &file_name(&dest), owner)?;
            return Ok(None);
        }
        // A link only for a task running as another, non-root user than the executor that
        // owns the read-only entry: that user can neither chmod nor write it. A task running
        // as root or as the executor's own user could, so it gets a copy.
        let may_link =
            owner.is_some_and(|o| o.uid != 0 && o.uid != nix::unistd::geteuid().as_raw());
        let method = if links && !plan.executable && may_link {
            place::link_out(&entry, &dest)?
        } else {
            place::copy_out(&entry, &dest)?
        };
        if method != Method::Hardlink {
            let mode = if plan.executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io_kind(&dest, e))?;
            if let Some(o) = owner {
                std::os::unix::fs::chown(&dest, Some(o.uid), Some(o.gid))
                    .map_err(|e| io_kind(&dest, e))?;
            }
        }
        Ok(Some(method))
    })
    .await
}

/// A cache download in flight (`.part`) that is removed unless the download is handed on:
/// when a fetch is abandoned (its task killed, the executor shutting down, the future dropped),
/// nothing is left taking space under the cache's `tmp/`.
struct PartFile {
    path: Option<PathBuf>,
}

impl PartFile {
    /// The download was committed or moved: the path is no longer ours to remove.
    fn handed_on(mut self) {
        self.path = None;
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        let Some(p) = self.path.take() else { return };
        // Off the reactor when there is one; a drop outside a runtime unlinks in place.
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(move || {
                    let _ = std::fs::remove_file(p);
                });
            }
            Err(_) => {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Where the downloader of `key` leaves the cause of its failure for the processes that waited
/// for it (next to the entry's lock, in the user's own cache directory).
fn failure_marker(key: &Key) -> PathBuf {
    key.lock.with_extension("failed")
}

/// The cause written to `marker` if the download failed after `since`. The marker holds the
/// failure's time (nanoseconds since the epoch, from the same clock as `since`) on its first
/// line, then the cause.
fn recent_failure(marker: &Path, since: SystemTime) -> Option<String> {
    let m = std::fs::symlink_metadata(marker).ok()?;
    if !m.is_file() {
        return None;
    }
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::fs::File::open(marker).ok()?, 4096),
        &mut text,
    )
    .ok()?;
    let (at, cause) = text.split_once('\n')?;
    let at: u128 = at.trim().parse().ok()?;
    let since = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    (at >= since).then(|| cause.to_string())
}

/// Records why the download of `key` failed, and when (the caller holds its lock exclusive).
async fn note_failure(key: &Key, e: &FetchErrorKind) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let (marker, text) = (failure_marker(key), format!("{now}\n{e}"));
    let _ = blocking(move || {
        let tmp = marker.with_extension("failed.tmp");
        std::fs::write(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &marker))
            .map_err(|e| io_kind(&marker, e))
    })
    .await;
}

async fn fetch_cached(
    plan: &Plan,
    ctx: &Ctx<'_>,
    cache: &Cache,
    dest: &Path,
) -> Result<(u64, CacheOutcome, Option<Method>), FetchErrorKind> {
    let key: Key = {
        let (c, user, uri) = (
            cache.clone(),
            ctx.user.map(str::to_string),
            plan.uri.clone(),
        );
        match blocking(move || c.key(user.as_deref(), &uri)).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(uri = %plan.uri, error = %e, "fetcher cache unusable; fetching directly");
                let n = fetch_direct(plan, ctx, dest, None).await?;
                return Ok((n, CacheOutcome::Bypass, None));
            }
        }
    };
    // From here on this fetch waits (in `lock_hit` or `lock_exclusive`) for any download of
    // the same URI in another process; a failure of that download is one it shares.
    let waited_from = SystemTime::now();
    for _attempt in 0..4 {
        // A hit: place it while holding the entry shared (referenced, so never evicted).
        let hit = {
            let (c, k) = (cache.clone(), key.clone());
            blocking(move || c.lock_hit(&k)).await?
        };
        if let Some(lock) = hit {
            let e = key.entry.clone();
            let size =
                blocking(move || Ok(std::fs::metadata(&e).map(|m| m.len()).unwrap_or(0))).await?;
            let method = place_entry(plan, ctx, &key.entry, dest, cache.links).await?;
            drop(lock);
            return Ok((size, CacheOutcome::Hit, method));
        }
        // A miss: become the downloader, or wait for the one in another process.
        let lock = {
            let (c, k) = (cache.clone(), key.clone());
            blocking(move || c.lock_exclusive(&k)).await?
        };
        let (entry, marker) = (key.entry.clone(), failure_marker(&key));
        let (present, failed) =
            blocking(move || Ok((entry.exists(), recent_failure(&marker, waited_from)))).await?;
        if present {
            drop(lock);
            continue;
        }
        // The download this one waited for failed: fail alike instead of queueing up behind
        // each other for the same failure (upstream's waiters share the download's outcome).
        if let Some(cause) = failed {
            return Err(FetchErrorKind::Remote(format!(
                "another executor's download of this URI failed while this one waited for it: {cause}"
            )));
        }
        let opened = match source::open(
            &plan.source,
            &ctx.clients,
            ctx.user,
            (ctx.owner, &ctx.groups),
            ctx.cfg,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => {
                note_failure(&key, &e).await;
                return Err(e);
            }
        };
        let part = {
            let (c, k, size) = (cache.clone(), key.clone(), opened.size.unwrap_or(0));
            blocking(move || c.reserve(&k, size)).await
        };
        let part = match part {
            Ok(Some(p)) => p,
            Ok(None) => {
                tracing::info!(uri = %plan.uri, size = ?opened.size, capacity = cache.capacity(), "too large for the fetcher cache; fetching directly");
                drop(lock);
                let n = fetch_direct(plan, ctx, dest, Some(opened)).await?;
                return Ok((n, CacheOutcome::Bypass, None));
            }
            Err(e) => {
                tracing::warn!(uri = %plan.uri, error = %e, "fetcher cache reservation failed; fetching directly");
                drop(lock);
                let n = fetch_direct(plan, ctx, dest, Some(opened)).await?;
                return Ok((n, CacheOutcome::Bypass, None));
            }
        };
        let part_file = PartFile {
            path: Some(part.clone()),
        };
        let overflow = opened
            .size
            .is_none()
            .then(|| (cache.capacity(), dest.to_path_buf()));
        let progress = source::Progress {
            uri: plan.uri.clone(),
            interval: ctx.cfg.progress_interval,
        };
        let sink = Sink {
            path: part.clone(),
            overflow,
        };
        let (n, landed) = match source::transfer(opened, sink, ctx.cfg, &progress).await {
            Ok(r) => r,
            Err(FetchErrorKind::DiskFull(full)) if full == part => {
                // The cache's file system is full, not the sandbox's: fetch directly.
                drop(part_file);
                drop(lock);
                tracing::warn!(uri = %plan.uri, part = %full.display(), "fetcher cache file system full; fetching directly");
                let n = fetch_direct(plan, ctx, dest, None).await?;
                return Ok((n, CacheOutcome::Bypass, None));
            }
            Err(e) => {
                drop(part_file);
                let d = dest.to_path_buf();
                let _ = blocking(move || Ok(std::fs::remove_file(d))).await;
                note_failure(&key, &e).await;
                return Err(e);
            }
        };
        if landed == Landed::Overflowed {
            drop(lock);
            tracing::info!(uri = %plan.uri, bytes = n, "turned out larger than the fetcher cache; kept in the sandbox only");
            finish_in_sandbox(plan, ctx, dest).await?;
            return Ok((n, CacheOutcome::Bypass, None));
        }
        let committed = {
            let (c, k, p) = (cache.clone(), key.clone(), part.clone());
            blocking(move || c.commit(&k, &p, n)).await
        };
        match committed {
            Ok(true) => {
                part_file.handed_on();
                let marker = failure_marker(&key);
                let _ = blocking(move || Ok(std::fs::remove_file(marker))).await;
                let method = place_entry(plan, ctx, &key.entry, dest, cache.links).await?;
                drop(lock);
                return Ok((n, CacheOutcome::Miss, method));
            }
            other => {
                if let Err(e) = other {
                    tracing::warn!(uri = %plan.uri, error = %e, "fetcher cache commit failed; keeping the download in the sandbox");
                }
                let (p, d) = (part.clone(), dest.to_path_buf());
                let moved = blocking(move || {
                    if std::fs::rename(&p, &d).is_err() {
                        place::copy_out(&p, &d)?;
                        let _ = std::fs::remove_file(&p);
                    }
                    Ok(())
                })
                .await;
                drop(lock);
                moved?;
                finish_in_sandbox(plan, ctx, dest).await?;
                return Ok((n, CacheOutcome::Bypass, None));
            }
        }
    }
    Err(FetchErrorKind::Internal(
        "fetcher cache entry kept disappearing; giving up".into(),
    ))
}
