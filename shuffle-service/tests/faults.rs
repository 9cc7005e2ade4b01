//! Injected faults against the real service binary: the registration store failing to write
//! (ENOSPC through the `store_file::sync` failpoint, compiled into test builds only) and a
//! data file shorter than its index says. Each: a failure message to the client naming what
//! failed, the service still serving, nothing acknowledged lost, no panic.

mod shuffle_support;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use croupier_testkit::shuffle::layout::ExecutorDirs;
use croupier_testkit::shuffle::{Client, ClientError};
use shuffle_support::Ess;

const APP: &str = "app-20261203120000-0016";

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start(port: u16, state: &Path, env: &[(&str, &str)]) -> Ess {
    let args: Vec<String> = vec![
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--conf".into(),
        format!("croupier.state.dir={}", state.display()),
        "--conf".into(),
        "croupier.mesos.agent.address=none".into(),
    ];
    Ess::start_with(&args, env)
}

fn assert_no_panic(ess: &Ess) {
    let log = ess.log();
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "the service panicked: {log:?}"
    );
}

/// A disk that stays full while the service writes registrations: RegisterExecutor and
/// RegisterDriver get an RpcFailure naming the store file and the errno (they used to be
/// answered with success and kept in memory only, and after redb's first I/O error every
/// later registration too); other RPCs go on. Restarted without the fault, registrations are
/// stored and restored again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_write_failure_reaches_the_client_and_the_store_recovers() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let port = free_port();
    // A store made and closed cleanly first, so the faulty run opens it without writing.
    let mut ess = start(port, state.path(), &[]);
    ess.wait_log("restored ", Duration::from_secs(10));
    assert!(ess.stop().is_some_and(|st| st.success()));
    let fault = format!("store_file::sync=return(ENOSPC:{})", state.path().display());
    let mut ess = start(port, state.path(), &[("CROUPIER_FAILPOINTS", &fault)]);
    let dirs = ExecutorDirs::create(files.path(), "exec-1", 2);
    dirs.write_map_output(0, 1, &[b"block zero", b"block one"]);
    let c = Client::connect(ess.addr).await.unwrap();
    for attempt in 0..2 {
        match c.register_executor(APP, "1", dirs.info.clone()).await {
            Err(ClientError::Rpc { error, .. }) => {
                assert!(
                    error.contains("registrations-") && error.contains("No space left on device"),
                    "attempt {attempt}: {error}"
                );
                assert!(error.contains("may be retried"), "{error}");
            }
            other => panic!(
                "attempt {attempt}: expected an RpcFailure, got {other:?}; log: {:?}",
                ess.log()
            ),
        }
    }
    match c.register_driver(APP, 60_000).await {
        Err(ClientError::Rpc { error, .. }) => assert!(error.contains("RegisterDriver"), "{error}"),
        other => panic!("expected an RpcFailure for RegisterDriver, got {other:?}"),
    }
    // Not registered, so not served; but the connection and the service are alive.
    let fetched = c.fetch_blocks(APP, "1", &["shuffle_0_1_0"]).await;
    let refused = match &fetched {
        Err(e) => e.to_string(),
        Ok(r) => r[0]
            .1
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
    };
    assert!(refused.contains("not registered"), "{fetched:?}");
    assert_no_panic(&ess);
    drop(c);
    ess.kill();

    // Space is back: the same file takes registrations again and keeps them across a restart.
    let mut ess = start(port, state.path(), &[]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "1", dirs.info.clone())
        .await
        .unwrap();
    drop(c);
    ess.kill();
    let mut ess = start(port, state.path(), &[]);
    let line = ess
        .wait_log("restored ", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no `restored` line in {:?}", ess.log()));
    assert!(line.contains("restored 1 executor"), "{line}");
    let c = Client::connect(ess.addr).await.unwrap();
    let got = c.fetch_blocks(APP, "1", &["shuffle_0_1_1"]).await.unwrap();
    assert_eq!(got[0].1.as_ref().unwrap().as_ref(), b"block one");
    assert_no_panic(&ess);
    ess.kill();
}

/// A data file shorter than its index says (truncated by a full disk, or by a cleaner, before
/// or while it is sent): the block that is intact is served, the cut one fails on the client
/// (a failure or a closed connection, bounded in time, never a hang or a wrong block), and the
/// service goes on serving on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_file_shorter_than_its_index_fails_the_fetch_not_the_service() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut ess = start(0, state.path(), &[]);
    let dirs = ExecutorDirs::create(files.path(), "exec-2", 1);
    let big = vec![7u8; 1 << 20];
    let (data, _) = dirs.write_map_output(3, 4, &[b"intact", &big, &big]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "2", dirs.info.clone())
        .await
        .unwrap();
    // Cut the file in the middle of the second block.
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(6 + (1 << 19)).unwrap();
    drop(f);

    let got = tokio::time::timeout(
        Duration::from_secs(30),
        c.fetch_blocks(APP, "2", &["shuffle_3_4_0", "shuffle_3_4_1"]),
    )
    .await
    .expect("the fetch of a cut block must end, not hang");
    match got {
        Ok(results) => {
            assert_eq!(results[0].1.as_ref().unwrap().as_ref(), b"intact");
            match &results[1].1 {
                Ok(b) => panic!("a cut block was served as {} bytes", b.len()),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("shuffle_3_4_0.data")
                            || msg.contains("closed")
                            || msg.contains("I/O"),
                        "{msg}"
                    );
                }
            }
        }
        // The connection was closed after a short body (the frame boundary is lost).
        Err(e) => assert!(
            matches!(e, ClientError::Closed { .. } | ClientError::Io { .. }),
            "{e}"
        ),
    }
    // A new connection is served.
    let c2 = Client::connect(ess.addr).await.unwrap();
    let again = c2.fetch_blocks(APP, "2", &["shuffle_3_4_0"]).await.unwrap();
    assert_eq!(again[0].1.as_ref().unwrap().as_ref(), b"intact");
    assert_no_panic(&ess);
    ess.kill();
}

/// EIO reading an index file (failpoint `index::read`, once): the fetch fails with a message
/// naming the index file and the error; the failure is not cached, so the next fetch of the
/// same block is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_reading_an_index_fails_that_fetch_only() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let fault = format!("index::read=1*return(EIO:{})", files.path().display());
    let mut ess = start(0, state.path(), &[("CROUPIER_FAILPOINTS", &fault)]);
    let dirs = ExecutorDirs::create(files.path(), "exec-3", 1);
    dirs.write_map_output(5, 6, &[b"only block"]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "3", dirs.info.clone())
        .await
        .unwrap();
    let first = c.fetch_blocks(APP, "3", &["shuffle_5_6_0"]).await;
    let msg = match &first {
        Err(e) => e.to_string(),
        Ok(r) => match &r[0].1 {
            Err(e) => e.to_string(),
            Ok(b) => panic!("served {} bytes despite EIO on the index", b.len()),
        },
    };
    assert!(
        msg.contains("shuffle_5_6_0.index") && msg.contains("Input/output error"),
        "{msg}"
    );
    let again = c.fetch_blocks(APP, "3", &["shuffle_5_6_0"]).await.unwrap();
    assert_eq!(again[0].1.as_ref().unwrap().as_ref(), b"only block");
    assert_no_panic(&ess);
    ess.kill();
}
