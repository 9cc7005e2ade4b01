//! The shared fetcher cache within one process: hits, eviction, bypass, isolation, modes.

mod fetcher_support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use croupier_executor::fetcher::cache::Cache;
use croupier_executor::fetcher::{fetch_all, CacheOutcome, FetchConfig, FetchSummary, Method, Uri};
use fetcher_support::*;

const MIB: usize = 1 << 20;

fn run(uris: &[Uri], sb: &Path, user: Option<&str>, cfg: &FetchConfig) -> FetchSummary {
    rt().block_on(fetch_all(uris, sb, user, cfg)).unwrap()
}

fn fresh_sandbox(t: &Path, name: &str) -> PathBuf {
    let p = t.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Every file under `<cache>/<user>/<sub>/`.
fn files_in(cache: &Path, sub: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for u in std::fs::read_dir(cache).unwrap().flatten() {
        if let Ok(rd) = std::fs::read_dir(u.path().join(sub)) {
            out.extend(rd.flatten().map(|e| e.path()));
        }
    }
    out
}

#[test]
fn second_fetch_is_a_hit_without_download() {
    let srv = Server::start();
    let body = bytes(2 * MIB, 11);
    srv.route("/c/app.jar", Route::Ok(Arc::new(body.clone())));
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    let s1 = run(
        &[cached(&srv.url("/c/app.jar"))],
        &fresh_sandbox(t.path(), "s1"),
        None,
        &cfg,
    );
    // A new config and runtime over the same directory: nothing is wiped at start.
    let cfg2 = config(&t.path().join("cache"));
    let s2 = run(
        &[cached(&srv.url("/c/app.jar"))],
        &fresh_sandbox(t.path(), "s2"),
        None,
        &cfg2,
    );
    assert_eq!(s1.items[0].cache, CacheOutcome::Miss);
    assert_eq!(s2.items[0].cache, CacheOutcome::Hit);
    assert_eq!(srv.hits("/c/app.jar"), 1);
    assert_eq!(std::fs::read(t.path().join("s2/app.jar")).unwrap(), body);
    assert!(matches!(
        s2.items[0].method,
        Some(Method::Copy) | Some(Method::Reflink)
    ));
    assert!(files_in(&t.path().join("cache"), "tmp").is_empty());
}

#[test]
fn changing_a_copy_never_changes_the_entry() {
    let srv = Server::start();
    srv.route("/c/conf.txt", Route::Ok(Arc::new(b"original".to_vec())));
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    let s1 = fresh_sandbox(t.path(), "s1");
    run(&[cached(&srv.url("/c/conf.txt"))], &s1, None, &cfg);
    std::fs::write(s1.join("conf.txt"), b"tampered by the task").unwrap();
    let s2 = fresh_sandbox(t.path(), "s2");
    run(&[cached(&srv.url("/c/conf.txt"))], &s2, None, &cfg);
    assert_eq!(std::fs::read(s2.join("conf.txt")).unwrap(), b"original");
    assert_eq!(srv.hits("/c/conf.txt"), 1);
    let a = std::fs::metadata(s1.join("conf.txt")).unwrap().ino();
    let b = std::fs::metadata(s2.join("conf.txt")).unwrap().ino();
    assert_ne!(a, b);
}

#[test]
fn least_recently_used_unreferenced_entry_is_evicted() {
    let srv = Server::start();
    for n in ["a", "b", "c", "d"] {
        srv.route(
            &format!("/e/{n}"),
            Route::Ok(Arc::new(bytes(MIB, n.len() as u64))),
        );
    }
    let t = tempdir();
    let mut cfg = config(&t.path().join("cache"));
    cfg.cache_size = 3 * MIB as u64;
    let sb = fresh_sandbox(t.path(), "s");
    for n in ["a", "b", "c"] {
        run(&[cached(&srv.url(&format!("/e/{n}")))], &sb, None, &cfg);
    }
    // Use "a" again: "b" becomes the least recently used.
    run(&[cached(&srv.url("/e/a"))], &sb, None, &cfg);
    run(&[cached(&srv.url("/e/d"))], &sb, None, &cfg);
    let cache = Cache::open(&cfg.cache_dir, cfg.cache_size, false).unwrap();
    assert!(cache.used_bytes() <= 3 * MIB as u64);
    run(&[cached(&srv.url("/e/a"))], &sb, None, &cfg);
    run(&[cached(&srv.url("/e/c"))], &sb, None, &cfg);
    assert_eq!(
        srv.hits("/e/a"),
        1,
        "a was used recently and must have stayed"
    );
    assert_eq!(srv.hits("/e/c"), 1);
    let s = run(&[cached(&srv.url("/e/b"))], &sb, None, &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Miss, "b was the LRU victim");
    assert_eq!(srv.hits("/e/b"), 2);
}

#[test]
fn referenced_entry_is_not_evicted() {
    let srv = Server::start();
    srv.route("/r/a", Route::Ok(Arc::new(bytes(MIB, 1))));
    srv.route("/r/b", Route::Ok(Arc::new(bytes(MIB, 2))));
    let t = tempdir();
    let mut cfg = config(&t.path().join("cache"));
    cfg.cache_size = (MIB + MIB / 2) as u64;
    let sb = fresh_sandbox(t.path(), "s");
    run(&[cached(&srv.url("/r/a"))], &sb, None, &cfg);
    // Another "process" is copying "a" out: it holds the entry lock shared.
    let cache = Cache::open(&cfg.cache_dir, cfg.cache_size, false).unwrap();
    let key = cache.key(None, &srv.url("/r/a")).unwrap();
    let hold = cache.lock_hit(&key).unwrap().expect("a is cached");
    let s = run(&[cached(&srv.url("/r/b"))], &sb, None, &cfg);
    assert_eq!(
        s.items[0].cache,
        CacheOutcome::Bypass,
        "no room without evicting a referenced entry"
    );
    assert!(key.entry.exists());
    assert_eq!(std::fs::read(sb.join("b")).unwrap(), bytes(MIB, 2));
    drop(hold);
    let s = run(&[cached(&srv.url("/r/b"))], &sb, None, &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Miss);
    assert!(!key.entry.exists(), "unreferenced now, so evicted");
}

#[test]
fn item_larger_than_the_cache_is_fetched_directly() {
    let srv = Server::start();
    srv.route("/big/x.bin", Route::Ok(Arc::new(bytes(2 * MIB, 3))));
    let t = tempdir();
    let mut cfg = config(&t.path().join("cache"));
    cfg.cache_size = MIB as u64;
    let sb = fresh_sandbox(t.path(), "s");
    let s = run(&[cached(&srv.url("/big/x.bin"))], &sb, None, &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Bypass);
    assert_eq!(std::fs::read(sb.join("x.bin")).unwrap(), bytes(2 * MIB, 3));
    assert!(files_in(&cfg.cache_dir, "entries").is_empty());
}

#[test]
fn unknown_size_that_turns_out_too_large_is_fetched_directly() {
    let srv = Server::start();
    srv.route(
        "/nolen/x.bin",
        Route::OkNoLength(Arc::new(bytes(3 * MIB, 4))),
    );
    let t = tempdir();
    let mut cfg = config(&t.path().join("cache"));
    cfg.cache_size = MIB as u64;
    let sb = fresh_sandbox(t.path(), "s");
    let s = run(&[cached(&srv.url("/nolen/x.bin"))], &sb, None, &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Bypass);
    assert_eq!(std::fs::read(sb.join("x.bin")).unwrap(), bytes(3 * MIB, 4));
    assert!(files_in(&cfg.cache_dir, "entries").is_empty());
    assert!(files_in(&cfg.cache_dir, "tmp").is_empty());
    assert_eq!(
        srv.hits("/nolen/x.bin"),
        1,
        "the bytes were not downloaded twice"
    );
}

#[test]
fn unknown_size_that_fits_is_cached() {
    let srv = Server::start();
    srv.route(
        "/nolen/s.bin",
        Route::OkNoLength(Arc::new(bytes(10_000, 5))),
    );
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    let sb = fresh_sandbox(t.path(), "s");
    assert_eq!(
        run(&[cached(&srv.url("/nolen/s.bin"))], &sb, None, &cfg).items[0].cache,
        CacheOutcome::Miss
    );
    assert_eq!(
        run(&[cached(&srv.url("/nolen/s.bin"))], &sb, None, &cfg).items[0].cache,
        CacheOutcome::Hit
    );
    assert_eq!(srv.hits("/nolen/s.bin"), 1);
}

#[test]
fn failed_download_leaves_no_entry_and_the_next_fetch_retries() {
    let srv = Server::start();
    srv.route(
        "/f/x.bin",
        Route::LieLength {
            body: Arc::new(bytes(5000, 6)),
            claimed: 9000,
        },
    );
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    let sb = fresh_sandbox(t.path(), "s");
    rt().block_on(fetch_all(&[cached(&srv.url("/f/x.bin"))], &sb, None, &cfg))
        .unwrap_err();
    assert!(files_in(&cfg.cache_dir, "entries").is_empty());
    assert!(files_in(&cfg.cache_dir, "tmp").is_empty());
    srv.route("/f/x.bin", Route::Ok(Arc::new(bytes(5000, 6))));
    let s = run(&[cached(&srv.url("/f/x.bin"))], &sb, None, &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Miss);
}

#[test]
fn duplicate_uris_in_one_command_share_one_fetch() {
    let srv = Server::start();
    srv.route("/dup/x", Route::Ok(Arc::new(b"x".to_vec())));
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    let sb = fresh_sandbox(t.path(), "s");
    let s = run(
        &[cached(&srv.url("/dup/x")), cached(&srv.url("/dup/x"))],
        &sb,
        None,
        &cfg,
    );
    assert_eq!(s.items.len(), 1);
    assert_eq!(srv.hits("/dup/x"), 1);
}

#[test]
fn zero_cache_size_fetches_directly() {
    let srv = Server::start();
    srv.route("/z/x", Route::Ok(Arc::new(b"x".to_vec())));
    let t = tempdir();
    let mut cfg = config(&t.path().join("cache"));
    cfg.cache_size = 0;
    let sb = fresh_sandbox(t.path(), "s");
    run(&[cached(&srv.url("/z/x"))], &sb, None, &cfg);
    run(&[cached(&srv.url("/z/x"))], &sb, None, &cfg);
    assert_eq!(srv.hits("/z/x"), 2);
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test checks per-user ownership and needs root: run it through scripts/test.sh as root"
    );
}

