//! Archive extraction into the sandbox root, refusing every entry that could land outside it
//! (`..`, absolute paths, symlinks or hardlinks pointing out, device nodes). Blocking: call it
//! from `spawn_blocking`.
//!
//! Never writes through an existing name: a file or symlink entry replaces what had its name
//! (unlinked first, then created `O_EXCL`), since in the cache's links mode a sandbox file may
//! be a hardlink to a read-only cache entry. Only what this extraction newly created (regular
//! files, directories, symlinks; recorded by inode) is chowned to the task's user: never a
//! hardlink entry nor its target, which may be such an entry.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::error::FetchErrorKind;
use super::uri::ArchiveKind;

/// Owner given to everything extracted (when the executor runs as root for another user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

struct Ctx<'a> {
    archive: &'a Path,
    root: &'a Path,
    root_canon: PathBuf,
    /// Paths (relative to the root) this extraction created, with the (device, inode) they
    /// got: chowned at the end only if the name still holds that inode.
    created: BTreeMap<PathBuf, (u64, u64)>,
}

impl Ctx<'_> {
    fn bad(&self, reason: impl std::fmt::Display) -> FetchErrorKind {
        FetchErrorKind::BadArchive {
            path: self.archive.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    fn unsafe_entry(&self, entry: &Path, reason: &str) -> FetchErrorKind {
        FetchErrorKind::UnsafeArchive {
            path: self.archive.to_path_buf(),
            entry: entry.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn write_err(&self, at: &Path, e: std::io::Error) -> FetchErrorKind {
        use std::io::ErrorKind as K;
        if matches!(e.kind(), K::StorageFull | K::QuotaExceeded)
            || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        {
            FetchErrorKind::DiskFull(at.to_path_buf())
        } else {
            FetchErrorKind::Io {
                path: at.to_path_buf(),
                source: e,
            }
        }
    }

    /// A relative path with only normal components (`.` dropped); refuses absolute and `..`.
    fn safe_rel(&self, p: &Path) -> Result<PathBuf, FetchErrorKind> {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => out.push(n),
                Component::CurDir => {}
                Component::ParentDir => return Err(self.unsafe_entry(p, "contains '..'")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.unsafe_entry(p, "is an absolute path"))
                }
            }
        }
        Ok(out)
    }

    /// Creates the parent directory of `rel` and checks that it really is inside the root
    /// (no earlier symlink leads out). Returns the canonical parent. The directories it had to
    /// create are recorded as created.
    fn parent_inside(&mut self, rel: &Path) -> Result<PathBuf, FetchErrorKind> {
        let full = self.root.join(rel);
        let parent = full.parent().unwrap_or(self.root).to_path_buf();
        let mut missing = Vec::new();
        let mut a = rel.parent();
        while let Some(p) = a {
            if p.as_os_str().is_empty() || fs::symlink_metadata(self.root.join(p)).is_ok() {
                break;
            }
            missing.push(p.to_path_buf());
            a = p.parent();
        }
        fs::create_dir_all(&parent).map_err(|e| self.write_err(&parent, e))?;
        let canon = fs::canonicalize(&parent).map_err(|e| self.write_err(&parent, e))?;
        if !canon.starts_with(&self.root_canon) {
            return Err(self.unsafe_entry(rel, "leads outside the sandbox through a symlink"));
        }
        for d in missing {
            self.record(&d);
        }
        Ok(canon)
    }

    /// Records `rel` as created by this extraction, with the inode it has now, if it is a
    /// regular file, directory or symlink.
    fn record(&mut self, rel: &Path) {
        match fs::symlink_metadata(self.root.join(rel)) {
            Ok(m) if m.is_file() || m.is_dir() || m.is_symlink() => {
                self.created.insert(rel.to_path_buf(), (m.dev(), m.ino()));
            }
            _ => {
                self.created.remove(rel);
            }
        }
    }

    /// Records a file this extraction just created through `f` (its descriptor: no race on
    /// the name).
    fn record_file(&mut self, rel: &Path, f: &fs::File) {
        if let Ok(m) = f.metadata() {
            self.created.insert(rel.to_path_buf(), (m.dev(), m.ino()));
        }
    }

    /// Unlinks a non-directory at `rel` so that an entry can be created there anew.
    fn unlink_existing(&mut self, rel: &Path) -> Result<(), FetchErrorKind> {
        let p = self.root.join(rel);
        if let Ok(m) = fs::symlink_metadata(&p) {
            if !m.is_dir() {
                fs::remove_file(&p).map_err(|e| self.write_err(&p, e))?;
            }
        }
        self.created.remove(rel);
        Ok(())
    }

    /// Creates a new regular file at `rel` (whatever non-directory had that name is unlinked
    /// first; `O_EXCL`, so never written through) and records it.
    fn create_file(&mut self, rel: &Path) -> Result<fs::File, FetchErrorKind> {
        self.unlink_existing(rel)?;
        let p = self.root.join(rel);
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(|e| self.write_err(&p, e))?;
        self.record_file(rel, &f);
        Ok(f)
    }

    /// A symlink at `rel` pointing to `target` must resolve inside the root: relative, any
    /// `..` only at its start, and not climbing above the root from the link's directory.
    fn check_symlink(&mut self, rel: &Path, target: &Path) -> Result<(), FetchErrorKind> {
        if target.is_absolute() {
            return Err(self.unsafe_entry(rel, "is a symlink to an absolute path"));
        }
        let mut ups = 0usize;
        let mut seen_name = false;
        for c in target.components() {
            match c {
                Component::ParentDir if !seen_name => ups += 1,
                Component::ParentDir => {
                    return Err(self.unsafe_entry(rel, "is a symlink with '..' after a name"))
                }
                Component::Normal(_) => seen_name = true,
                Component::CurDir => {}
                _ => return Err(self.unsafe_entry(rel, "is a symlink with an odd target")),
            }
        }
        let parent = self.parent_inside(rel)?;
        let depth = parent
            .strip_prefix(&self.root_canon)
            .map(|p| p.components().count())
            .unwrap_or(0);
        if ups > depth {
            return Err(self.unsafe_entry(rel, "is a symlink pointing outside the sandbox"));
        }
        Ok(())
    }

    /// Chowns (without following symlinks) what this extraction created, each only while its
    /// name still holds the inode it was created with: a name that a later entry turned into
    /// a hardlink (possibly to a cache entry) is left alone.
    fn chown_all(&self, owner: Option<Owner>) -> Result<(), FetchErrorKind> {
        let Some(o) = owner else { return Ok(()) };
        for (rel, &(dev, ino)) in &self.created {
            let p = self.root.join(rel);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.dev() == dev && m.ino() == ino => {}
                _ => continue,
            }
            std::os::unix::fs::lchown(&p, Some(o.uid), Some(o.gid))
                .map_err(|e| self.write_err(&p, e))?;
        }
        Ok(())
    }
}

