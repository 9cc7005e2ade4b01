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
//! - the two failures operators meet, against the same scripted peer: an HA nameservice from
//!   `HADOOP_CONF_DIR` whose first NameNode is a standby (answering with Hadoop's
//!   StandbyException) or whose NameNodes are all down, and a block whose first DataNode
//!   refuses connections or answers READ_BLOCK with an error.
//!
//! Still NOT verified: a real NameNode/DataNode (their other behaviours, e.g. block tokens,
//! under-construction files, the real DataNode's packet sizes, a DataNode dying mid-block), SASL
//! data transfer or Kerberos, encrypted transfer, observer reads, erasure-coded files.

mod fetcher_support;
#[path = "fetcher_support/hdfs_fake.rs"]
mod hdfs_fake;

use std::io::{Read, Write};
use std::time::Duration;

use croupier_executor::fetcher::{fetch_all, CacheOutcome, FetchErrorKind};
use fetcher_support::*;
use hdfs_fake::{DataNodeRole, DnOp, FakeHdfs, Layout, NameNodeRole, NnCall};

/// `hdfs-native` reads the Hadoop configuration from `HADOOP_CONF_DIR` (else
/// `HADOOP_HOME/etc/hadoop`) each time a client is built, i.e. at every fetch. Every test here
/// that fetches holds this lock for the fetch: shared when it wants no Hadoop configuration
/// (both variables unset, as this binary keeps them), exclusive while a test points
/// `HADOOP_CONF_DIR` at its own configuration, so that never leaks into another test's fetch.
static HADOOP_ENV: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Holds [`HADOOP_ENV`]; an exclusive holder unsets `HADOOP_CONF_DIR` again on drop.
enum HadoopEnv {
    Unset(#[allow(dead_code)] std::sync::RwLockReadGuard<'static, ()>),
    Set(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>),
}

/// Locks the Hadoop environment for a fetch: `HADOOP_CONF_DIR` is `conf_dir` (or unset) and
/// `HADOOP_HOME` unset until the guard is dropped.
fn hadoop_env(conf_dir: Option<&std::path::Path>) -> HadoopEnv {
    // A test that failed while holding the lock leaves nothing to repair: the guard unset the
    // variable while unwinding.
    static CLEARED: std::sync::Once = std::sync::Once::new();
    CLEARED.call_once(|| {
        // No Hadoop configuration from the environment the suite runs in.
        let _w = HADOOP_ENV.write().unwrap_or_else(|e| e.into_inner());
        std::env::remove_var("HADOOP_CONF_DIR");
        std::env::remove_var("HADOOP_HOME");
    });
    match conf_dir {
        None => HadoopEnv::Unset(HADOOP_ENV.read().unwrap_or_else(|e| e.into_inner())),
        Some(d) => {
            let w = HADOOP_ENV.write().unwrap_or_else(|e| e.into_inner());
            std::env::set_var("HADOOP_CONF_DIR", d);
            HadoopEnv::Set(w)
        }
    }
}

impl Drop for HadoopEnv {
    fn drop(&mut self) {
        if let HadoopEnv::Set(_) = self {
            std::env::remove_var("HADOOP_CONF_DIR");
        }
    }
}

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
    let _env = hadoop_env(None);
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
    let _env = hadoop_env(None);
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

/// Runs `fetch_all` with no Hadoop configuration, bounded so a misbehaving client or fake fails
/// the test instead of hanging.
fn fetch_bounded(
    uris: &[croupier_executor::fetcher::Uri],
    sb: &std::path::Path,
    cfg: &croupier_executor::fetcher::FetchConfig,
) -> Result<croupier_executor::fetcher::FetchSummary, croupier_executor::fetcher::FetchError> {
    fetch_bounded_with_conf(None, uris, sb, cfg)
}

/// [`fetch_bounded`] with `HADOOP_CONF_DIR` set to `conf_dir` for the fetch.
fn fetch_bounded_with_conf(
    conf_dir: Option<&std::path::Path>,
    uris: &[croupier_executor::fetcher::Uri],
    sb: &std::path::Path,
    cfg: &croupier_executor::fetcher::FetchConfig,
) -> Result<croupier_executor::fetcher::FetchSummary, croupier_executor::fetcher::FetchError> {
    let _env = hadoop_env(conf_dir);
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
    assert_eq!(
        fake.wait_read_ok(blocks),
        blocks,
        "client acknowledged every block"
    );
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
    croupier_testkit::require_venv!();
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
    let native_ok = fake.wait_read_ok(native_reads);

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
        fake.wait_read_ok(native_ok + reads.len()) - native_ok,
        reads.len(),
        "Hadoop's client sent CHECKSUM_OK after every block read"
    );
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}

