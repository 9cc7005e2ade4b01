//! Injected faults against the real service binary: the registration store failing to write
//! (ENOSPC through the `store_file::sync` failpoint, compiled into test builds only) and a
//! data file shorter than its index says. Each: a failure message to the client naming what
//! failed, the service still serving, nothing acknowledged lost, no panic.

mod shuffle_support;

use std::path::Path;
use std::time::Duration;

use croupier_testkit::ports::loopback_port as free_port;
use croupier_testkit::shuffle::layout::ExecutorDirs;
use croupier_testkit::shuffle::{Client, ClientError};
use shuffle_support::Ess;

const APP: &str = "app-20261203120000-0016";

fn start(port: u16, state: &Path, env: &[(&str, &str)]) -> Ess {
    start_with_conf(port, state, &[], env)
}

/// As [`start`], with more `--conf key=value` settings.
fn start_with_conf(port: u16, state: &Path, conf: &[&str], env: &[(&str, &str)]) -> Ess {
    let mut args: Vec<String> = vec![
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--conf".into(),
        format!("croupier.state.dir={}", state.display()),
        "--conf".into(),
        "croupier.mesos.agent.address=none".into(),
    ];
    for c in conf {
        args.extend(["--conf".into(), c.to_string()]);
    }
    Ess::start_with(&args, env)
}

/// Makes the store and closes it cleanly first (so the faulty run opens it without writing),
/// then starts the service again with the failpoints `faults` (`CROUPIER_FAILPOINTS`).
fn start_on_a_clean_store(port: u16, state: &Path, conf: &[&str], faults: &str) -> Ess {
    let mut ess = start_with_conf(port, state, conf, &[]);
    ess.wait_log("restored ", Duration::from_secs(10));
    assert!(ess.stop().is_some_and(|st| st.success()));
    start_with_conf(port, state, conf, &[("CROUPIER_FAILPOINTS", faults)])
}

fn assert_no_panic(ess: &Ess) {
    let log = ess.log();
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "the service panicked: {log:?}"
    );
}

/// A disk that stays full while the service writes registrations (its journal and its store
/// file both fail): RegisterExecutor and RegisterDriver get an RpcFailure naming the file and
/// the errno (they used to be answered with success and kept in memory only, and after redb's
/// first I/O error every later registration too); other RPCs go on. Restarted without the
/// fault, registrations are stored and restored again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_write_failure_reaches_the_client_and_the_store_recovers() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let port = free_port();
    let fault = format!(
        "store_file::sync=return(ENOSPC:{0});journal::write=return(ENOSPC:{0})",
        state.path().display()
    );
    let mut ess = start_on_a_clean_store(port, state.path(), &[], &fault);
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
    assert_restored_and_served(&ess, "1", "shuffle_0_1_1", b"block one").await;
    ess.kill();
}

