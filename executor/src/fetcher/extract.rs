//! Archive extraction into the sandbox root, refusing every entry that could land outside it
//! (`..`, absolute paths, symlinks or hardlinks pointing out, device nodes). Blocking: call it
//! from `spawn_blocking`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufReader, Read};
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
    touched: BTreeSet<PathBuf>,
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
    /// (no earlier symlink leads out). Returns the canonical parent.
    fn parent_inside(&mut self, rel: &Path) -> Result<PathBuf, FetchErrorKind> {
        let full = self.root.join(rel);
        let parent = full.parent().unwrap_or(self.root).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| self.write_err(&parent, e))?;
        let canon = fs::canonicalize(&parent).map_err(|e| self.write_err(&parent, e))?;
        if !canon.starts_with(&self.root_canon) {
            return Err(self.unsafe_entry(rel, "leads outside the sandbox through a symlink"));
        }
        let mut a = rel.parent();
        while let Some(p) = a {
            if p.as_os_str().is_empty() {
                break;
            }
            self.touched.insert(p.to_path_buf());
            a = p.parent();
        }
        self.touched.insert(rel.to_path_buf());
        Ok(canon)
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

    fn chown_all(&self, owner: Option<Owner>) -> Result<(), FetchErrorKind> {
        let Some(o) = owner else { return Ok(()) };
        for rel in &self.touched {
            let p = self.root.join(rel);
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
        touched: BTreeSet::new(),
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
            let mut out = fs::File::create(&out_path).map_err(|e| ctx.write_err(&out_path, e))?;
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
        match e.header().entry_type() {
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
                let tparent = ctx.parent_inside(&trel)?;
                let _ = tparent;
                ctx.parent_inside(&rel)?;
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
            fs::create_dir_all(&out).map_err(|err| ctx.write_err(&out, err))?;
            let canon = fs::canonicalize(&out).map_err(|err| ctx.write_err(&out, err))?;
            if !canon.starts_with(&ctx.root_canon) {
                return Err(ctx.unsafe_entry(&rel, "leads outside the sandbox through a symlink"));
            }
            continue;
        }
        if let Ok(m) = fs::symlink_metadata(&out) {
            if !m.is_dir() {
                fs::remove_file(&out).map_err(|err| ctx.write_err(&out, err))?;
            }
        }
        if e.is_symlink() {
            if e.size() > 4096 {
                return Err(ctx.bad(format!("symlink {} target too long", raw.display())));
            }
            let mut target = String::new();
            e.read_to_string(&mut target).map_err(|err| ctx.bad(err))?;
            let target = PathBuf::from(target);
            ctx.check_symlink(&rel, &target)?;
            std::os::unix::fs::symlink(&target, &out).map_err(|err| ctx.write_err(&out, err))?;
            continue;
        }
        ctx.parent_inside(&rel)?;
        let mut w = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&out)
            .map_err(|err| ctx.write_err(&out, err))?;
        copy_checked(ctx, &mut e, &mut w, &out)?;
        if let Some(mode) = e.unix_mode() {
            fs::set_permissions(&out, fs::Permissions::from_mode(mode & 0o777))
                .map_err(|err| ctx.write_err(&out, err))?;
        }
    }
    Ok(())
}
