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

/// Log lines written while `f` runs on this thread (the fetcher's warnings, for one).
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (out, text)
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// A root-owned 0700 directory shaped like a user's cache directory, outside the cache.
fn decoy_user_dir(p: &Path) {
    for sub in ["", "entries", "locks", "tmp"] {
        std::fs::create_dir_all(p.join(sub)).unwrap();
        chmod(&p.join(sub), 0o700);
    }
}

fn no_user_dir(cache: &Path) -> PathBuf {
    cache.join(format!("_{}", nix::unistd::geteuid().as_raw()))
}

#[test]
fn cache_dir_planted_by_another_user_is_not_trusted() {
    require_root();
    let srv = Server::start();
    srv.route("/p/app.jar", Route::Ok(Arc::new(b"real bytes".to_vec())));
    let url = srv.url("/p/app.jar");
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    let secret = t.path().join("secret");
    std::fs::write(&secret, b"root only").unwrap();
    chmod(&secret, 0o600);
    // As `nobody` could in the 01777 root: its own `<root>/nobody/` with the entry for
    // (nobody, url) a symlink to a root-only file.
    Cache::open(&cfg.cache_dir, cfg.cache_size, false).unwrap();
    let planted = cfg.cache_dir.join("nobody");
    for sub in ["", "entries", "locks", "tmp"] {
        let d = planted.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        chmod(&d, 0o700);
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
    }
    let hash = croupier_executor::fetcher::cache::key_hash(Some("nobody"), &url);
    std::os::unix::fs::symlink(&secret, planted.join("entries").join(&hash)).unwrap();
    let sb = fresh_sandbox(t.path(), "s");
    let (s, logs) = with_logs(|| run(&[cached(&url)], &sb, Some("nobody"), &cfg));
    assert_eq!(s.items[0].cache, CacheOutcome::Bypass);
    assert_eq!(std::fs::read(sb.join("app.jar")).unwrap(), b"real bytes");
    assert_eq!(srv.hits("/p/app.jar"), 1);
    assert!(
        logs.contains(&planted.display().to_string())
            && logs.contains("owned by uid 65534")
            && logs.contains("fetching directly"),
        "the warning names the directory and why: {logs}"
    );
    assert_eq!(std::fs::read(&secret).unwrap(), b"root only");
    assert!(std::fs::symlink_metadata(planted.join("entries").join(&hash)).is_ok());
}

#[test]
fn symlinked_user_dir_is_neither_used_nor_scanned() {
    require_root();
    let srv = Server::start();
    srv.route("/s/x.bin", Route::Ok(Arc::new(bytes(MIB, 21))));
    srv.route("/s/y.bin", Route::Ok(Arc::new(bytes(MIB, 22))));
    let t = tempdir();
    let mut cfg = config(&t.path().join("cache"));
    cfg.cache_size = (MIB + MIB / 2) as u64;
    Cache::open(&cfg.cache_dir, cfg.cache_size, false).unwrap();
    // Root-owned, private directories elsewhere on the host that look like cache directories:
    // an entry for the no-user key, an entry that would be an eviction victim, and a `.part`
    // whose lock is free (a scan through the link would delete it).
    let decoy = t.path().join("elsewhere");
    decoy_user_dir(&decoy);
    let x_url = srv.url("/s/x.bin");
    let x_hash = croupier_executor::fetcher::cache::key_hash(None, &x_url);
    std::fs::write(decoy.join("entries").join(&x_hash), b"planted").unwrap();
    std::fs::write(decoy.join("entries").join("victim"), bytes(MIB, 23)).unwrap();
    std::fs::write(decoy.join("tmp").join("dead.100.1.0.part"), b"p").unwrap();
    std::os::unix::fs::symlink(&decoy, no_user_dir(&cfg.cache_dir)).unwrap();
    std::os::unix::fs::symlink(&decoy, cfg.cache_dir.join("daemon2")).unwrap();

    let sb = fresh_sandbox(t.path(), "s");
    let (s, logs) = with_logs(|| run(&[cached(&x_url)], &sb, None, &cfg));
    assert_eq!(s.items[0].cache, CacheOutcome::Bypass);
    assert_eq!(std::fs::read(sb.join("x.bin")).unwrap(), bytes(MIB, 21));
    assert!(logs.contains("is a symlink"), "{logs}");
    // A real user directory: its reservation scans the root, where the links must be skipped
    // (following one would count 1 MiB more and evict the decoy's "victim" to make room).
    let s = run(&[cached(&srv.url("/s/y.bin"))], &sb, Some("daemon"), &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Miss);
    assert_eq!(
        std::fs::read(decoy.join("entries").join("victim")).unwrap(),
        bytes(MIB, 23)
    );
    assert_eq!(
        std::fs::read(decoy.join("entries").join(&x_hash)).unwrap(),
        b"planted"
    );
    assert!(decoy.join("tmp").join("dead.100.1.0.part").exists());
}