/// A service just started has restored exactly one executor, `exec`, and serves its `block`.
async fn assert_restored_and_served(ess: &Ess, exec: &str, block: &str, content: &[u8]) {
    let line = ess
        .wait_log("restored ", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no `restored` line in {:?}", ess.log()));
    assert!(line.contains("restored 1 executor"), "{line}");
    let c = Client::connect(ess.addr).await.unwrap();
    let got = c.fetch_blocks(APP, exec, &[block]).await.unwrap();
    assert_eq!(got[0].1.as_ref().unwrap().as_ref(), content);
    assert_no_panic(ess);
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

/// What `Client::fetch_blocks` returns.
type Fetched = Result<Vec<(String, Result<bytes::Bytes, ClientError>)>, ClientError>;

/// The text of a fetch's failure (the whole request failing, or its first block).
fn failure_of(fetched: &Fetched) -> String {
    match fetched {
        Err(e) => e.to_string(),
        Ok(r) => match &r[0].1 {
            Err(e) => e.to_string(),
            Ok(b) => panic!("served {} bytes despite the injected fault", b.len()),
        },
    }
}

/// ENOSPC reading an index file, then EIO and ENOSPC opening the data file (failpoints
/// `index::read` and `data::open`, one shot each, in that order): each fetch fails with a
/// message naming the file and the errno, on a connection that stays usable; nothing is
/// cached from a failure, so the next fetch of the same block is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_errors_on_index_and_data_files_fail_those_fetches_only() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let d = files.path().display();
    let fault = format!(
        "index::read=1*return(ENOSPC:{d});data::open=1*return(EIO:{d})->1*return(ENOSPC:{d})"
    );
    let mut ess = start(0, state.path(), &[("CROUPIER_FAILPOINTS", &fault)]);
    let dirs = ExecutorDirs::create(files.path(), "exec-4", 1);
    dirs.write_map_output(7, 8, &[b"the block"]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "4", dirs.info.clone())
        .await
        .unwrap();
    let want = [
        ("shuffle_7_8_0.index", "No space left on device"),
        ("shuffle_7_8_0.data", "Input/output error"),
        ("shuffle_7_8_0.data", "No space left on device"),
    ];
    for (file, errno) in want {
        let msg = failure_of(&c.fetch_blocks(APP, "4", &["shuffle_7_8_0"]).await);
        assert!(
            msg.contains(file) && msg.contains(errno),
            "{file} {errno}: {msg}"
        );
    }
    let again = c.fetch_blocks(APP, "4", &["shuffle_7_8_0"]).await.unwrap();
    assert_eq!(again[0].1.as_ref().unwrap().as_ref(), b"the block");
    assert_no_panic(&ess);
    ess.kill();
}

/// With `croupier.state.sync=always`, EIO writing the registration store (failpoint
/// `store_file::write`): RegisterExecutor is answered with an RpcFailure naming the store file
/// and the errno, never a success kept in memory only; after a restart without the fault the
/// same store takes registrations again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_writing_the_store_fails_the_registration_not_the_service() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let port = free_port();
    let always = ["croupier.state.sync=always"];
    let fault = format!("store_file::write=return(EIO:{})", state.path().display());
    let mut ess = start_on_a_clean_store(port, state.path(), &always, &fault);
    let dirs = ExecutorDirs::create(files.path(), "exec-5", 1);
    dirs.write_map_output(1, 2, &[b"kept"]);
    let c = Client::connect(ess.addr).await.unwrap();
    match c.register_executor(APP, "5", dirs.info.clone()).await {
        Err(ClientError::Rpc { error, .. }) => assert!(
            error.contains("registrations-") && error.contains("Input/output error"),
            "{error}"
        ),
        other => panic!(
            "expected an RpcFailure, got {other:?}; log: {:?}",
            ess.log()
        ),
    }
    assert_no_panic(&ess);
    drop(c);
    ess.kill();
    let mut ess = start(port, state.path(), &[]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "5", dirs.info.clone())
        .await
        .unwrap();
    let got = c.fetch_blocks(APP, "5", &["shuffle_1_2_0"]).await.unwrap();
    assert_eq!(got[0].1.as_ref().unwrap().as_ref(), b"kept");
    assert_no_panic(&ess);
    ess.kill();
}