// ---- HA nameservice ----

/// Writes `core-site.xml` (`fs.defaultFS = hdfs://<ns>`) and `hdfs-site.xml` (the nameservice,
/// its NameNodes `nn1`, `nn2`... at `127.0.0.1:<port>` in the order given, Hadoop's
/// ConfiguredFailoverProxyProvider, and `extra`) into `dir`, as an operator's HADOOP_CONF_DIR
/// holds them.
fn write_hadoop_conf(dir: &std::path::Path, ns: &str, namenodes: &[u16], extra: &[(&str, &str)]) {
    fn site(props: &[(String, String)]) -> String {
        let mut x = String::from("<?xml version=\"1.0\"?>\n<configuration>\n");
        for (k, v) in props {
            x.push_str(&format!(
                "  <property>\n    <name>{k}</name>\n    <value>{v}</value>\n  </property>\n"
            ));
        }
        x.push_str("</configuration>\n");
        x
    }
    std::fs::create_dir_all(dir).unwrap();
    let core = [("fs.defaultFS".to_string(), format!("hdfs://{ns}"))];
    std::fs::write(dir.join("core-site.xml"), site(&core)).unwrap();
    let ids: Vec<String> = (1..=namenodes.len()).map(|i| format!("nn{i}")).collect();
    let mut hdfs = vec![
        ("dfs.nameservices".to_string(), ns.to_string()),
        (format!("dfs.ha.namenodes.{ns}"), ids.join(",")),
        (
            format!("dfs.client.failover.proxy.provider.{ns}"),
            "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider".to_string(),
        ),
    ];
    for (id, port) in ids.iter().zip(namenodes) {
        hdfs.push((
            format!("dfs.namenode.rpc-address.{ns}.{id}"),
            format!("127.0.0.1:{port}"),
        ));
    }
    hdfs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    std::fs::write(dir.join("hdfs-site.xml"), site(&hdfs)).unwrap();
}

/// A Spark-like tarball spanning three 64 KiB blocks: (the .tgz, run.sh, the jar inside).
fn spark_tgz() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let run = b"#!/bin/sh\nexec spark-class \"$@\"\n".to_vec();
    let jar = bytes(150_000, 1234);
    let tgz = gzip(
        &RawTar::new()
            .dir("spark/")
            .file("spark/bin/run.sh", &run)
            .file("spark/jars/spark-core.jar", &jar)
            .finish(),
    );
    (tgz, run, jar)
}

