//! Where an executor's block files live, exactly as Spark computes it, and the registry of
//! executors that told us.
//!
//! Every path built here comes from a registered, validated executor (absolute local dirs
//! without `..`) joined with a `%02x` sub-dir and a file name that we generate ourselves from
//! parsed numeric ids — wire strings are never joined into paths unparsed.

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::protocol::ExecutorShuffleInfo;

/// Java's `String.hashCode` over UTF-16 code units (wrapping i32 arithmetic).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// `JavaUtils.nonNegativeHash`: `abs(hashCode)`, with `Integer.MIN_VALUE` mapped to 0.
pub fn non_negative_hash(s: &str) -> u32 {
    let h = java_string_hash(s);
    if h == i32::MIN {
        0
    } else {
        h.unsigned_abs()
    }
}

/// `ExecutorDiskUtils.getFilePath`: `localDirs[h % n] / %02x(h / n % subDirs) / filename`.
/// `local_dirs` must be non-empty and `sub_dirs` positive (guaranteed for registered executors).
pub fn file_path(local_dirs: &[String], sub_dirs: i32, filename: &str) -> PathBuf {
    let h = non_negative_hash(filename) as u64;
    let n = local_dirs.len().max(1) as u64;
    let dir = &local_dirs[(h % n) as usize];
    let sub = (h / n) % sub_dirs.max(1) as u64;
    Path::new(dir).join(format!("{sub:02x}")).join(filename)
}

/// Rejections of wire input, each naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid {what} {value:?}: {reason}")]
    BadId {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid local dir {dir:?} for executor (appId={app_id}, execId={exec_id}): {reason}")]
    BadLocalDir {
        app_id: String,
        exec_id: String,
        dir: String,
        reason: &'static str,
    },
    #[error("invalid subDirsPerLocalDir {value} for executor (appId={app_id}, execId={exec_id}): must be 1..=65536")]
    BadSubDirs {
        app_id: String,
        exec_id: String,
        value: i32,
    },
    #[error("executor (appId={app_id}, execId={exec_id}) registered no local dirs")]
    NoLocalDirs { app_id: String, exec_id: String },
    #[error("Executor is not registered (appId={app_id}, execId={exec_id})")]
    NotRegistered { app_id: String, exec_id: String },
    #[error("unparsable block id {0:?}")]
    BadBlockId(String),
    /// With `spark.authenticate`: the dir is, contains or lies inside a dir another
    /// application registered (`other_app` is for our log, not for the client).
    #[error(
        "local dir {dir:?} of executor (appId={app_id}, execId={exec_id}) overlaps a local dir registered by another \
         application (resolved: {resolved}); with spark.authenticate every application must use its own directories"
    )]
    DirInUse {
        app_id: String,
        exec_id: String,
        dir: String,
        resolved: String,
        other_app: String,
    },
}

impl ResolveError {
    /// Registration may arrive later for `NotRegistered`; everything else is the peer's bug.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ResolveError::NotRegistered { .. })
    }
}

