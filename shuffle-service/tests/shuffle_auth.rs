//! `spark.authenticate` at the protocol level, against the service binary: SASL DIGEST-MD5
//! computed independently by the test client (from Spark's formulas), the auth engine handshake
//! through a raw socket with AES-CTR afterwards, and every refusal: wrong secret, no
//! authentication, requests before authenticating, garbage, another application's data
//! (its blocks, or its local dirs in a RegisterExecutor). The limits that keep clients that do
//! not authenticate (idle sockets, oversized frames, descriptor exhaustion) or do not read
//! from starving the others. Real Spark clients are in `spark_auth.rs`.

mod shuffle_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use croupier_shuffle_service::auth::engine::{AuthMessage, ClientAuth, EngineVersion};
use croupier_shuffle_service::auth::sasl::{netty_base64, DigestInput, SaslMessage};
use croupier_shuffle_service::protocol::{BlockTransferMessage as M, Message, StreamChunkId};
use croupier_testkit::shuffle::layout::ExecutorDirs;
use croupier_testkit::shuffle::{Client, ClientError};
use shuffle_support::{read_frame, Ess};

const SECRET: &str = "a secret shared by the cluster and its apps";
const APP_A: &str = "app-20261203080000-0001";
const APP_B: &str = "app-20261203080000-0002";

fn start(extra: &[(&str, &str)]) -> Ess {
    let mut conf = vec![
        ("spark.authenticate", "true"),
        ("spark.authenticate.secret", SECRET),
        ("croupier.admin.address", "127.0.0.1:0"),
    ];
    conf.extend_from_slice(extra);
    Ess::start(&conf)
}

fn server_msg(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(e) => match e.server_message() {
            Some(m) => m.to_string(),
            None => panic!("expected a failure frame, got {e}"),
        },
        Ok(v) => panic!("expected a failure, got {v:?}"),
    }
}

/// The client half of DIGEST-MD5 as the JDK client sends it for Spark.
async fn sasl_login(c: &Client, app: &str, secret: &str) -> Result<(), ClientError> {
    sasl_login_then(c, app, secret, || {}).await
}

/// [`sasl_login`], calling `between` once the challenge is in (mid-handshake).
async fn sasl_login_then(
    c: &Client,
    app: &str,
    secret: &str,
    between: impl FnOnce(),
) -> Result<(), ClientError> {
    let first = SaslMessage {
        app_id: app.into(),
        payload: Vec::new(),
    };
    let challenge = c.rpc_raw(first.encode().into()).await?;
    let challenge = String::from_utf8(challenge.to_vec()).expect("challenge is UTF-8");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no nonce in {challenge}"))
        .to_string();
    assert!(challenge.contains("realm=\"default\""), "{challenge}");
    assert!(challenge.contains("algorithm=md5-sess"), "{challenge}");
    between();
    let password = netty_base64(secret.as_bytes());
    let cnonce = "n0VvM3Fh3p9mBz6pZ5y8r2s7Qw1Kx4Lc0Jd9Tg5U";
    let input = DigestInput {
        username: "c3BhcmtTYXNsVXNlcg==",
        realm: "default",
        password: &password,
        nonce: &nonce,
        cnonce,
        nc: "00000001",
        qop: "auth",
        digest_uri: "null/default",
        authzid: None,
    };
    let response = format!(
        "charset=utf-8,username=\"c3BhcmtTYXNsVXNlcg==\",realm=\"default\",nonce=\"{nonce}\",nc=00000001,\
         cnonce=\"{cnonce}\",digest-uri=\"null/default\",maxbuf=65536,response={},qop=auth",
        input.response()
    );
    let second = SaslMessage {
        app_id: app.into(),
        payload: response.into_bytes(),
    };
    let rspauth = c.rpc_raw(second.encode().into()).await?;
    assert_eq!(
        &rspauth[..],
        format!("rspauth={}", input.rspauth()).as_bytes(),
        "the server's rspauth proves it knows the secret too"
    );
    Ok(())
}

