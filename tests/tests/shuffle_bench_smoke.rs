//! Smoke test of the shuffle benchmark (no speed assertions): a tiny data set served by our
//! shuffle service binary and by the bench's raw sendfile server, fetched in all three modes
//! with every byte verified, and once more after `evict` dropped the files from the page cache
//! (a `cold` cell); the report's summary line carries every key; a corrupted byte must make the
//! bench fail.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BENCH: &str = env!("CARGO_BIN_EXE_croupier-shuffle-bench");

/// Our service binary, built by `cargo test --workspace` (scripts/test.sh) next to the bench.
fn service_binary() -> PathBuf {
    let bench_dir = Path::new(BENCH)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let profile = bench_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "debug".into());
    let candidates = [
        bench_dir.join("croupier-shuffle-service"),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .join(&profile)
            .join("croupier-shuffle-service"),
    ];
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => p.clone(),
        None => panic!(
            "croupier-shuffle-service is not built (looked at {:?}): run scripts/test.sh, or `cargo build -p croupier-shuffle-service` first",
            candidates
        ),
    }
}

/// A server process killed on drop, with the address it logged.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd`, waits (10 s max) for `listening on <ip>:<port>` on its stderr.
fn start(mut cmd: Command, what: &str) -> Server {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stderr = child.stderr.take().expect("stderr was piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let port = rest
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok());
                let _ = tx.send(port);
            }
        }
    });
    let port = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Some(p)) => p,
        other => {
            let _ = child.kill();
            panic!("{what} did not log `listening on <ip>:<port>` within 10 s: {other:?}");
        }
    };
    Server { child, port }
}

fn bench(args: &[&str]) -> std::process::Output {
    let out = Command::new(BENCH)
        .args(args)
        .output()
        .expect("run croupier-shuffle-bench");
    assert!(
        out.status.code().is_some(),
        "bench killed by a signal: {out:?}"
    );
    out
}

/// Runs a fixed-count fetch and returns its `result` line after checking the byte counts.
fn fetch(
    data: &str,
    server: &Server,
    label: &str,
    shuffle: &str,
    mode: &str,
    expect_bytes: u64,
    tag: Option<&str>,
) -> String {
    let port = server.port.to_string();
    let pid = server.child.id().to_string();
    let tag_args: Vec<&str> = match tag {
        Some(t) => vec!["--tag", t],
        None => Vec::new(),
    };
    let out = bench(
        &[
            "run",
            "--data-dir",
            data,
            "--port",
            port.as_str(),
            "--shuffle-id",
            shuffle,
            "--mode",
            mode,
            "--connections",
            "3",
            "--fetches",
            "4",
            "--repeat",
            "1",
            "--blocks-per-fetch",
            "3",
            "--batch-reduces",
            "2",
            "--server-pid",
            pid.as_str(),
            "--label",
            label,
        ]
        .iter()
        .chain(&tag_args)
        .copied()
        .collect::<Vec<_>>(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{label} {mode} shuffle {shuffle} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("result "))
        .unwrap_or_else(|| panic!("no result line: {stdout}"))
        .to_owned();
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    assert_eq!(field("fetches"), 12, "{line}");
    assert_eq!(field("bytes"), expect_bytes, "{line}");
    assert_eq!(field("verified_bytes"), expect_bytes, "{line}");
    line
}

#[test]
fn bench_fetches_and_verifies_every_byte_from_ours_and_raw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 temp path").to_owned();
    // (shuffle, maps, reduces, block size): small blocks, and blocks larger than the client's buffer.
    let shapes = [("1", "6", "5", 3000u64), ("2", "3", "4", 300 << 10)];
    for (s, m, r, b) in shapes {
        let out = bench(&[
            "gen",
            "--data-dir",
            &data,
            "--shuffle-id",
            s,
            "--maps",
            m,
            "--reduces",
            r,
            "--block-size",
            &b.to_string(),
        ]);
        assert!(
            out.status.success(),
            "gen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut ours_cmd = Command::new(service_binary());
    ours_cmd
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("RUST_LOG", "info");
    let ours = start(ours_cmd, "croupier-shuffle-service");
    let mut raw_cmd = Command::new(BENCH);
    raw_cmd.args(["raw-server", "--data-dir", &data, "--port", "0"]);
    let raw = start(raw_cmd, "croupier-shuffle-bench raw-server");

    let mut lines = Vec::new();
    for (label, server) in [("ours", &ours), ("raw", &raw)] {
        for (s, _, _, b) in shapes {
            // 3 connections x 4 fetches x 3 chunks; batch chunks span 2 reduces.
            for (mode, per_chunk) in [("fetch", 1), ("batch", 2), ("open", 1)] {
                lines.push(fetch(
                    &data,
                    server,
                    label,
                    s,
                    mode,
                    36 * per_chunk * b,
                    None,
                ));
            }
        }
        // The cold-cache cell: files evicted from the page cache, then fetched and verified.
        let out = bench(&["evict", "--data-dir", &data, "--shuffle-id", "2"]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("evicted shuffle=2 files=6 bytes="),
            "evict failed: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = fetch(
            &data,
            server,
            label,
            "2",
            "fetch",
            36 * (300 << 10),
            Some("cold"),
        );
        assert!(line.contains(" tag=cold"), "{line}");
        lines.push(line);
    }
    // The table renders every cell for both servers.
    let results = dir.path().join("results.txt");
    std::fs::write(&results, lines.join("\n")).expect("write results");
    let out = bench(&["report", results.to_str().expect("utf-8")]);
    let table = String::from_utf8_lossy(&out.stdout);
    let summary = table.lines().last().unwrap_or_default();
    assert!(
        out.status.success()
            && table.contains("| 300KiB | 3 | batch |")
            && table.contains("| 300KiB | 3 | fetch+cold |")
            && summary.starts_with("summary: "),
        "{table}"
    );
    // Every key of the summary line, in order (CI and BENCHMARKS.md read them); the ratios
    // against Spark's service are `-` here (no JVM in this test).
    let keys: Vec<&str> = summary
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    assert_eq!(
        keys,
        [
            "small_blocks_ratio",
            "large_blocks_ratio",
            "sendfile_fraction",
            "p99_ratio",
            "rss_ratio",
            "startup_ms",
            "cold_ratio",
            "job_ratio",
            "raw_small_fraction"
        ],
        "{summary}"
    );

    // One flipped byte in block (map 0, reduce 0), which the first fetch of connection 0 reads.
    let data_file = walk(dir.path())
        .into_iter()
        .find(|p| p.ends_with("shuffle_1_0_0.data"))
        .expect("shuffle_1_0_0.data exists");
    let mut bytes = std::fs::read(&data_file).expect("read data file");
    bytes[100] ^= 0x40;
    std::fs::write(&data_file, &bytes).expect("corrupt data file");
    for server in [&ours, &raw] {
        let port = server.port.to_string();
        let out = bench(&[
            "run",
            "--data-dir",
            &data,
            "--port",
            &port,
            "--shuffle-id",
            "1",
            "--connections",
            "1",
            "--fetches",
            "1",
            "--repeat",
            "1",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("WRONG BYTES") && err.contains("map 0 reduce 0"),
            "corruption not detected: {err}"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