/// By default (`croupier.state.sync=background`) a registration is answered once it is in the
/// journal. With every commit of the store file failing (EIO), RegisterExecutor is answered and
/// served; the service is then killed (SIGKILL: nothing is flushed or closed) and started again
/// without the fault: the registration is restored from the journal and its blocks served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_answered_from_the_journal_survives_a_kill() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let port = free_port();
    let fault = format!("store_file::write=return(EIO:{})", state.path().display());
    let mut ess = start_on_a_clean_store(port, state.path(), &[], &fault);
    let dirs = ExecutorDirs::create(files.path(), "exec-6", 1);
    dirs.write_map_output(2, 3, &[b"journaled"]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "6", dirs.info.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}; log: {:?}", ess.log()));
    let got = c.fetch_blocks(APP, "6", &["shuffle_2_3_0"]).await.unwrap();
    assert_eq!(got[0].1.as_ref().unwrap().as_ref(), b"journaled");
    // The store file's commit failed (and keeps failing): only the journal has it.
    ess.wait_log("a write of", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no failed commit in {:?}", ess.log()));
    drop(c);
    ess.kill();
    let mut ess = start(port, state.path(), &[]);
    ess.wait_log("operation(s) applied", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("nothing replayed from the journal: {:?}", ess.log()));
    assert_restored_and_served(&ess, "6", "shuffle_2_3_0", b"journaled").await;
    ess.kill();
}

mod raw {
    //! A blocking client on a plain socket, for reading a chunk at the test's own pace.
    use bytes::BytesMut;
    use croupier_shuffle_service::protocol::frame;
    use croupier_shuffle_service::protocol::{BlockTransferMessage, Message};
    use std::io::{Read, Write};
    use std::net::TcpStream;

    pub fn send(s: &mut TcpStream, m: &Message) {
        s.write_all(&m.to_bytes()).unwrap();
    }

    pub fn rpc(s: &mut TcpStream, id: i64, m: &BlockTransferMessage) {
        send(
            s,
            &Message::RpcRequest {
                request_id: id,
                body: m.to_bytes(),
            },
        );
    }

    /// The next whole frame.
    pub fn recv(s: &mut TcpStream, buf: &mut BytesMut) -> Message {
        loop {
            if let Some(m) = frame::decode(buf, 1 << 30).unwrap() {
                return m;
            }
            let mut b = [0u8; 4096];
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "connection closed before a whole frame");
            buf.extend_from_slice(&b[..n]);
        }
    }
}