/// An appId/execId must be usable as a map key and safe if ever used in a path or a log:
/// non-empty, at most 1024 bytes, not `.`, no `/`, no `..`, no NUL or other control characters.
pub fn validate_id(what: &'static str, value: &str) -> Result<(), ResolveError> {
    let bad = |reason| {
        Err(ResolveError::BadId {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return bad("empty");
    }
    if value.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if value.contains('/') {
        return bad("contains '/'");
    }
    if value.contains("..") {
        return bad("contains '..'");
    }
    // `.` names the directory an id would sit in (found by the `ids` fuzz target).
    if value == "." {
        return bad("is '.'");
    }
    if value.contains('\0') {
        return bad("contains NUL");
    }
    if value.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    Ok(())
}

/// Validates a RegisterExecutor's ExecutorShuffleInfo.
pub fn validate_executor(
    app_id: &str,
    exec_id: &str,
    info: &ExecutorShuffleInfo,
) -> Result<(), ResolveError> {
    validate_id("appId", app_id)?;
    validate_id("execId", exec_id)?;
    if info.local_dirs.is_empty() {
        return Err(ResolveError::NoLocalDirs {
            app_id: app_id.into(),
            exec_id: exec_id.into(),
        });
    }
    if !(1..=65536).contains(&info.sub_dirs_per_local_dir) {
        return Err(ResolveError::BadSubDirs {
            app_id: app_id.into(),
            exec_id: exec_id.into(),
            value: info.sub_dirs_per_local_dir,
        });
    }
    for dir in &info.local_dirs {
        let bad = |reason| ResolveError::BadLocalDir {
            app_id: app_id.into(),
            exec_id: exec_id.into(),
            dir: dir.clone(),
            reason,
        };
        if dir.contains('\0') {
            return Err(bad("contains NUL"));
        }
        let p = Path::new(dir);
        if !p.is_absolute() {
            return Err(bad("not an absolute path"));
        }
        let mut normal = 0;
        for c in p.components() {
            match c {
                Component::ParentDir => return Err(bad("contains '..'")),
                Component::Normal(_) => normal += 1,
                _ => {}
            }
        }
        if normal == 0 {
            // The cleaner deletes registered dirs recursively: never accept "/".
            return Err(bad("is the filesystem root"));
        }
    }
    Ok(())
}

/// A parsed non-negative decimal id (digits only, no sign, no whitespace).
fn parse_num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A block id the service can serve or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockId {
    /// `shuffle_S_M_R`
    Shuffle {
        shuffle_id: i32,
        map_id: i64,
        reduce_id: i32,
    },
    /// `shuffle_S_M_start_end` (end exclusive)
    ShuffleBatch {
        shuffle_id: i32,
        map_id: i64,
        start: i32,
        end: i32,
    },
    /// `rdd_R_S`
    Rdd { rdd_id: i32, split: i32 },
}

impl BlockId {
    /// Strict parse: exact part counts, digits only, values within Java's int/long ranges.
    pub fn parse(s: &str) -> Result<BlockId, ResolveError> {
        let bad = || ResolveError::BadBlockId(s.to_owned());
        let parts: Vec<&str> = s.split('_').collect();
        match parts.as_slice() {
            ["shuffle", sh, m, r] => Ok(BlockId::Shuffle {
                shuffle_id: parse_num(sh).ok_or_else(bad)?,
                map_id: parse_num(m).ok_or_else(bad)?,
                reduce_id: parse_num(r).ok_or_else(bad)?,
            }),
            ["shuffle", sh, m, a, b] => {
                let (start, end): (i32, i32) =
                    (parse_num(a).ok_or_else(bad)?, parse_num(b).ok_or_else(bad)?);
                if end < start {
                    return Err(bad());
                }
                Ok(BlockId::ShuffleBatch {
                    shuffle_id: parse_num(sh).ok_or_else(bad)?,
                    map_id: parse_num(m).ok_or_else(bad)?,
                    start,
                    end,
                })
            }
            ["rdd", r, sp] => Ok(BlockId::Rdd {
                rdd_id: parse_num(r).ok_or_else(bad)?,
                split: parse_num(sp).ok_or_else(bad)?,
            }),
            _ => Err(bad()),
        }
    }
}

/// A file name that RemoveBlocks may delete: `rdd_R_S`, or `shuffle_S_M_0.{index,data}` /
/// `.checksum.<ALGO>`. Returned re-rendered from the parsed numbers.
pub fn removable_file_name(s: &str) -> Result<String, ResolveError> {
    let bad = || ResolveError::BadBlockId(s.to_owned());
    if let Ok(BlockId::Rdd { rdd_id, split }) = BlockId::parse(s) {
        return Ok(format!("rdd_{rdd_id}_{split}"));
    }
    let (stem, suffix) = s.split_once('.').ok_or_else(bad)?;
    let suffix_ok = matches!(
        suffix,
        "index" | "data" | "checksum.ADLER32" | "checksum.CRC32" | "checksum.CRC32C"
    );
    match BlockId::parse(stem) {
        Ok(BlockId::Shuffle {
            shuffle_id,
            map_id,
            reduce_id: 0,
        }) if suffix_ok => Ok(format!("shuffle_{shuffle_id}_{map_id}_0.{suffix}")),
        _ => Err(bad()),
    }
}

/// A registered executor.
#[derive(Debug)]
pub struct Executor {
    pub info: ExecutorShuffleInfo,
    /// Its local dirs resolved ([`canonical_dir`]) when registered under `spark.authenticate`
    /// (compared with other applications' dirs).
    pub canonical: Option<Vec<PathBuf>>,
}

/// `dir` with symlinks, `.` and `..` resolved through its longest existing ancestor, the
/// part that does not exist yet appended as written. Blocking (reads the filesystem).
pub fn canonical_dir(dir: &Path) -> PathBuf {
    let mut existing = dir;
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return dir.to_path_buf(),
        }
    }
}