/// Extracts `archive` of `kind` into `root`. A bare `.gz` is gunzipped to `root/<gz_name
/// without .gz>`. Everything created is chowned to `owner` when given.
pub fn extract(
    archive: &Path,
    kind: ArchiveKind,
    root: &Path,
    gz_name: &str,
    owner: Option<Owner>,
) -> Result<(), FetchErrorKind> {
    let root_canon = fs::canonicalize(root).map_err(|e| FetchErrorKind::Io {
        path: root.to_path_buf(),
        source: e,
    })?;
    let mut ctx = Ctx {
        archive,
        root,
        root_canon,
        created: BTreeMap::new(),
    };
    let file = fs::File::open(archive).map_err(|e| ctx.write_err(archive, e))?;
    let input = BufReader::with_capacity(1 << 20, file);
    match kind {
        ArchiveKind::Tar => extract_tar(&mut ctx, input)?,
        ArchiveKind::TarGz => extract_tar(&mut ctx, flate2::read::MultiGzDecoder::new(input))?,
        ArchiveKind::TarBz2 => extract_tar(&mut ctx, bzip2::read::MultiBzDecoder::new(input))?,
        ArchiveKind::TarXz => {
            extract_tar(&mut ctx, liblzma::read::XzDecoder::new_multi_decoder(input))?
        }
        ArchiveKind::Zip => extract_zip(&mut ctx)?,
        ArchiveKind::Gz => {
            let name = gz_name.strip_suffix(".gz").unwrap_or(gz_name);
            let rel = ctx.safe_rel(Path::new(name))?;
            if rel.as_os_str().is_empty() {
                return Err(ctx.bad("no output name for the gunzipped file"));
            }
            ctx.parent_inside(&rel)?;
            let out_path = root.join(&rel);
            let mut out = ctx.create_file(&rel)?;
            let mut dec = flate2::read::MultiGzDecoder::new(input);
            copy_checked(&ctx, &mut dec, &mut out, &out_path)?;
        }
    }
    ctx.chown_all(owner)
}