/// A data file cut short while a large chunk of it is being sent (the `sendfile` that comes
/// next returns 0): the client is not left hanging and is never handed a short body as a
/// whole one; the connection is closed after the bytes that were there, every byte received
/// is the file's, and new connections are served as before.
#[test]
fn data_file_shrinking_mid_send_closes_the_stream_and_spares_the_rest() {
    use bytes::BytesMut;
    use croupier_shuffle_service::protocol::frame;
    use croupier_shuffle_service::protocol::{BlockTransferMessage, Message, StreamChunkId};
    use std::io::Read;
    use std::net::TcpStream;

    const BIG: usize = 64 << 20;
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut ess = start(0, state.path(), &[]);
    let dirs = ExecutorDirs::create(files.path(), "exec-6", 1);
    let (data, _) = dirs.write_map_output(9, 1, &[&vec![0x5a; BIG]]);
    dirs.write_map_output(9, 2, &[b"a small block elsewhere"]);

    let mut s = TcpStream::connect(ess.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = BytesMut::new();
    raw::rpc(
        &mut s,
        1,
        &BlockTransferMessage::RegisterExecutor {
            app_id: APP.into(),
            exec_id: "6".into(),
            info: dirs.info.clone(),
        },
    );
    assert!(matches!(
        raw::recv(&mut s, &mut buf),
        Message::RpcResponse { .. }
    ));
    raw::rpc(
        &mut s,
        2,
        &BlockTransferMessage::OpenBlocks {
            app_id: APP.into(),
            exec_id: "6".into(),
            block_ids: vec!["shuffle_9_1_0".into()],
        },
    );
    let stream_id = match raw::recv(&mut s, &mut buf) {
        Message::RpcResponse { body, .. } => match BlockTransferMessage::decode(&body).unwrap() {
            BlockTransferMessage::StreamHandle { stream_id, .. } => stream_id,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    raw::send(
        &mut s,
        &Message::ChunkFetchRequest(StreamChunkId {
            stream_id,
            chunk_index: 0,
        }),
    );
    // The header and the first MiB, then stop reading: the server fills the socket buffers
    // and waits for them to drain, in the middle of the body.
    let mut got: Vec<u8> = buf.to_vec();
    let mut chunk = vec![0u8; 1 << 16];
    while got.len() < frame::CHUNK_SUCCESS_HEADER + (1 << 20) {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&chunk[..n]);
    }
    let frame_len = i64::from_be_bytes(got[..8].try_into().unwrap()) as usize;
    assert_eq!(got[8], frame::kind::CHUNK_FETCH_SUCCESS);
    assert_eq!(frame_len, frame::CHUNK_SUCCESS_HEADER + BIG);
    std::thread::sleep(Duration::from_millis(500));
    // Cut the file to 2 MiB (less than the server has sent or queued by now).
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(2 << 20).unwrap();
    drop(f);
    // Read on: the stream must end (EOF or reset) well before the 30 s read timeout.
    let started = std::time::Instant::now();
    let end = loop {
        match s.read(&mut chunk) {
            Ok(0) => break "eof".to_string(),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break e.to_string(),
            Err(e) => panic!(
                "the stream neither ended nor went on after {:?} and {} bytes: {e}",
                started.elapsed(),
                got.len()
            ),
        }
    };
    let body = &got[frame::CHUNK_SUCCESS_HEADER..];
    assert!(
        body.len() < BIG,
        "a whole {BIG}-byte body arrived from a file cut to 2 MiB ({end})"
    );
    assert!(
        body.iter().all(|&b| b == 0x5a),
        "bytes other than the file's were sent"
    );
    eprintln!(
        "cut mid-send: {} of {BIG} body bytes, then {end} after {:?}",
        body.len(),
        started.elapsed()
    );
    let log = ess
        .wait_log("ended at byte", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no log line naming the cut file: {:?}", ess.log()));
    assert!(log.contains("shuffle_9_1_0.data"), "{log}");
    // Other connections are served.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Client::connect(ess.addr).await.unwrap();
        let r = c.fetch_blocks(APP, "6", &["shuffle_9_2_0"]).await.unwrap();
        assert_eq!(
            r[0].1.as_ref().unwrap().as_ref(),
            b"a small block elsewhere"
        );
    });
    assert_no_panic(&ess);
    ess.kill();
}

/// libfaketime (Debian/Ubuntu package `libfaketime`), preloaded into the service so that its
/// wall clock (`CLOCK_REALTIME`) follows the offset written in a file while its monotonic and
/// boot clocks stay true (`FAKETIME_DONT_FAKE_MONOTONIC=1`).
#[cfg(target_arch = "aarch64")]
const LIBFAKETIME: &str = "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1";
#[cfg(not(target_arch = "aarch64"))]
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

struct FakeClock {
    file: std::path::PathBuf,
}

impl FakeClock {
    fn new(dir: &Path) -> FakeClock {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: install it with `apt-get install libfaketime` (the clock-jump \
             test moves the service's wall clock with it)"
        );
        let c = FakeClock {
            file: dir.join("faketime"),
        };
        c.set("+0");
        c
    }

    /// The wall-clock offset from now on, e.g. "+1d", "-2d", "+0".
    fn set(&self, offset: &str) {
        std::fs::write(&self.file, format!("{offset}\n")).unwrap();
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", LIBFAKETIME.to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
    }
}

/// The `YYYY-MM-DDTHH:MM:SS` stamp of a log line, as seconds since 1970 (UTC).
fn log_time(line: &str) -> Option<i64> {
    let b = line.as_bytes();
    (0..b.len().saturating_sub(18)).find_map(|i| {
        let w = &b[i..i + 19];
        let digits = |r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_digit);
        let ok = digits(0..4)
            && w[4] == b'-'
            && digits(5..7)
            && w[7] == b'-'
            && digits(8..10)
            && w[10] == b'T'
            && digits(11..13)
            && w[13] == b':'
            && digits(14..16)
            && w[16] == b':'
            && digits(17..19);
        if !ok {
            return None;
        }
        let n = |r: std::ops::Range<usize>| -> i64 {
            std::str::from_utf8(&w[r])
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0)
        };
        // Days from 1970-01-01 of a civil date (Howard Hinnant's algorithm).
        let (y, m, d) = (n(0..4), n(5..7), n(8..10));
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
        Some(secs)
    })
}