fn auth_failures(ess: &Ess) -> u64 {
    ess.metric("croupier_shuffle_auth_failures_total") as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_connection_acts_for_its_own_app_only() {
    let ess = start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let a = Client::connect(ess.addr).await.unwrap();
    sasl_login(&a, APP_A, SECRET).await.unwrap();
    let dirs = ExecutorDirs::create(tmp.path(), "a-0", 2);
    a.register_executor(APP_A, "0", dirs.info.clone())
        .await
        .unwrap();
    dirs.write_map_output(0, 1, &[b"alpha", b"beta"]);
    let got = a
        .fetch_blocks(APP_A, "0", &["shuffle_0_1_0", "shuffle_0_1_1"])
        .await
        .unwrap();
    let got: Vec<Bytes> = got.into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(
        got,
        vec![Bytes::from_static(b"alpha"), Bytes::from_static(b"beta")]
    );

    // A second application's connection: registering or opening A's blocks is refused.
    let b = Client::connect(ess.addr).await.unwrap();
    sasl_login(&b, APP_B, SECRET).await.unwrap();
    let e = server_msg(b.open_blocks(APP_A, "0", &["shuffle_0_1_0"]).await);
    assert_eq!(
        e,
        format!("java.lang.SecurityException: Client for {APP_B} not authorized for application {APP_A}.")
    );
    let e = server_msg(b.register_executor(APP_A, "1", dirs.info.clone()).await);
    assert!(e.contains("not authorized for application"), "{e}");
    // ... and so is reading a stream A opened; A's stream is left intact.
    let h = a
        .open_blocks(APP_A, "0", &["shuffle_0_1_0", "shuffle_0_1_1"])
        .await
        .unwrap();
    let e = server_msg(b.fetch_chunk(h.stream_id, 0).await);
    assert!(
        e.contains(&format!(
            "Client {APP_B} not authorized to read stream {}",
            h.stream_id
        )),
        "{e}"
    );
    assert_eq!(&a.fetch_chunk(h.stream_id, 0).await.unwrap()[..], b"alpha");
    assert_eq!(&a.fetch_chunk(h.stream_id, 1).await.unwrap()[..], b"beta");
    // Spark does not check RegisterDriver/heartbeat appIds on its Mesos service.
    b.register_driver(APP_B, 60_000).await.unwrap();
    b.heartbeat(APP_B).await.unwrap();
    assert!(auth_failures(&ess) >= 3);
    let log = ess.log().join("\n");
    assert!(
        log.contains(&format!("app={APP_A}")) || log.contains(APP_A),
        "{log}"
    );
    assert!(!log.contains(SECRET), "the secret reached the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_and_without_authentication() {
    let ess = start(&[]);
    let before = auth_failures(&ess);

    // No authentication: the first RPC is taken as a SASL message, as Spark does.
    let c = Client::connect(ess.addr).await.unwrap();
    let e = server_msg(c.open_blocks(APP_A, "0", &["shuffle_0_1_0"]).await);
    assert_eq!(
        e,
        "java.lang.IllegalStateException: Expected SaslMessage, received something else \
         (maybe your client does not have SASL enabled?)"
    );

    // A wrong secret: Spark's SaslException text; the log names the peer and the app.
    let c = Client::connect(ess.addr).await.unwrap();
    let e = server_msg(sasl_login(&c, APP_A, "not the secret").await);
    assert_eq!(
        e,
        "java.lang.RuntimeException: javax.security.sasl.SaslException: DIGEST-MD5: digest response \
         format violation. Mismatched response."
    );
    let line = ess
        .wait_log("Mismatched response", Duration::from_secs(10))
        .expect("a log line for the wrong secret");
    assert!(
        line.contains(APP_A) && line.contains("127.0.0.1:"),
        "{line}"
    );

    // Garbage in a SASL message.
    let c = Client::connect(ess.addr).await.unwrap();
    let e = server_msg(
        c.rpc_raw(Bytes::from_static(&[0xEA, 0x7f, 0, 0, 0, b'x']))
            .await,
    );
    assert!(e.contains("malformed SaslMessage"), "{e}");
    let c = Client::connect(ess.addr).await.unwrap();
    let first = SaslMessage {
        app_id: APP_A.into(),
        payload: Vec::new(),
    };
    c.rpc_raw(first.encode().into()).await.unwrap();
    let junk = SaslMessage {
        app_id: APP_A.into(),
        payload: b"username=\"x\",,=\"".to_vec(),
    };
    let e = server_msg(c.rpc_raw(junk.encode().into()).await);
    assert!(
        e.contains("DIGEST-MD5: digest response format violation"),
        "{e}"
    );

    // A chunk request before authenticating: refused, connection closed, nothing served.
    let c = Client::connect(ess.addr).await.unwrap();
    let r = c.fetch_chunk(1234, 0).await;
    assert!(r.is_err(), "{r:?}");
    let e = c
        .rpc(&M::ShuffleServiceHeartbeat {
            app_id: APP_A.into(),
        })
        .await;
    assert!(
        matches!(e, Err(ClientError::Closed { .. })) || matches!(e, Err(ClientError::Io { .. })),
        "the connection must be closed: {e:?}"
    );

    // A one-way message before authenticating is dropped; the connection stays usable for auth.
    let c = Client::connect(ess.addr).await.unwrap();
    c.send_one_way(&M::ShuffleServiceHeartbeat {
        app_id: APP_A.into(),
    })
    .await
    .unwrap();
    sasl_login(&c, APP_A, SECRET).await.unwrap();

    assert!(
        auth_failures(&ess) >= before + 6,
        "auth_failures {}",
        auth_failures(&ess)
    );
    let log = ess.log().join("\n");
    assert!(!log.contains(SECRET), "the secret reached the log:\n{log}");
}

fn engine_handshake(
    s: &mut TcpStream,
    secret: &str,
    version: EngineVersion,
) -> Result<croupier_shuffle_service::auth::ctr::CtrChannel, String> {
    let (client, challenge) =
        ClientAuth::start(secret.as_bytes(), APP_A, version, &mut rand::rngs::OsRng);
    let req = Message::RpcRequest {
        request_id: 7,
        body: challenge.encode().into(),
    };
    s.write_all(&req.to_bytes()).unwrap();
    match read_frame(s, None) {
        Message::RpcResponse {
            request_id: 7,
            body,
        } => {
            let resp = AuthMessage::decode(&body).map_err(|e| e.to_string())?;
            let keys = client.finish(&resp).map_err(|e| e.to_string())?;
            keys.channel().map_err(|e| e.to_string())
        }
        Message::RpcFailure { error, .. } => Err(error),
        other => Err(format!("unexpected {other:?}")),
    }
}

#[test]
fn auth_engine_handshake_then_ctr_and_wrong_secret() {
    let ess = start(&[
        ("spark.network.crypto.enabled", "true"),
        ("spark.network.crypto.authEngineVersion", "2"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ExecutorDirs::create(tmp.path(), "a-0", 1);

    let mut s = TcpStream::connect(ess.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut enc, mut dec) = engine_handshake(&mut s, SECRET, EngineVersion::V2)
        .expect("handshake")
        .split();
    // Everything after the handshake is AES-CTR: a RegisterExecutor and its answer.
    let reg = M::RegisterExecutor {
        app_id: APP_A.into(),
        exec_id: "0".into(),
        info: dirs.info.clone(),
    };
    let mut bytes = Message::RpcRequest {
        request_id: 8,
        body: reg.to_bytes(),
    }
    .to_bytes()
    .to_vec();
    enc.encrypt(&mut bytes);
    s.write_all(&bytes).unwrap();
    match read_frame(&mut s, Some(&mut dec)) {
        Message::RpcResponse {
            request_id: 8,
            body,
        } => assert!(body.is_empty()),
        other => panic!("expected the RegisterExecutor answer, got {other:?}"),
    }
    // A plaintext request on the encrypted connection is garbage to the server: it closes.
    s.write_all(
        &Message::ChunkFetchRequest(StreamChunkId {
            stream_id: 1,
            chunk_index: 0,
        })
        .to_bytes(),
    )
    .unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);

    // A wrong secret: "Authentication failed." and the connection is closed.
    let mut s = TcpStream::connect(ess.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let e = engine_handshake(&mut s, "wrong", EngineVersion::V2).expect_err("refused");
    assert_eq!(
        e,
        "java.lang.IllegalArgumentException: Authentication failed."
    );
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).ok(),
        Some(0),
        "closed after the failure"
    );
    let line = ess
        .wait_log("authentication failed", Duration::from_secs(10))
        .expect("a log line");
    assert!(line.contains(APP_A), "{line}");
    assert!(!ess.log().join("\n").contains(SECRET));
}

/// App A authenticated (SASL), with one executor whose map output holds `partitions`.
async fn registered_app(
    ess: &Ess,
    root: &std::path::Path,
    partitions: &[&[u8]],
) -> (Client, ExecutorDirs) {
    let a = Client::connect(ess.addr).await.unwrap();
    sasl_login(&a, APP_A, SECRET).await.unwrap();
    let dirs = ExecutorDirs::create(root, "a-0", 2);
    a.register_executor(APP_A, "0", dirs.info.clone())
        .await
        .unwrap();
    dirs.write_map_output(0, 1, partitions);
    (a, dirs)
}

/// Fetches `shuffle_0_1_0` and `shuffle_0_1_1` within a generous bound.
async fn fetch_two(c: &Client, app: &str) -> Vec<Bytes> {
    let got = tokio::time::timeout(
        Duration::from_secs(60),
        c.fetch_blocks(app, "0", &["shuffle_0_1_0", "shuffle_0_1_1"]),
    )
    .await
    .expect("blocks served within 60 s")
    .expect("blocks served");
    got.into_iter().map(|(_, r)| r.unwrap()).collect()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// The two attacks of the security review, under `ulimit -n 64`: 80 idle sockets that never
/// authenticate (they took every descriptor), and frames declaring 64 MiB before
/// authenticating (each pinned ~61 MiB). An authenticated client keeps being served, a new
/// one still gets in, the oversized frames are refused from their length field, and the idle
/// sockets are closed at the handshake deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_oversized_unauthenticated_connections_do_not_starve_clients() {
    let ess = Ess::start_with_nofile(
        &[
            ("spark.authenticate", "true"),
            ("spark.authenticate.secret", SECRET),
            ("croupier.admin.address", "127.0.0.1:0"),
            ("croupier.authenticate.handshakeTimeout", "3s"),
        ],
        64,
    );
    let tmp = tempfile::tempdir().unwrap();
    let (a, _dirs) = registered_app(&ess, tmp.path(), &[b"alpha", b"beta"]).await;
    let want = vec![Bytes::from_static(b"alpha"), Bytes::from_static(b"beta")];
    assert_eq!(fetch_two(&a, APP_A).await, want);

    // 80 idle sockets, more than the service's descriptors.
    let idle: Vec<TcpStream> = (0..80)
        .map(|i| TcpStream::connect(ess.addr).unwrap_or_else(|e| panic!("idle socket {i}: {e}")))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fetch_two(&a, APP_A).await, want, "the authenticated client");
    let c = Client::connect(ess.addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), sasl_login(&c, APP_A, SECRET))
        .await
        .expect("a new client authenticates while the idle sockets are open")
        .unwrap();
    assert_eq!(fetch_two(&c, APP_A).await, want, "a new client");
    // The default bound is a quarter of the open-file limit.
    assert!(ess.metric("croupier_shuffle_unauthenticated_connections") <= 16.0);
    assert!(ess.metric("croupier_shuffle_unauthenticated_evicted_total") >= 60.0);

    // Frames declaring 64 MiB: refused from the length field, the connection closed.
    let hwm_before = vm_hwm_kib(ess.pid());
    let floods: Vec<_> = (0..4)
        .map(|_| {
            let addr = ess.addr;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut head = ((64u64 << 20) + 8).to_be_bytes().to_vec();
                head.push(3); // RpcRequest
                let _ = s.write_all(&head);
                // What the reviewer sent: the body, 16 MiB of it here; the server has closed
                // long before (the write fails) or never reads it.
                let chunk = vec![0u8; 1 << 20];
                for _ in 0..16 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let mut rest = Vec::new();
                // Closed by the server: EOF or a reset, not a read timeout.
                match s.read_to_end(&mut rest) {
                    Ok(_) => true,
                    Err(e) => {
                        e.kind() != std::io::ErrorKind::WouldBlock
                            && e.kind() != std::io::ErrorKind::TimedOut
                    }
                }
            })
        })
        .collect();
    for f in floods {
        assert!(
            f.join().unwrap(),
            "the server closed the oversized frame's connection"
        );
    }
    let grown = vm_hwm_kib(ess.pid()).saturating_sub(hwm_before);
    assert!(
        grown < 32 << 10,
        "peak RSS grew by {grown} KiB for frames refused unread"
    );
    let line = ess
        .wait_log("before authenticating", Duration::from_secs(10))
        .expect("a log line for the oversized frame");
    assert!(
        line.contains("127.0.0.1:") && line.contains("67108872"),
        "{line}"
    );

    // The idle sockets still open are closed at the handshake deadline.
    let mut last = idle.into_iter().last().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        last.read_to_end(&mut rest).ok(),
        Some(0),
        "closed by the server"
    );
    assert!(ess.metric("croupier_shuffle_handshake_timeouts_total") >= 1.0);
    assert_eq!(
        fetch_two(&a, APP_A).await,
        want,
        "the authenticated client, after"
    );
    assert!(!ess.log().join("\n").contains(SECRET));
}

