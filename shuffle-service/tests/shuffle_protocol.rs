//! Protocol-level tests of the `croupier-shuffle-service` binary, driven by the testkit's Rust
//! client and by raw sockets for malformed input.

mod shuffle_support;

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use croupier_shuffle_service::protocol::{BlockTransferMessage as M, ExecutorShuffleInfo, Message};
use croupier_testkit::shuffle::layout::ExecutorDirs;
use croupier_testkit::shuffle::{cause, Client, ClientError};
use shuffle_support::Ess;

const APP: &str = "app-20261123191828-0000";

fn server_msg(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(e) => match e.server_message() {
            Some(m) => m.to_string(),
            None => panic!("expected a failure frame, got {e}"),
        },
        Ok(v) => panic!("expected a failure, got {v:?}"),
    }
}

async fn registered(
    ess: &Ess,
    root: &std::path::Path,
    app: &str,
    exec: &str,
) -> (Client, ExecutorDirs) {
    let dirs = ExecutorDirs::create(root, &format!("{app}-{exec}"), 2);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(app, exec, dirs.info.clone())
        .await
        .unwrap();
    (c, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_paths_match_spark_semantics() {
    let ess = Ess::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    dirs.write_map_output(0, 5, &[b"0123456789", b"", b"abcdefghijklmnopqrst"]);
    dirs.write_map_output(0, 12345678901, &[b"x", b"yy", b"zzz"]);

    // New protocol, one block per chunk, maps grouped in request order.
    let got = c
        .fetch_blocks(
            APP,
            "0",
            &[
                "shuffle_0_5_0",
                "shuffle_0_12345678901_2",
                "shuffle_0_5_1",
                "shuffle_0_5_2",
            ],
        )
        .await
        .unwrap();
    let got: Vec<(String, Bytes)> = got.into_iter().map(|(id, r)| (id, r.unwrap())).collect();
    assert_eq!(
        got,
        vec![
            ("shuffle_0_5_0".into(), Bytes::from_static(b"0123456789")),
            ("shuffle_0_5_1".into(), Bytes::new()),
            (
                "shuffle_0_5_2".into(),
                Bytes::from_static(b"abcdefghijklmnopqrst")
            ),
            ("shuffle_0_12345678901_2".into(), Bytes::from_static(b"zzz")),
        ]
    );

    // Batch: one chunk per map covering [start, end).
    let h = c
        .fetch_shuffle_blocks(
            APP,
            "0",
            0,
            &[5, 12345678901],
            &[vec![0, 3], vec![1, 3]],
            true,
        )
        .await
        .unwrap();
    assert_eq!(h.num_chunks, 2);
    let chunks: Vec<Bytes> = c
        .fetch_all_chunks(h)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        chunks,
        vec![
            Bytes::from_static(b"0123456789abcdefghijklmnopqrst"),
            Bytes::from_static(b"yyzzz")
        ]
    );

    // Old protocol (OpenBlocks).
    let h = c
        .open_blocks(APP, "0", &["shuffle_0_5_2", "shuffle_0_5_0"])
        .await
        .unwrap();
    assert_eq!(h.num_chunks, 2);
    assert_eq!(
        c.fetch_chunk(h.stream_id, 0).await.unwrap(),
        Bytes::from_static(b"abcdefghijklmnopqrst")
    );
    assert_eq!(
        c.fetch_chunk(h.stream_id, 1).await.unwrap(),
        Bytes::from_static(b"0123456789")
    );
    // The stream is gone after its last chunk.
    let m = server_msg(c.fetch_chunk(h.stream_id, 2).await);
    assert!(m.contains("is closed"), "{m}");

    // StreamRequest path (fetch to disk), including an empty partition.
    let h = c
        .fetch_shuffle_blocks(APP, "0", 0, &[5], &[vec![0, 1, 2]], false)
        .await
        .unwrap();
    assert_eq!(
        c.stream_chunk(h.stream_id, 0).await.unwrap(),
        Bytes::from_static(b"0123456789")
    );
    assert_eq!(c.stream_chunk(h.stream_id, 1).await.unwrap(), Bytes::new());
    // Out of order is refused, in order still works.
    let m = server_msg(c.fetch_chunk(h.stream_id, 0).await);
    assert!(m.contains("out-of-order chunk index 0 (expected 2)"), "{m}");
    assert_eq!(
        c.stream_chunk(h.stream_id, 2).await.unwrap(),
        Bytes::from_static(b"abcdefghijklmnopqrst")
    );
    let m = server_msg(c.stream_request("nonsense").await);
    assert!(m.contains("malformed stream id"), "{m}");

    // Host-local dirs: exactly what was registered.
    let dirs_by_exec = c.get_local_dirs(APP, &["0"]).await.unwrap();
    assert_eq!(dirs_by_exec["0"], dirs.info.local_dirs);
    let m = server_msg(c.get_local_dirs(APP, &["0", "9"]).await);
    assert!(
        m.contains("Executor is not registered (appId=app-20261123191828-0000, execId=9)"),
        "{m}"
    );

    // RemoveBlocks: only valid names are deleted.
    let data = dirs.path("shuffle_0_12345678901_0.data");
    let index = dirs.path("shuffle_0_12345678901_0.index");
    assert!(data.exists() && index.exists());
    let n = c
        .remove_blocks(
            APP,
            "0",
            &[
                "shuffle_0_12345678901_0.index",
                "shuffle_0_12345678901_0.data",
                "../../etc/passwd",
                "rdd_9_9",
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(!data.exists() && !index.exists());
    // The removed index is no longer served from the cache.
    let got = c
        .fetch_blocks(APP, "0", &["shuffle_0_12345678901_1"])
        .await
        .unwrap();
    let m = server_msg(got.into_iter().next().unwrap().1);
    assert!(
        m.contains(&format!("Failed to open file: {}", index.display())),
        "{m}"
    );
    let m = server_msg(c.remove_blocks(APP, "nobody", &["rdd_1_1"]).await);
    assert!(m.contains("Executor is not registered"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdd_blocks_follow_the_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let off = Ess::start(&[]);
    let (c, dirs) = registered(&off, tmp.path(), "app-rdd", "1").await;
    dirs.write_file("rdd_3_7", b"cached partition");
    let m = server_msg(c.open_blocks("app-rdd", "1", &["rdd_3_7"]).await);
    assert!(m.contains("spark.shuffle.service.fetch.rdd.enabled"), "{m}");

    let on = Ess::start(&[("spark.shuffle.service.fetch.rdd.enabled", "true")]);
    let c = Client::connect(on.addr).await.unwrap();
    c.register_executor("app-rdd", "1", dirs.info.clone())
        .await
        .unwrap();
    let got = c
        .fetch_blocks("app-rdd", "1", &["rdd_3_7", "rdd_3_8"])
        .await
        .unwrap();
    assert_eq!(
        got[0].1.as_ref().unwrap(),
        &Bytes::from_static(b"cached partition")
    );
    let m = server_msg(
        got[1]
            .1
            .as_ref()
            .map(|b| b.len())
            .map_err(|e| ClientError::Rpc {
                peer: on.addr,
                error: e.to_string(),
            }),
    );
    assert!(m.contains("rdd_3_8") && m.contains("does not exist"), "{m}");
    assert_eq!(
        c.remove_blocks("app-rdd", "1", &["rdd_3_7"]).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_corruption_causes() {
    let ess = Ess::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    let parts: [&[u8]; 2] = [b"Wikipedia", b"second"];
    dirs.write_map_output(1, 2, &parts);
    let adler = |d: &[u8]| {
        let (a, b) = croupier_shuffle_service::checksum::adler32(d, 1, 0);
        ((b << 16) | a) as i64
    };
    let sums: Vec<u8> = parts.iter().flat_map(|p| adler(p).to_be_bytes()).collect();
    dirs.write_file("shuffle_1_2_0.checksum.ADLER32", &sums);
    let good = adler(b"Wikipedia");
    assert_eq!(good, 0x11E6_0398);
    let d = |cs: i64, algo: &'static str| c.diagnose_corruption(APP, "0", 1, 2, 0, cs, algo);
    assert_eq!(
        d(good, "ADLER32").await.unwrap(),
        cause::CHECKSUM_VERIFY_PASS
    );
    assert_eq!(d(good + 1, "ADLER32").await.unwrap(), cause::NETWORK_ISSUE);
    assert_eq!(
        d(good, "MD5").await.unwrap(),
        cause::UNSUPPORTED_CHECKSUM_ALGORITHM
    );
    assert_eq!(
        d(good, "CRC32").await.unwrap(),
        cause::UNKNOWN_ISSUE,
        "no CRC32 checksum file"
    );
    // Flip a byte of the data on disk.
    let data = dirs.path("shuffle_1_2_0.data");
    let mut raw = std::fs::read(&data).unwrap();
    raw[0] ^= 1;
    std::fs::write(&data, raw).unwrap();
    assert_eq!(d(good, "ADLER32").await.unwrap(), cause::DISK_ISSUE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_and_unknown_messages_get_failures_and_keep_the_connection() {
    let ess = Ess::start(&[]);
    let c = Client::connect(ess.addr).await.unwrap();
    let s = |x: &str| x.to_string();
    let cases = vec![
        M::UploadBlock {
            app_id: s("a"),
            exec_id: s("1"),
            block_id: s("rdd_1_1"),
            metadata: Bytes::new(),
            block_data: Bytes::from_static(b"x"),
        },
        M::FinalizeShuffleMerge {
            app_id: s("a"),
            app_attempt_id: 1,
            shuffle_id: 0,
            shuffle_merge_id: 0,
        },
        M::FetchShuffleBlockChunks {
            app_id: s("a"),
            exec_id: s("1"),
            shuffle_id: 0,
            shuffle_merge_id: 0,
            reduce_ids: vec![0],
            chunk_ids: vec![vec![0]],
        },
        M::StreamHandle {
            stream_id: 1,
            num_chunks: 1,
        },
    ];
    for m in cases {
        let e = server_msg(c.rpc(&m).await);
        assert!(e.contains(m.name()), "{e}");
    }
    // A SASL handshake (0xEA) on a service without auth: a clean failure.
    let e = server_msg(
        c.rpc_raw(Bytes::from_static(&[0xEA, 0, 0, 0, 1, b'a']))
            .await,
    );
    assert!(e.contains("unknown BlockTransferMessage type 234"), "{e}");
    let e = server_msg(c.rpc_raw(Bytes::new()).await);
    assert!(e.contains("empty message body"), "{e}");
    let e = server_msg(c.rpc_raw(Bytes::from_static(&[2, 0, 0])).await);
    assert!(e.contains("malformed RegisterExecutor"), "{e}");
    let e = server_msg(c.get_local_dirs("a", &["shuffle-push-merger"]).await);
    assert!(e.contains("push-based shuffle"), "{e}");

    // UploadStream (push-based): failure, and its raw body bytes are consumed.
    let meta = M::PushBlockStream {
        app_id: s("a"),
        app_attempt_id: 1,
        shuffle_id: 0,
        shuffle_merge_id: 0,
        map_index: 0,
        reduce_id: 0,
        index: 0,
    }
    .to_bytes();
    let mut raw = Message::UploadStream {
        request_id: 77,
        meta,
        body_byte_count: 5000,
    }
    .to_bytes()
    .to_vec();
    raw.resize(raw.len() + 5000, 0xAB);
    c.send_raw(&raw).await.unwrap();
    match c.next_unmatched(Duration::from_secs(10)).await {
        Some(Message::RpcFailure {
            request_id: 77,
            error,
        }) => assert!(error.contains("PushBlockStream"), "{error}"),
        other => panic!("{other:?}"),
    }
    // MergedBlockMetaRequest.
    c.send_raw(
        &Message::MergedBlockMetaRequest {
            request_id: 78,
            app_id: s("a"),
            shuffle_id: 0,
            shuffle_merge_id: 0,
            reduce_id: 0,
        }
        .to_bytes(),
    )
    .await
    .unwrap();
    match c.next_unmatched(Duration::from_secs(10)).await {
        Some(Message::RpcFailure {
            request_id: 78,
            error,
        }) => assert!(error.contains("not supported"), "{error}"),
        other => panic!("{other:?}"),
    }
    // An unknown network message type in a well-formed frame.
    c.send_raw(&[0, 0, 0, 0, 0, 0, 0, 12, 42, 1, 2, 3])
        .await
        .unwrap();
    match c.next_unmatched(Duration::from_secs(10)).await {
        Some(Message::RpcFailure {
            request_id: 0,
            error,
        }) => assert!(error.contains("unknown network message type 42"), "{error}"),
        other => panic!("{other:?}"),
    }
    // The connection still works.
    c.register_driver("a", 60_000).await.unwrap();
    assert!(c.is_closed().is_none());
}

/// Reads whatever the server sends until it closes (bounded), over a raw socket.
fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

fn decode_all(mut raw: &[u8]) -> Vec<Message> {
    let mut b = bytes::BytesMut::from(raw);
    let mut v = Vec::new();
    while let Ok(Some(m)) = croupier_shuffle_service::protocol::frame::decode(&mut b, 1 << 30) {
        v.push(m);
    }
    raw = &[];
    let _ = raw;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_that_connection() {
    let ess = Ess::start(&[]);
    let bystander = Client::connect(ess.addr).await.unwrap();
    bystander
        .register_driver("bystander", 60_000)
        .await
        .unwrap();
    let addr = ess.addr;
    let valid = Message::RpcRequest {
        request_id: 5,
        body: M::RegisterDriver {
            app_id: "x".into(),
            heartbeat_timeout_ms: 1000,
        }
        .to_bytes(),
    }
    .to_bytes();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "absurd length",
            (1i64 << 40)
                .to_be_bytes()
                .iter()
                .chain(&[3u8; 20])
                .copied()
                .collect(),
            "out of range",
        ),
        (
            "negative length",
            (-5i64)
                .to_be_bytes()
                .iter()
                .chain(&[3u8; 20])
                .copied()
                .collect(),
            "out of range",
        ),
        (
            "length below the header",
            4i64.to_be_bytes().to_vec(),
            "out of range",
        ),
        (
            "over the request bound",
            ((64i64 << 20) + 100).to_be_bytes().to_vec(),
            "out of range",
        ),
        (
            "malformed header",
            vec![0, 0, 0, 0, 0, 0, 0, 13, 0, 1, 2, 3, 4],
            "malformed ChunkFetchRequest",
        ),
        (
            "garbage after a valid frame",
            valid.iter().chain(b"GARBAGE!!garbage").copied().collect(),
            "out of range",
        ),
    ];
    for (name, bytes, expect) in cases {
        let (out, closed) = tokio::task::spawn_blocking(move || raw_exchange(addr, &bytes))
            .await
            .unwrap();
        assert!(closed, "{name}: connection not closed");
        let msgs = decode_all(&out);
        let failure = msgs.iter().find_map(|m| match m {
            Message::RpcFailure { error, .. } => Some(error.clone()),
            _ => None,
        });
        let failure = failure.unwrap_or_else(|| panic!("{name}: no failure frame in {msgs:?}"));
        assert!(failure.contains(expect), "{name}: {failure}");
        if name.starts_with("garbage") {
            assert!(
                matches!(
                    msgs.first(),
                    Some(Message::RpcResponse { request_id: 5, .. })
                ),
                "{name}: the valid frame is answered first: {msgs:?}"
            );
        }
    }
    // Truncated frame then EOF: nothing to answer, service unaffected.
    let mut truncated = valid.to_vec();
    truncated.truncate(valid.len() - 3);
    let (out, closed) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(&truncated).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        (out, r.is_ok())
    })
    .await
    .unwrap();
    assert!(closed && out.is_empty(), "{out:?}");
    assert!(
        ess.wait_log("truncated frame", Duration::from_secs(5))
            .is_some(),
        "{:?}",
        ess.log()
    );

    // Everyone else is still served, on the same old connection.
    bystander.heartbeat("bystander").await.unwrap();
    bystander
        .register_driver("bystander", 60_000)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_and_dirs_are_refused_with_reasons() {
    let ess = Ess::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let c = Client::connect(ess.addr).await.unwrap();
    let good = ExecutorDirs::create(tmp.path(), "good", 1).info;
    for (app, exec, why) in [
        ("app/evil", "0", "contains '/'"),
        ("..", "0", "contains '..'"),
        ("app\0x", "0", "contains NUL"),
        (APP, "0/../1", "contains '/'"),
        (APP, "..", "contains '..'"),
        (APP, "0\0", "contains NUL"),
        ("", "0", "empty"),
    ] {
        let m = server_msg(c.register_executor(app, exec, good.clone()).await);
        assert!(m.contains(why), "{app:?}/{exec:?}: {m}");
        let m = server_msg(c.open_blocks(app, exec, &["shuffle_0_0_0"]).await);
        assert!(m.contains(why), "{m}");
        let m = server_msg(
            c.fetch_shuffle_blocks(app, exec, 0, &[0], &[vec![0]], false)
                .await,
        );
        assert!(m.contains(why), "{m}");
        if exec == "0" {
            // The appId is the bad part: RegisterDriver refuses it too.
            let m = server_msg(c.register_driver(app, 1000).await);
            assert!(m.contains(why), "{m}");
        }
    }
    for (dir, why) in [
        ("relative/blockmgr", "not an absolute path"),
        ("/tmp/../etc", "contains '..'"),
        ("/", "filesystem root"),
    ] {
        let info = ExecutorShuffleInfo {
            local_dirs: vec![dir.into()],
            ..good.clone()
        };
        let m = server_msg(c.register_executor(APP, "0", info).await);
        assert!(m.contains(why) && m.contains(dir), "{dir}: {m}");
    }
    let m = server_msg(
        c.register_executor(
            APP,
            "0",
            ExecutorShuffleInfo {
                local_dirs: vec![],
                ..good.clone()
            },
        )
        .await,
    );
    assert!(m.contains("no local dirs"), "{m}");
    let m = server_msg(
        c.register_executor(
            APP,
            "0",
            ExecutorShuffleInfo {
                sub_dirs_per_local_dir: 0,
                ..good.clone()
            },
        )
        .await,
    );
    assert!(m.contains("subDirsPerLocalDir"), "{m}");

    // Unparsable block ids.
    c.register_executor(APP, "0", good.clone()).await.unwrap();
    for ids in [
        vec!["shuffle_0_../../etc_0"],
        vec!["broadcast_1"],
        vec!["shuffle_0_1_2", "shuffle_1_1_2"],
        vec!["shuffle_0_1_2", "rdd_1_1"],
        vec!["shuffle_0_1_-2"],
        vec!["shuffle_0_1_0_3"],
        vec![],
    ] {
        let r = c.open_blocks(APP, "0", &ids).await;
        let m = server_msg(r);
        assert!(m.contains("OpenBlocks"), "{ids:?}: {m}");
    }
    for (maps, reduces, batch) in [
        (vec![1i64, 2], vec![vec![0]], false),
        (vec![-1], vec![vec![0]], false),
        (vec![1], vec![vec![-3]], false),
        (vec![1], vec![vec![]], false),
        (vec![1], vec![vec![3, 1]], true),
        (vec![1], vec![vec![0]], true),
        (vec![], vec![], false),
    ] {
        let m = server_msg(
            c.fetch_shuffle_blocks(APP, "0", 0, &maps, &reduces, batch)
                .await,
        );
        assert!(
            m.contains("FetchShuffleBlocks"),
            "{maps:?} {reduces:?}: {m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_apps_files_are_never_served() {
    let ess = Ess::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (c, a_dirs) = registered(&ess, tmp.path(), "app-a", "0").await;
    a_dirs.write_map_output(0, 1, &[b"secret of app a"]);
    // Same execId, other app, not registered: fails at chunk time, like Spark.
    let got = c
        .fetch_blocks("app-b", "0", &["shuffle_0_1_0"])
        .await
        .unwrap();
    let m = server_msg(got.into_iter().next().unwrap().1);
    assert!(
        m.contains("Executor is not registered (appId=app-b, execId=0)"),
        "{m}"
    );
    // Registered with its own dirs: it only ever sees its own (missing) files.
    let b_dirs = ExecutorDirs::create(tmp.path(), "b", 2);
    c.register_executor("app-b", "0", b_dirs.info.clone())
        .await
        .unwrap();
    let got = c
        .fetch_blocks("app-b", "0", &["shuffle_0_1_0"])
        .await
        .unwrap();
    let m = server_msg(got.into_iter().next().unwrap().1);
    let b_index = b_dirs.path("shuffle_0_1_0.index");
    assert!(
        m.contains("Failed to open file") && m.contains(&b_index.display().to_string()),
        "{m}"
    );
    // App a still gets its data.
    let got = c
        .fetch_blocks("app-a", "0", &["shuffle_0_1_0"])
        .await
        .unwrap();
    assert_eq!(
        got[0].1.as_ref().unwrap(),
        &Bytes::from_static(b"secret of app a")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_index_and_data_files_fail_the_chunk_not_the_service() {
    let ess = Ess::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    // Short index (12 bytes).
    dirs.write_file("shuffle_0_1_0.index", &[0u8; 12]);
    dirs.write_file("shuffle_0_1_0.data", b"abc");
    // Non-monotonic.
    dirs.write_index(0, 2, &[0, 10, 5]);
    dirs.write_file("shuffle_0_2_0.data", &[1u8; 10]);
    // Points past EOF of the data file.
    dirs.write_index(0, 3, &[0, 10, 1000]);
    dirs.write_file("shuffle_0_3_0.data", &[1u8; 10]);
    // Data file missing.
    let (data4, _) = dirs.write_map_output(0, 4, &[b"four"]);
    std::fs::remove_file(&data4).unwrap();
    // A good one.
    dirs.write_map_output(0, 5, &[b"fine"]);

    let expect = [
        ("shuffle_0_1_0", "is 12 bytes"),
        ("shuffle_0_2_0", "not monotonic"),
        ("shuffle_0_3_1", "points past the end of data file"),
        ("shuffle_0_3_2", "outside index file"),
        ("shuffle_0_4_0", "Failed to open data file"),
    ];
    for (id, why) in expect {
        let got = c.fetch_blocks(APP, "0", &[id]).await.unwrap();
        let m = server_msg(got.into_iter().next().unwrap().1);
        assert!(m.contains(why), "{id}: {m}");
    }
    // Mixed in one stream: the good chunk is served, the bad one fails, connection stays.
    let got = c
        .fetch_blocks(APP, "0", &["shuffle_0_5_0", "shuffle_0_2_0"])
        .await
        .unwrap();
    assert_eq!(got[0].1.as_ref().unwrap(), &Bytes::from_static(b"fine"));
    assert!(got[1].1.is_err());
    assert!(c.is_closed().is_none());
}

/// Opens a stream of one big chunk and requests it over a raw socket, reading only the header.
async fn stalled_big_chunk(
    ess: &Ess,
    dirs: &ExecutorDirs,
    map: i64,
    size: usize,
) -> std::net::TcpStream {
    let big = vec![7u8; size];
    dirs.write_map_output(9, map, &[&big]);
    let c = Client::connect(ess.addr).await.unwrap();
    let h = c
        .fetch_shuffle_blocks(APP, "0", 9, &[map], &[vec![0]], false)
        .await
        .unwrap();
    drop(c); // the stream dies with this connection ...
    let addr = ess.addr;
    // ... so open it again on the raw connection.
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = M::FetchShuffleBlocks {
            app_id: APP.into(),
            exec_id: "0".into(),
            shuffle_id: 9,
            map_ids: vec![map],
            reduce_ids: vec![vec![0]],
            batch_fetch_enabled: false,
        }
        .to_bytes();
        s.write_all(
            &Message::RpcRequest {
                request_id: 1,
                body,
            }
            .to_bytes(),
        )
        .unwrap();
        let mut resp = [0u8; 34];
        s.read_exact(&mut resp).unwrap();
        let stream_id = i64::from_be_bytes(resp[22..30].try_into().unwrap());
        assert_ne!(stream_id, h.stream_id);
        let req = Message::ChunkFetchRequest(croupier_shuffle_service::protocol::StreamChunkId {
            stream_id,
            chunk_index: 0,
        });
        s.write_all(&req.to_bytes()).unwrap();
        let mut header = [0u8; 21];
        s.read_exact(&mut header).unwrap();
        assert_eq!(header[8], 1, "ChunkFetchSuccess");
        assert_eq!(
            i64::from_be_bytes(header[..8].try_into().unwrap()),
            21 + size as i64
        );
        s
    })
    .await
    .unwrap()
}

fn drain(mut s: std::net::TcpStream) -> usize {
    let mut n = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_file_changes_during_a_send() {
    // One server thread: a stalled or failing send must not hold up anyone else.
    let ess = Ess::start(&[("spark.shuffle.io.serverThreads", "1")]);
    let tmp = tempfile::tempdir().unwrap();
    let (c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    dirs.write_map_output(0, 1, &[b"other client data"]);
    const SIZE: usize = 48 << 20;

    // Deleted (unlinked) mid-send: the open descriptor keeps the bytes; the chunk completes.
    let s = stalled_big_chunk(&ess, &dirs, 100, SIZE).await;
    // Meanwhile, with the send stalled on a full socket, RPCs and fetches are served.
    c.register_driver("busy-app", 60_000).await.unwrap();
    let got = c.fetch_blocks(APP, "0", &["shuffle_0_1_0"]).await.unwrap();
    assert_eq!(
        got[0].1.as_ref().unwrap(),
        &Bytes::from_static(b"other client data")
    );
    std::fs::remove_file(dirs.path("shuffle_9_100_0.data")).unwrap();
    let n = tokio::task::spawn_blocking(move || drain(s)).await.unwrap();
    assert_eq!(n, SIZE, "unlinked file still sent whole");

    // Truncated mid-send: the promised length cannot be met, so that connection is closed.
    let s = stalled_big_chunk(&ess, &dirs, 101, SIZE).await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(dirs.path("shuffle_9_101_0.data"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let n = tokio::task::spawn_blocking(move || drain(s)).await.unwrap();
    assert!(n < SIZE, "got {n} of {SIZE}");
    let line = ess.wait_log("shuffle_9_101_0.data", Duration::from_secs(10));
    assert!(
        line.is_some_and(|l| l.contains("ended at byte")),
        "{:?}",
        ess.log()
    );
    // Others are still served.
    let got = c.fetch_blocks(APP, "0", &["shuffle_0_1_0"]).await.unwrap();
    assert_eq!(
        got[0].1.as_ref().unwrap(),
        &Bytes::from_static(b"other client data")
    );
}

/// Whether the service holds `name` open (its descriptor links, for a deleted file, end in
/// " (deleted)").
fn holds_open(pid: u32, name: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|t| t.to_string_lossy().contains(name))
}

/// A client that stops reading in the middle of a large chunk whose file is then deleted: at
/// spark.shuffle.io.connectionTimeout the connection is closed and the deleted file's last
/// descriptor released (its close frees the file's blocks, off the reactor), while the one
/// server thread keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_send_of_a_deleted_file_releases_it_at_the_timeout() {
    let ess = Ess::start(&[
        ("spark.shuffle.io.serverThreads", "1"),
        ("spark.shuffle.io.connectionTimeout", "2s"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let (c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    dirs.write_map_output(0, 1, &[b"other client data"]);
    let s = stalled_big_chunk(&ess, &dirs, 102, 48 << 20).await;
    std::fs::remove_file(dirs.path("shuffle_9_102_0.data")).unwrap();
    assert!(
        holds_open(ess.pid(), "shuffle_9_102_0.data"),
        "the stalled send holds the deleted file"
    );
    let line = ess.wait_log(
        "spark.shuffle.io.connectionTimeout",
        Duration::from_secs(20),
    );
    assert!(line.is_some(), "{:?}", ess.log());
    // The data-file table lets go of it within its 2 s reuse limit, the send at the timeout.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while holds_open(ess.pid(), "shuffle_9_102_0.data") {
        assert!(
            std::time::Instant::now() < deadline,
            "deleted data file still open: {:?}",
            ess.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = c.fetch_blocks(APP, "0", &["shuffle_0_1_0"]).await.unwrap();
    assert_eq!(
        got[0].1.as_ref().unwrap(),
        &Bytes::from_static(b"other client data")
    );
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_in_flight_cap_closes_the_connection() {
    let ess = Ess::start(&[("spark.shuffle.maxChunksBeingTransferred", "1")]);
    let tmp = tempfile::tempdir().unwrap();
    let (c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    let big = vec![1u8; 16 << 20];
    dirs.write_map_output(0, 1, &[&big, &big]);
    let addr = ess.addr;
    let n = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = M::FetchShuffleBlocks {
            app_id: APP.into(),
            exec_id: "0".into(),
            shuffle_id: 0,
            map_ids: vec![1],
            reduce_ids: vec![vec![0, 1]],
            batch_fetch_enabled: false,
        }
        .to_bytes();
        s.write_all(
            &Message::RpcRequest {
                request_id: 1,
                body,
            }
            .to_bytes(),
        )
        .unwrap();
        let mut resp = [0u8; 34];
        s.read_exact(&mut resp).unwrap();
        let stream_id = i64::from_be_bytes(resp[22..30].try_into().unwrap());
        let mut reqs = Vec::new();
        for i in 0..2 {
            let m = Message::ChunkFetchRequest(croupier_shuffle_service::protocol::StreamChunkId {
                stream_id,
                chunk_index: i,
            });
            reqs.extend_from_slice(&m.to_bytes());
        }
        s.write_all(&reqs).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drain(s)
    })
    .await
    .unwrap();
    assert!(
        n < 2 * (16 << 20) + 42,
        "connection closed before the second chunk: got {n}"
    );
    assert!(
        ess.wait_log("maxChunksBeingTransferred=1", Duration::from_secs(5))
            .is_some(),
        "{:?}",
        ess.log()
    );
    // The service goes on.
    let got = c.fetch_blocks(APP, "0", &["shuffle_0_1_1"]).await.unwrap();
    assert_eq!(got[0].1.as_ref().unwrap().len(), 16 << 20);
}

/// Drops `path`'s pages from the page cache (written back first), as memory pressure would.
fn evict(path: &std::path::Path) {
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    let dontneed = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED;
    nix::fcntl::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, dontneed).unwrap();
}

/// Small chunks whose files are open and whose data is in the page cache are sent from the
/// reactor (croupier_shuffle_reactor_sends); a chunk whose data is not is given to a blocking
/// thread (croupier_shuffle_reactor_give_backs), which reads it from the disk. Either way every
/// chunk arrives whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_chunks_in_memory_go_from_the_reactor_the_rest_from_the_disk_in_order() {
    let ess = Ess::start(&[("croupier.admin.address", "127.0.0.1:0")]);
    // In the build's file system, not a tmpfs /tmp (tmpfs pages cannot be evicted).
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    let block = |m: i64, r: usize| -> Vec<u8> {
        (0..1000 + 300 * r + 7 * m as usize)
            .map(|i| (i as i64 * 31 + m * 7 + r as i64) as u8)
            .collect()
    };
    let mut data_files = Vec::new();
    for m in 0..8 {
        let parts: Vec<Vec<u8>> = (0..4).map(|r| block(m, r)).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let data = dirs.write_map_output(0, m, &refs).0;
        // Written back now: evicting one later is then quick (the three fetches must fall
        // within the 2 s the service reuses an open data file).
        std::fs::File::open(&data).unwrap().sync_all().unwrap();
        data_files.push(data);
    }
    let ids: Vec<String> = (0..8)
        .flat_map(|m| (0..4).map(move |r| format!("shuffle_0_{m}_{r}")))
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let check = |got: Vec<(String, Result<Bytes, ClientError>)>| {
        assert_eq!(got.len(), 32);
        for (i, (id, b)) in got.into_iter().enumerate() {
            let (m, r) = (i as i64 / 4, i % 4);
            assert_eq!(id, format!("shuffle_0_{m}_{r}"));
            assert!(b.unwrap() == block(m, r), "{id}: wrong bytes");
        }
    };
    let sends = "croupier_shuffle_reactor_sends_total";
    let give_backs = "croupier_shuffle_reactor_give_backs_total";
    // The first fetch opens the files (a blocking thread); the next, within 2 s, finds them
    // open and their data in the page cache.
    check(c.fetch_blocks(APP, "0", &ids).await.unwrap());
    let before = ess.metric(sends);
    check(c.fetch_blocks(APP, "0", &ids).await.unwrap());
    assert!(ess.metric(sends) > before, "no burst from the reactor");
    assert_eq!(
        ess.metric(give_backs),
        0.0,
        "all of it was in the page cache"
    );
    // Map output 3's data leaves the page cache: its first chunk is given back. (A data file
    // opened more than 2 s before sends its burst to a blocking thread, which takes the
    // evicted chunk too without giving anything back: on a loaded machine the three fetches
    // can span that, so the files are opened afresh and the eviction repeated, a few times.)
    for _ in 0..5 {
        evict(&data_files[3]);
        check(c.fetch_blocks(APP, "0", &ids).await.unwrap());
        if ess.metric(give_backs) >= 1.0 {
            break;
        }
        check(c.fetch_blocks(APP, "0", &ids).await.unwrap());
    }
    assert!(
        ess.metric(give_backs) >= 1.0,
        "map output 3 was evicted, yet nothing was given to a blocking thread"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_die_with_their_connection() {
    let ess = Ess::start(&[("croupier.admin.address", "127.0.0.1:0")]);
    let tmp = tempfile::tempdir().unwrap();
    let (c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    dirs.write_map_output(0, 1, &[b"a", b"b"]);
    let h = c
        .fetch_shuffle_blocks(APP, "0", 0, &[1], &[vec![0, 1]], false)
        .await
        .unwrap();
    assert_eq!(
        c.fetch_chunk(h.stream_id, 0).await.unwrap(),
        Bytes::from_static(b"a")
    );
    drop(c);
    let other = Client::connect(ess.addr).await.unwrap();
    // The server notices the close asynchronously: wait until it has closed the stream.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while ess.metric("croupier_shuffle_open_streams") != 0.0 {
        assert!(
            std::time::Instant::now() < until,
            "the stream is still open 20 s after its connection closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = server_msg(other.fetch_chunk(h.stream_id, 1).await);
    assert!(last.contains("is closed"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_cleaner_removes_only_silent_apps() {
    // Spark's heartbeat-only rule (no Mesos agent is asked).
    let ess = Ess::start(&[
        ("spark.shuffle.cleaner.interval", "200ms"),
        ("croupier.mesos.agent.address", "none"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    // dead: registers, one heartbeat, then silence (connection kept open and idle).
    let (dead_c, dead) = registered(&ess, tmp.path(), "app-dead", "0").await;
    dead.write_map_output(0, 0, &[b"x"]);
    dead_c.register_driver("app-dead", 1000).await.unwrap();
    dead_c.heartbeat("app-dead").await.unwrap();
    // live: heartbeats every 200 ms on its one connection (timeout 5 s: a loaded machine
    // stalling the test for a second must not make it look silent).
    let (live_c, live) = registered(&ess, tmp.path(), "app-live", "0").await;
    live.write_map_output(0, 0, &[b"y"]);
    live_c.register_driver("app-live", 5000).await.unwrap();
    // closed: long timeout, closes its TCP connection right away: must NOT be cleaned.
    let (closed_c, closed) = registered(&ess, tmp.path(), "app-closed", "0").await;
    closed_c
        .register_driver("app-closed", 60_000)
        .await
        .unwrap();
    drop(closed_c);
    // orphan: executors only, no driver: never cleaned.
    let (_orphan_c, orphan) = registered(&ess, tmp.path(), "app-orphan", "0").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while dead
        .info
        .local_dirs
        .iter()
        .any(|d| std::path::Path::new(d).exists())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "app-dead not cleaned: {:?}",
            ess.log()
        );
        live_c.heartbeat("app-live").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more cleaner rounds with the live app heartbeating.
    for _ in 0..10 {
        live_c.heartbeat("app-live").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ess
        .log()
        .iter()
        .any(|l| l.contains("Application app-dead timed out. Removing shuffle files.")));
    for (name, d) in [("live", &live), ("closed", &closed), ("orphan", &orphan)] {
        for dir in &d.info.local_dirs {
            assert!(
                std::path::Path::new(dir).exists(),
                "{name}: {dir} removed; log: {:?}",
                ess.log()
            );
        }
    }
    // Idle connections are not closed: the dead app's idle connection still answers.
    assert!(dead_c.is_closed().is_none());
    dead_c.register_driver("app-dead", 1000).await.unwrap();
    // Fetching from the cleaned app now fails cleanly.
    let got = live_c
        .fetch_blocks("app-dead", "0", &["shuffle_0_0_0"])
        .await
        .unwrap();
    let m = server_msg(got.into_iter().next().unwrap().1);
    assert!(
        m.contains("Executor is not registered (appId=app-dead"),
        "{m}"
    );
    // Heartbeats for unknown apps are logged, not answered.
    live_c.heartbeat("app-unknown").await.unwrap();
    assert!(ess
        .wait_log("unknown app app-unknown", Duration::from_secs(5))
        .is_some());
}

#[test]
fn cli_and_environment_configuration() {
    // Port from SPARK_SHUFFLE_OPTS, settings from a properties file, --conf wins over both.
    let port = croupier_testkit::ports::loopback_port();
    let tmp = tempfile::tempdir().unwrap();
    let props = tmp.path().join("spark-defaults.conf");
    std::fs::write(&props, "spark.shuffle.cleaner.interval  7s\nspark.shuffle.service.port 1\nspark.made.up.key true\n").unwrap();
    let args = vec![
        "--host".to_string(),
        "127.0.0.1".into(),
        "--properties-file".into(),
        props.display().to_string(),
        "--conf".into(),
        "spark.shuffle.service.index.cache.size=1m".into(),
    ];
    let opts = format!(
        "-Xmx1g -Dspark.shuffle.service.port={port} -Dspark.shuffle.service.db.enabled=false"
    );
    let mut ess = Ess::start_with(&args, &[("SPARK_SHUFFLE_OPTS", &opts)]);
    assert_eq!(ess.addr.port(), port);
    let conf = ess
        .wait_log("configuration", Duration::from_secs(5))
        .unwrap();
    assert!(
        conf.contains("cleaner_interval_ms=7000") && conf.contains("index_cache_size=1048576"),
        "{conf}"
    );
    assert!(ess
        .wait_log("unknown setting spark.made.up.key", Duration::from_secs(5))
        .is_some());
    assert!(
        ess.log().iter().all(|l| !l.contains('\u{1b}')),
        "no ANSI colours when stderr is a pipe"
    );
    let st = ess.stop().unwrap();
    assert!(st.success(), "SIGTERM exits 0: {st:?}");

    // Bad values fail start-up naming the key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_croupier-shuffle-service"))
        .args([
            "--port",
            "0",
            "--conf",
            "spark.shuffle.cleaner.interval=often",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spark.shuffle.cleaner.interval"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_chunks_across_files_and_streams_arrive_in_order() {
    // The writer sends queued chunks in bursts on one blocking job that keeps a data file open
    // across consecutive chunks of the same map output: interleave maps, a broken file, two
    // streams and RPCs on one connection, all pipelined, and check every byte and answer.
    let ess = Ess::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    let block = |m: i64, r: i32| format!("map {m} reduce {r} ").repeat(1 + r as usize * 100);
    for m in [1i64, 2] {
        let parts: Vec<String> = (0..4).map(|r| block(m, r)).collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        dirs.write_map_output(3, m, &refs);
    }
    let (data9, _) = dirs.write_map_output(3, 9, &[b"gone"]);
    std::fs::remove_file(&data9).unwrap();
    let ids_a = [
        "shuffle_3_1_0",
        "shuffle_3_1_1",
        "shuffle_3_2_0",
        "shuffle_3_9_0",
        "shuffle_3_1_2",
        "shuffle_3_1_3",
        "shuffle_3_2_3",
        "shuffle_3_2_1",
    ];
    let ids_b = ["shuffle_3_2_2", "shuffle_3_1_3", "shuffle_3_2_2"];
    let ha = c.open_blocks(APP, "0", &ids_a).await.unwrap();
    let hb = c.open_blocks(APP, "0", &ids_b).await.unwrap();
    let (got_a, got_b, rpc) = tokio::join!(
        c.fetch_all_chunks(ha),
        c.fetch_all_chunks(hb),
        c.register_driver("pipelined-app", 60_000)
    );
    rpc.unwrap();
    for (ids, got) in [(&ids_a[..], got_a), (&ids_b[..], got_b)] {
        assert_eq!(got.len(), ids.len());
        for (id, r) in ids.iter().zip(got) {
            let parts: Vec<i64> = id.split('_').skip(2).map(|s| s.parse().unwrap()).collect();
            if parts[0] == 9 {
                let m = server_msg(r);
                assert!(m.contains("Failed to open data file"), "{id}: {m}");
            } else {
                let want = block(parts[0], parts[1] as i32);
                assert_eq!(r.unwrap(), Bytes::from(want), "{id}");
            }
        }
    }
    assert!(c.is_closed().is_none());
}

/// Small chunks are gathered into one send per burst, larger ones go by `sendfile`: a client
/// with a small receive buffer (32 KiB, for an 8.2 MB stream: more than the socket buffers take)
/// pipelines a stream mixing 4 KiB, 16 KiB (the largest gathered), just over 16 KiB, 20 KB,
/// empty and missing-file chunks, and reads nothing for a while, so the socket takes batches in
/// parts. Every answer must arrive once, in order, with the file's bytes or the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_chunks_through_a_full_socket_arrive_whole_and_in_order() {
    use bytes::BytesMut;
    use croupier_shuffle_service::protocol::{frame, StreamChunkId};
    let ess = Ess::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (_c, dirs) = registered(&ess, tmp.path(), APP, "0").await;
    let small = croupier_shuffle_service::send::SMALL_CHUNK as usize;
    assert_eq!(
        small, 16_384,
        "the sizes below straddle the gathering limit"
    );
    let sizes = [4096usize, small, small + 1, 20_000, 0, 100];
    let block = |m: i64, r: usize| -> Vec<u8> {
        (0..sizes[r])
            .map(|i| (i as u8).wrapping_mul(31) ^ (m as u8) ^ ((r as u8) << 4))
            .collect()
    };
    for m in 1..=3i64 {
        let parts: Vec<Vec<u8>> = (0..sizes.len()).map(|r| block(m, r)).collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        dirs.write_map_output(4, m, &refs);
    }
    let (gone, _) = dirs.write_map_output(4, 9, &[b"gone"]);
    std::fs::remove_file(&gone).unwrap();
    let mut ids = Vec::new();
    for round in 0..48 {
        for m in 1..=3i64 {
            for r in 0..sizes.len() {
                ids.push((m, r));
            }
            if m == 2 && round % 4 != 1 {
                ids.push((9, 0));
            }
        }
    }
    let names: Vec<String> = ids
        .iter()
        .map(|(m, r)| format!("shuffle_4_{m}_{r}"))
        .collect();
    let addr = ess.addr;
    let expect: Vec<Option<Vec<u8>>> = ids
        .iter()
        .map(|&(m, r)| (m != 9).then(|| block(m, r)))
        .collect();
    tokio::task::spawn_blocking(move || {
        use nix::sys::socket::{setsockopt, sockopt};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        setsockopt(&s, sockopt::RcvBuf, &32_768).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = BytesMut::new();
        let mut recv = |s: &mut std::net::TcpStream| loop {
            if let Some(m) = frame::decode(&mut buf, 1 << 30).unwrap() {
                return m;
            }
            let mut b = [0u8; 16_384];
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "connection closed before a whole frame");
            buf.extend_from_slice(&b[..n]);
        };
        let open = M::OpenBlocks {
            app_id: APP.into(),
            exec_id: "0".into(),
            block_ids: names,
        };
        let req = Message::RpcRequest {
            request_id: 1,
            body: open.to_bytes(),
        };
        s.write_all(&req.to_bytes()).unwrap();
        let stream_id = match recv(&mut s) {
            Message::RpcResponse { body, .. } => match M::decode(&body).unwrap() {
                M::StreamHandle { stream_id, .. } => stream_id,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        for i in 0..expect.len() {
            let id = StreamChunkId {
                stream_id,
                chunk_index: i as i32,
            };
            s.write_all(&Message::ChunkFetchRequest(id).to_bytes())
                .unwrap();
        }
        // Read nothing for a while: the server's socket fills in the middle of a batch.
        std::thread::sleep(Duration::from_millis(300));
        for (i, want) in expect.iter().enumerate() {
            match (recv(&mut s), want) {
                (Message::ChunkFetchSuccess { id, body }, Some(want)) => {
                    assert_eq!(id.chunk_index, i as i32);
                    assert!(body.as_ref() == want.as_slice(), "chunk {i}: wrong bytes");
                }
                (Message::ChunkFetchFailure { id, error }, None) => {
                    assert_eq!(id.chunk_index, i as i32);
                    assert!(error.contains("Failed to open data file"), "{error}");
                }
                (other, _) => panic!("chunk {i}: {other:?}"),
            }
        }
        // Nothing more was sent: the answer to a new RPC is the very next frame (bytes left
        // over, or a duplicated or stray chunk still in flight, would come first).
        let again = Message::RpcRequest {
            request_id: 2,
            body: M::OpenBlocks {
                app_id: APP.into(),
                exec_id: "0".into(),
                block_ids: vec!["shuffle_4_1_0".into()],
            }
            .to_bytes(),
        };
        s.write_all(&again.to_bytes()).unwrap();
        match recv(&mut s) {
            Message::RpcResponse { request_id: 2, .. } => {}
            other => panic!("expected the answer to RPC 2 next, got {other:?}"),
        }
    })
    .await
    .unwrap();
}
