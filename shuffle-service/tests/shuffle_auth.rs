//! `spark.authenticate` at the protocol level, against the service binary: SASL DIGEST-MD5
//! computed independently by the test client (from Spark's formulas), the auth engine handshake
//! through a raw socket with AES-CTR afterwards, and every refusal: wrong secret, no
//! authentication, requests before authenticating, garbage, another application's data. Real
//! Spark clients are in `spark_auth.rs`.

mod shuffle_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use croupier_shuffle_service::auth::engine::{AuthMessage, ClientAuth, EngineVersion};
use croupier_shuffle_service::auth::sasl::{netty_base64, DigestInput, SaslMessage};
use croupier_shuffle_service::protocol::frame;
use croupier_shuffle_service::protocol::{BlockTransferMessage as M, Message, StreamChunkId};
use croupier_testkit::shuffle::layout::ExecutorDirs;
use croupier_testkit::shuffle::{Client, ClientError};
use shuffle_support::Ess;

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
    let line = ess
        .wait_log("admin endpoint listening on ", Duration::from_secs(10))
        .expect("admin endpoint line");
    let addr = line
        .rsplit("listening on ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("admin {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix("croupier_shuffle_auth_failures_total "))
        .unwrap_or_else(|| panic!("no croupier_shuffle_auth_failures_total in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
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

fn read_frame(
    s: &mut TcpStream,
    dec: Option<&mut croupier_shuffle_service::auth::ctr::Decryptor>,
) -> Message {
    let mut len = [0u8; 8];
    s.read_exact(&mut len).expect("frame length");
    let mut dec = dec;
    if let Some(d) = dec.as_deref_mut() {
        d.decrypt(&mut len);
    }
    let n = u64::from_be_bytes(len) as usize;
    assert!((8..1 << 20).contains(&n), "frame length {n}");
    let mut rest = vec![0u8; n - 8];
    s.read_exact(&mut rest).expect("frame body");
    if let Some(d) = dec {
        d.decrypt(&mut rest);
    }
    let mut buf = BytesMut::from(&len[..]);
    buf.extend_from_slice(&rest);
    frame::decode(&mut buf, 1 << 20)
        .expect("a valid frame")
        .expect("a whole frame")
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
