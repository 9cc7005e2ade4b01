//! Codec round trips and exact byte layouts.

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{self, chunk_success_header, FrameError, Message, StreamChunkId};
use super::message::{BlockTransferMessage as M, ExecutorShuffleInfo, MessageError};
use super::wire::{roaring_serialized_size, DecodeError};

const MAX: u64 = 64 << 20;

fn round_trip(m: &Message) -> Bytes {
    let b = m.to_bytes();
    assert_eq!(b.len(), m.frame_len(), "{m:?}");
    assert_eq!(
        i64::from_be_bytes(b[..8].try_into().unwrap()) as usize,
        b.len()
    );
    let mut buf = BytesMut::from(&b[..]);
    // Byte-at-a-time feeding: never a partial decode.
    let mut partial = BytesMut::new();
    for (i, byte) in b.iter().enumerate() {
        partial.extend_from_slice(&[*byte]);
        let r = frame::decode(&mut partial, MAX).unwrap();
        if i + 1 < b.len() {
            assert!(r.is_none());
        } else {
            assert_eq!(r.as_ref(), Some(m));
        }
    }
    assert_eq!(frame::decode(&mut buf, MAX).unwrap().as_ref(), Some(m));
    assert!(buf.is_empty());
    b
}

fn id() -> StreamChunkId {
    StreamChunkId {
        stream_id: 490515674008,
        chunk_index: 3,
    }
}

#[test]
fn every_frame_type_round_trips() {
    let all = vec![
        Message::ChunkFetchRequest(id()),
        Message::ChunkFetchSuccess {
            id: id(),
            body: Bytes::from_static(b"0123456789"),
        },
        Message::ChunkFetchSuccess {
            id: id(),
            body: Bytes::new(),
        },
        Message::ChunkFetchFailure {
            id: id(),
            error: "boom ü".into(),
        },
        Message::RpcRequest {
            request_id: 42,
            body: Bytes::from_static(&[2, 0, 0]),
        },
        Message::RpcResponse {
            request_id: -7,
            body: Bytes::new(),
        },
        Message::RpcFailure {
            request_id: i64::MAX,
            error: "nope".into(),
        },
        Message::StreamRequest {
            stream_id: "490515674008_0".into(),
        },
        Message::StreamResponse {
            stream_id: "1_2".into(),
            byte_count: 30,
        },
        Message::StreamFailure {
            stream_id: "1_2".into(),
            error: "gone".into(),
        },
        Message::OneWayMessage {
            body: Bytes::from_static(&[5, 0, 0, 0, 1, b'a']),
        },
        Message::UploadStream {
            request_id: 9,
            meta: Bytes::from_static(b"meta"),
            body_byte_count: 100,
        },
        Message::MergedBlockMetaRequest {
            request_id: 1,
            app_id: "app".into(),
            shuffle_id: 2,
            shuffle_merge_id: 3,
            reduce_id: 4,
        },
        Message::MergedBlockMetaSuccess {
            request_id: 1,
            num_chunks: 2,
            body: Bytes::from_static(b"bm"),
        },
    ];
    for m in &all {
        round_trip(m);
    }
}

#[test]
fn observed_frame_sizes() {
    // Empty RpcResponse: frameLen 21 = 8 + 1 + 8 + 4.
    let b = round_trip(&Message::RpcResponse {
        request_id: 1,
        body: Bytes::new(),
    });
    assert_eq!(b.len(), 21);
    // StreamHandle response: 34 = 21 + 13.
    let sh = M::StreamHandle {
        stream_id: 490515674008,
        num_chunks: 4,
    }
    .to_bytes();
    assert_eq!(sh.len(), 13);
    assert_eq!(
        Message::RpcResponse {
            request_id: 1,
            body: sh
        }
        .frame_len(),
        34
    );
    // ChunkFetchRequest: 21.
    assert_eq!(Message::ChunkFetchRequest(id()).frame_len(), 21);
    // ChunkFetchSuccess with 806 body bytes: 827; header written separately is identical.
    let body = Bytes::from(vec![7u8; 806]);
    let full = Message::ChunkFetchSuccess { id: id(), body }.to_bytes();
    assert_eq!(full.len(), 827);
    assert_eq!(&full[..21], &chunk_success_header(id(), 806)[..]);
    assert_eq!(chunk_success_header(id(), 0).len(), 21);
    // RegisterExecutor with one local dir "of about 128 chars" observed at 236 / 257 bytes:
    // 97 fixed bytes for that app id and manager, so the dir had 139 characters.
    let dir = format!("/{}", "d".repeat(138));
    let reg = M::RegisterExecutor {
        app_id: "app-20261123191828-0000".into(),
        exec_id: "0".into(),
        info: ExecutorShuffleInfo {
            local_dirs: vec![dir],
            sub_dirs_per_local_dir: 64,
            shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
        },
    }
    .to_bytes();
    assert_eq!(reg.len(), 236);
    assert_eq!(
        Message::RpcRequest {
            request_id: 1,
            body: reg
        }
        .frame_len(),
        257
    );
    // FetchShuffleBlocks, 4 maps x 1 reduce: 110 bytes with the observed app id.
    let fsb = M::FetchShuffleBlocks {
        app_id: "app-20261123191828-0000".into(),
        exec_id: "0".into(),
        shuffle_id: 0,
        map_ids: vec![0, 2, 4, 6],
        reduce_ids: vec![vec![1]; 4],
        batch_fetch_enabled: false,
    };
    assert_eq!(fsb.to_bytes().len(), 110);
}