/// `hdfs://nameservice1/apps/spark.tgz` with HADOOP_CONF_DIR naming two NameNodes: the first
/// listed is a standby (every call answered with Hadoop's StandbyException), the second is
/// active. hdfs-native (0.14.8, src/hdfs/proxy.rs `NameServiceProxy::call_inner`) starts with
/// the first NameNode listed, treats `org.apache.hadoop.ipc.StandbyException` as retriable,
/// moves to the next one at once (it sleeps only after a full round of failures) and then
/// keeps the one that answered for the rest of that client's calls. Each fetch builds a new
/// client, so each fetch asks the standby once before reaching the active NameNode.
/// `hdfs:///path` (no authority) goes to `fs.defaultFS` from core-site.xml, the same
/// nameservice.
#[test]
fn hdfs_ha_nameservice_fails_over_from_the_standby_to_the_active_namenode() {
    let layout = Layout::default();
    let fake = FakeHdfs::start_with(
        layout,
        &[NameNodeRole::Standby, NameNodeRole::Active],
        &[DataNodeRole::Serve],
    );
    let (tgz, run, jar) = spark_tgz();
    assert!(tgz.len() > 2 * layout.block_size, "{}", tgz.len());
    fake.put("/apps/spark.tgz", tgz.clone(), layout);
    let t = tempdir();
    let conf = t.path().join("hadoop-conf");
    write_hadoop_conf(&conf, "nameservice1", &fake.nn_ports, &[]);
    let cfg = config(&t.path().join("c"));

    let sb = sandbox(t.path());
    let u = "hdfs://nameservice1/apps/spark.tgz";
    let summary = fetch_bounded_with_conf(Some(&conf), &[uri(u)], &sb, &cfg)
        .unwrap_or_else(|e| panic!("fetch {u}: {e}; fake saw {:?}", fake.namenode_calls()));
    assert_eq!(std::fs::read(sb.join("spark.tgz")).unwrap(), tgz);
    assert_eq!(std::fs::read(sb.join("spark/bin/run.sh")).unwrap(), run);
    assert_eq!(
        std::fs::read(sb.join("spark/jars/spark-core.jar")).unwrap(),
        jar
    );
    assert!(summary.items[0].extracted);

    let calls = fake.namenode_calls();
    eprintln!("NameNode calls through the nameservice: {calls:?}");
    assert_eq!(
        calls[0],
        NnCall {
            namenode: 0,
            method: "getBlockLocations".into(),
            answer: "org.apache.hadoop.ipc.StandbyException".into(),
        },
        "the first NameNode listed (the standby) is asked first: {calls:?}"
    );
    assert!(
        calls[1..]
            .iter()
            .all(|c| c.namenode == 1 && c.answer == "ok"),
        "after the standby's answer, only the active NameNode is asked: {calls:?}"
    );
    assert_eq!(
        calls[1].method, "getBlockLocations",
        "the standby's refused call is retried on the active NameNode: {calls:?}"
    );
    let blocks = tgz.len().div_ceil(layout.block_size);
    let ops = fake.datanode_ops();
    assert_eq!(ops.len(), blocks, "{ops:?}");
    assert!(ops.iter().all(|o| o.served), "{ops:?}");
    assert_eq!(fake.wait_read_ok(blocks), blocks);
    // Both NameNodes got a connection context from the client (the fake does no SASL).
    assert_eq!(fake.contexts().len(), 2, "{:?}", fake.contexts());

    // hdfs:///path: the nameservice named by fs.defaultFS.
    let before = calls.len();
    let sb2 = t.path().join("s2");
    std::fs::create_dir_all(&sb2).unwrap();
    let u2 = "hdfs:///apps/spark.tgz";
    fetch_bounded_with_conf(Some(&conf), &[uri(u2)], &sb2, &cfg)
        .unwrap_or_else(|e| panic!("fetch {u2}: {e}; fake saw {:?}", fake.namenode_calls()));
    assert_eq!(std::fs::read(sb2.join("spark.tgz")).unwrap(), tgz);
    let calls2 = fake.namenode_calls()[before..].to_vec();
    assert_eq!(
        calls2[0].answer, "org.apache.hadoop.ipc.StandbyException",
        "a new fetch (a new client) starts again with the first NameNode listed: {calls2:?}"
    );
    assert!(
        calls2[1..]
            .iter()
            .all(|c| c.namenode == 1 && c.answer == "ok"),
        "{calls2:?}"
    );
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}

