//! Fetcher benchmark (not a test): run through `bench/fetcher.sh`. Loopback only.
//!
//! Side by side in one run: a 256 MiB file fetched cold vs `curl -o`, warm from the cache with
//! copies and with links, a ~100 MiB .tgz extraction vs `tar xzf`, and 8 concurrent launches
//! (separate processes) of one cached URI. Prints a markdown table (medians).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier_executor::fetcher::{fetch_all, FetchConfig, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1 << 20;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn cfg(cache: &Path, links: bool) -> FetchConfig {
    FetchConfig {
        cache_dir: cache.to_path_buf(),
        cache_size: 2 << 30,
        cache_links: links,
        progress_interval: Duration::from_secs(3600),
        ..Default::default()
    }
}

fn uri(v: &str, cache: bool) -> Uri {
    Uri {
        value: v.to_string(),
        cache: Some(cache),
        ..Default::default()
    }
}

/// A static file server on 127.0.0.1 counting GETs per path; bodies held in memory.
fn serve(files: Vec<(String, Arc<Vec<u8>>)>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("addr");
            let files = Arc::new(files);
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let (files, hits) = (files.clone(), h2.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                        if n == buf.len() {
                            return;
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let Some((_, body)) = files.iter().find(|(p, _)| *p == path) else {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 404 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            )
                            .await;
                        return;
                    };
                    hits.fetch_add(1, Ordering::SeqCst);
                    let hdr = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    if s.write_all(hdr.as_bytes()).await.is_err() {
                        return;
                    }
                    for c in body.chunks(MIB) {
                        if s.write_all(c).await.is_err() {
                            return;
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
    });
    let addr = rx.recv().expect("server addr");
    (format!("http://{addr}"), hits)
}

fn data(n: usize, seed: u64, alphabet: u8) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if alphabet == 0 {
                (x >> 24) as u8
            } else {
                b'a' + ((x >> 24) as u8 % alphabet)
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median wall time of `f`; `setup` (untimed) prepares each run's directories.
fn time<S: FnMut(), F: FnMut()>(runs: usize, mut setup: S, mut f: F) -> f64 {
    median(
        (0..runs)
            .map(|_| {
                setup();
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn fresh(p: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(p);
    std::fs::create_dir_all(p).expect("mkdir");
    p.to_path_buf()
}

fn child(args: &[String]) {
    let [_, _, url, sb, cache] = args else {
        eprintln!("usage: fetcher-bench child URL SANDBOX CACHE");
        std::process::exit(2);
    };
    let r = rt().block_on(fetch_all(
        &[uri(url, true)],
        Path::new(sb),
        None,
        &cfg(Path::new(cache), false),
    ));
    if let Err(e) = r {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(&args);
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let base = PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp/croupier-fetcher-bench".into()),
    );
    fresh(&base);
    let big = Arc::new(data(256 * MIB, 1, 0));
    let (url, hits) = serve(vec![("/big.bin".into(), big.clone())]);
    let big_url = format!("{url}/big.bin");
    let mut rows: Vec<(String, String, String, String)> = Vec::new();

    // 1. Cold: curl vs croupier direct (no cache) vs croupier via the cache (miss + copy out).
    let out = base.join("curl");
    let curl = time(
        runs,
        || {
            fresh(&out);
        },
        || {
            let st = Command::new("curl")
                .args(["-sS", "-o"])
                .arg(out.join("big.bin"))
                .arg(&big_url)
                .status()
                .expect("curl");
            assert!(st.success());
        },
    );
    let sb = base.join("sb");
    let cold_direct = time(
        runs,
        || {
            fresh(&sb);
        },
        || {
            rt().block_on(fetch_all(
                &[uri(&big_url, false)],
                &sb,
                None,
                &cfg(&base.join("cache-unused"), false),
            ))
            .expect("fetch");
        },
    );
    let cache = base.join("cache-cold");
    let cold_cached = time(
        runs,
        || {
            fresh(&sb);
            fresh(&cache);
        },
        || {
            rt().block_on(fetch_all(
                &[uri(&big_url, true)],
                &sb,
                None,
                &cfg(&cache, false),
            ))
            .expect("fetch");
        },
    );
    let mibs = |s: f64| format!("{:.0} MiB/s", 256.0 / s);
    rows.push((
        "256 MiB cold, `curl -o` (baseline)".into(),
        format!("{curl:.3} s"),
        mibs(curl),
        "1.00x".into(),
    ));
    rows.push((
        "256 MiB cold, croupier (cache off)".into(),
        format!("{cold_direct:.3} s"),
        mibs(cold_direct),
        format!(
            "{:.2}x curl throughput (target >= 0.9x)",
            curl / cold_direct
        ),
    ));
    rows.push((
        "256 MiB cold, croupier (cache miss: download + copy out)".into(),
        format!("{cold_cached:.3} s"),
        mibs(cold_cached),
        format!("{:.2}x curl throughput", curl / cold_cached),
    ));

    // 2. Warm: from the cache, copy mode and link mode.
    let warm_cache = fresh(&base.join("cache-warm"));
    rt().block_on(fetch_all(
        &[uri(&big_url, true)],
        &fresh(&base.join("sb")),
        None,
        &cfg(&warm_cache, false),
    ))
    .expect("prime");
    let warm_copy = time(
        runs,
        || {
            fresh(&sb);
        },
        || {
            rt().block_on(fetch_all(
                &[uri(&big_url, true)],
                &sb,
                None,
                &cfg(&warm_cache, false),
            ))
            .expect("fetch");
        },
    );
    // Links are made only for a task running as another, non-root user (as Spark tasks do):
    // as root, fetch for `nobody`.
    let root = nix::unistd::geteuid().is_root();
    let link_user = root.then_some("nobody");
    let link_cache = fresh(&base.join("cache-links"));
    rt().block_on(fetch_all(
        &[uri(&big_url, true)],
        &fresh(&base.join("sb")),
        link_user,
        &cfg(&link_cache, true),
    ))
    .expect("prime");
    let warm_link = time(
        runs,
        || {
            fresh(&sb);
        },
        || {
            let s = rt()
                .block_on(fetch_all(
                    &[uri(&big_url, true)],
                    &sb,
                    link_user,
                    &cfg(&link_cache, true),
                ))
                .expect("fetch");
            if root {
                assert_eq!(
                    s.items[0].method,
                    Some(croupier_executor::fetcher::Method::Hardlink),
                    "link mode placed the entry by {:?}",
                    s.items[0].method
                );
            }
        },
    );
    rows.push((
        "256 MiB warm, cache hit, copy (reflink/copy_file_range)".into(),
        format!("{warm_copy:.3} s"),
        mibs(warm_copy),
        format!(
            "{:.3}x cold direct time (target <= 0.25x)",
            warm_copy / cold_direct
        ),
    ));
    rows.push((
        format!(
            "256 MiB warm, cache hit, hardlink{}",
            if root {
                " (task user nobody)"
            } else {
                " (NOT root: copies)"
            }
        ),
        format!("{warm_link:.4} s"),
        mibs(warm_link),
        format!(
            "{:.4}x cold direct time (target <= 0.02x)",
            warm_link / cold_direct
        ),
    ));

    // 3. ~100 MiB .tgz extraction vs tar xzf.
    let src = fresh(&base.join("tgz-src"));
    for i in 0..100 {
        let d = src.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(
            d.join(format!("f{i}.bin")),
            data(2 * MIB, 100 + i as u64, 12),
        )
        .expect("write");
    }
    let tgz = base.join("payload.tgz");
    let st = Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .expect("tar czf");
    assert!(st.success());
    let tgz_mib = std::fs::metadata(&tgz).expect("tgz").len() as f64 / MIB as f64;
    let xt = base.join("x-tar");
    let tar_t = time(
        runs,
        || {
            fresh(&xt);
        },
        || {
            let out = &xt;
            let st = Command::new("tar")
                .arg("xzf")
                .arg(&tgz)
                .arg("-C")
                .arg(out)
                .status()
                .expect("tar xzf");
            assert!(st.success());
        },
    );
    let xo = base.join("x-ours");
    let ours_t = time(
        runs,
        || {
            fresh(&xo);
        },
        || {
            let out = &xo;
            croupier_executor::fetcher::extract::extract(
                &tgz,
                croupier_executor::fetcher::uri::ArchiveKind::TarGz,
                out,
                "payload.tgz",
                None,
            )
            .expect("extract");
        },
    );
    rows.push((
        format!("{tgz_mib:.0} MiB .tgz (200 MiB unpacked), `tar xzf` (baseline)"),
        format!("{tar_t:.3} s"),
        "".into(),
        "1.00x".into(),
    ));
    rows.push((
        format!("{tgz_mib:.0} MiB .tgz, croupier extract"),
        format!("{ours_t:.3} s"),
        "".into(),
        format!("{:.2}x tar's time (target <= 1.1x)", ours_t / tar_t),
    ));

    // 4. 8 concurrent launches (processes) of one cacheable URI, cold cache.
    let exe = std::env::current_exe().expect("exe");
    let mut walls = Vec::new();
    let mut downloads = Vec::new();
    for _ in 0..runs.min(3) {
        let cache = fresh(&base.join("cache-8"));
        let before = hits.load(Ordering::SeqCst);
        let t = Instant::now();
        let kids: Vec<_> = (0..8)
            .map(|i| {
                let sb = fresh(&base.join(format!("sb8-{i}")));
                Command::new(&exe)
                    .arg("child")
                    .arg(&big_url)
                    .arg(&sb)
                    .arg(&cache)
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().expect("wait").success());
        }
        walls.push(t.elapsed().as_secs_f64());
        downloads.push(hits.load(Ordering::SeqCst) - before);
    }
    let wall8 = median(walls);
    rows.push((
        "8 processes launch one cacheable 256 MiB URI (cold)".into(),
        format!("{wall8:.3} s"),
        "".into(),
        format!("downloads per run: {downloads:?} (target 1)"),
    ));

    println!("| case | median time | rate | vs baseline |");
    println!("|---|---|---|---|");
    for (a, b, c, d) in &rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    println!(
        "\n{runs} runs each (8-process case: {} runs); loopback; {}",
        runs.min(3),
        if root { "as root" } else { "not root" }
    );
    let _ = std::fs::remove_dir_all(&base);
}
