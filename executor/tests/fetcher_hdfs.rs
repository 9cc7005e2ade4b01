//! `hdfs://` through the native client (`hdfs-native`). No real HDFS (NameNode/DataNode) can be
//! installed on this machine, so these tests cover what runs without one:
//! - the client is really used: a NameNode that is down, or a peer that is not a NameNode,
//!   yields a clear error naming the URI;
//! - the whole read path (Hadoop IPC to a NameNode, then READ_BLOCK to a DataNode, packets with
//!   CRC32C checksums, several blocks, a missing file) runs against a SCRIPTED peer
//!   (`fetcher_support/hdfs_fake.rs`) written by us from Hadoop's .proto files and sources;
//! - that scripted peer is cross-checked with an independent, official client: Hadoop 3.3.4's
//!   own `FileSystem` (the hadoop-client jars shipped in pyspark 3.5.7, run by
//!   `fetcher_support/java/HdfsCrossCheck.java`) reads the same multi-block file from it
//!   byte for byte like `hdfs-native` does, verifying every CRC32C (it acknowledges each block
//!   with CHECKSUM_OK), with a positional read starting mid-chunk, `getFileStatus`, and
//!   FileNotFoundException for a missing path. So the fake is not just what `hdfs-native`
//!   happens to accept.
//!
//! Still NOT verified: a real NameNode/DataNode (their other behaviours, e.g. block tokens,
//! replicas that fail, under-construction files, the real DataNode's packet sizes), SASL data
//! transfer or Kerberos, encrypted transfer, HA/nameservices, erasure-coded files.

mod fetcher_support;
#[path = "fetcher_support/hdfs_fake.rs"]
mod hdfs_fake;

use std::io::{Read, Write};
use std::time::Duration;

use croupier_executor::fetcher::{fetch_all, CacheOutcome, FetchErrorKind};
use fetcher_support::*;
use hdfs_fake::{FakeHdfs, Layout};

#[test]
fn hdfs_namenode_down_is_a_retryable_error_naming_the_uri() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = tempdir();
    let sb = sandbox(t.path());
    let u = format!("hdfs://127.0.0.1:{port}/apps/spark.tgz");
    let e = rt()
        .block_on(fetch_all(
            &[uri(&u)],
            &sb,
            None,
            &config(&t.path().join("c")),
        ))
        .unwrap_err();
    assert!(e.to_string().contains(&u), "{e}");
    assert!(
        matches!(
            e.kind,
            FetchErrorKind::Connect(_) | FetchErrorKind::Remote(_)
        ),
        "{e}"
    );
    assert!(e.retryable());
}

#[test]
fn hdfs_peer_that_is_not_a_namenode_fails_cleanly() {
    // A server that reads the Hadoop RPC connection header ("hrpc"...) and answers garbage.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = [0u8; 4];
            let _ = s.read_exact(&mut head);
            let _ = tx.send(head);
            let _ = s.write_all(&[0, 0, 0, 3, 1, 2, 3]);
        }
    });
    let t = tempdir();
    let sb = sandbox(t.path());
    let u = format!("hdfs://127.0.0.1:{port}/x.jar");
    let mut cfg = config(&t.path().join("c"));
    cfg.stall_timeout = Duration::from_secs(3);
    let e = rt()
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                fetch_all(&[uri(&u)], &sb, None, &cfg),
            )
            .await
        })
        .expect("the HDFS client must not hang on a bad peer")
        .unwrap_err();
    assert!(e.to_string().contains(&u), "{e}");
    let head = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("client connected");
    assert_eq!(&head, b"hrpc", "the native client spoke Hadoop RPC");
}

/// Runs `fetch_all`, bounded so a misbehaving client or fake fails the test instead of hanging.
fn fetch_bounded(
    uris: &[croupier_executor::fetcher::Uri],
    sb: &std::path::Path,
    cfg: &croupier_executor::fetcher::FetchConfig,
) -> Result<croupier_executor::fetcher::FetchSummary, croupier_executor::fetcher::FetchError> {
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), fetch_all(uris, sb, None, cfg))
            .await
            .expect("fetch from the fake HDFS finished within 60 s")
    })
}

