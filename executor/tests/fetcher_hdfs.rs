//! `hdfs://` through the native client. No HDFS (NameNode/DataNode, a JVM) can be installed on
//! this machine, so these tests cover what runs without one: the client is really used and a
//! NameNode that is down, or a peer that is not a NameNode, yields a clear error naming the URI.
//! The data path has not been tested against a real HDFS.

mod fetcher_support;

use std::io::{Read, Write};
use std::time::Duration;

use croupier_executor::fetcher::{fetch_all, FetchErrorKind};
use fetcher_support::*;

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