/// Every NameNode of the nameservice is a standby: after its failover attempts hdfs-native
/// returns the standby's RPC error, whose message is Hadoop's text plus the server's Java stack
/// trace. The task's status message gets the exception class and the first line only.
#[test]
fn hdfs_ha_every_namenode_standby_is_a_one_line_error_naming_the_exception() {
    let fake = FakeHdfs::start_with(
        Layout::default(),
        &[NameNodeRole::Standby, NameNodeRole::Standby],
        &[DataNodeRole::Serve],
    );
    fake.put("/apps/spark.tgz", b"never read".to_vec(), Layout::default());
    let t = tempdir();
    let conf = t.path().join("hadoop-conf");
    write_hadoop_conf(
        &conf,
        "nameservice1",
        &fake.nn_ports,
        &[
            ("dfs.client.failover.max.attempts", "3"),
            ("dfs.client.failover.sleep.base.millis", "10"),
            ("dfs.client.failover.sleep.max.millis", "100"),
        ],
    );
    let sb = sandbox(t.path());
    let u = "hdfs://nameservice1/apps/spark.tgz";
    let e = fetch_bounded_with_conf(Some(&conf), &[uri(u)], &sb, &config(&t.path().join("c")))
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("every NameNode standby: {msg}");
    assert!(msg.contains(u), "{msg}");
    assert!(msg.contains(hdfs_fake::STANDBY_EXCEPTION), "{msg}");
    assert!(msg.contains("not supported in state standby"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(!msg.contains("\tat "), "no stack trace: {msg}");
    assert!(!sb.join("spark.tgz").exists());
    // Both NameNodes were asked.
    let asked: std::collections::HashSet<usize> =
        fake.namenode_calls().iter().map(|c| c.namenode).collect();
    assert_eq!(asked.len(), 2, "{:?}", fake.namenode_calls());
}

/// Both NameNodes of the nameservice refuse connections. hdfs-native fails over between them
/// `dfs.client.failover.max.attempts` times (default 15), sleeping after each full round
/// (`dfs.client.failover.sleep.base.millis` 500 doubling, capped by `...sleep.max.millis`
/// 15000), then returns the last connection error. Here the operator's hdfs-site.xml makes
/// that short, so the error is hdfs-native's own: a retryable connection failure naming the
/// URI and the nameservice (not the NameNode addresses: hdfs-native's error does not carry
/// them).
#[test]
fn hdfs_ha_both_namenodes_down_is_a_retryable_error_naming_the_uri() {
    let fake = FakeHdfs::start_with(
        Layout::default(),
        &[NameNodeRole::Down, NameNodeRole::Down],
        &[DataNodeRole::Serve],
    );
    let t = tempdir();
    let conf = t.path().join("hadoop-conf");
    write_hadoop_conf(
        &conf,
        "nameservice1",
        &fake.nn_ports,
        &[
            ("dfs.client.failover.max.attempts", "3"),
            ("dfs.client.failover.sleep.base.millis", "10"),
            ("dfs.client.failover.sleep.max.millis", "100"),
        ],
    );
    let sb = sandbox(t.path());
    let u = "hdfs://nameservice1/apps/spark.tgz";
    let e = fetch_bounded_with_conf(Some(&conf), &[uri(u)], &sb, &config(&t.path().join("c")))
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("both NameNodes down: {msg}");
    assert!(msg.contains(u), "{msg}");
    assert!(matches!(e.kind, FetchErrorKind::Connect(_)), "{msg}");
    assert!(msg.contains("hdfs://nameservice1"), "{msg}");
    assert!(msg.contains("Connection refused"), "{msg}");
    assert!(e.retryable(), "{msg}");
    assert!(fake.calls().is_empty());
    assert!(!sb.join("spark.tgz").exists());
}

/// The same with hdfs-native's default failover settings: it would go on for about a minute
/// (15 attempts; after each round of two, a sleep of 1, 2, 4, 8, then 15 s, each jittered by
/// +-50 %), so here (stall timeout 2 s) it is our stall timeout that ends the fetch, with a
/// retryable error naming the URI and the nameservice.
#[test]
fn hdfs_ha_both_namenodes_down_with_default_failover_is_bounded_by_the_stall_timeout() {
    // Ports that refuse connections, kept reserved for the rest of the test binary: the HDFS
    // client's abandoned retries go on after this test and must never reach another test's
    // fake NameNode on a reused port.
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            let (socket, port) = hdfs_fake::refusing_port();
            std::mem::forget(socket);
            port
        })
        .collect();
    let t = tempdir();
    let conf = t.path().join("hadoop-conf");
    write_hadoop_conf(&conf, "nameservice1", &ports, &[]);
    let sb = sandbox(t.path());
    let mut cfg = config(&t.path().join("c"));
    cfg.stall_timeout = Duration::from_secs(2);
    let u = "hdfs://nameservice1/apps/spark.tgz";
    let e = fetch_bounded_with_conf(Some(&conf), &[uri(u)], &sb, &cfg).unwrap_err();
    let msg = e.to_string();
    eprintln!("both NameNodes down, default failover: {msg}");
    assert!(msg.contains(u), "{msg}");
    assert!(matches!(e.kind, FetchErrorKind::Connect(_)), "{msg}");
    assert!(
        msg.contains("HDFS NameNode hdfs://nameservice1 gave no usable answer within 2s"),
        "{msg}"
    );
    assert!(e.retryable(), "{msg}");
}