impl Executor {
    /// Under `spark.authenticate` (dirs resolved at registration): `path` (from
    /// [`Executor::path`]) rebuilt on the resolved dir, to be followed without links.
    fn beneath(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        let Some(canonical) = &self.canonical else {
            return Ok(None);
        };
        for (dir, resolved) in self.info.local_dirs.iter().zip(canonical) {
            if let Ok(rel) = path.strip_prefix(dir) {
                return Ok(Some(resolved.join(rel)));
            }
        }
        Err(io::Error::other(format!(
            "{} is not inside a registered local dir",
            path.display()
        )))
    }

    /// Opens a file of this executor for reading. Under `spark.authenticate` no component of
    /// its path may be a symbolic link (`openat2` with `RESOLVE_NO_SYMLINKS` from the dir as
    /// resolved at registration), so a link placed in an application's dir cannot lead into
    /// another's.
    ///
    /// Only regular files are served: the file is opened without waiting (`O_NONBLOCK`, so a
    /// FIFO or a device planted under a shuffle file's name cannot hang the thread in `open`)
    /// and anything else is refused, naming the path.
    pub fn open(&self, path: &Path) -> io::Result<std::fs::File> {
        let file = match self.beneath(path)? {
            None => {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(path)?
            }
            Some(strict) => std::fs::File::from(
                open_no_links(
                    &strict,
                    nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK,
                )
                .map_err(|e| no_links(path, e))?,
            ),
        };
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(file)
    }

    /// Deletes a file of this executor; under `spark.authenticate` through its parent dir
    /// opened without following links (see [`Executor::open`]).
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        let Some(strict) = self.beneath(path)? else {
            return std::fs::remove_file(path);
        };
        use std::os::fd::AsRawFd;
        let (Some(parent), Some(name)) = (strict.parent(), strict.file_name()) else {
            return Err(io::Error::other(format!(
                "{}: no file name",
                path.display()
            )));
        };
        let dir = open_no_links(
            parent,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
        )
        .map_err(|e| no_links(path, e))?;
        nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(io::Error::from)
    }

    pub fn path(&self, filename: &str) -> PathBuf {
        file_path(
            &self.info.local_dirs,
            self.info.sub_dirs_per_local_dir,
            filename,
        )
    }
    pub fn index_path(&self, shuffle_id: i32, map_id: i64) -> PathBuf {
        self.path(&format!("shuffle_{shuffle_id}_{map_id}_0.index"))
    }
    pub fn data_path(&self, shuffle_id: i32, map_id: i64) -> PathBuf {
        self.path(&format!("shuffle_{shuffle_id}_{map_id}_0.data"))
    }
    pub fn rdd_path(&self, rdd_id: i32, split: i32) -> PathBuf {
        self.path(&format!("rdd_{rdd_id}_{split}"))
    }
}

/// Whether `dir` is named as Spark's `DiskBlockManager` names its dirs
/// (`<spark.local.dir>/.../blockmgr-<uuid>`).
pub fn is_block_manager_name(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("blockmgr-"))
}

/// Opens absolute `path` with `flags`, refusing (ELOOP or ENOTDIR) if any component of it is a
/// symbolic link: `openat2(RESOLVE_NO_SYMLINKS)`, or on kernels without it (before 5.6) one
/// `openat(O_NOFOLLOW)` per component.
fn open_no_links(
    path: &Path,
    flags: nix::fcntl::OFlag,
) -> Result<std::os::fd::OwnedFd, nix::errno::Errno> {
    use nix::errno::Errno;
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{FromRawFd, OwnedFd};
    let own = |fd| {
        // SAFETY: the call just returned this descriptor, owned by nothing else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(libc::AT_FDCWD, path, how) {
        Err(Errno::ENOSYS) => walk_no_links(path, flags),
        r => r.map(own),
    }
}

