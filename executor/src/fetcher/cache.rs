//! The fetcher cache shared by every executor process on the agent.
//!
//! # Layout
//! ```text
//! <cache_dir>/                 created 01777 (like /tmp) so executors of every user can use it
//!   .lock                      global lock: space accounting and eviction
//!   <user>/                    0700, one per task user; `_<euid>` when there is none (one per
//!                              executor identity: a root and a non-root executor never share it)
//!     locks/<key>.lock         per-entry lock; its mtime is the entry's last use (LRU)
//!     entries/<key>            complete entries only (renamed into place), read-only
//!     tmp/<key>.<bytes>.<pid>.<n>.part   downloads in flight; <bytes> is the space reserved
//! ```
//! `<key>` is a SHA-256 of `user@uri` (as Mesos keys its cache), so one URI is cached once per
//! user and a user only ever reads entries under its own 0700 directory. User names are used
//! verbatim when they are plain (`[A-Za-z0-9._-]`, not starting with `.` or `_`), else hashed
//! (`_u<hex>`), so no user name can land on another user's or the no-user directory.
//!
//! # Trust
//! Any local user can create names in the 01777 root, so nothing found there is trusted by its
//! name alone:
//! - the root must be a real directory (not a symlink), owned by root or by the executor's
//!   effective uid, and carry the sticky bit if group or others may write to it;
//! - a user directory and its `locks`, `entries` and `tmp` are used only if each is a real
//!   directory owned by the executor's effective uid with no group/other permission bits (they
//!   are created that way). A directory that fails the check makes that fetch go direct (the
//!   error names the directory and why), and eviction never looks inside it;
//! - files the cache creates are opened without following symlinks (`O_NOFOLLOW`, `O_EXCL`).
//!
//! # Locking (flock via `std::fs::File::lock`)
//! - Placing an entry into a sandbox holds the entry lock *shared*: a referenced entry.
//! - Downloading holds it *exclusive*; a second process wanting the same URI blocks on the
//!   exclusive lock, then finds the entry and uses it: one download.
//! - Eviction runs under the global lock and only removes entries whose lock it can take
//!   exclusive *without waiting*, i.e. unreferenced ones; least recently used first.
//! - A `.part` file whose entry lock is free belongs to a dead process and is removed; so does
//!   one of the key whose lock the scanning process itself holds exclusive (other than its own
//!   download). Only the lock decides: the PID in the name is informative (executors in other
//!   PID namespaces see each other's PIDs as absent).
//! - The global lock file is writable by every local user, so it is waited for at most
//!   [`global_lock_wait`] (default [`GLOBAL_LOCK_WAIT`]); past that, reserving or committing
//!   fails and the caller fetches directly.
//!
//! Nothing is wiped at start-up: the cache survives executor and agent restarts. So that it
//! also survives a power loss, a download's data is flushed (`fdatasync`) before it is renamed
//! into `entries/`, and the directory is flushed after.

use std::fs::{self, File, TryLockError};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::error::{io_kind, FetchErrorKind};

/// Default bound on waiting for the global lock before a fetch bypasses the cache.
pub const GLOBAL_LOCK_WAIT: Duration = Duration::from_secs(30);

static GLOBAL_LOCK_WAIT_MS: AtomicU64 = AtomicU64::new(GLOBAL_LOCK_WAIT.as_millis() as u64);

/// How long reserving or committing waits for the global lock (process-wide).
pub fn global_lock_wait() -> Duration {
    Duration::from_millis(GLOBAL_LOCK_WAIT_MS.load(Ordering::Relaxed))
}

/// Changes the bound on waiting for the global lock for this process (tests shorten it).
pub fn set_global_lock_wait(d: Duration) {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    GLOBAL_LOCK_WAIT_MS.store(ms, Ordering::Relaxed);
}

/// The cache on disk.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    capacity: u64,
    /// Entries are hardlinked out (read-only, root-owned).
    pub links: bool,
    as_root: bool,
    /// The executor's effective uid: the owner every trusted directory must have.
    euid: u32,
}

/// One (user, URI) entry's paths.
#[derive(Debug, Clone)]
pub struct Key {
    pub hash: String,
    pub user_dir: PathBuf,
    pub entry: PathBuf,
    pub lock: PathBuf,
}

/// A held entry lock (shared or exclusive); released on drop.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

static PART_SEQ: AtomicU64 = AtomicU64::new(0);

/// The cache's subdirectories of a user directory.
const SUBDIRS: [&str; 3] = ["locks", "entries", "tmp"];

fn user_dir_name(user: Option<&str>, euid: u32) -> String {
    match user {
        None => format!("_{euid}"),
        Some(u)
            if !u.is_empty()
                && !u.starts_with('.')
                && !u.starts_with('_')
                && u.len() <= 64
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) =>
        {
            u.to_string()
        }
        Some(u) => {
            let h = Sha256::digest(u.as_bytes());
            format!("_u{}", hex(&h[..8]))
        }
    }
}