/// With the bound off (`maxPendingConnections` above the open-file limit) the descriptors do
/// run out: the accept loop backs off instead of spinning, says so once, and serves again once
/// descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_loop_survives_running_out_of_descriptors() {
    let ess = Ess::start_with_nofile(
        &[
            ("spark.authenticate", "true"),
            ("spark.authenticate.secret", SECRET),
            ("croupier.admin.address", "127.0.0.1:0"),
            ("croupier.authenticate.maxPendingConnections", "1000"),
        ],
        64,
    );
    let tmp = tempfile::tempdir().unwrap();
    let (a, _dirs) = registered_app(&ess, tmp.path(), &[b"alpha", b"beta"]).await;
    drop(a);
    let idle: Vec<TcpStream> = (0..80)
        .map(|i| TcpStream::connect(ess.addr).unwrap_or_else(|e| panic!("idle socket {i}: {e}")))
        .collect();
    let failed = "accepting connections on the shuffle port failed";
    let line = ess
        .wait_log(failed, Duration::from_secs(20))
        .expect("the accept failure is logged");
    assert!(line.contains("file descriptors"), "{line}");
    std::thread::sleep(Duration::from_secs(3));
    let lines = ess.log().iter().filter(|l| l.contains(failed)).count();
    assert_eq!(lines, 1, "logged once per interval, not per failure");
    drop(idle);
    // Descriptors free again: served as before.
    let c = Client::connect(ess.addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), sasl_login(&c, APP_A, SECRET))
        .await
        .expect("served again")
        .unwrap();
    assert_eq!(
        fetch_two(&c, APP_A).await,
        vec![Bytes::from_static(b"alpha"), Bytes::from_static(b"beta")]
    );
    let errors = ess.metric("croupier_shuffle_accept_errors_total");
    // Backing off 10 ms doubling to 1 s: about ten failures in those ~3.5 s; a loop retrying
    // every 100 ms would have counted 35.
    assert!((1.0..=25.0).contains(&errors), "{errors} accept errors");
}