#[test]
fn exact_bytes() {
    let b = Message::RpcFailure {
        request_id: 1,
        error: "ab".into(),
    }
    .to_bytes();
    assert_eq!(
        &b[..],
        &[0, 0, 0, 0, 0, 0, 0, 23, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, b'a', b'b']
    );
    let b = M::RegisterDriver {
        app_id: "a".into(),
        heartbeat_timeout_ms: 120000,
    }
    .to_bytes();
    assert_eq!(&b[..], &[4, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 1, 0xd4, 0xc0]);
    let b = M::ShuffleServiceHeartbeat { app_id: "a".into() }.to_bytes();
    assert_eq!(&b[..], &[5, 0, 0, 0, 1, b'a']);
    let b = Message::OneWayMessage { body: b.clone() }.to_bytes();
    assert_eq!(&b[..13], &[0, 0, 0, 0, 0, 0, 0, 19, 9, 0, 0, 0, 6]);
    let b = Message::StreamResponse {
        stream_id: "1_0".into(),
        byte_count: 5,
    }
    .to_bytes();
    assert_eq!(
        &b[..],
        &[0, 0, 0, 0, 0, 0, 0, 24, 7, 0, 0, 0, 3, b'1', b'_', b'0', 0, 0, 0, 0, 0, 0, 0, 5]
    );
    let b = M::FetchShuffleBlocks {
        app_id: "a".into(),
        exec_id: "0".into(),
        shuffle_id: 1,
        map_ids: vec![5],
        reduce_ids: vec![vec![0, 3]],
        batch_fetch_enabled: true,
    }
    .to_bytes();
    #[rustfmt::skip]
    let want: &[u8] = &[9, 0,0,0,1,b'a', 0,0,0,1,b'0', 0,0,0,1, 0,0,0,1, 0,0,0,0,0,0,0,5, 0,0,0,1, 0,0,0,2, 0,0,0,0, 0,0,0,3, 1];
    assert_eq!(&b[..], want);
}