/// [`open_no_links`] without `openat2`: one `openat(O_NOFOLLOW)` per component.
fn walk_no_links(
    path: &Path,
    flags: nix::fcntl::OFlag,
) -> Result<std::os::fd::OwnedFd, nix::errno::Errno> {
    use nix::errno::Errno;
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let own = |fd| {
        // SAFETY: the call just returned this descriptor, owned by nothing else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let mut dir = own(nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?);
    let parts: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(Errno::EINVAL);
    };
    for part in dirs {
        dir = own(openat(
            Some(dir.as_raw_fd()),
            *part,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?);
    }
    openat(
        Some(dir.as_raw_fd()),
        *last,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(own)
}

/// A refused or failed open below a registered dir, naming the path.
fn no_links(path: &Path, e: nix::errno::Errno) -> io::Error {
    if e == nix::errno::Errno::ELOOP || e == nix::errno::Errno::ENOTDIR {
        io::Error::other(format!(
            "{}: refused: a component of the path is a symbolic link (under spark.authenticate files are opened only beneath the registered local dir, without following links)",
            path.display()
        ))
    } else {
        io::Error::from(e)
    }
}

/// What [`Registry::register_exclusive`] put in place of what.
pub struct Replaced {
    new: Arc<Executor>,
    old: Option<Arc<Executor>>,
}

/// `(appId, execId) → ExecutorShuffleInfo`, grouped by app for removal.
#[derive(Default)]
pub struct Registry {
    apps: RwLock<HashMap<String, HashMap<String, Arc<Executor>>>>,
}

impl Registry {
    /// Registers (or replaces) an executor after validating it.
    pub fn register(
        &self,
        app_id: &str,
        exec_id: &str,
        info: ExecutorShuffleInfo,
    ) -> Result<(), ResolveError> {
        validate_executor(app_id, exec_id, &info)?;
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        apps.entry(app_id.to_owned()).or_default().insert(
            exec_id.to_owned(),
            Arc::new(Executor {
                info,
                canonical: None,
            }),
        );
        Ok(())
    }

    /// Registers (or replaces) an executor whose local dirs must not overlap (be, contain or
    /// lie inside) a dir another application registered: under `spark.authenticate` an
    /// application may only reach its own files. Blocking (resolves the dirs on disk).
    ///
    /// Returns what to pass to [`Registry::roll_back`] should the registration not be kept.
    pub fn register_exclusive(
        &self,
        app_id: &str,
        exec_id: &str,
        info: ExecutorShuffleInfo,
    ) -> Result<Replaced, ResolveError> {
        validate_executor(app_id, exec_id, &info)?;
        let mine: Vec<PathBuf> = info
            .local_dirs
            .iter()
            .map(|d| canonical_dir(Path::new(d)))
            .collect();
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        for (other, execs) in apps.iter().filter(|(a, _)| a.as_str() != app_id) {
            for e in execs.values() {
                // By reference: restoring n registrations must not copy every other one's dirs.
                let as_written: Vec<PathBuf>;
                let theirs: &[PathBuf] = match &e.canonical {
                    Some(c) => c,
                    // Registered without the check (cannot happen under spark.authenticate,
                    // where restored registrations are resolved too): compare as written.
                    None => {
                        as_written = e.info.local_dirs.iter().map(PathBuf::from).collect();
                        &as_written
                    }
                };
                for t in theirs {
                    if let Some(i) = mine
                        .iter()
                        .position(|m| m.starts_with(t) || t.starts_with(m))
                    {
                        return Err(ResolveError::DirInUse {
                            app_id: app_id.into(),
                            exec_id: exec_id.into(),
                            dir: info.local_dirs[i].clone(),
                            resolved: mine[i].display().to_string(),
                            other_app: other.clone(),
                        });
                    }
                }
            }
        }
        // Only a block manager's own dir may be claimed: not `/tmp` or a framework's whole
        // sandbox, which would lock every other application out.
        for (dir, resolved) in info.local_dirs.iter().zip(&mine) {
            if !(is_block_manager_name(Path::new(dir)) && is_block_manager_name(resolved)) {
                return Err(ResolveError::BadLocalDir {
                    app_id: app_id.into(),
                    exec_id: exec_id.into(),
                    dir: dir.clone(),
                    reason: "under spark.authenticate a local dir must be a Spark block manager's \
                             dir, named blockmgr-* (also once symlinks are resolved)",
                });
            }
        }
        let new = Arc::new(Executor {
            info,
            canonical: Some(mine),
        });
        let old = apps
            .entry(app_id.to_owned())
            .or_default()
            .insert(exec_id.to_owned(), new.clone());
        Ok(Replaced { new, old })
    }

    /// Undoes a [`Registry::register_exclusive`] (its registration could not be stored):
    /// the previous registration of that executor comes back, or none, so the refused one
    /// neither serves nor claims its dirs. Nothing changes if the executor was registered
    /// again meanwhile.
    pub fn roll_back(&self, app_id: &str, exec_id: &str, r: Replaced) {
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        let Some(execs) = apps.get_mut(app_id) else {
            return;
        };
        if !execs.get(exec_id).is_some_and(|e| Arc::ptr_eq(e, &r.new)) {
            return;
        }
        match r.old {
            Some(old) => {
                execs.insert(exec_id.to_owned(), old);
            }
            None => {
                execs.remove(exec_id);
                if execs.is_empty() {
                    apps.remove(app_id);
                }
            }
        }
    }

    pub fn get(&self, app_id: &str, exec_id: &str) -> Result<Arc<Executor>, ResolveError> {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        apps.get(app_id)
            .and_then(|e| e.get(exec_id))
            .cloned()
            .ok_or_else(|| ResolveError::NotRegistered {
                app_id: app_id.to_owned(),
                exec_id: exec_id.to_owned(),
            })
    }

    /// Drops every executor of `app_id`, returning their local dirs.
    pub fn remove_app(&self, app_id: &str) -> Vec<(String, Vec<String>)> {
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        apps.remove(app_id)
            .map(|m| {
                m.into_iter()
                    .map(|(id, e)| (id, e.info.local_dirs.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The apps with at least one registered executor.
    pub fn app_ids(&self) -> Vec<String> {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        apps.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(HashMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_without_links_refuses_a_link_anywhere_in_the_path() {
        use nix::fcntl::OFlag;
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir_all(root.join("blockmgr-a/0c")).unwrap();
        std::fs::write(root.join("blockmgr-a/0c/f"), b"x").unwrap();
        std::fs::create_dir(root.join("blockmgr-b")).unwrap();
        std::os::unix::fs::symlink(root.join("blockmgr-a/0c"), root.join("blockmgr-b/0c")).unwrap();
        std::os::unix::fs::symlink(root.join("blockmgr-a/0c/f"), root.join("blockmgr-a/0c/g"))
            .unwrap();
        for open in [open_no_links, walk_no_links] {
            assert!(open(&root.join("blockmgr-a/0c/f"), OFlag::O_RDONLY).is_ok());
            for bad in ["blockmgr-b/0c/f", "blockmgr-a/0c/g"] {
                let e = open(&root.join(bad), OFlag::O_RDONLY).unwrap_err();
                assert!(
                    matches!(e, nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR),
                    "{bad}: {e}"
                );
            }
        }
    }

    #[test]
    fn digest_vectors() {
        // (name, hashCode, 1 dir sub, 2 dirs (dir index, sub)) from the spec's table.
        let v: &[(&str, i32, &str, usize, &str)] = &[
            ("shuffle_0_5_0.data", 705928743, "27", 1, "13"),
            ("shuffle_0_5_0.index", 413944309, "35", 1, "3a"),
            ("shuffle_12_34567_0.data", 695216778, "0a", 0, "05"),
            ("rdd_3_7", 1054353886, "1e", 0, "2f"),
            ("shuffle_0_0_0.checksum.ADLER32", -103986100, "34", 0, "1a"),
        ];
        for &(name, hash, one, idx2, two) in v {
            assert_eq!(java_string_hash(name), hash, "{name}");
            let one_dir = vec!["/d0".to_string()];
            assert_eq!(
                file_path(&one_dir, 64, name),
                PathBuf::from(format!("/d0/{one}/{name}"))
            );
            let two_dirs = vec!["/d0".to_string(), "/d1".to_string()];
            assert_eq!(
                file_path(&two_dirs, 64, name),
                PathBuf::from(format!("/d{idx2}/{two}/{name}"))
            );
        }
        // Non-BMP characters hash over UTF-16 surrogates, like Java.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn min_value_hash_maps_to_zero() {
        // "polygenelubricants" is a well-known string whose Java hashCode is Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(non_negative_hash("polygenelubricants"), 0);
    }

    #[test]
    fn id_validation() {
        for bad in ["", "a/b", "..", "a..b", "a\0b", "x\n"] {
            assert!(validate_id("appId", bad).is_err(), "{bad:?}");
        }
        for good in ["app-20261123191828-0000", "0", "driver", "7f1c-aa.b"] {
            validate_id("appId", good).unwrap();
        }
    }

    /// Found by the `ids` fuzz target (input `2e`): `.` was accepted as an appId/execId.
    #[test]
    fn fuzz_regression_dot_is_not_an_id() {
        assert!(validate_id("appId", ".").is_err());
        assert!(validate_id("execId", ".").is_err());
        validate_id("appId", ".a").unwrap();
    }

    #[test]
    fn local_dir_validation() {
        let info = |d: &str| ExecutorShuffleInfo {
            local_dirs: vec![d.into()],
            sub_dirs_per_local_dir: 64,
            shuffle_manager: "sort".into(),
        };
        for bad in ["relative/dir", "/tmp/../etc", "/", "/tmp/a\0b", ""] {
            let e = validate_executor("app", "0", &info(bad)).unwrap_err();
            assert!(e.to_string().contains("local dir"), "{bad:?}: {e}");
        }
        validate_executor("app", "0", &info("/tmp/blockmgr-1")).unwrap();
        let mut i = info("/tmp/x");
        i.sub_dirs_per_local_dir = 0;
        assert!(validate_executor("app", "0", &i).is_err());
        i.local_dirs.clear();
        i.sub_dirs_per_local_dir = 64;
        assert!(validate_executor("app", "0", &i).is_err());
    }

    #[test]
    fn block_ids_parse_strictly() {
        assert_eq!(
            BlockId::parse("shuffle_1_12345678901_3").unwrap(),
            BlockId::Shuffle {
                shuffle_id: 1,
                map_id: 12345678901,
                reduce_id: 3
            }
        );
        assert_eq!(
            BlockId::parse("shuffle_0_5_0_3").unwrap(),
            BlockId::ShuffleBatch {
                shuffle_id: 0,
                map_id: 5,
                start: 0,
                end: 3
            }
        );
        assert_eq!(
            BlockId::parse("rdd_3_7").unwrap(),
            BlockId::Rdd {
                rdd_id: 3,
                split: 7
            }
        );
        for bad in [
            "shuffle_0_5",
            "shuffle_0_5_-1",
            "shuffle_0_5_+1",
            "shuffle_a_5_0",
            "shuffle_0_5_0_3_4",
            "shuffle_0_5_3_0",
            "shuffle_99999999999_0_0",
            "shuffle_0_../x_0",
            "rdd_1",
            "broadcast_0",
            "shuffle_0_5_0.data",
            "",
        ] {
            assert!(BlockId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            removable_file_name("shuffle_1_2_0.index").unwrap(),
            "shuffle_1_2_0.index"
        );
        assert_eq!(removable_file_name("rdd_1_2").unwrap(), "rdd_1_2");
        for bad in [
            "shuffle_1_2_0.exe",
            "../rdd_1_2",
            "shuffle_1_2_1.data",
            "x.data",
        ] {
            assert!(removable_file_name(bad).is_err(), "{bad}");
        }
    }
}