/// A client that asks for a large block and never reads holds no blocking thread: with two
/// blocking threads and six such clients, an honest client still gets its blocks, and the
/// stalled connections are closed after spark.shuffle.io.connectionTimeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_hold_no_blocking_thread() {
    let ess = Ess::start(&[
        ("croupier.admin.address", "127.0.0.1:0"),
        ("croupier.shuffle.io.blockingThreads", "2"),
        ("spark.shuffle.io.connectionTimeout", "4s"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ExecutorDirs::create(tmp.path(), "a-0", 1);
    let honest = Client::connect(ess.addr).await.unwrap();
    honest
        .register_executor(APP_A, "0", dirs.info.clone())
        .await
        .unwrap();
    // Partition 2: 32 MiB, far more than the socket buffers of a reader that never reads.
    let big = vec![7u8; 32 << 20];
    dirs.write_map_output(0, 1, &[b"alpha", b"beta", &big]);
    let stalled: Vec<TcpStream> = (0..6i64)
        .map(|i| {
            // and never read
            shuffle_support::ask_block_unread(ess.addr, APP_A, "shuffle_0_1_2", i + 1)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fetch_two(&honest, APP_A).await,
        vec![Bytes::from_static(b"alpha"), Bytes::from_static(b"beta")],
        "the honest client is served while six never read"
    );
    // The stalled connections are closed after the no-progress deadline.
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while ess.metric("croupier_shuffle_send_timeouts_total") < 6.0 {
        assert!(
            std::time::Instant::now() < end,
            "the stalled connections were not closed within 60 s:\n{}",
            ess.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let line = ess
        .wait_log("read nothing", Duration::from_secs(5))
        .expect("a log line for the stalled peer");
    assert!(
        line.contains("127.0.0.1:") && line.contains("spark.shuffle.io.connectionTimeout"),
        "{line}"
    );
    drop(stalled);
    assert_eq!(
        fetch_two(&honest, APP_A).await,
        vec![Bytes::from_static(b"alpha"), Bytes::from_static(b"beta")]
    );
}

/// With spark.authenticate, an application cannot register local dirs that are, contain or
/// lie inside another application's (after resolving symlinks), so it cannot read its blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_cannot_register_another_applications_dirs() {
    let ess = start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (a, dirs_a) = registered_app(&ess, tmp.path(), &[b"alpha", b"beta"]).await;
    let b = Client::connect(ess.addr).await.unwrap();
    sasl_login(&b, APP_B, SECRET).await.unwrap();
    let a_dir = dirs_a.info.local_dirs[1].clone();
    let link = tmp.path().join("looks-innocent");
    std::os::unix::fs::symlink(&a_dir, &link).unwrap();
    let parent = std::path::Path::new(&a_dir)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let own = ExecutorDirs::create(&tmp.path().join("b"), "b-0", 1);
    let attempts = [
        a_dir.clone(),
        format!("{a_dir}/0c"),
        parent,
        link.display().to_string(),
    ];
    for dir in &attempts {
        let mut info = own.info.clone();
        info.local_dirs.push(dir.clone());
        let e = server_msg(b.register_executor(APP_B, "0", info).await);
        assert!(
            e.contains(&format!("local dir {dir:?}")) && e.contains("another application"),
            "{dir}: {e}"
        );
    }
    // Nor a dir that is not a block manager's (e.g. /tmp, which would lock every other
    // application out), even behind a link named like one.
    let shared_dir = tmp.path().join("shared");
    std::fs::create_dir(&shared_dir).unwrap();
    let disguised = tmp.path().join("blockmgr-disguised");
    std::os::unix::fs::symlink(&shared_dir, &disguised).unwrap();
    for dir in [&shared_dir, &disguised] {
        let dir = dir.display().to_string();
        let mut info = own.info.clone();
        info.local_dirs.push(dir.clone());
        let e = server_msg(b.register_executor(APP_B, "0", info).await);
        assert!(
            e.contains(&format!("local dir {dir:?}")) && e.contains("blockmgr-*"),
            "{dir}: {e}"
        );
    }
    // B registers its own dirs; A's blocks stay A's.
    b.register_executor(APP_B, "0", own.info.clone())
        .await
        .unwrap();
    let e = server_msg(b.fetch_blocks(APP_A, "0", &["shuffle_0_1_0"]).await);
    assert!(e.contains("not authorized"), "{e}");
    assert_eq!(
        fetch_two(&a, APP_A).await,
        vec![Bytes::from_static(b"alpha"), Bytes::from_static(b"beta")]
    );
    let line = ess
        .wait_log(
            "overlaps one registered by application",
            Duration::from_secs(10),
        )
        .expect("a log line");
    assert!(line.contains(APP_A) && line.contains(APP_B), "{line}");
}

/// The review's descriptor attack, under `ulimit -n 64`: fifty peers that never authenticate
/// each send ~900 KB of frames of an unknown type (each answered with an RpcFailure), never
/// read the answers (a small receive buffer), half-close and stay connected. Whether the
/// service's reader stops blocked on a reply or at EOF with the writer stuck, such a
/// connection counts against `maxPendingConnections` until its descriptor is freed: the
/// service keeps descriptors to spare and a real client still authenticates and fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_peers_that_never_read_replies_hold_no_descriptors() {
    let ess = Ess::start_with_nofile(
        &[
            ("spark.authenticate", "true"),
            ("spark.authenticate.secret", SECRET),
            ("croupier.admin.address", "127.0.0.1:0"),
            // Far beyond the test: only the pending bound can free the descriptors.
            ("croupier.authenticate.handshakeTimeout", "300s"),
        ],
        64,
    );
    let tmp = tempfile::tempdir().unwrap();
    let (a, _dirs) = registered_app(&ess, tmp.path(), &[b"alpha", b"beta"]).await;
    let want = vec![Bytes::from_static(b"alpha"), Bytes::from_static(b"beta")];
    // Length 9 (the length field and the type byte), type 99: well delimited, unknown.
    let frames: Vec<u8> = [0, 0, 0, 0, 0, 0, 0, 9, 99].repeat(100_000);
    let mut held = Vec::new();
    for i in 0..50 {
        let mut s =
            TcpStream::connect(ess.addr).unwrap_or_else(|e| panic!("attacking socket {i}: {e}"));
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // The service stops reading once its answers back up: a timeout ends the write.
        let _ = s.write_all(&frames);
        let _ = s.shutdown(std::net::Shutdown::Write);
        held.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let c = Client::connect(ess.addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), sasl_login(&c, APP_A, SECRET))
        .await
        .expect("a new client authenticates while the attacking sockets are open")
        .unwrap();
    assert_eq!(fetch_two(&c, APP_A).await, want, "a new client");
    assert_eq!(fetch_two(&a, APP_A).await, want, "the authenticated client");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", ess.pid()))
        .unwrap()
        .count();
    assert!(fds < 56, "the service holds {fds} of its 64 descriptors");
    assert!(ess.metric("croupier_shuffle_unauthenticated_connections") <= 16.0);
    assert!(ess.metric("croupier_shuffle_accept_errors_total") == 0.0);
    drop(held);
}

/// A socket to `addr` from another loopback address (another host, as the service sees it).
fn connect_from(from: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind((std::net::Ipv4Addr::from(from), 0).into()).unwrap();
            s.connect(addr).await.unwrap().into_std().unwrap()
        })
    })
}