#[test]
fn hdfs_tgz_across_blocks_and_packets_is_fetched_and_extracted() {
    let layout = Layout::default();
    let fake = FakeHdfs::start(layout);
    let run = b"#!/bin/sh\necho spark\n".to_vec();
    // Incompressible, so the .tgz spans several 64 KiB blocks and 16 KiB packets.
    let jar = bytes(150_000, 42);
    let tgz = gzip(
        &RawTar::new()
            .dir("app/")
            .file("app/bin/run.sh", &run)
            .file("app/lib/big.jar", &jar)
            .finish(),
    );
    assert!(tgz.len() > 2 * layout.block_size, "{}", tgz.len());
    fake.put("/data/app.tgz", tgz.clone(), layout);

    let t = tempdir();
    let sb = sandbox(t.path());
    let u = fake.url("/data/app.tgz");
    let summary = fetch_bounded(&[uri(&u)], &sb, &config(&t.path().join("c")))
        .unwrap_or_else(|e| panic!("fetch {u}: {e}; fake saw {:?}", fake.errors()));

    assert_eq!(std::fs::read(sb.join("app/bin/run.sh")).unwrap(), run);
    assert_eq!(std::fs::read(sb.join("app/lib/big.jar")).unwrap(), jar);
    assert_eq!(std::fs::read(sb.join("app.tgz")).unwrap(), tgz);
    assert_eq!(summary.items.len(), 1);
    assert!(summary.items[0].extracted);
    assert_eq!(summary.items[0].bytes, tgz.len() as u64);

    // What the client really did against the scripted peer.
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c == "getBlockLocations"),
        "calls: {calls:?}"
    );
    let unknown: Vec<_> = calls
        .iter()
        .filter(|c| *c != "getBlockLocations" && *c != "getServerDefaults")
        .collect();
    assert!(unknown.is_empty(), "unexpected NameNode calls: {unknown:?}");
    let contexts = fake.contexts();
    assert!(
        contexts
            .iter()
            .all(|(p, _)| p == "org.apache.hadoop.hdfs.protocol.ClientProtocol"),
        "{contexts:?}"
    );
    let blocks = tgz.len().div_ceil(layout.block_size);
    let reads = fake.reads();
    assert_eq!(reads.len(), blocks, "one READ_BLOCK per block: {reads:?}");
    assert!(fake.packets() > blocks * 2, "packets: {}", fake.packets());
    assert_eq!(fake.read_ok(), blocks, "client acknowledged every block");
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
    eprintln!(
        "hdfs fake: NameNode calls {calls:?}, READ_BLOCKs {reads:?}, packets {}",
        fake.packets()
    );
}

#[test]
fn hdfs_cached_file_second_fetch_is_a_cache_hit_with_identical_bytes() {
    let layout = Layout::default();
    let fake = FakeHdfs::start(layout);
    let data = bytes(100_000, 7);
    fake.put("/jars/dep.jar", data.clone(), layout);
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    let u = fake.url("/jars/dep.jar");

    let sb1 = t.path().join("s1");
    std::fs::create_dir_all(&sb1).unwrap();
    let first = fetch_bounded(&[cached(&u)], &sb1, &cfg)
        .unwrap_or_else(|e| panic!("fetch {u}: {e}; fake saw {:?}", fake.errors()));
    assert_eq!(first.items[0].cache, CacheOutcome::Miss);
    assert_eq!(std::fs::read(sb1.join("dep.jar")).unwrap(), data);
    let reads_after_first = fake.reads().len();
    assert_eq!(reads_after_first, 2, "100 000 bytes are two 64 KiB blocks");

    let sb2 = t.path().join("s2");
    std::fs::create_dir_all(&sb2).unwrap();
    let second = fetch_bounded(&[cached(&u)], &sb2, &cfg).unwrap();
    assert_eq!(second.items[0].cache, CacheOutcome::Hit);
    assert_eq!(std::fs::read(sb2.join("dep.jar")).unwrap(), data);
    assert_eq!(
        fake.reads().len(),
        reads_after_first,
        "a cache hit reads no block"
    );
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}

#[test]
fn hdfs_missing_file_is_not_found_naming_the_uri() {
    let fake = FakeHdfs::start(Layout::default());
    let t = tempdir();
    let sb = sandbox(t.path());
    let u = fake.url("/data/missing.jar");
    let e = fetch_bounded(&[uri(&u)], &sb, &config(&t.path().join("c"))).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&u), "{msg}");
    assert!(matches!(e.kind, FetchErrorKind::NotFound(_)), "{msg}");
    assert!(msg.contains("not found"), "{msg}");
    assert!(!e.retryable(), "{msg}");
    assert!(fake.reads().is_empty());
    assert!(!sb.join("missing.jar").exists());
}

/// Hadoop's own HDFS client (hadoop-client-api/-runtime 3.3.4 from pyspark's `jars/`) and our
/// `fetcher_support/java/HdfsCrossCheck.java`, compiled into a temp dir.
struct HadoopClient {
    _dir: tempfile::TempDir,
    classes: std::path::PathBuf,
    jars: Vec<std::path::PathBuf>,
}