/// The `<key>` naming (user, uri)'s entry, lock and downloads.
pub fn key_hash(user: Option<&str>, uri: &str) -> String {
    let material = match user {
        Some(u) => format!("{u}@{uri}"),
        None => uri.to_string(),
    };
    hex(&Sha256::digest(material.as_bytes())[..20])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn untrusted(p: &Path, reason: String) -> FetchErrorKind {
    FetchErrorKind::PermissionDenied(format!(
        "fetcher cache directory {} is not trusted: {reason}",
        p.display()
    ))
}

/// Checks that `p` is a real directory (not a symlink) owned by `euid` with no group/other
/// permission bits: nobody else can have planted or changed anything in it.
fn check_private_dir(p: &Path, euid: u32) -> Result<(), FetchErrorKind> {
    let m = fs::symlink_metadata(p).map_err(|e| io_kind(p, e))?;
    let reason = if m.file_type().is_symlink() {
        "it is a symlink".to_string()
    } else if !m.is_dir() {
        "it is not a directory".to_string()
    } else if m.uid() != euid {
        format!(
            "it is owned by uid {}, not by the executor's uid {euid}",
            m.uid()
        )
    } else if m.mode() & 0o077 != 0 {
        format!(
            "its mode {:04o} gives group/other access (must be 0700)",
            m.mode() & 0o7777
        )
    } else {
        return Ok(());
    };
    Err(untrusted(p, reason))
}

/// Creates `p` 0700 unless it exists, then checks it as [`check_private_dir`].
fn private_dir(p: &Path, euid: u32) -> Result<(), FetchErrorKind> {
    match fs::DirBuilder::new().mode(0o700).create(p) {
        // The umask may have taken bits away; it never adds any.
        Ok(()) => {
            fs::set_permissions(p, fs::Permissions::from_mode(0o700)).map_err(|e| io_kind(p, e))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_kind(p, e)),
    }
    check_private_dir(p, euid)
}

/// Checks the cache root: a real directory, owned by root or `euid`, sticky if group- or
/// world-writable (else another user could rename a user directory away and plant its own).
fn check_root(p: &Path, euid: u32) -> Result<(), FetchErrorKind> {
    let m = fs::symlink_metadata(p).map_err(|e| io_kind(p, e))?;
    let mode = m.mode() & 0o7777;
    let reason = if m.file_type().is_symlink() {
        "it is a symlink".to_string()
    } else if !m.is_dir() {
        "it is not a directory".to_string()
    } else if m.uid() != 0 && m.uid() != euid {
        format!(
            "it is owned by uid {}, neither root nor the executor's uid {euid}",
            m.uid()
        )
    } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        format!("its mode {mode:04o} lets group/others write without the sticky bit")
    } else {
        return Ok(());
    };
    Err(untrusted(p, reason))
}