#[test]
fn open_user_dir_or_symlinked_subdir_is_not_trusted() {
    require_root();
    let srv = Server::start();
    srv.route("/o/x.jar", Route::Ok(Arc::new(b"server bytes".to_vec())));
    let url = srv.url("/o/x.jar");
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    let sb = fresh_sandbox(t.path(), "s");
    let s = run(&[cached(&url)], &sb, Some("daemon"), &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Miss);
    let udir = cfg.cache_dir.join("daemon");
    // Group/other bits on the user directory: not used.
    chmod(&udir, 0o750);
    let (s, logs) = with_logs(|| run(&[cached(&url)], &sb, Some("daemon"), &cfg));
    assert_eq!(s.items[0].cache, CacheOutcome::Bypass);
    assert!(
        logs.contains("0750") && logs.contains(&udir.display().to_string()),
        "{logs}"
    );
    chmod(&udir, 0o700);
    assert_eq!(
        run(&[cached(&url)], &sb, Some("daemon"), &cfg).items[0].cache,
        CacheOutcome::Hit
    );
    // `entries` replaced by a symlink to a private directory with a planted entry.
    let decoy = t.path().join("decoy");
    decoy_user_dir(&decoy);
    let hash = croupier_executor::fetcher::cache::key_hash(Some("daemon"), &url);
    std::fs::write(decoy.join("entries").join(&hash), b"planted").unwrap();
    std::fs::rename(udir.join("entries"), t.path().join("old-entries")).unwrap();
    std::os::unix::fs::symlink(decoy.join("entries"), udir.join("entries")).unwrap();
    let (s, logs) = with_logs(|| run(&[cached(&url)], &sb, Some("daemon"), &cfg));
    assert_eq!(s.items[0].cache, CacheOutcome::Bypass);
    assert_eq!(std::fs::read(sb.join("x.jar")).unwrap(), b"server bytes");
    assert!(
        logs.contains(&udir.join("entries").display().to_string()),
        "{logs}"
    );
}

#[test]
fn no_user_dir_is_per_executor_identity() {
    let srv = Server::start();
    srv.route("/n/x", Route::Ok(Arc::new(b"x".to_vec())));
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    run(
        &[cached(&srv.url("/n/x"))],
        &fresh_sandbox(t.path(), "s"),
        None,
        &cfg,
    );
    let d = no_user_dir(&cfg.cache_dir);
    let m = std::fs::symlink_metadata(&d).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
    assert_eq!(m.mode() & 0o777, 0o700);
    assert!(!cfg.cache_dir.join("_").exists());
}

