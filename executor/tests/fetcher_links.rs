//! The cache's links mode (`cache_links`): an entry hardlinked into a task's sandbox must stay
//! byte for byte, owner and mode what it was, whatever the fetcher later writes into that
//! sandbox (a later URI of the same name, an overflowing download, a gunzipped `.gz`, a tar
//! hardlink entry) and whatever the task tries. Each test fetches as user `nobody` (links are
//! only made for a non-root task user), so the tests run as root.

mod fetcher_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use croupier_executor::fetcher::{fetch_all, CacheOutcome, FetchConfig, FetchSummary, Method, Uri};
use fetcher_support::*;

const MIB: usize = 1 << 20;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test fetches for user nobody and checks root-owned cache entries, so it must run \
         as root, as the executor does on an agent (CI runs scripts/test.sh as root)"
    );
}

fn run(uris: &[Uri], sb: &Path, cfg: &FetchConfig) -> FetchSummary {
    rt().block_on(fetch_all(uris, sb, Some("nobody"), cfg))
        .unwrap()
}

fn links_config(t: &Path) -> FetchConfig {
    let mut cfg = config(&t.join("cache"));
    cfg.cache_links = true;
    cfg
}

fn fresh_sandbox(t: &Path, name: &str) -> PathBuf {
    let p = t.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn nobody() -> nix::unistd::User {
    nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody exists")
}

/// The only entry in the cache.
fn the_entry(cfg: &FetchConfig) -> PathBuf {
    let mut out = Vec::new();
    for u in std::fs::read_dir(&cfg.cache_dir).unwrap().flatten() {
        if let Ok(rd) = std::fs::read_dir(u.path().join("entries")) {
            out.extend(rd.flatten().map(|e| e.path()));
        }
    }
    assert_eq!(out.len(), 1, "one cache entry: {out:?}");
    out.remove(0)
}

/// Fetches cached `url` (named `name`) as nobody into sandbox `a`, checks it was hardlinked,
/// and returns the entry.
fn link_into(url: &str, a: &Path, name: &str, cfg: &FetchConfig) -> PathBuf {
    let s = run(&[cached(url)], a, cfg);
    assert_eq!(s.items[0].method, Some(Method::Hardlink));
    let entry = the_entry(cfg);
    assert_eq!(
        std::fs::metadata(a.join(name)).unwrap().ino(),
        std::fs::metadata(&entry).unwrap().ino(),
        "{name} is a hardlink to the entry"
    );
    entry
}

/// The entry still holds `want`, owned by root, mode 0444; and a fresh sandbox fetching
/// `url` again gets `want` from the cache.
fn assert_entry_intact(
    entry: &Path,
    want: &[u8],
    url: &str,
    name: &str,
    t: &Path,
    cfg: &FetchConfig,
) {
    let m = std::fs::metadata(entry).unwrap();
    assert_eq!(m.uid(), 0, "the entry stays root-owned");
    assert_eq!(m.gid(), 0, "the entry's group stays root");
    assert_eq!(m.mode() & 0o7777, 0o444, "the entry stays read-only");
    assert!(
        std::fs::read(entry).unwrap() == want,
        "the entry's bytes are unchanged"
    );
    let b = fresh_sandbox(t, "b-fresh");
    let s = run(&[cached(url)], &b, cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Hit);
    assert!(
        std::fs::read(b.join(name)).unwrap() == want,
        "the next task's cache hit gets the original bytes"
    );
}

#[test]
fn later_uri_of_the_same_name_replaces_the_link_not_the_entry() {
    // Finding A: a later, non-cached URI with the same destination name.
    require_root();
    let srv = Server::start();
    let orig = bytes(40_000, 21);
    let other = bytes(30_000, 22);
    srv.route("/c/lib.jar", Route::Ok(Arc::new(orig.clone())));
    srv.route("/d/lib.jar", Route::Ok(Arc::new(other.clone())));
    let t = tempdir();
    let cfg = links_config(t.path());
    let a = fresh_sandbox(t.path(), "a");
    let url = srv.url("/c/lib.jar");
    let entry = link_into(&url, &a, "lib.jar", &cfg);
    // Both in one CommandInfo, as the review reproduced it.
    let a2 = fresh_sandbox(t.path(), "a2");
    let s = run(&[cached(&url), uri(&srv.url("/d/lib.jar"))], &a2, &cfg);
    assert_eq!(s.items[0].method, Some(Method::Hardlink));
    assert_eq!(s.items[1].cache, CacheOutcome::Off);
    assert!(
        std::fs::read(a2.join("lib.jar")).unwrap() == other,
        "the later URI wins"
    );
    assert_entry_intact(&entry, &orig, &url, "lib.jar", t.path(), &cfg);
    let m = std::fs::metadata(a2.join("lib.jar")).unwrap();
    assert_ne!(m.ino(), std::fs::metadata(&entry).unwrap().ino());
    assert_eq!(m.uid(), nobody().uid.as_raw(), "the task owns its own file");
}

#[test]
fn overflowing_download_of_the_same_name_replaces_the_link_not_the_entry() {
    // Finding A, overflow path: a cached URI of unknown size that turns out larger than the
    // cache is moved to the sandbox name, which holds a link to another entry.
    require_root();
    let srv = Server::start();
    let orig = bytes(50_000, 23);
    let big = bytes(3 * MIB, 24);
    srv.route("/c/x.bin", Route::Ok(Arc::new(orig.clone())));
    srv.route("/nolen/x.bin", Route::OkNoLength(Arc::new(big.clone())));
    let t = tempdir();
    let mut cfg = links_config(t.path());
    cfg.cache_size = MIB as u64;
    let a = fresh_sandbox(t.path(), "a");
    let url = srv.url("/c/x.bin");
    let s = run(&[cached(&url), cached(&srv.url("/nolen/x.bin"))], &a, &cfg);
    assert_eq!(s.items[0].method, Some(Method::Hardlink));
    assert_eq!(
        s.items[1].cache,
        CacheOutcome::Bypass,
        "the unknown-size body overflowed the cache"
    );
    assert!(std::fs::read(a.join("x.bin")).unwrap() == big);
    let entry = the_entry(&cfg);
    assert_entry_intact(&entry, &orig, &url, "x.bin", t.path(), &cfg);
    assert_ne!(
        std::fs::metadata(a.join("x.bin")).unwrap().ino(),
        std::fs::metadata(&entry).unwrap().ino()
    );
}

#[test]
fn gunzipped_file_of_the_same_name_replaces_the_link_not_the_entry() {
    // Finding B: a later `x.bin.gz` gunzipped onto the linked `x.bin`.
    require_root();
    let srv = Server::start();
    let orig = bytes(20_000, 25);
    let other = bytes(25_000, 26);
    srv.route("/c/x.bin", Route::Ok(Arc::new(orig.clone())));
    srv.route("/g/x.bin.gz", Route::Ok(Arc::new(gzip(&other))));
    let t = tempdir();
    let cfg = links_config(t.path());
    let a = fresh_sandbox(t.path(), "a");
    let url = srv.url("/c/x.bin");
    let entry = link_into(&url, &a, "x.bin", &cfg);
    let s = run(&[cached(&url), uri(&srv.url("/g/x.bin.gz"))], &a, &cfg);
    assert!(s.items[1].extracted);
    assert!(std::fs::read(a.join("x.bin")).unwrap() == other);
    assert_entry_intact(&entry, &orig, &url, "x.bin", t.path(), &cfg);
    let m = std::fs::metadata(a.join("x.bin")).unwrap();
    assert_ne!(m.ino(), std::fs::metadata(&entry).unwrap().ino());
    assert_eq!(
        m.uid(),
        nobody().uid.as_raw(),
        "the gunzipped file is the task's"
    );
}

#[test]
fn tar_hardlink_to_a_linked_entry_is_not_chowned() {
    // Finding G: a tar hardlink entry whose target is the linked entry; chowning the link or
    // its target would hand the entry's inode to the task user.
    require_root();
    let srv = Server::start();
    let orig = bytes(30_000, 27);
    srv.route("/c/lib.jar", Route::Ok(Arc::new(orig.clone())));
    let tar = RawTar::new()
        .hardlink("x", "lib.jar")
        .dir("d/")
        .hardlink("d/y", "lib.jar")
        .file("own.bin", b"mine")
        .hardlink("own-again.bin", "own.bin")
        .finish();
    srv.route("/t/evil.tar", Route::Ok(Arc::new(tar)));
    let t = tempdir();
    let cfg = links_config(t.path());
    let a = fresh_sandbox(t.path(), "a");
    let url = srv.url("/c/lib.jar");
    let entry = link_into(&url, &a, "lib.jar", &cfg);
    let s = run(&[cached(&url), uri(&srv.url("/t/evil.tar"))], &a, &cfg);
    assert!(s.items[1].extracted);
    assert_entry_intact(&entry, &orig, &url, "lib.jar", t.path(), &cfg);
    let ino = std::fs::metadata(&entry).unwrap().ino();
    for name in ["x", "d/y"] {
        let m = std::fs::symlink_metadata(a.join(name)).unwrap();
        assert_eq!(m.ino(), ino, "{name} is one more name of the entry");
        assert_eq!(m.uid(), 0, "{name} (the entry's inode) is not chowned");
    }
    // What the archive itself created is the task's, its in-archive hardlink included.
    let uid = nobody().uid.as_raw();
    for name in ["own.bin", "own-again.bin", "d"] {
        let m = std::fs::symlink_metadata(a.join(name)).unwrap();
        assert_eq!(m.uid(), uid, "{name} is owned by the task user");
    }
    assert_eq!(std::fs::read(a.join("own-again.bin")).unwrap(), b"mine");
}

#[test]
fn tar_file_entry_of_the_same_name_replaces_the_link_not_the_entry() {
    // A tar file entry named like the linked entry (the tar crate unlinks, then creates).
    require_root();
    let srv = Server::start();
    let orig = bytes(30_000, 28);
    srv.route("/c/lib.jar", Route::Ok(Arc::new(orig.clone())));
    let tar = RawTar::new().file("lib.jar", b"from the archive").finish();
    srv.route("/t/pkg.tar", Route::Ok(Arc::new(tar)));
    let t = tempdir();
    let cfg = links_config(t.path());
    let a = fresh_sandbox(t.path(), "a");
    let url = srv.url("/c/lib.jar");
    let entry = link_into(&url, &a, "lib.jar", &cfg);
    run(&[cached(&url), uri(&srv.url("/t/pkg.tar"))], &a, &cfg);
    assert_eq!(
        std::fs::read(a.join("lib.jar")).unwrap(),
        b"from the archive"
    );
    let m = std::fs::metadata(a.join("lib.jar")).unwrap();
    assert_eq!(m.uid(), nobody().uid.as_raw());
    assert_entry_intact(&entry, &orig, &url, "lib.jar", t.path(), &cfg);
}

#[test]
fn task_user_cannot_write_or_chmod_a_linked_entry() {
    require_root();
    let srv = Server::start();
    let orig = bytes(10_000, 29);
    srv.route("/c/lib.jar", Route::Ok(Arc::new(orig.clone())));
    let t = tempdir();
    // nobody must reach the sandbox to try (the temp dir is 0700).
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = links_config(t.path());
    let a = fresh_sandbox(t.path(), "a");
    let url = srv.url("/c/lib.jar");
    let entry = link_into(&url, &a, "lib.jar", &cfg);
    let u = nobody();
    let as_nobody = |script: &str| {
        std::process::Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(a.join("lib.jar"))
            .current_dir(&a)
            .uid(u.uid.as_raw())
            .gid(u.gid.as_raw())
            .output()
            .unwrap()
    };
    // The runner itself works as nobody: it can read the file.
    let read = as_nobody("wc -c < \"$1\"");
    assert!(read.status.success(), "{read:?}");
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "10000");
    let write = as_nobody("echo x >> \"$1\"");
    assert!(!write.status.success(), "the append must fail: {write:?}");
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Permission denied"),
        "{write:?}"
    );
    let chmod = as_nobody("chmod 0666 \"$1\"");
    assert!(!chmod.status.success(), "the chmod must fail: {chmod:?}");
    assert!(
        String::from_utf8_lossy(&chmod.stderr).contains("Operation not permitted"),
        "{chmod:?}"
    );
    assert_entry_intact(&entry, &orig, &url, "lib.jar", t.path(), &cfg);
}
