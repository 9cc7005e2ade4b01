//! The fetcher cache shared by every executor process on the agent.
//!
//! # Layout
//! ```text
//! <cache_dir>/                 created 01777 (like /tmp) so executors of every user can use it
//!   .lock                      global lock: space accounting and eviction
//!   <user>/                    0700, one per task user (`_` when there is none)
//!     locks/<key>.lock         per-entry lock; its mtime is the entry's last use (LRU)
//!     entries/<key>            complete entries only (renamed into place), read-only
//!     tmp/<key>.<bytes>.<pid>.<n>.part   downloads in flight; <bytes> is the space reserved
//! ```
//! `<key>` is a SHA-256 of `user@uri` (as Mesos keys its cache), so one URI is cached once per
//! user and a user only ever reads entries under its own 0700 directory.
//!
//! # Locking (flock via `std::fs::File::lock`)
//! - Placing an entry into a sandbox holds the entry lock *shared*: a referenced entry.
//! - Downloading holds it *exclusive*; a second process wanting the same URI blocks on the
//!   exclusive lock, then finds the entry and uses it: one download.
//! - Eviction runs under the global lock and only removes entries whose lock it can take
//!   exclusive *without waiting*, i.e. unreferenced ones; least recently used first.
//! - A `.part` file whose entry lock is free belongs to a dead process and is removed.
//!
//! Nothing is wiped at start-up: the cache survives executor and agent restarts. So that it
//! also survives a power loss, a download's data is flushed (`fdatasync`) before it is renamed
//! into `entries/`, and the directory is flushed after.

use std::fs::{self, File, TryLockError};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::error::{io_kind, FetchErrorKind};

/// The cache on disk.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    capacity: u64,
    /// Entries are hardlinked out (read-only, root-owned).
    pub links: bool,
    as_root: bool,
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

fn user_dir_name(user: Option<&str>) -> String {
    match user {
        None => "_".to_string(),
        Some(u)
            if !u.is_empty()
                && !u.starts_with('.')
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn mkdir(p: &Path, mode: u32) -> Result<(), FetchErrorKind> {
    match fs::create_dir(p) {
        Ok(()) => {
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| io_kind(p, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_kind(p, e)),
    }
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`. Never wipes anything.
    pub fn open(root: &Path, capacity: u64, links: bool) -> Result<Cache, FetchErrorKind> {
        let as_root = nix::unistd::geteuid().is_root();
        if let Some(parent) = root.parent() {
            fs::create_dir_all(parent).map_err(|e| io_kind(parent, e))?;
        }
        mkdir(root, 0o1777)?;
        let lock = root.join(".lock");
        if !lock.exists() {
            let f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock)
                .map_err(|e| io_kind(&lock, e))?;
            let _ = f.set_permissions(fs::Permissions::from_mode(0o666));
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
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Paths for (user, uri); creates the user's directories.
    pub fn key(&self, user: Option<&str>, uri: &str) -> Result<Key, FetchErrorKind> {
        let material = match user {
            Some(u) => format!("{u}@{uri}"),
            None => uri.to_string(),
        };
        let hash = hex(&Sha256::digest(material.as_bytes())[..20]);
        let user_dir = self.root.join(user_dir_name(user));
        mkdir(&user_dir, 0o700)?;
        for sub in ["locks", "entries", "tmp"] {
            mkdir(&user_dir.join(sub), 0o700)?;
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
        if !self.make_room(size, &key.hash)? {
            return Ok(None);
        }
        let seq = PART_SEQ.fetch_add(1, Ordering::Relaxed);
        let part = key.user_dir.join("tmp").join(format!(
            "{}.{size}.{}.{seq}.part",
            key.hash,
            std::process::id()
        ));
        File::create(&part).map_err(|e| io_kind(&part, e))?;
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
        File::open(part)
            .and_then(|f| f.sync_data())
            .map_err(|e| io_kind(part, e))?;
        let _global = self.global_lock()?;
        // Our own reservation is part of the usage: count the entry instead.
        let fits = self.make_room_excluding(size, &key.hash, Some(part))?;
        if !fits {
            return Ok(false);
        }
        let mode = if self.links { 0o444 } else { 0o400 };
        fs::set_permissions(part, fs::Permissions::from_mode(mode))
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

    fn global_lock(&self) -> Result<File, FetchErrorKind> {
        let p = self.root.join(".lock");
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .or_else(|_| File::open(&p))
            .map_err(|e| io_kind(&p, e))?;
        f.lock().map_err(|e| io_kind(&p, e))?;
        Ok(f)
    }

    fn make_room(&self, need: u64, own: &str) -> Result<bool, FetchErrorKind> {
        self.make_room_excluding(need, own, None)
    }

    /// Usage = entries + live reservations (except `skip_part`). Evicts LRU unreferenced
    /// entries (never `own`) until `usage + need <= capacity`. Holds the global lock.
    fn make_room_excluding(
        &self,
        need: u64,
        own: &str,
        skip_part: Option<&Path>,
    ) -> Result<bool, FetchErrorKind> {
        let scan = self.scan(skip_part);
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
            if v.hash == own {
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

    /// Lists every readable entry and the live reservations; removes dead `.part` files.
    fn scan(&self, skip_part: Option<&Path>) -> Scan {
        let mut out = Scan::default();
        let Ok(users) = fs::read_dir(&self.root) else {
            return out;
        };
        for u in users.flatten() {
            let udir = u.path();
            if !udir.is_dir() {
                continue;
            }
            if let Ok(entries) = fs::read_dir(udir.join("entries")) {
                for e in entries.flatten() {
                    let Ok(meta) = e.metadata() else { continue };
                    let hash = e.file_name().to_string_lossy().into_owned();
                    let lock = udir.join("locks").join(format!("{hash}.lock"));
                    let last_use = fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .or_else(|_| meta.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    out.entries.push(EntryInfo {
                        size: meta.len(),
                        last_use,
                        entry: e.path(),
                        lock,
                        hash,
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
                    let (Some(hash), Some(size), Some(pid)) =
                        (fields.next(), fields.next(), fields.next())
                    else {
                        continue;
                    };
                    let size: u64 = size.parse().unwrap_or(0);
                    let pid: i32 = pid.parse().unwrap_or(0);
                    let dead = pid > 0
                        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                            == Err(nix::errno::Errno::ESRCH);
                    if dead {
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
        self.scan(None).entries.iter().map(|e| e.size).sum()
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
    hash: String,
}