#[test]
fn untrusted_cache_root_is_not_used() {
    require_root();
    let srv = Server::start();
    srv.route("/root/x", Route::Ok(Arc::new(b"x".to_vec())));
    let t = tempdir();
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    chmod(&real, 0o1777);
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let open_dir = t.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    chmod(&open_dir, 0o777);
    let foreign = t.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    chmod(&foreign, 0o755);
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    for (root, why) in [
        (&link, "is a symlink"),
        (&open_dir, "without the sticky bit"),
        (&foreign, "owned by uid 65534"),
    ] {
        let e = Cache::open(root, 1 << 30, false).unwrap_err().to_string();
        assert!(
            e.contains(&root.display().to_string()) && e.contains(why),
            "{e}"
        );
        let cfg = config(root);
        let sb = fresh_sandbox(t.path(), &format!("sb-{why}"));
        let (s, logs) = with_logs(|| run(&[cached(&srv.url("/root/x"))], &sb, None, &cfg));
        assert_eq!(s.items[0].cache, CacheOutcome::Bypass, "{why}");
        assert_eq!(std::fs::read(sb.join("x")).unwrap(), b"x");
        assert!(logs.contains(why), "{logs}");
    }
    // Nothing was created through the link or in the rejected roots.
    for d in [&real, &open_dir, &foreign] {
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "{}", d.display());
    }
    // The real root itself is fine.
    Cache::open(&real, 1 << 30, false).unwrap();
}

#[test]
fn live_download_part_survives_a_scan_even_if_its_pid_is_not_visible() {
    let srv = Server::start();
    srv.route("/live/b.bin", Route::Ok(Arc::new(bytes(MIB, 31))));
    let t = tempdir();
    let mut cfg = config(&t.path().join("cache"));
    cfg.cache_size = 2 * MIB as u64;
    // Another executor (in another PID namespace) downloads "a": it holds a's lock exclusive
    // and its `.part` names a PID this process cannot see.
    let cache = Cache::open(&cfg.cache_dir, cfg.cache_size, false).unwrap();
    let a = cache.key(None, "http://elsewhere.invalid/a.bin").unwrap();
    let hold = cache.lock_exclusive(&a).unwrap();
    let pid = i32::MAX - 1;
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    );
    let reserved = MIB + MIB / 2;
    let part = a
        .user_dir
        .join("tmp")
        .join(format!("{}.{reserved}.{pid}.0.part", a.hash));
    std::fs::write(&part, b"some bytes so far").unwrap();
    let sb = fresh_sandbox(t.path(), "s");
    let s = run(&[cached(&srv.url("/live/b.bin"))], &sb, None, &cfg);
    assert!(part.exists(), "a live download's .part was deleted");
    assert_eq!(
        s.items[0].cache,
        CacheOutcome::Bypass,
        "the live reservation is counted: 1.5 MiB + 1 MiB does not fit in 2 MiB"
    );
    assert_eq!(std::fs::read(sb.join("b.bin")).unwrap(), bytes(MIB, 31));
    // The download ends without a commit (its process died): the lock is free, so the next
    // scan removes the part and there is room again.
    drop(hold);
    let s = run(&[cached(&srv.url("/live/b.bin"))], &sb, None, &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Miss);
    assert!(!part.exists(), "a dead download's .part is removed");
}

#[test]
fn held_global_lock_bounds_the_wait_and_the_fetch_goes_direct() {
    use croupier_executor::fetcher::cache;
    assert_eq!(cache::global_lock_wait(), cache::GLOBAL_LOCK_WAIT);
    let bound = std::time::Duration::from_secs(1);
    // Process-wide; the other tests of this binary never contend for a global lock.
    cache::set_global_lock_wait(bound);
    let srv = Server::start();
    srv.route("/g/x.bin", Route::Ok(Arc::new(bytes(10_000, 41))));
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    Cache::open(&cfg.cache_dir, cfg.cache_size, false).unwrap();
    // Any local user may open the 0666 lock file and hold it.
    let lock_path = cfg.cache_dir.join(".lock");
    let held = std::fs::File::open(&lock_path).unwrap();
    held.lock().unwrap();
    let sb = fresh_sandbox(t.path(), "s");
    let started = std::time::Instant::now();
    let (s, logs) = with_logs(|| run(&[cached(&srv.url("/g/x.bin"))], &sb, None, &cfg));
    let took = started.elapsed();
    assert_eq!(s.items[0].cache, CacheOutcome::Bypass);
    assert_eq!(std::fs::read(sb.join("x.bin")).unwrap(), bytes(10_000, 41));
    assert!(took >= bound, "it did wait for the lock: {took:?}");
    assert!(
        took < bound * 20,
        "the wait is bounded, not forever: {took:?}"
    );
    assert!(
        logs.contains(&lock_path.display().to_string()) && logs.contains("fetching directly"),
        "the warning names the lock file: {logs}"
    );
    drop(held);
    let s = run(&[cached(&srv.url("/g/x.bin"))], &sb, None, &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Miss);
}