/// Opens an existing file of the cache without following a symlink, refusing anything but a
/// regular file (a FIFO or device planted under that name could block or worse).
fn open_regular(p: &Path, write: bool) -> Result<File, FetchErrorKind> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| io_kind(p, e))?;
    let m = f.metadata().map_err(|e| io_kind(p, e))?;
    if !m.is_file() {
        return Err(FetchErrorKind::PermissionDenied(format!(
            "fetcher cache file {} is not a regular file",
            p.display()
        )));
    }
    Ok(f)
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`. Never wipes anything. Fails when the
    /// root cannot be trusted (see the module docs); the caller then fetches directly.
    pub fn open(root: &Path, capacity: u64, links: bool) -> Result<Cache, FetchErrorKind> {
        let euid = nix::unistd::geteuid().as_raw();
        let as_root = euid == 0;
        if let Some(parent) = root.parent() {
            fs::create_dir_all(parent).map_err(|e| io_kind(parent, e))?;
        }
        match fs::create_dir(root) {
            Ok(()) => fs::set_permissions(root, fs::Permissions::from_mode(0o1777))
                .map_err(|e| io_kind(root, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_kind(root, e)),
        }
        check_root(root, euid)?;
        let lock = root.join(".lock");
        // O_EXCL: never follows a symlink planted under the name.
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock)
        {
            Ok(f) => {
                let _ = f.set_permissions(fs::Permissions::from_mode(0o666));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_kind(&lock, e)),
        }
        let links = if links && !as_root {
            tracing::warn!(
                "fetcher cache links requested but the executor does not run as root: \
                 a task could change a linked entry, so entries are copied instead"
            );
            false
        } else {
            links
        };
        Ok(Cache {
            root: root.to_path_buf(),
            capacity,
            links,
            as_root,
            euid,
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Paths for (user, uri); creates the user's directories, or checks the existing ones.
    /// Fails (the caller then fetches directly) when one of them cannot be trusted.
    pub fn key(&self, user: Option<&str>, uri: &str) -> Result<Key, FetchErrorKind> {
        let hash = key_hash(user, uri);
        let user_dir = self.root.join(user_dir_name(user, self.euid));
        private_dir(&user_dir, self.euid)?;
        for sub in SUBDIRS {
            private_dir(&user_dir.join(sub), self.euid)?;
        }
        Ok(Key {
            entry: user_dir.join("entries").join(&hash),
            lock: user_dir.join("locks").join(format!("{hash}.lock")),
            hash,
            user_dir,
        })
    }

    fn open_lock(path: &Path) -> Result<File, FetchErrorKind> {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| io_kind(path, e))
    }

    /// Takes the entry lock shared if the entry exists (a hit); `None` when it does not.
    pub fn lock_hit(&self, key: &Key) -> Result<Option<KeyLock>, FetchErrorKind> {
        let f = Self::open_lock(&key.lock)?;
        f.lock_shared().map_err(|e| io_kind(&key.lock, e))?;
        if key.entry.exists() {
            let _ = f.set_modified(SystemTime::now());
            Ok(Some(KeyLock { _file: f }))
        } else {
            Ok(None)
        }
    }

    /// Takes the entry lock exclusive, waiting for a download in another process to end.
    pub fn lock_exclusive(&self, key: &Key) -> Result<KeyLock, FetchErrorKind> {
        let f = Self::open_lock(&key.lock)?;
        f.lock().map_err(|e| io_kind(&key.lock, e))?;
        Ok(KeyLock { _file: f })
    }

    /// Claims space for a download of `size` bytes (0 when unknown), evicting unreferenced
    /// entries least recently used first. Returns the `.part` path to write, or `None` when
    /// the space cannot be freed (the caller then fetches directly into the sandbox).
    /// The caller holds `key`'s lock exclusive.
    pub fn reserve(&self, key: &Key, size: u64) -> Result<Option<PathBuf>, FetchErrorKind> {
        if size > self.capacity {
            return Ok(None);
        }
        let _global = self.global_lock()?;
        if !self.make_room(size, key)? {
            return Ok(None);
        }
        let seq = PART_SEQ.fetch_add(1, Ordering::Relaxed);
        let part = key.user_dir.join("tmp").join(format!(
            "{}.{size}.{}.{seq}.part",
            key.hash,
            std::process::id()
        ));
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&part)
            .map_err(|e| io_kind(&part, e))?;
        Ok(Some(part))
    }

    /// Renames a complete `.part` into place as the entry, after checking (and making) room for
    /// its real size. Returns false when it does not fit: the caller keeps the file for itself.
    pub fn commit(&self, key: &Key, part: &Path, size: u64) -> Result<bool, FetchErrorKind> {
        if size > self.capacity {
            return Ok(false);
        }
        // Durable before visible: an entry outlives executor and agent restarts, so a power
        // loss must not leave a complete-looking name over blocks that never reached the disk.
        // Flushed before taking the global lock, which other executors wait on.
        let f = open_regular(part, false)?;
        f.sync_data().map_err(|e| io_kind(part, e))?;
        let _global = self.global_lock()?;
        // Our own reservation is part of the usage: count the entry instead.
        let fits = self.make_room_excluding(size, key, Some(part))?;
        if !fits {
            return Ok(false);
        }
        let mode = if self.links { 0o444 } else { 0o400 };
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| io_kind(part, e))?;
        fs::rename(part, &key.entry).map_err(|e| io_kind(&key.entry, e))?;
        // The rename itself is durable once the directory holding the entry is flushed.
        if let Some(dir) = key.entry.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_kind(dir, e))?;
        }
        if let Ok(f) = Self::open_lock(&key.lock) {
            let _ = f.set_modified(SystemTime::now());
        }
        Ok(true)
    }

    /// Takes the global lock, waiting at most [`global_lock_wait`]: any local user can open
    /// and hold the file, so an unbounded wait would let one stall every cached fetch.
    fn global_lock(&self) -> Result<File, FetchErrorKind> {
        let p = self.root.join(".lock");
        let f = open_regular(&p, false)?;
        let wait = global_lock_wait();
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(f),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(io_kind(&p, e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(FetchErrorKind::Io {
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "gave up waiting for the fetcher cache's global lock after {wait:?}: \
                             another process holds it"
                        ),
                    ),
                    path: p,
                });
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn make_room(&self, need: u64, own: &Key) -> Result<bool, FetchErrorKind> {
        self.make_room_excluding(need, own, None)
    }

    /// Usage = entries + live reservations (except `skip_part`). Evicts LRU unreferenced
    /// entries (never `own`) until `usage + need <= capacity`. Holds the global lock.
    fn make_room_excluding(
        &self,
        need: u64,
        own: &Key,
        skip_part: Option<&Path>,
    ) -> Result<bool, FetchErrorKind> {
        let scan = self.scan(Some(own), skip_part);
        let mut used: u64 = scan.entries.iter().map(|e| e.size).sum::<u64>() + scan.reserved;
        if used + need <= self.capacity {
            return Ok(true);
        }
        let mut victims = scan.entries;
        victims.sort_by_key(|e| e.last_use);
        for v in victims {
            if used + need <= self.capacity {
                break;
            }
            if v.entry == own.entry {
                continue;
            }
            let Ok(f) = Self::open_lock(&v.lock) else {
                continue;
            };
            match f.try_lock() {
                Ok(()) => {
                    if fs::remove_file(&v.entry).is_ok() {
                        used = used.saturating_sub(v.size);
                        tracing::info!(entry = %v.entry.display(), bytes = v.size, "fetcher cache: evicted");
                    }
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(_)) => {}
            }
        }
        Ok(used + need <= self.capacity)
    }

    /// Whether the user directory `udir` and its subdirectories pass the trust check; scan
    /// looks into nothing else, so it never evicts or deletes through a planted path.
    fn trusted_user_dir(&self, udir: &Path) -> bool {
        let checked = check_private_dir(udir, self.euid).and_then(|()| {
            SUBDIRS
                .iter()
                .try_for_each(|sub| check_private_dir(&udir.join(sub), self.euid))
        });
        match checked {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "fetcher cache: not scanning an untrusted directory");
                false
            }
        }
    }

    /// Lists every readable entry and the live reservations; removes dead `.part` files.
    /// `own` is the key whose lock the caller holds exclusive: a `.part` of it other than
    /// `skip_part` (the caller's own) is dead, since a live download holds that lock.
    fn scan(&self, own: Option<&Key>, skip_part: Option<&Path>) -> Scan {
        let mut out = Scan::default();
        let Ok(users) = fs::read_dir(&self.root) else {
            return out;
        };
        for u in users.flatten() {
            // `file_type` does not follow symlinks: a symlinked user directory is skipped here.
            if !u.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let udir = u.path();
            if !self.trusted_user_dir(&udir) {
                continue;
            }
            if let Ok(entries) = fs::read_dir(udir.join("entries")) {
                for e in entries.flatten() {
                    // Not following symlinks: only regular files are entries.
                    let Ok(meta) = e.metadata() else { continue };
                    if !meta.is_file() {
                        continue;
                    }
                    let hash = e.file_name().to_string_lossy().into_owned();
                    let lock = udir.join("locks").join(format!("{hash}.lock"));
                    let last_use = fs::symlink_metadata(&lock)
                        .and_then(|m| m.modified())
                        .or_else(|_| meta.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    out.entries.push(EntryInfo {
                        size: meta.len(),
                        last_use,
                        entry: e.path(),
                        lock,
                    });
                }
            }
            if let Ok(parts) = fs::read_dir(udir.join("tmp")) {
                for p in parts.flatten() {
                    let path = p.path();
                    if Some(path.as_path()) == skip_part {
                        continue;
                    }
                    let name = p.file_name().to_string_lossy().into_owned();
                    let mut fields = name.split('.');
                    let (Some(hash), Some(size)) = (fields.next(), fields.next()) else {
                        continue;
                    };
                    let size: u64 = size.parse().unwrap_or(0);
                    // Only the entry lock tells a live download from a dead one: the PID in
                    // the name may belong to another PID namespace, where it looks absent.
                    if own.is_some_and(|k| k.hash == hash && k.user_dir == udir) {
                        tracing::info!(part = %path.display(), "fetcher cache: removing a download left by a dead process");
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    let lock = udir.join("locks").join(format!("{hash}.lock"));
                    let Ok(f) = Self::open_lock(&lock) else {
                        out.reserved += size;
                        continue;
                    };
                    match f.try_lock_shared() {
                        // Nobody downloads this key: the part is left over from a dead process.
                        Ok(()) => {
                            tracing::info!(part = %path.display(), "fetcher cache: removing a download left by a dead process");
                            let _ = fs::remove_file(&path);
                        }
                        Err(_) => out.reserved += size,
                    }
                }
            }
        }
        out
    }

    /// Bytes held by readable entries (for tests and metrics).
    pub fn used_bytes(&self) -> u64 {
        self.scan(None, None).entries.iter().map(|e| e.size).sum()
    }

    pub fn as_root(&self) -> bool {
        self.as_root
    }
}

#[derive(Default)]
struct Scan {
    entries: Vec<EntryInfo>,
    reserved: u64,
}

struct EntryInfo {
    size: u64,
    last_use: SystemTime,
    entry: PathBuf,
    lock: PathBuf,
}