/// An authority without a port that is no nameservice is a NameNode host on Hadoop's default
/// RPC port, as with Hadoop's own client (hdfs-native alone would find "No NameNode hosts
/// found": src/hdfs/proxy.rs `NameServiceProxy::new`; the fetcher then retries with `:8020`).
/// Nothing listens on 127.0.0.1:8020 here (no test may own a fixed port), so the fetch fails,
/// naming the NameNode address it really tried.
#[test]
fn hdfs_host_without_port_is_a_namenode_on_the_default_port() {
    let t = tempdir();
    let sb = sandbox(t.path());
    let u = "hdfs://127.0.0.1/apps/spark.tgz";
    let mut cfg = config(&t.path().join("c"));
    cfg.stall_timeout = Duration::from_secs(2);
    let e = fetch_bounded(&[uri(u)], &sb, &cfg).unwrap_err();
    let msg = e.to_string();
    eprintln!("host without port: {msg}");
    assert!(msg.contains(u), "{msg}");
    assert!(msg.contains("hdfs://127.0.0.1:8020"), "{msg}");
    assert!(!msg.contains("No NameNode hosts found"), "{msg}");
}

/// `hdfs:///path` whose `fs.defaultFS` names a nameservice that hdfs-site.xml does not define:
/// a configuration error, not retryable, that says which keys are missing.
#[test]
fn hdfs_default_fs_naming_an_undefined_nameservice_is_a_clear_configuration_error() {
    let t = tempdir();
    let conf = t.path().join("hadoop-conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("core-site.xml"),
        "<?xml version=\"1.0\"?>\n<configuration>\n  <property><name>fs.defaultFS</name><value>hdfs://prodns</value></property>\n</configuration>\n",
    )
    .unwrap();
    std::fs::write(
        conf.join("hdfs-site.xml"),
        "<?xml version=\"1.0\"?>\n<configuration>\n</configuration>\n",
    )
    .unwrap();
    let sb = sandbox(t.path());
    let u = "hdfs:///apps/spark.tgz";
    let e = fetch_bounded_with_conf(Some(&conf), &[uri(u)], &sb, &config(&t.path().join("c")))
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("undefined nameservice: {msg}");
    assert!(msg.contains(u), "{msg}");
    assert!(matches!(e.kind, FetchErrorKind::InvalidUri(_)), "{msg}");
    assert!(msg.contains("fs.defaultFS"), "{msg}");
    assert!(msg.contains("dfs.ha.namenodes.<ns>"), "{msg}");
    assert!(msg.contains("HADOOP_CONF_DIR"), "{msg}");
    assert!(!e.retryable(), "{msg}");
}

// ---- dead DataNodes ----

/// Everything logged (WARN and up) by this test binary, `hdfs-native`'s `log` records included:
/// the only trace of a DataNode connection that was refused.
static LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // Also installs the `log` -> `tracing` bridge (tracing-subscriber's tracing-log).
        tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .try_init()
            .expect("the test binary's log capture is the only subscriber");
    });
}

fn captured_log() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Fetches a 3-block file whose blocks list two DataNodes, the first playing `first`, the
/// second serving; checks the bytes and returns the fake (for its records) and the layout.
fn fetch_3_blocks_with_first_datanode(first: DataNodeRole, seed: u64) -> (FakeHdfs, Layout) {
    capture_logs();
    let layout = Layout::default();
    let fake = FakeHdfs::start_with(
        layout,
        &[NameNodeRole::Active],
        &[first, DataNodeRole::Serve],
    );
    let data = bytes(3 * layout.block_size - 1000, seed);
    fake.put("/jars/dep.jar", data.clone(), layout);
    let t = tempdir();
    let sb = sandbox(t.path());
    let u = fake.url("/jars/dep.jar");
    fetch_bounded(&[uri(&u)], &sb, &config(&t.path().join("c")))
        .unwrap_or_else(|e| panic!("fetch {u}: {e}; fake saw {:?}", fake.errors()));
    assert_eq!(std::fs::read(sb.join("dep.jar")).unwrap(), data);
    (fake, layout)
}