/// The jars Hadoop's client needs at run time, by file-name prefix: the shaded client pair
/// (which bundles protobuf, guava, netty...) and the logging APIs it leaves unshaded.
const HADOOP_CLIENT_JARS: &[&str] = &[
    "hadoop-client-api-3.3.4.jar",
    "hadoop-client-runtime-3.3.4.jar",
    "commons-logging-",
    "slf4j-api-",
    "log4j-slf4j2-impl-",
    "log4j-api-",
    "log4j-core-",
    "log4j-1.2-api-",
];

fn java_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fetcher_support/java")
}

fn hadoop_client() -> HadoopClient {
    let jars_dir = croupier_testkit::env::spark_home().join("jars");
    let names: Vec<String> = std::fs::read_dir(&jars_dir)
        .unwrap_or_else(|e| {
            panic!(
                "cannot list {}: {e}; run scripts/test.sh",
                jars_dir.display()
            )
        })
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    let jars = HADOOP_CLIENT_JARS
        .iter()
        .map(|prefix| {
            let found = names
                .iter()
                .filter(|n| n.starts_with(prefix) && n.ends_with(".jar"))
                .min()
                .unwrap_or_else(|| {
                    panic!(
                        "no {prefix}* in {}: Hadoop's client comes with pyspark 3.5.7; run scripts/test.sh",
                        jars_dir.display()
                    )
                });
            jars_dir.join(found)
        })
        .collect::<Vec<_>>();
    let dir = tempdir();
    let classes = dir.path().join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    let src = java_dir().join("HdfsCrossCheck.java");
    let out = std::process::Command::new("javac")
        .arg("-cp")
        .arg(std::env::join_paths(&jars).unwrap())
        .arg("-d")
        .arg(&classes)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run javac ({e}): a JDK 17 is required; run scripts/test.sh")
        });
    assert!(
        out.status.success(),
        "javac {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    HadoopClient {
        _dir: dir,
        classes,
        jars,
    }
}

impl HadoopClient {
    /// Runs `HdfsCrossCheck` with `args`, killed after `limit`; returns (success, stdout, stderr).
    fn run(&self, args: &[String], limit: Duration) -> (bool, String, String) {
        let mut cp = vec![self.classes.clone()];
        cp.extend(self.jars.iter().cloned());
        let mut child = std::process::Command::new("java")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-Xmx256m")
            .arg("-Djava.net.preferIPv4Stack=true")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                java_dir().join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(std::env::join_paths(&cp).unwrap())
            .arg("HdfsCrossCheck")
            .args(args)
            // Nothing from a Hadoop installation: only what the program sets.
            .env_remove("HADOOP_CONF_DIR")
            .env_remove("HADOOP_HOME")
            .env_remove("HADOOP_TOKEN_FILE_LOCATION")
            .env("HADOOP_USER_NAME", "xcheck")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run java ({e}); run scripts/test.sh"));
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (out, err) = (out_t.join().unwrap(), err_t.join().unwrap());
        match status {
            Some(st) => (st.success(), out, err),
            None => (
                false,
                out,
                format!("{err}\n[killed: java did not finish within {limit:?}]"),
            ),
        }
    }
}