#[test]
fn users_never_share_an_entry() {
    require_root();
    let srv = Server::start();
    srv.route("/u/x.jar", Route::Ok(Arc::new(bytes(1000, 7))));
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    let a = fresh_sandbox(t.path(), "a");
    let b = fresh_sandbox(t.path(), "b");
    run(&[cached(&srv.url("/u/x.jar"))], &a, Some("nobody"), &cfg);
    run(&[cached(&srv.url("/u/x.jar"))], &b, Some("daemon"), &cfg);
    assert_eq!(srv.hits("/u/x.jar"), 2, "one download per user");
    for (dir, uid) in [(&a, 65534), (&b, 1)] {
        assert_eq!(std::fs::metadata(dir.join("x.jar")).unwrap().uid(), uid);
    }
    for user in ["nobody", "daemon"] {
        let m = std::fs::metadata(cfg.cache_dir.join(user)).unwrap();
        assert_eq!(
            m.mode() & 0o777,
            0o700,
            "{user}'s cache dir must be private"
        );
    }
}

#[test]
fn local_file_the_user_cannot_read_is_refused() {
    require_root();
    let t = tempdir();
    let secret = t.path().join("secret.txt");
    std::fs::write(&secret, b"root only").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let sb = fresh_sandbox(t.path(), "s");
    let cfg = config(&t.path().join("cache"));
    let e = rt()
        .block_on(fetch_all(
            &[uri(secret.to_str().unwrap())],
            &sb,
            Some("nobody"),
            &cfg,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("may not read"), "{e}");
    assert!(!sb.join("secret.txt").exists());
}

#[test]
fn link_mode_hardlinks_read_only_root_owned_entries() {
    require_root();
    let srv = Server::start();
    srv.route("/l/x.jar", Route::Ok(Arc::new(bytes(50_000, 8))));
    let t = tempdir();
    let mut cfg = config(&t.path().join("cache"));
    cfg.cache_links = true;
    let a = fresh_sandbox(t.path(), "a");
    let b = fresh_sandbox(t.path(), "b");
    let s1 = run(&[cached(&srv.url("/l/x.jar"))], &a, Some("nobody"), &cfg);
    let s2 = run(&[cached(&srv.url("/l/x.jar"))], &b, Some("nobody"), &cfg);
    assert_eq!(s1.items[0].method, Some(Method::Hardlink));
    assert_eq!(s2.items[0].method, Some(Method::Hardlink));
    let m = std::fs::metadata(b.join("x.jar")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o444);
    assert_eq!(
        m.uid(),
        0,
        "root-owned, so the task user cannot chmod it back"
    );
    assert!(m.nlink() >= 3);
    assert_eq!(std::fs::read(b.join("x.jar")).unwrap(), bytes(50_000, 8));
    // An executable URI is copied, since a link would share one mode.
    let mut u = cached(&srv.url("/l/x.jar"));
    u.executable = Some(true);
    u.output_file = Some("x-exec.jar".into());
    let s3 = run(&[u], &b, Some("nobody"), &cfg);
    assert_ne!(s3.items[0].method, Some(Method::Hardlink));
}