/// The first log line saying the files of `app` are being removed.
fn removal_line(ess: &Ess, app: &str) -> Option<String> {
    ess.log()
        .into_iter()
        .find(|l| l.contains(app) && l.contains("Removing shuffle files"))
}

/// Wall-clock jumps against the heartbeat cleanup (heartbeat-only mode, cleaner every 1 s): a
/// jump of a day forward and then a day back neither expires a driver that keeps heartbeating
/// nor delays the removal of one that goes silent (silence is measured on the monotonic
/// clock). The wall clock is moved for the service alone with libfaketime. (Across a restart
/// the stored last heartbeat is aged by the boot clock: `stamp` and `drivers` unit tests; in
/// heartbeat-only mode stored drivers are not restored at all.)
#[test]
fn wall_clock_jumps_neither_fire_nor_delay_the_heartbeat_cleanup() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(state.path());
    let env_owned = clock.env();
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = |port: u16| -> Vec<String> {
        vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--conf".into(),
            format!("croupier.state.dir={}", state.path().display()),
            "--conf".into(),
            "croupier.mesos.agent.address=none".into(),
            "--conf".into(),
            "spark.shuffle.cleaner.interval=1s".into(),
        ]
    };
    let port = free_port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let live = "app-20261203120000-0101";
    let quiet = "app-20261203120000-0102";
    let mut ess = Ess::start_with(&args(port), &env);
    rt.block_on(async {
        let c = Client::connect(ess.addr).await.unwrap();
        for app in [live, quiet] {
            let dirs = ExecutorDirs::create(files.path(), app, 1);
            c.register_executor(app, "1", dirs.info.clone())
                .await
                .unwrap();
            c.register_driver(app, 4_000).await.unwrap();
        }
        // `live` heartbeats every 0.5 s through both jumps (3 s each: 3 cleaner passes).
        for offset in ["+1d", "-1d"] {
            clock.set(offset);
            for _ in 0..6 {
                c.heartbeat(live).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        clock.set("+0");
        c.heartbeat(live).await.unwrap();
        // `quiet` never heartbeat: removed 4 s after its registration (+ one pass), whatever
        // the wall clock did meanwhile.
        let started = std::time::Instant::now();
        while removal_line(&ess, quiet).is_none() && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            removal_line(&ess, quiet).is_some(),
            "{quiet} not removed: {:?}",
            ess.log()
        );
        assert!(
            removal_line(&ess, live).is_none(),
            "a heartbeating driver was expired by a wall-clock jump: {:?}",
            ess.log()
        );
        // Now `live` goes silent too, with the wall clock a day behind: removed in time.
        clock.set("-1d");
        let started = std::time::Instant::now();
        while removal_line(&ess, live).is_none() && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            removal_line(&ess, live).is_some(),
            "a silent driver was kept for {:?} with a timeout of 4 s after the wall clock went back: {:?}",
            started.elapsed(),
            ess.log()
        );
    });
    // The jump reached the service: the removal of `live`, logged with the wall clock a day
    // behind, is stamped at least 12 hours before the service's first line (a margin that no
    // real midnight during the test can fool).
    let log = ess.log();
    let first = log.first().and_then(|l| log_time(l));
    let removed = removal_line(&ess, live).and_then(|l| log_time(&l));
    assert!(
        matches!((first, removed), (Some(f), Some(r)) if f - r >= 12 * 3600),
        "libfaketime did not move the service's clock: {log:?}"
    );
    assert_no_panic(&ess);
    ess.kill();
}