/// `getBlockLocations` lists two DataNodes for every block; the first refuses connections.
/// hdfs-native (src/hdfs/block_reader.rs `ReplicatedBlockStream::select_next_datanode`) tries
/// the replicas in the order listed; a failed connection marks that DataNode dead for the rest
/// of the file (`DeadNodes`, shared by the file's blocks) and the next one is tried. So the
/// first block costs one refused connection, later blocks go straight to the second DataNode.
#[test]
fn hdfs_datanode_refusing_connections_the_block_is_read_from_the_next_replica() {
    let (fake, _) = fetch_3_blocks_with_first_datanode(DataNodeRole::Down, 5);

    let ops = fake.datanode_ops();
    eprintln!("READ_BLOCKs: {ops:?}");
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert!(
        ops.iter().all(|o| o.datanode == 1 && o.served),
        "every block served by the second DataNode: {ops:?}"
    );
    assert_eq!(fake.wait_read_ok(3), 3);
    // The refused connection is seen only in hdfs-native's warning, which names the DataNode.
    let dead = fake.dn_ports[0];
    let log = captured_log();
    let tried: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("Failed to connect to DataNode") && l.contains(&format!("fake-dn-{dead}"))
        })
        .collect();
    assert_eq!(
        tried.len(),
        1,
        "the dead DataNode was tried once, for the first block only:\n{log}"
    );
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}

/// The first DataNode listed answers READ_BLOCK with status ERROR (its replica is gone, as a
/// real DataNode answers then); hdfs-native logs it, marks that DataNode dead for the file and
/// reads the block from the second one, in that order; later blocks skip the first.
#[test]
fn hdfs_datanode_answering_error_the_block_is_read_from_the_next_replica() {
    let (fake, layout) = fetch_3_blocks_with_first_datanode(DataNodeRole::ReplicaMissing, 6);

    let ops = fake.datanode_ops();
    eprintln!("READ_BLOCKs: {ops:?}");
    let first_block = ops[0].block;
    let summary: Vec<(usize, bool)> = ops.iter().map(|o| (o.datanode, o.served)).collect();
    assert_eq!(
        summary,
        [(0, false), (1, true), (1, true), (1, true)],
        "first block: the first DataNode (ERROR) then the second; then only the second: {ops:?}"
    );
    assert_eq!(ops[1].block, first_block, "{ops:?}");
    assert_eq!(
        ops[1],
        DnOp {
            datanode: 1,
            block: first_block,
            offset: 0,
            len: layout.block_size as u64,
            served: true,
        }
    );
    assert_eq!(fake.wait_read_ok(3), 3);
    let log = captured_log();
    assert!(
        log.lines().any(
            |l| l.contains("Read operation did not succeed for DataNode")
                && l.contains(&format!("fake-dn-{}", fake.dn_ports[0]))
                && l.contains("ReplicaNotFoundException")
        ),
        "hdfs-native logs the DataNode and its message:\n{log}"
    );
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}

/// No replica can be read (the first answers ERROR, the second refuses connections): a
/// retryable error naming the URI and hdfs-native's "All DataNodes failed" with the DataNodes
/// listed for the block (as Debug-printed protobufs: long, but they name every address).
#[test]
fn hdfs_every_replica_dead_is_a_retryable_error_naming_the_uri_and_the_datanodes() {
    let layout = Layout::default();
    let fake = FakeHdfs::start_with(
        layout,
        &[NameNodeRole::Active],
        &[DataNodeRole::ReplicaMissing, DataNodeRole::Down],
    );
    fake.put("/jars/dep.jar", bytes(100_000, 8), layout);
    let t = tempdir();
    let sb = sandbox(t.path());
    let u = fake.url("/jars/dep.jar");
    let e = fetch_bounded(&[uri(&u)], &sb, &config(&t.path().join("c"))).unwrap_err();
    let msg = e.to_string();
    eprintln!("every replica dead: {msg}");
    assert!(msg.contains(&u), "{msg}");
    assert!(msg.contains("All DataNodes failed"), "{msg}");
    for port in &fake.dn_ports {
        assert!(msg.contains(&format!("xfer_port: {port}")), "{msg}");
    }
    assert!(e.retryable(), "{msg}");
    assert!(!sb.join("dep.jar").exists());
    let ops = fake.datanode_ops();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(!ops[0].served);
}