fn bitmap_no_run(values: &[u16]) -> Vec<u8> {
    // Portable format, one array container, no run containers.
    let mut v = Vec::new();
    v.extend_from_slice(&12346u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&((values.len() - 1) as u16).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes()); // offset
    for x in values {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

fn bitmap_run(runs: &[(u16, u16)]) -> Vec<u8> {
    // Portable format with the run cookie, one run container.
    let mut v = Vec::new();
    v.extend_from_slice(&12347u32.to_le_bytes()); // (size-1)=0 in the high 16 bits
    v.push(1); // run bitmap: container 0 is a run container
    v.extend_from_slice(&0u16.to_le_bytes());
    let card: u32 = runs.iter().map(|r| r.1 as u32 + 1).sum();
    v.extend_from_slice(&((card - 1) as u16).to_le_bytes());
    v.extend_from_slice(&(runs.len() as u16).to_le_bytes());
    for (s, l) in runs {
        v.extend_from_slice(&s.to_le_bytes());
        v.extend_from_slice(&l.to_le_bytes());
    }
    v
}

#[test]
fn every_block_transfer_message_round_trips() {
    let info = ExecutorShuffleInfo {
        local_dirs: vec!["/tmp/a".into(), "/tmp/b".into()],
        sub_dirs_per_local_dir: 64,
        shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
    };
    let s = |x: &str| x.to_string();
    let all = vec![
        M::OpenBlocks {
            app_id: s("app"),
            exec_id: s("1"),
            block_ids: vec![s("shuffle_0_1_1"), s("shuffle_0_7_1")],
        },
        M::UploadBlock {
            app_id: s("a"),
            exec_id: s("e"),
            block_id: s("rdd_1_1"),
            metadata: Bytes::from_static(b"m"),
            block_data: Bytes::from_static(b"data"),
        },
        M::RegisterExecutor {
            app_id: s("app"),
            exec_id: s("0"),
            info,
        },
        M::StreamHandle {
            stream_id: 1 << 40,
            num_chunks: 4,
        },
        M::RegisterDriver {
            app_id: s("app"),
            heartbeat_timeout_ms: 120000,
        },
        M::ShuffleServiceHeartbeat { app_id: s("app") },
        M::UploadBlockStream {
            block_id: s("b"),
            metadata: Bytes::from_static(b"xyz"),
        },
        M::RemoveBlocks {
            app_id: s("a"),
            exec_id: s("e"),
            block_ids: vec![s("rdd_1_2")],
        },
        M::BlocksRemoved {
            num_removed_blocks: 3,
        },
        M::FetchShuffleBlocks {
            app_id: s("a"),
            exec_id: s("e"),
            shuffle_id: 1,
            map_ids: vec![14, 17, 19, 1 << 35],
            reduce_ids: vec![vec![0, 200]; 4],
            batch_fetch_enabled: true,
        },
        M::FetchShuffleBlocks {
            app_id: s("a"),
            exec_id: s("e"),
            shuffle_id: 0,
            map_ids: vec![0, 2],
            reduce_ids: vec![vec![1, 2, 3], vec![1]],
            batch_fetch_enabled: false,
        },
        M::GetLocalDirsForExecutors {
            app_id: s("a"),
            exec_ids: vec![s("0"), s("1")],
        },
        M::LocalDirsForExecutors {
            exec_ids: vec![s("0"), s("1")],
            num_local_dirs_by_exec: vec![1, 2],
            all_local_dirs: vec![s("/a"), s("/b"), s("/c")],
        },
        M::PushBlockStream {
            app_id: s("a"),
            app_attempt_id: 1,
            shuffle_id: 2,
            shuffle_merge_id: 3,
            map_index: 4,
            reduce_id: 5,
            index: 6,
        },
        M::FinalizeShuffleMerge {
            app_id: s("a"),
            app_attempt_id: 1,
            shuffle_id: 2,
            shuffle_merge_id: 3,
        },
        M::MergeStatuses {
            shuffle_id: 1,
            shuffle_merge_id: 2,
            bitmaps: vec![
                Bytes::from(bitmap_no_run(&[1, 5, 9])),
                Bytes::from(bitmap_run(&[(0, 99), (200, 10)])),
            ],
            reduce_ids: vec![0, 1],
            sizes: vec![100, 200],
        },
        M::FetchShuffleBlockChunks {
            app_id: s("a"),
            exec_id: s("e"),
            shuffle_id: 1,
            shuffle_merge_id: 0,
            reduce_ids: vec![1, 2],
            chunk_ids: vec![vec![0], vec![0, 1]],
        },
        M::DiagnoseCorruption {
            app_id: s("a"),
            exec_id: s("e"),
            shuffle_id: 1,
            map_id: 2,
            reduce_id: 3,
            checksum: -5,
            algorithm: s("ADLER32"),
        },
        M::CorruptionCause { cause: 1 },
        M::BlockPushReturnCode {
            return_code: 2,
            failure_block_id: s("shufflePush_0_0_1_2"),
        },
        M::RemoveShuffleMerge {
            app_id: s("a"),
            app_attempt_id: 1,
            shuffle_id: 2,
            shuffle_merge_id: 3,
        },
    ];
    let mut ids = std::collections::BTreeSet::new();
    for m in &all {
        let b = m.to_bytes();
        assert_eq!(b[0], m.type_id());
        ids.insert(m.type_id());
        assert_eq!(&M::decode(&b).unwrap(), m, "{}", m.name());
        // Every strict prefix fails to decode (never panics), every extension is trailing.
        for cut in 0..b.len() {
            assert!(M::decode(&b[..cut]).is_err(), "{} cut at {cut}", m.name());
        }
        let mut longer = b.to_vec();
        longer.push(0);
        assert!(M::decode(&longer).is_err());
    }
    assert_eq!(ids.len(), 20, "all 20 BlockTransferMessage types covered");
    assert_eq!(M::decode(&[20]), Err(MessageError::UnknownType(20)));
    assert_eq!(
        M::decode(&[0xEA, 0, 0]),
        Err(MessageError::UnknownType(0xEA))
    );
    assert_eq!(M::decode(&[]), Err(MessageError::Empty));
}

#[test]
fn roaring_sizes() {
    let a = bitmap_no_run(&[1, 2, 3]);
    assert_eq!(roaring_serialized_size(&a), Some(a.len()));
    let r = bitmap_run(&[(5, 3)]);
    assert_eq!(roaring_serialized_size(&r), Some(r.len()));
    assert_eq!(roaring_serialized_size(&a[..a.len() - 1]), None);
    assert_eq!(roaring_serialized_size(&[1, 2, 3, 4]), None);
}

#[test]
fn hostile_lengths_never_allocate() {
    // A string array claiming 2^31-1 elements in a tiny body.
    let mut body = vec![0u8];
    body.extend_from_slice(&[0, 0, 0, 1, b'a', 0, 0, 0, 1, b'0']);
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    match M::decode(&body) {
        Err(MessageError::Malformed {
            source: DecodeError::Truncated { .. },
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Negative string length.
    let body = [5u8, 0xff, 0xff, 0xff, 0xfe];
    assert!(matches!(
        M::decode(&body),
        Err(MessageError::Malformed {
            source: DecodeError::NegativeLength { .. },
            ..
        })
    ));
    // Frame lengths: too small, negative, too large, above the configured bound.
    for len in [
        0i64,
        8,
        -1,
        i64::MIN,
        1 << 40,
        (i32::MAX as i64) + 8,
        MAX as i64 + 9,
    ] {
        let mut b = BytesMut::from(&len.to_be_bytes()[..]);
        b.extend_from_slice(&[3; 16]);
        assert!(
            matches!(
                frame::decode(&mut b, MAX),
                Err(FrameError::BadLength { .. })
            ),
            "{len}"
        );
    }
    // A frame exactly at the bound is waited for, not rejected.
    let mut b = BytesMut::from(&(MAX as i64 + 8).to_be_bytes()[..]);
    assert_eq!(frame::decode(&mut b, MAX), Ok(None));
}

#[test]
fn unknown_and_malformed_frames() {
    let mut b = BytesMut::from(&[0, 0, 0, 0, 0, 0, 0, 10, 13, 0xAA][..]);
    assert_eq!(
        frame::decode(&mut b, MAX),
        Err(FrameError::UnknownType { kind: 13, len: 10 })
    );
    assert!(b.is_empty(), "the unknown frame is consumed");
    // ChunkFetchRequest with a 4-byte header.
    let mut b = BytesMut::from(&[0, 0, 0, 0, 0, 0, 0, 13, 0, 1, 2, 3, 4][..]);
    assert!(matches!(
        frame::decode(&mut b, MAX),
        Err(FrameError::Malformed {
            name: "ChunkFetchRequest",
            ..
        })
    ));
    // RpcFailure whose string runs past the frame: request id still recovered.
    let mut raw = vec![0, 0, 0, 0, 0, 0, 0, 25, 5];
    raw.extend_from_slice(&77i64.to_be_bytes());
    raw.extend_from_slice(&100i32.to_be_bytes());
    raw.extend_from_slice(&[b'x'; 4]);
    let mut b = BytesMut::from(&raw[..]);
    assert!(matches!(
        frame::decode(&mut b, MAX),
        Err(FrameError::Malformed {
            request_id: Some(77),
            ..
        })
    ));
}

/// A declared length alone commits no memory: a peer that sends the length field of a 64 MiB
/// frame and a few bytes gets a buffer a step ahead of what it sent, not 64 MiB; the buffer
/// grows as the rest arrives, and the whole frame still decodes.
#[test]
fn a_declared_length_reserves_only_a_step_ahead_of_the_bytes_sent() {
    let max = 64 * 1024 * 1024;
    let body = 48 * 1024 * 1024usize;
    let mut wire = BytesMut::new();
    wire.put_i64((8 + 1 + 8 + 4 + body) as i64);
    wire.put_u8(frame::kind::RPC_REQUEST);
    wire.put_i64(7);
    wire.put_i32(body as i32);
    let header = wire.len();
    wire.resize(header + body, 0xab);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&wire[..header]);
    assert!(frame::decode(&mut buf, max).unwrap().is_none());
    assert!(
        buf.capacity() <= 1024 * 1024,
        "a 48 MiB declared frame reserved {} bytes after {} were sent",
        buf.capacity(),
        header
    );
    let mut sent = header;
    let mut got = None;
    while got.is_none() {
        let n = (wire.len() - sent).min(1 << 20);
        assert!(n > 0, "the whole frame was sent and did not decode");
        buf.extend_from_slice(&wire[sent..sent + n]);
        sent += n;
        got = frame::decode(&mut buf, max).unwrap();
    }
    assert_eq!(sent, wire.len());
    assert!(buf.is_empty());
}