/// One host (127.0.0.2) opening far more unauthenticated sockets than maxPendingConnections
/// while a client on another host (127.0.0.1) is mid-handshake: the flood closes only its own
/// sockets (beyond maxPendingConnectionsPerHost, half of 8 by default), the handshake completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_flooding_does_not_close_another_hosts_handshake() {
    let ess = start(&[("croupier.authenticate.maxPendingConnections", "8")]);
    let addr = ess.addr;
    let c = Client::connect(addr).await.unwrap();
    let mut flood = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        sasl_login_then(&c, APP_A, SECRET, || {
            flood = (0..30)
                .map(|_| connect_from([127, 0, 0, 2], addr))
                .collect();
            // Let the service admit them all (and evict the 26 beyond the host's 4) before
            // the handshake goes on.
            let until = std::time::Instant::now() + Duration::from_secs(20);
            while ess.metric("croupier_shuffle_unauthenticated_evicted_total") < 26.0
                && std::time::Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }),
    )
    .await
    .expect("the handshake finishes")
    .expect("the handshake begun before the flood succeeds");
    assert_eq!(flood.len(), 30);
    let evicted = ess.metric("croupier_shuffle_unauthenticated_evicted_total");
    assert_eq!(evicted, 26.0, "the flooding host keeps 4 of its 30");
    assert!(ess.metric("croupier_shuffle_unauthenticated_connections") <= 4.0);
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ExecutorDirs::create(tmp.path(), "a-0", 1);
    c.register_executor(APP_A, "0", dirs.info.clone())
        .await
        .expect("served once authenticated");
}