/// Copies, telling a decoding failure (bad archive) from a write failure (disk).
fn copy_checked(
    ctx: &Ctx<'_>,
    r: &mut dyn Read,
    w: &mut fs::File,
    out: &Path,
) -> Result<u64, FetchErrorKind> {
    use std::io::Write;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ctx.bad(e)),
        };
        w.write_all(&buf[..k]).map_err(|e| ctx.write_err(out, e))?;
        n += k as u64;
    }
    Ok(n)
}

fn extract_tar<R: Read>(ctx: &mut Ctx<'_>, r: R) -> Result<(), FetchErrorKind> {
    use tar::EntryType as T;
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(false);
    ar.set_preserve_ownerships(false);
    ar.set_overwrite(true);
    ar.set_unpack_xattrs(false);
    let entries = ar.entries().map_err(|e| ctx.bad(e))?;
    let mut count = 0usize;
    for entry in entries {
        let mut e = entry.map_err(|e| ctx.bad(e))?;
        count += 1;
        let raw = e.path().map_err(|e| ctx.bad(e))?.into_owned();
        let rel = ctx.safe_rel(&raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = e.header().entry_type();
        let existed = fs::symlink_metadata(ctx.root.join(&rel)).is_ok();
        match kind {
            // The tar crate creates a file entry `O_EXCL`, unlinking an existing name first.
            T::Regular | T::Continuous | T::Directory => {
                ctx.parent_inside(&rel)?;
            }
            T::Symlink => {
                let target = e
                    .link_name()
                    .map_err(|e| ctx.bad(e))?
                    .ok_or_else(|| ctx.bad(format!("symlink {} has no target", raw.display())))?
                    .into_owned();
                ctx.check_symlink(&rel, &target)?;
            }
            T::Link => {
                let target = e
                    .link_name()
                    .map_err(|e| ctx.bad(e))?
                    .ok_or_else(|| ctx.bad(format!("hardlink {} has no target", raw.display())))?
                    .into_owned();
                let trel = match ctx.safe_rel(&target) {
                    Ok(t) => t,
                    Err(_) => {
                        return Err(
                            ctx.unsafe_entry(&rel, "is a hardlink pointing outside the sandbox")
                        )
                    }
                };
                // The target must already exist inside the sandbox (created by an earlier
                // entry, or a file fetched before); nothing is created for it.
                let tfull = ctx.root.join(&trel);
                match fs::canonicalize(&tfull) {
                    Ok(c) if c.starts_with(&ctx.root_canon) => {}
                    Ok(_) => {
                        return Err(
                            ctx.unsafe_entry(&rel, "is a hardlink pointing outside the sandbox")
                        )
                    }
                    Err(err) => {
                        return Err(ctx.bad(format!(
                            "hardlink {} to missing {}: {err}",
                            rel.display(),
                            trel.display()
                        )))
                    }
                }
                ctx.parent_inside(&rel)?;
                // A link replaces what had its name, like a file entry (the tar crate would
                // fail on an existing name); the name is then never chowned.
                ctx.unlink_existing(&rel)?;
            }
            T::Char | T::Block | T::Fifo => {
                return Err(ctx.unsafe_entry(&rel, "is a device node or fifo"));
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            other => {
                tracing::warn!(archive = %ctx.archive.display(), entry = %rel.display(), kind = ?other, "skipping unsupported archive entry type");
                continue;
            }
        }
        let unpacked = e.unpack_in(ctx.root).map_err(|err| {
            use std::io::ErrorKind as K;
            let at = ctx.root.join(&rel);
            if matches!(err.kind(), K::StorageFull | K::QuotaExceeded) {
                FetchErrorKind::DiskFull(at)
            } else {
                ctx.bad(format!("entry {}: {err}", rel.display()))
            }
        })?;
        if !unpacked {
            return Err(ctx.unsafe_entry(&rel, "would land outside the sandbox"));
        }
        match kind {
            T::Link => {
                ctx.created.remove(&rel);
            }
            // An existing directory named by a directory entry was not created here.
            T::Directory if existed => {}
            _ => ctx.record(&rel),
        }
    }
    if count == 0 {
        return Err(ctx.bad("no entries (empty or not a tar archive)"));
    }
    Ok(())
}

fn extract_zip(ctx: &mut Ctx<'_>) -> Result<(), FetchErrorKind> {
    use std::os::unix::fs::PermissionsExt;
    let f = fs::File::open(ctx.archive).map_err(|e| ctx.write_err(ctx.archive, e))?;
    let mut z = zip::ZipArchive::new(BufReader::new(f)).map_err(|e| ctx.bad(e))?;
    for i in 0..z.len() {
        let mut e = z.by_index(i).map_err(|e| ctx.bad(e))?;
        let raw = PathBuf::from(e.name().map_err(|err| ctx.bad(err))?.into_owned());
        let rel = ctx.safe_rel(&raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let out = ctx.root.join(&rel);
        if e.is_dir() {
            ctx.parent_inside(&rel)?;
            let existed = fs::symlink_metadata(&out).is_ok();
            fs::create_dir_all(&out).map_err(|err| ctx.write_err(&out, err))?;
            let canon = fs::canonicalize(&out).map_err(|err| ctx.write_err(&out, err))?;
            if !canon.starts_with(&ctx.root_canon) {
                return Err(ctx.unsafe_entry(&rel, "leads outside the sandbox through a symlink"));
            }
            if !existed {
                ctx.record(&rel);
            }
            continue;
        }
        if e.is_symlink() {
            if e.size() > 4096 {
                return Err(ctx.bad(format!("symlink {} target too long", raw.display())));
            }
            let mut target = String::new();
            e.read_to_string(&mut target).map_err(|err| ctx.bad(err))?;
            let target = PathBuf::from(target);
            ctx.check_symlink(&rel, &target)?;
            ctx.unlink_existing(&rel)?;
            std::os::unix::fs::symlink(&target, &out).map_err(|err| ctx.write_err(&out, err))?;
            ctx.record(&rel);
            continue;
        }
        ctx.parent_inside(&rel)?;
        let mut w = ctx.create_file(&rel)?;
        copy_checked(ctx, &mut e, &mut w, &out)?;
        if let Some(mode) = e.unix_mode() {
            // Through the descriptor: the name is not followed again.
            w.set_permissions(fs::Permissions::from_mode(mode & 0o777))
                .map_err(|err| ctx.write_err(&out, err))?;
        }
    }
    Ok(())
}
