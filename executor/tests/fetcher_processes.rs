//! Several executor processes sharing one cache: 8 racing for one URI, and a fetch killed with
//! SIGKILL mid-download. The "executors" are this test binary re-run in child mode
//! (`CROUPIER_FETCHER_CHILD=1`), each a separate OS process calling `fetch_all`.

mod fetcher_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier_executor::fetcher::{fetch_all, CacheOutcome};
use fetcher_support::*;

/// In child mode: fetch `CHILD_URI` (cached) into `CHILD_SANDBOX` with the cache at
/// `CHILD_CACHE`, and write the cache outcome to `CHILD_OUT`. Returns true if in child mode.
fn child_mode() -> bool {
    if std::env::var_os("CROUPIER_FETCHER_CHILD").is_none() {
        return false;
    }
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("child needs {k}"));
    let cfg = config(Path::new(&var("CHILD_CACHE")));
    let res = rt().block_on(fetch_all(
        &[cached(&var("CHILD_URI"))],
        Path::new(&var("CHILD_SANDBOX")),
        None,
        &cfg,
    ));
    let text = match res {
        Ok(s) => s.items[0].cache.to_string(),
        Err(e) => format!("error: {e}"),
    };
    std::fs::write(var("CHILD_OUT"), text).unwrap();
    true
}

fn spawn_child(test: &str, uri: &str, sandbox: &Path, cache: &Path, out: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("CROUPIER_FETCHER_CHILD", "1")
        .env("CHILD_URI", uri)
        .env("CHILD_SANDBOX", sandbox)
        .env("CHILD_CACHE", cache)
        .env("CHILD_OUT", out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_bounded(mut c: Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = c.kill();
            panic!("child fetcher did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
fn eight_processes_racing_for_one_uri_download_it_once() {
    if child_mode() {
        return;
    }
    let srv = Server::start();
    let body = Arc::new(bytes(8 << 20, 21));
    // Slow enough (~1.3 s) that all eight start while the first is still downloading.
    srv.route(
        "/race/spark.tgz.bin",
        Route::Slow {
            body: body.clone(),
            chunk: 64 * 1024,
            delay: Duration::from_millis(10),
        },
    );
    let t = tempdir();
    let cache = t.path().join("cache");
    let uri = srv.url("/race/spark.tgz.bin");
    let mut kids = Vec::new();
    for i in 0..8 {
        let sb = t.path().join(format!("sandbox{i}"));
        std::fs::create_dir_all(&sb).unwrap();
        let out = t.path().join(format!("out{i}"));
        kids.push((
            spawn_child(
                "eight_processes_racing_for_one_uri_download_it_once",
                &uri,
                &sb,
                &cache,
                &out,
            ),
            sb,
            out,
        ));
    }
    let mut outcomes = Vec::new();
    for (c, sb, out) in kids {
        assert!(wait_bounded(c, Duration::from_secs(60)).success());
        outcomes.push(std::fs::read_to_string(&out).unwrap());
        assert_eq!(
            std::fs::read(sb.join("spark.tgz.bin")).unwrap(),
            *body,
            "identical bytes in every sandbox"
        );
    }
    assert_eq!(
        srv.hits("/race/spark.tgz.bin"),
        1,
        "exactly one download; outcomes {outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "miss").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "hit").count(),
        7,
        "{outcomes:?}"
    );
    assert_eq!(files_in(&cache, "entries").len(), 1);
    assert!(files_in(&cache, "tmp").is_empty());
}

#[test]
fn sigkill_mid_download_leaves_a_consistent_cache() {
    if child_mode() {
        return;
    }
    let srv = Server::start();
    let body = Arc::new(bytes(8 << 20, 22));
    srv.route(
        "/kill/big.bin",
        Route::Slow {
            body: body.clone(),
            chunk: 64 * 1024,
            delay: Duration::from_millis(40),
        },
    );
    let t = tempdir();
    let cache = t.path().join("cache");
    let uri = srv.url("/kill/big.bin");
    let sb0 = t.path().join("sandbox0");
    std::fs::create_dir_all(&sb0).unwrap();
    let mut child = spawn_child(
        "sigkill_mid_download_leaves_a_consistent_cache",
        &uri,
        &sb0,
        &cache,
        &t.path().join("out0"),
    );
    // Wait until the child is mid-download: its .part file holds some bytes.
    let start = Instant::now();
    loop {
        let parts = if cache.exists() {
            files_in(&cache, "tmp")
        } else {
            Vec::new()
        };
        if parts.iter().any(|p| {
            std::fs::metadata(p)
                .map(|m| m.len() > 256 * 1024)
                .unwrap_or(false)
        }) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "child never started downloading"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        files_in(&cache, "entries").is_empty(),
        "no entry from a killed download"
    );

    // A new executor fetches the same URI: it must succeed with the right bytes.
    srv.route("/kill/big.bin", Route::Ok(body.clone()));
    let sb1 = t.path().join("sandbox1");
    std::fs::create_dir_all(&sb1).unwrap();
    let s = rt()
        .block_on(fetch_all(&[cached(&uri)], &sb1, None, &config(&cache)))
        .unwrap();
    assert_eq!(s.items[0].cache, CacheOutcome::Miss);
    assert_eq!(std::fs::read(sb1.join("big.bin")).unwrap(), *body);
    assert_eq!(srv.hits("/kill/big.bin"), 2);
    let entries = files_in(&cache, "entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(std::fs::read(&entries[0]).unwrap(), *body);
    assert!(
        files_in(&cache, "tmp").is_empty(),
        "the dead process's partial file was cleaned"
    );
}