#[test]
fn dead_part_of_the_key_being_fetched_is_removed() {
    let srv = Server::start();
    srv.route("/d/x.bin", Route::Ok(Arc::new(bytes(MIB, 51))));
    let url = srv.url("/d/x.bin");
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    // A download of the same key left by an executor killed in another PID namespace.
    let cache = Cache::open(&cfg.cache_dir, cfg.cache_size, false).unwrap();
    let key = cache.key(None, &url).unwrap();
    let part = key
        .user_dir
        .join("tmp")
        .join(format!("{}.{MIB}.{}.0.part", key.hash, i32::MAX - 1));
    std::fs::write(&part, b"half").unwrap();
    let sb = fresh_sandbox(t.path(), "s");
    let s = run(&[cached(&url)], &sb, None, &cfg);
    assert_eq!(s.items[0].cache, CacheOutcome::Miss);
    // The fetch held the key's lock exclusive, so no live download can have owned that part.
    assert!(
        files_in(&cfg.cache_dir, "tmp").is_empty(),
        "{:?}",
        files_in(&cfg.cache_dir, "tmp")
    );
}

/// A user who owns a directory on a local path swaps the file for a symlink to a root-only
/// file, over and over, while the root executor fetches that path for the user. The file is
/// opened with the user's own permissions, so no fetch ever copies the secret, whatever the
/// timing (a check-then-open fetcher leaks it in this race).
#[test]
fn swapping_a_local_file_for_a_symlink_never_leaks_a_root_only_file() {
    require_root();
    let t = tempdir();
    std::fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let secret = t.path().join("secret.txt");
    std::fs::write(&secret, b"root only").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let public = t.path().join("pub");
    std::fs::create_dir(&public).unwrap();
    std::os::unix::fs::chown(
        &public,
        Some(nobody.uid.as_raw()),
        Some(nobody.gid.as_raw()),
    )
    .unwrap();
    let f = public.join("app.conf");
    std::fs::write(&f, b"public").unwrap();
    // A symlink the user made: refused outright.
    let link = public.join("sneaky.conf");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let cfg = config(&t.path().join("cache"));
    let sb = fresh_sandbox(t.path(), "direct");
    let e = rt()
        .block_on(fetch_all(
            &[uri(link.to_str().unwrap())],
            &sb,
            Some("nobody"),
            &cfg,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("may not read"), "{e}");
    // The race: the "user" flips app.conf between a file and a symlink to the secret.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, public, secret, f) = (stop.clone(), public.clone(), secret.clone(), f.clone());
        std::thread::spawn(move || {
            let (reg, lnk) = (public.join(".reg"), public.join(".lnk"));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::write(&reg, b"public");
                let _ = std::fs::rename(&reg, &f);
                let _ = std::fs::remove_file(&lnk);
                let _ = std::os::unix::fs::symlink(&secret, &lnk);
                let _ = std::fs::rename(&lnk, &f);
            }
        })
    };
    let (mut ok, mut refused) = (0, 0);
    for i in 0..300 {
        let sb = fresh_sandbox(t.path(), &format!("r{i}"));
        match rt().block_on(fetch_all(
            &[uri(f.to_str().unwrap())],
            &sb,
            Some("nobody"),
            &cfg,
        )) {
            Ok(_) => {
                let got = std::fs::read(sb.join("app.conf")).unwrap();
                assert_eq!(got, b"public", "fetch {i} copied the root-only file");
                ok += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("may not read"), "{e}");
                refused += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    eprintln!("{ok} fetched the public file, {refused} refused the symlink");
    assert_eq!(ok + refused, 300);
}