/// Under spark.authenticate a RegisterExecutor whose registration cannot be stored (a full
/// disk: ENOSPC through the `store_file::sync` and `journal::write` failpoints) is answered with a failure and leaves nothing
/// behind: the executor is not served and its dirs are not claimed, so another application
/// may register them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_that_cannot_be_stored_claims_no_dirs() {
    let state = tempfile::tempdir().unwrap();
    // A fixed port: with an ephemeral one the service keeps registrations in memory only.
    let port = croupier_testkit::ports::loopback_port().to_string();
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--conf",
            "spark.authenticate=true",
            "--conf",
            "croupier.mesos.agent.address=none",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        a.push("--conf".into());
        a.push(format!("croupier.state.dir={}", state.path().display()));
        a
    };
    // A store made and closed cleanly first, so the faulty run opens it without writing.
    let mut ess = Ess::start_with(&args(&[]), &[("_SPARK_AUTH_SECRET", SECRET)]);
    ess.wait_log("restored ", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no `restored` line in {:?}", ess.log()));
    assert!(ess.stop().is_some_and(|st| st.success()));
    let fault = format!(
        "store_file::sync=return(ENOSPC:{0});journal::write=return(ENOSPC:{0})",
        state.path().display()
    );
    let ess = Ess::start_with(
        &args(&[]),
        &[
            ("_SPARK_AUTH_SECRET", SECRET),
            ("CROUPIER_FAILPOINTS", &fault),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ExecutorDirs::create(tmp.path(), "a-0", 1);
    dirs.write_map_output(0, 1, &[b"alpha"]);
    let a = Client::connect(ess.addr).await.unwrap();
    sasl_login(&a, APP_A, SECRET).await.unwrap();
    let e = server_msg(a.register_executor(APP_A, "0", dirs.info.clone()).await);
    assert!(
        e.contains("No space left on device") && e.contains("may be retried"),
        "{e}"
    );
    let fetched = a.fetch_blocks(APP_A, "0", &["shuffle_0_1_0"]).await;
    assert!(
        format!("{fetched:?}").contains("not registered"),
        "the failed registration is not served: {fetched:?}"
    );
    // The store still fails for B, but the check of its dirs passes: A claims nothing.
    let b = Client::connect(ess.addr).await.unwrap();
    sasl_login(&b, APP_B, SECRET).await.unwrap();
    let e = server_msg(b.register_executor(APP_B, "0", dirs.info.clone()).await);
    assert!(
        e.contains("No space left on device") && !e.contains("another application"),
        "{e}"
    );
}

/// Under spark.authenticate files are opened (and deleted) without following links below the
/// registered dir: application B turns the sub-dirs of its own registered dirs into links to
/// A's, after registering; fetching and removing through them is refused, naming the path, and
/// A's files stay whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_planted_in_a_registered_dir_lead_nowhere() {
    let ess = start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (a, dirs_a) = registered_app(&ess, tmp.path(), &[b"alpha", b"beta"]).await;
    let b = Client::connect(ess.addr).await.unwrap();
    sasl_login(&b, APP_B, SECRET).await.unwrap();
    let dirs_b = ExecutorDirs::create(&tmp.path().join("b"), "b-0", 2);
    b.register_executor(APP_B, "0", dirs_b.info.clone())
        .await
        .unwrap();
    for name in ["shuffle_0_1_0.index", "shuffle_0_1_0.data"] {
        let theirs = dirs_a.path(name);
        let mine = dirs_b.path(name);
        let mine_sub = mine.parent().unwrap();
        if mine_sub.is_symlink() {
            continue;
        }
        let _ = std::fs::remove_dir_all(mine_sub);
        std::os::unix::fs::symlink(theirs.parent().unwrap(), mine_sub).unwrap();
        assert!(mine.exists(), "{} leads to A's file", mine.display());
    }
    let fetched = b.fetch_blocks(APP_B, "0", &["shuffle_0_1_0"]).await;
    let text = format!("{fetched:?}");
    assert!(
        text.contains("symbolic link") && text.contains("shuffle_0_1_0.index"),
        "{text}"
    );
    let removed = b
        .remove_blocks(APP_B, "0", &["shuffle_0_1_0.data", "shuffle_0_1_0.index"])
        .await
        .unwrap();
    assert_eq!(removed, 0, "nothing removed through the links");
    assert!(dirs_a.path("shuffle_0_1_0.data").exists());
    assert!(dirs_a.path("shuffle_0_1_0.index").exists());
    assert_eq!(
        fetch_two(&a, APP_A).await,
        vec![Bytes::from_static(b"alpha"), Bytes::from_static(b"beta")]
    );
}
