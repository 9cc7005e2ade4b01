//! `hdfs://` through the native client. No HDFS (NameNode/DataNode, a JVM) can be installed on
//! this machine, so these tests cover what runs without one: the client is really used and a
//! NameNode that is down, or a peer that is not a NameNode, yields a clear error naming the URI;
//! and the whole read path (Hadoop IPC to a NameNode, then READ_BLOCK to a DataNode, packets
//! with CRC32C checksums, several blocks) runs against a SCRIPTED peer
//! (`fetcher_support/hdfs_fake.rs`), written from Hadoop's .proto files and the client's source.
//! It is not a real HDFS: the data path has not been tested against a real NameNode/DataNode.

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