/// The fake's standby answer is what Hadoop's own client recognises as a standby: Hadoop 3.3.4's
/// `FileSystem` for `hdfs://nameservice1` with ConfiguredFailoverProxyProvider (the same keys as
/// hdfs-site.xml, passed to `HdfsCrossCheck` as settings) asks the standby first, fails over to
/// the active NameNode on `StandbyException` and does its whole read there, like hdfs-native
/// does through HADOOP_CONF_DIR; both get the fake's bytes.
#[test]
fn hdfs_ha_standby_answer_is_recognised_by_hadoops_own_failover_client() {
    croupier_testkit::require_venv!();
    let layout = Layout::default();
    let fake = FakeHdfs::start_with(
        layout,
        &[NameNodeRole::Standby, NameNodeRole::Active],
        &[DataNodeRole::Serve],
    );
    let data = bytes(2 * layout.block_size + 4321, 77);
    let path = "/xcheck/ha.bin";
    fake.put(path, data.clone(), layout);

    // Ours, through HADOOP_CONF_DIR.
    let t = tempdir();
    let conf = t.path().join("hadoop-conf");
    write_hadoop_conf(&conf, "nameservice1", &fake.nn_ports, &[]);
    let sb = sandbox(t.path());
    let u = format!("hdfs://nameservice1{path}");
    fetch_bounded_with_conf(Some(&conf), &[uri(&u)], &sb, &config(&t.path().join("c")))
        .unwrap_or_else(|e| panic!("fetch {u}: {e}; fake saw {:?}", fake.namenode_calls()));
    let ours = std::fs::read(sb.join("ha.bin")).unwrap();
    assert_eq!(ours, data, "hdfs-native's bytes");
    let native_calls = fake.namenode_calls().len();

    // Hadoop's.
    let java = hadoop_client();
    let out = t.path().join("java-ha.bin");
    let pread_out = t.path().join("java-ha-pread.bin");
    let (pread_offset, pread_len) = (layout.block_size - 100, 300);
    let mut args = vec![
        "hdfs://nameservice1".to_string(),
        path.to_string(),
        out.display().to_string(),
        pread_offset.to_string(),
        pread_len.to_string(),
        pread_out.display().to_string(),
        "/xcheck/missing.bin".to_string(),
        "dfs.nameservices=nameservice1".to_string(),
        "dfs.ha.namenodes.nameservice1=nn1,nn2".to_string(),
        "dfs.client.failover.proxy.provider.nameservice1=\
         org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider"
            .to_string(),
    ];
    for (i, port) in fake.nn_ports.iter().enumerate() {
        args.push(format!(
            "dfs.namenode.rpc-address.nameservice1.nn{}=127.0.0.1:{port}",
            i + 1
        ));
    }
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = java.run(&args, Duration::from_secs(90));
    eprintln!(
        "HdfsCrossCheck (HA) took {:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        started.elapsed()
    );
    assert!(
        ok,
        "Hadoop's client failed against the fake HA pair; fake saw {:?}, calls {:?}",
        fake.errors(),
        fake.namenode_calls()
    );
    let theirs = std::fs::read(&out).unwrap();
    assert!(theirs == data, "Hadoop's bytes differ from the fake's");
    assert!(theirs == ours, "Hadoop's bytes differ from hdfs-native's");
    assert_eq!(
        std::fs::read(&pread_out).unwrap(),
        &data[pread_offset..pread_offset + pread_len]
    );
    assert!(stdout.lines().any(|l| l == "done"), "{stdout}");

    let calls = fake.namenode_calls()[native_calls..].to_vec();
    eprintln!("Hadoop client NameNode calls (HA): {calls:?}");
    assert_eq!(
        calls[0],
        NnCall {
            namenode: 0,
            method: "getFileInfo".into(),
            answer: "org.apache.hadoop.ipc.StandbyException".into(),
        },
        "Hadoop's client asks the first NameNode listed first: {calls:?}"
    );
    assert_eq!(
        calls[1].method, "getFileInfo",
        "and retries the call on the other: {calls:?}"
    );
    assert!(
        calls[1..].iter().all(|c| c.namenode == 1),
        "after failing over, Hadoop's client stays on the active NameNode: {calls:?}"
    );
    let methods: Vec<(&str, &str)> = calls[1..]
        .iter()
        .map(|c| (c.method.as_str(), c.answer.as_str()))
        .collect();
    assert_eq!(
        methods,
        [
            ("getFileInfo", "ok"),
            ("getFileInfo", "ok"),
            ("getBlockLocations", "ok"),
            ("getServerDefaults", "ok"),
            ("getBlockLocations", "ok"),
            ("getFileInfo", "ok"),
            ("getBlockLocations", "java.io.FileNotFoundException"),
        ],
        "the same calls as against a single NameNode"
    );
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}