/// A FIFO planted under a shuffle index file's name (or a hung device) must not hang the
/// thread that opens it: the fetch fails at once with a message naming the file, and the
/// connection and the service go on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_under_a_shuffle_file_name_is_refused_not_waited_on() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut ess = start(0, state.path(), &[]);
    let dirs = ExecutorDirs::create(files.path(), "exec-6", 1);
    dirs.write_map_output(7, 8, &[b"the block"]);
    let (_, index) = dirs.write_map_output(9, 0, &[b"never"]);
    std::fs::remove_file(&index).unwrap();
    nix::unistd::mkfifo(&index, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "6", dirs.info.clone())
        .await
        .unwrap();
    for _ in 0..3 {
        let fetched = tokio::time::timeout(
            Duration::from_secs(20),
            c.fetch_blocks(APP, "6", &["shuffle_9_0_0"]),
        )
        .await
        .expect("a fetch of a FIFO-named index answered, not left waiting");
        let msg = failure_of(&fetched);
        assert!(
            msg.contains("shuffle_9_0_0.index") && msg.contains("not a regular file"),
            "{msg}"
        );
    }
    let ok = c.fetch_blocks(APP, "6", &["shuffle_7_8_0"]).await.unwrap();
    assert_eq!(ok[0].1.as_ref().unwrap().as_ref(), b"the block");
    assert_no_panic(&ess);
    ess.kill();
}

/// A send stuck on the disk (failpoint `data::open` sleeping 4 s, once) gives its sending
/// turn to the next connection after a short while: with a single turn
/// (`croupier.shuffle.io.sendThreads=1`) another client's fetch is served long before the
/// stuck one ends, and the stuck one is served too once its read returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_stuck_on_the_disk_gives_up_its_turn() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut ess = start_with_conf(
        0,
        state.path(),
        &[
            "croupier.shuffle.io.sendThreads=1",
            "croupier.admin.address=127.0.0.1:0",
        ],
        &[("CROUPIER_FAILPOINTS", "data::open=1*sleep(4000)")],
    );
    let dirs = ExecutorDirs::create(files.path(), "exec-7", 1);
    dirs.write_map_output(7, 8, &[b"stuck block"]);
    dirs.write_map_output(7, 9, &[b"other block"]);
    let stuck = Client::connect(ess.addr).await.unwrap();
    stuck
        .register_executor(APP, "7", dirs.info.clone())
        .await
        .unwrap();
    let slow = tokio::spawn(async move {
        let got = stuck.fetch_blocks(APP, "7", &["shuffle_7_8_0"]).await;
        (std::time::Instant::now(), got)
    });
    // Until the stuck fetch's send job runs (asleep in the data file's open, its turn held).
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while ess.metric("croupier_shuffle_sending") < 1.0 {
        assert!(
            std::time::Instant::now() < end,
            "the first fetch never started sending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = Client::connect(ess.addr).await.unwrap();
    let t = std::time::Instant::now();
    let got = other
        .fetch_blocks(APP, "7", &["shuffle_7_9_0"])
        .await
        .unwrap();
    let other_done = std::time::Instant::now();
    assert_eq!(got[0].1.as_ref().unwrap().as_ref(), b"other block");
    let (slow_done, slow_got) = tokio::time::timeout(Duration::from_secs(30), slow)
        .await
        .expect("the stuck fetch ends")
        .unwrap();
    assert_eq!(
        slow_got.unwrap()[0].1.as_ref().unwrap().as_ref(),
        b"stuck block"
    );
    assert!(
        other_done < slow_done,
        "the other client ({:?}) was served only after the stuck read ended",
        other_done - t
    );
    assert!(ess.metric("croupier_shuffle_slow_sends_total") >= 1.0);
    assert_no_panic(&ess);
    ess.kill();
}
