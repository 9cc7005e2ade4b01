//! Captures the build's identity for `--version`: the git revision (with a fallback when the
//! source is not a git checkout, e.g. a release tarball), the target triple and the glibc the
//! build links against.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-env-changed=CROUPIER_GIT_REV");
    println!("cargo:rerun-if-env-changed=CROUPIER_BUILD_GLIBC");
    println!("cargo:rerun-if-changed=build.rs");

    // A packager building from a tarball may know the revision: CROUPIER_GIT_REV wins.
    let rev = std::env::var("CROUPIER_GIT_REV")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let rev = git(&manifest, &["rev-parse", "--short=10", "HEAD"])?;
            // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it names (a
            // commit) and packed-refs. In a worktree, .git is a file, so ask git where these
            // live instead of assuming ../.git/HEAD. Only files that exist are named: cargo
            // reruns a build script on every build while a named file is missing (a repo
            // without packed-refs is common), which would relink every binary each time.
            let watch = |p: PathBuf| {
                if p.exists() {
                    println!("cargo:rerun-if-changed={}", p.display());
                }
            };
            if let Some(dir) = git(&manifest, &["rev-parse", "--absolute-git-dir"]) {
                watch(PathBuf::from(dir).join("HEAD"));
            }
            if let Some(common) = git(&manifest, &["rev-parse", "--git-common-dir"]) {
                let common = if Path::new(&common).is_absolute() {
                    PathBuf::from(common)
                } else {
                    manifest.join(common)
                };
                watch(common.join("packed-refs"));
                if let Some(r) = git(&manifest, &["symbolic-ref", "-q", "HEAD"]) {
                    // The branch's loose ref when it has one. After `git gc` it lives only in
                    // packed-refs, and the next commit writes a new loose file: watch the
                    // nearest existing parent directory then (cargo scans a watched
                    // directory's files), so that file's appearance reruns this script.
                    let branch = common.join(r);
                    if branch.exists() {
                        watch(branch);
                    } else if let Some(dir) = branch.ancestors().skip(1).find(|d| d.is_dir()) {
                        watch(dir.to_path_buf());
                    }
                }
            }
            Some(rev)
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CROUPIER_GIT_REV={rev}");

    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=CROUPIER_TARGET={target}");

    // The glibc the binary is linked against bounds the oldest agent OS it runs on. A cross
    // or zig build (e.g. x86_64-unknown-linux-gnu.2.17) says so through CROUPIER_BUILD_GLIBC;
    // a native build asks the build host's C library.
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    let glibc = if target_env != "gnu" {
        "none".to_string()
    } else if let Some(v) = std::env::var("CROUPIER_BUILD_GLIBC")
        .ok()
        .filter(|s| !s.is_empty())
    {
        v
    } else if host == target {
        Command::new("getconf")
            .arg("GNU_LIBC_VERSION")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().strip_prefix("glibc ").map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    } else {
        "unknown".into()
    };
    println!("cargo:rustc-env=CROUPIER_BUILD_GLIBC={glibc}");
}