#[test]
fn hdfs_fake_is_read_identically_by_hadoops_own_client_and_ours() {
    let layout = Layout::default();
    let fake = FakeHdfs::start(layout);
    // Five blocks (the last one short), four full packets per block, a checksum per 512 bytes.
    let data = bytes(4 * layout.block_size + 30_001, 99);
    let path = "/xcheck/data.bin";
    fake.put(path, data.clone(), layout);
    let n_blocks = data.len().div_ceil(layout.block_size);

    // Ours first.
    let t = tempdir();
    let sb = sandbox(t.path());
    let u = fake.url(path);
    fetch_bounded(&[uri(&u)], &sb, &config(&t.path().join("c")))
        .unwrap_or_else(|e| panic!("fetch {u}: {e}; fake saw {:?}", fake.errors()));
    let ours = std::fs::read(sb.join("data.bin")).unwrap();
    assert_eq!(ours, data, "hdfs-native's bytes");
    let native_calls = fake.calls().len();
    let native_contexts = fake.contexts().len();
    let native_reads = fake.reads().len();
    let native_ok = fake.read_ok();

    // Then Hadoop's: the whole file by a stateful read, a positional read that starts inside a
    // checksum chunk of block 2 and ends in block 3, getFileStatus of the file and its directory,
    // and a missing path.
    let java = hadoop_client();
    let out = t.path().join("java-read.bin");
    let pread_out = t.path().join("java-pread.bin");
    let pread_offset = 2 * layout.block_size - 1000 + 7;
    let pread_len = 5000;
    let args = vec![
        format!("hdfs://127.0.0.1:{}", fake.nn_port),
        path.to_string(),
        out.display().to_string(),
        pread_offset.to_string(),
        pread_len.to_string(),
        pread_out.display().to_string(),
        "/xcheck/missing.bin".to_string(),
    ];
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = java.run(&args, Duration::from_secs(90));
    eprintln!(
        "HdfsCrossCheck took {:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        started.elapsed()
    );
    assert!(
        ok,
        "Hadoop's client failed against the fake; fake saw {:?}, calls {:?}",
        fake.errors(),
        fake.calls()
    );
    let theirs = std::fs::read(&out).unwrap();
    assert_eq!(theirs.len(), data.len());
    assert!(
        theirs == data,
        "Hadoop's bytes differ from what the fake serves"
    );
    assert!(theirs == ours, "Hadoop's bytes differ from hdfs-native's");
    assert_eq!(
        std::fs::read(&pread_out).unwrap(),
        &data[pread_offset..pread_offset + pread_len],
        "Hadoop's positional read"
    );
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no '{key}' line in:\n{stdout}"))
            .to_string()
    };
    assert_eq!(
        line("filesystem "),
        "filesystem org.apache.hadoop.hdfs.DistributedFileSystem"
    );
    assert_eq!(
        line("status "),
        format!(
            "status length={} isFile=true blockSize={} replication=1 owner=croupier \
             group=supergroup permission=rw-r--r-- path={path}",
            data.len(),
            layout.block_size
        )
    );
    assert_eq!(
        line("dir-status "),
        "dir-status isDirectory=true permission=rwxr-xr-x path=/xcheck"
    );
    assert_eq!(line("read "), format!("read bytes={}", data.len()));
    assert_eq!(
        line("missing-status "),
        "missing-status FileNotFoundException File does not exist: /xcheck/missing.bin"
    );
    assert_eq!(
        line("missing-open "),
        "missing-open FileNotFoundException File does not exist: /xcheck/missing.bin"
    );
    assert_eq!(line("done"), "done");

    // What Hadoop's client asked the NameNode, in order.
    let calls = fake.calls()[native_calls..].to_vec();
    eprintln!("Hadoop client NameNode calls: {calls:?}");
    assert_eq!(
        calls,
        [
            // getFileStatus of the file, then of its directory
            "getFileInfo",
            "getFileInfo",
            // open: the located blocks
            "getBlockLocations",
            // first DataNode connection: does the cluster want encrypted data transfer?
            // (answered false, so the client skips SASL in simple auth)
            "getServerDefaults",
            // open for the positional read
            "getBlockLocations",
            // getFileStatus of the missing path: an empty answer, not an RPC error
            "getFileInfo",
            // open of the missing path: the NameNode's FileNotFoundException
            "getBlockLocations",
        ]
    );
    let contexts = fake.contexts()[native_contexts..].to_vec();
    assert!(!contexts.is_empty());
    assert!(
        contexts
            .iter()
            .all(|(p, u)| p == "org.apache.hadoop.hdfs.protocol.ClientProtocol" && u == "xcheck"),
        "{contexts:?}"
    );
    // And the DataNode: one READ_BLOCK per block from offset 0 for the stateful read, then the
    // positional read's two ranges, the first starting mid-chunk (served from the chunk start).
    let reads = fake.reads()[native_reads..].to_vec();
    eprintln!("Hadoop client READ_BLOCKs: {reads:?}");
    let ids: Vec<u64> = fake.reads()[..native_reads].iter().map(|r| r.0).collect();
    assert_eq!(ids.len(), n_blocks);
    let mut expected: Vec<(u64, u64, u64)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let n = layout.block_size.min(data.len() - i * layout.block_size);
            (*id, 0, n as u64)
        })
        .collect();
    let in_block = (pread_offset % layout.block_size) as u64;
    let first = layout.block_size as u64 - in_block;
    expected.push((ids[1], in_block, first));
    expected.push((ids[2], 0, pread_len as u64 - first));
    assert_eq!(reads, expected);
    assert_eq!(
        fake.read_ok() - native_ok,
        reads.len(),
        "Hadoop's client sent CHECKSUM_OK after every block read"
    );
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}
