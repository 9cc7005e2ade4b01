//! `BlockTransferMessage`: the shuffle RPC payloads carried in RpcRequest / OneWayMessage /
//! RpcResponse bodies (and UploadStream metadata): `u8 type` then the fields.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{DecodeError, PutExt, Reader};

/// `ExecutorShuffleInfo`: where an executor writes its block files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorShuffleInfo {
    pub local_dirs: Vec<String>,
    pub sub_dirs_per_local_dir: i32,
    pub shuffle_manager: String,
}

/// `CorruptionCause.Cause` ordinals.
pub mod cause {
    pub const DISK_ISSUE: u8 = 0;
    pub const NETWORK_ISSUE: u8 = 1;
    pub const UNKNOWN_ISSUE: u8 = 2;
    pub const CHECKSUM_VERIFY_PASS: u8 = 3;
    pub const UNSUPPORTED_CHECKSUM_ALGORITHM: u8 = 4;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockTransferMessage {
    OpenBlocks {
        app_id: String,
        exec_id: String,
        block_ids: Vec<String>,
    },
    UploadBlock {
        app_id: String,
        exec_id: String,
        block_id: String,
        metadata: Bytes,
        block_data: Bytes,
    },
    RegisterExecutor {
        app_id: String,
        exec_id: String,
        info: ExecutorShuffleInfo,
    },
    StreamHandle {
        stream_id: i64,
        num_chunks: i32,
    },
    RegisterDriver {
        app_id: String,
        heartbeat_timeout_ms: i64,
    },
    ShuffleServiceHeartbeat {
        app_id: String,
    },
    UploadBlockStream {
        block_id: String,
        metadata: Bytes,
    },
    RemoveBlocks {
        app_id: String,
        exec_id: String,
        block_ids: Vec<String>,
    },
    BlocksRemoved {
        num_removed_blocks: i32,
    },
    FetchShuffleBlocks {
        app_id: String,
        exec_id: String,
        shuffle_id: i32,
        map_ids: Vec<i64>,
        reduce_ids: Vec<Vec<i32>>,
        batch_fetch_enabled: bool,
    },
    GetLocalDirsForExecutors {
        app_id: String,
        exec_ids: Vec<String>,
    },
    LocalDirsForExecutors {
        exec_ids: Vec<String>,
        num_local_dirs_by_exec: Vec<i32>,
        all_local_dirs: Vec<String>,
    },
    PushBlockStream {
        app_id: String,
        app_attempt_id: i32,
        shuffle_id: i32,
        shuffle_merge_id: i32,
        map_index: i32,
        reduce_id: i32,
        index: i32,
    },
    FinalizeShuffleMerge {
        app_id: String,
        app_attempt_id: i32,
        shuffle_id: i32,
        shuffle_merge_id: i32,
    },
    /// `bitmaps` are opaque RoaringBitmaps in portable serialization.
    MergeStatuses {
        shuffle_id: i32,
        shuffle_merge_id: i32,
        bitmaps: Vec<Bytes>,
        reduce_ids: Vec<i32>,
        sizes: Vec<i64>,
    },
    FetchShuffleBlockChunks {
        app_id: String,
        exec_id: String,
        shuffle_id: i32,
        shuffle_merge_id: i32,
        reduce_ids: Vec<i32>,
        chunk_ids: Vec<Vec<i32>>,
    },
    DiagnoseCorruption {
        app_id: String,
        exec_id: String,
        shuffle_id: i32,
        map_id: i64,
        reduce_id: i32,
        checksum: i64,
        algorithm: String,
    },
    CorruptionCause {
        cause: u8,
    },
    BlockPushReturnCode {
        return_code: u8,
        failure_block_id: String,
    },
    RemoveShuffleMerge {
        app_id: String,
        app_attempt_id: i32,
        shuffle_id: i32,
        shuffle_merge_id: i32,
    },
}

/// Type ids (`BlockTransferMessage.Type`).
pub mod id {
    pub const OPEN_BLOCKS: u8 = 0;
    pub const UPLOAD_BLOCK: u8 = 1;
    pub const REGISTER_EXECUTOR: u8 = 2;
    pub const STREAM_HANDLE: u8 = 3;
    pub const REGISTER_DRIVER: u8 = 4;
    pub const HEARTBEAT: u8 = 5;
    pub const UPLOAD_BLOCK_STREAM: u8 = 6;
    pub const REMOVE_BLOCKS: u8 = 7;
    pub const BLOCKS_REMOVED: u8 = 8;
    pub const FETCH_SHUFFLE_BLOCKS: u8 = 9;
    pub const GET_LOCAL_DIRS_FOR_EXECUTORS: u8 = 10;
    pub const LOCAL_DIRS_FOR_EXECUTORS: u8 = 11;
    pub const PUSH_BLOCK_STREAM: u8 = 12;
    pub const FINALIZE_SHUFFLE_MERGE: u8 = 13;
    pub const MERGE_STATUSES: u8 = 14;
    pub const FETCH_SHUFFLE_BLOCK_CHUNKS: u8 = 15;
    pub const DIAGNOSE_CORRUPTION: u8 = 16;
    pub const CORRUPTION_CAUSE: u8 = 17;
    pub const BLOCK_PUSH_RETURN_CODE: u8 = 18;
    pub const REMOVE_SHUFFLE_MERGE: u8 = 19;
}

/// A body that is not a BlockTransferMessage we can decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("empty message body (no BlockTransferMessage type byte)")]
    Empty,
    #[error("unknown BlockTransferMessage type {0}")]
    UnknownType(u8),
    #[error("malformed {name}: {source}")]
    Malformed {
        name: &'static str,
        source: DecodeError,
    },
}

impl MessageError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl BlockTransferMessage {
    pub fn type_id(&self) -> u8 {
        use BlockTransferMessage::*;
        match self {
            OpenBlocks { .. } => id::OPEN_BLOCKS,
            UploadBlock { .. } => id::UPLOAD_BLOCK,
            RegisterExecutor { .. } => id::REGISTER_EXECUTOR,
            StreamHandle { .. } => id::STREAM_HANDLE,
            RegisterDriver { .. } => id::REGISTER_DRIVER,
            ShuffleServiceHeartbeat { .. } => id::HEARTBEAT,
            UploadBlockStream { .. } => id::UPLOAD_BLOCK_STREAM,
            RemoveBlocks { .. } => id::REMOVE_BLOCKS,
            BlocksRemoved { .. } => id::BLOCKS_REMOVED,
            FetchShuffleBlocks { .. } => id::FETCH_SHUFFLE_BLOCKS,
            GetLocalDirsForExecutors { .. } => id::GET_LOCAL_DIRS_FOR_EXECUTORS,
            LocalDirsForExecutors { .. } => id::LOCAL_DIRS_FOR_EXECUTORS,
            PushBlockStream { .. } => id::PUSH_BLOCK_STREAM,
            FinalizeShuffleMerge { .. } => id::FINALIZE_SHUFFLE_MERGE,
            MergeStatuses { .. } => id::MERGE_STATUSES,
            FetchShuffleBlockChunks { .. } => id::FETCH_SHUFFLE_BLOCK_CHUNKS,
            DiagnoseCorruption { .. } => id::DIAGNOSE_CORRUPTION,
            CorruptionCause { .. } => id::CORRUPTION_CAUSE,
            BlockPushReturnCode { .. } => id::BLOCK_PUSH_RETURN_CODE,
            RemoveShuffleMerge { .. } => id::REMOVE_SHUFFLE_MERGE,
        }
    }

    pub fn name(&self) -> &'static str {
        type_name(self.type_id()).unwrap_or("Unknown")
    }

    pub fn encode(&self, b: &mut BytesMut) {
        use BlockTransferMessage::*;
        b.put_u8(self.type_id());
        match self {
            OpenBlocks {
                app_id,
                exec_id,
                block_ids,
            }
            | RemoveBlocks {
                app_id,
                exec_id,
                block_ids,
            } => {
                b.put_string(app_id);
                b.put_string(exec_id);
                b.put_string_array(block_ids);
            }
            UploadBlock {
                app_id,
                exec_id,
                block_id,
                metadata,
                block_data,
            } => {
                b.put_string(app_id);
                b.put_string(exec_id);
                b.put_string(block_id);
                b.put_byte_array(metadata);
                b.put_byte_array(block_data);
            }
            RegisterExecutor {
                app_id,
                exec_id,
                info,
            } => {
                b.put_string(app_id);
                b.put_string(exec_id);
                b.put_string_array(&info.local_dirs);
                b.put_i32(info.sub_dirs_per_local_dir);
                b.put_string(&info.shuffle_manager);
            }
            StreamHandle {
                stream_id,
                num_chunks,
            } => {
                b.put_i64(*stream_id);
                b.put_i32(*num_chunks);
            }
            RegisterDriver {
                app_id,
                heartbeat_timeout_ms,
            } => {
                b.put_string(app_id);
                b.put_i64(*heartbeat_timeout_ms);
            }
            ShuffleServiceHeartbeat { app_id } => b.put_string(app_id),
            UploadBlockStream { block_id, metadata } => {
                b.put_string(block_id);
                b.put_byte_array(metadata);
            }
            BlocksRemoved { num_removed_blocks } => b.put_i32(*num_removed_blocks),
            FetchShuffleBlocks {
                app_id,
                exec_id,
                shuffle_id,
                map_ids,
                reduce_ids,
                batch_fetch_enabled,
            } => {
                b.put_string(app_id);
                b.put_string(exec_id);
                b.put_i32(*shuffle_id);
                b.put_long_array(map_ids);
                b.put_i32(reduce_ids.len() as i32);
                for r in reduce_ids {
                    b.put_int_array(r);
                }
                b.put_u8(u8::from(*batch_fetch_enabled));
            }
            GetLocalDirsForExecutors { app_id, exec_ids } => {
                b.put_string(app_id);
                b.put_string_array(exec_ids);
            }
            LocalDirsForExecutors {
                exec_ids,
                num_local_dirs_by_exec,
                all_local_dirs,
            } => {
                b.put_string_array(exec_ids);
                b.put_int_array(num_local_dirs_by_exec);
                b.put_string_array(all_local_dirs);
            }
            PushBlockStream {
                app_id,
                app_attempt_id,
                shuffle_id,
                shuffle_merge_id,
                map_index,
                reduce_id,
                index,
            } => {
                b.put_string(app_id);
                for x in [
                    app_attempt_id,
                    shuffle_id,
                    shuffle_merge_id,
                    map_index,
                    reduce_id,
                    index,
                ] {
                    b.put_i32(*x);
                }
            }
            FinalizeShuffleMerge {
                app_id,
                app_attempt_id,
                shuffle_id,
                shuffle_merge_id,
            }
            | RemoveShuffleMerge {
                app_id,
                app_attempt_id,
                shuffle_id,
                shuffle_merge_id,
            } => {
                b.put_string(app_id);
                b.put_i32(*app_attempt_id);
                b.put_i32(*shuffle_id);
                b.put_i32(*shuffle_merge_id);
            }
            MergeStatuses {
                shuffle_id,
                shuffle_merge_id,
                bitmaps,
                reduce_ids,
                sizes,
            } => {
                b.put_i32(*shuffle_id);
                b.put_i32(*shuffle_merge_id);
                b.put_i32(bitmaps.len() as i32);
                for bm in bitmaps {
                    b.put_slice(bm);
                }
                b.put_int_array(reduce_ids);
                b.put_long_array(sizes);
            }
            FetchShuffleBlockChunks {
                app_id,
                exec_id,
                shuffle_id,
                shuffle_merge_id,
                reduce_ids,
                chunk_ids,
            } => {
                b.put_string(app_id);
                b.put_string(exec_id);
                b.put_i32(*shuffle_id);
                b.put_i32(*shuffle_merge_id);
                b.put_int_array(reduce_ids);
                b.put_i32(chunk_ids.len() as i32);
                for c in chunk_ids {
                    b.put_int_array(c);
                }
            }
            DiagnoseCorruption {
                app_id,
                exec_id,
                shuffle_id,
                map_id,
                reduce_id,
                checksum,
                algorithm,
            } => {
                b.put_string(app_id);
                b.put_string(exec_id);
                b.put_i32(*shuffle_id);
                b.put_i64(*map_id);
                b.put_i32(*reduce_id);
                b.put_i64(*checksum);
                b.put_string(algorithm);
            }
            CorruptionCause { cause } => b.put_u8(*cause),
            BlockPushReturnCode {
                return_code,
                failure_block_id,
            } => {
                b.put_u8(*return_code);
                b.put_string(failure_block_id);
            }
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }

    /// Decodes a whole body; trailing bytes are an error.
    pub fn decode(body: &[u8]) -> Result<BlockTransferMessage, MessageError> {
        let (&ty, rest) = body.split_first().ok_or(MessageError::Empty)?;
        let name = type_name(ty).ok_or(MessageError::UnknownType(ty))?;
        let mut r = Reader::new(rest);
        let m = decode_fields(ty, &mut r).and_then(|m| r.finish(name).map(|_| m));
        m.map_err(|source| MessageError::Malformed { name, source })
    }
}

fn decode_fields(ty: u8, r: &mut Reader<'_>) -> Result<BlockTransferMessage, DecodeError> {
    use BlockTransferMessage::*;
    Ok(match ty {
        id::OPEN_BLOCKS => OpenBlocks {
            app_id: r.string("appId")?,
            exec_id: r.string("execId")?,
            block_ids: r.string_array("blockIds")?,
        },
        id::UPLOAD_BLOCK => UploadBlock {
            app_id: r.string("appId")?,
            exec_id: r.string("execId")?,
            block_id: r.string("blockId")?,
            metadata: r.bytes("metadata")?,
            block_data: r.bytes("blockData")?,
        },
        id::REGISTER_EXECUTOR => RegisterExecutor {
            app_id: r.string("appId")?,
            exec_id: r.string("execId")?,
            info: ExecutorShuffleInfo {
                local_dirs: r.string_array("localDirs")?,
                sub_dirs_per_local_dir: r.i32("subDirsPerLocalDir")?,
                shuffle_manager: r.string("shuffleManager")?,
            },
        },
        id::STREAM_HANDLE => StreamHandle {
            stream_id: r.i64("streamId")?,
            num_chunks: r.i32("numChunks")?,
        },
        id::REGISTER_DRIVER => RegisterDriver {
            app_id: r.string("appId")?,
            heartbeat_timeout_ms: r.i64("heartbeatTimeoutMs")?,
        },
        id::HEARTBEAT => ShuffleServiceHeartbeat {
            app_id: r.string("appId")?,
        },
        id::UPLOAD_BLOCK_STREAM => UploadBlockStream {
            block_id: r.string("blockId")?,
            metadata: r.bytes("metadata")?,
        },
        id::REMOVE_BLOCKS => RemoveBlocks {
            app_id: r.string("appId")?,
            exec_id: r.string("execId")?,
            block_ids: r.string_array("blockIds")?,
        },
        id::BLOCKS_REMOVED => BlocksRemoved {
            num_removed_blocks: r.i32("numRemovedBlocks")?,
        },
        id::FETCH_SHUFFLE_BLOCKS => {
            let app_id = r.string("appId")?;
            let exec_id = r.string("execId")?;
            let shuffle_id = r.i32("shuffleId")?;
            let map_ids = r.long_array("mapIds")?;
            let reduce_ids = r.int_arrays("reduceIds")?;
            let batch_fetch_enabled = r.bool("batchFetchEnabled")?;
            FetchShuffleBlocks {
                app_id,
                exec_id,
                shuffle_id,
                map_ids,
                reduce_ids,
                batch_fetch_enabled,
            }
        }
        id::GET_LOCAL_DIRS_FOR_EXECUTORS => GetLocalDirsForExecutors {
            app_id: r.string("appId")?,
            exec_ids: r.string_array("execIds")?,
        },
        id::LOCAL_DIRS_FOR_EXECUTORS => LocalDirsForExecutors {
            exec_ids: r.string_array("execIds")?,
            num_local_dirs_by_exec: r.int_array("numLocalDirsByExec")?,
            all_local_dirs: r.string_array("allLocalDirs")?,
        },
        id::PUSH_BLOCK_STREAM => PushBlockStream {
            app_id: r.string("appId")?,
            app_attempt_id: r.i32("appAttemptId")?,
            shuffle_id: r.i32("shuffleId")?,
            shuffle_merge_id: r.i32("shuffleMergeId")?,
            map_index: r.i32("mapIndex")?,
            reduce_id: r.i32("reduceId")?,
            index: r.i32("index")?,
        },
        id::FINALIZE_SHUFFLE_MERGE => FinalizeShuffleMerge {
            app_id: r.string("appId")?,
            app_attempt_id: r.i32("appAttemptId")?,
            shuffle_id: r.i32("shuffleId")?,
            shuffle_merge_id: r.i32("shuffleMergeId")?,
        },
        id::MERGE_STATUSES => MergeStatuses {
            shuffle_id: r.i32("shuffleId")?,
            shuffle_merge_id: r.i32("shuffleMergeId")?,
            bitmaps: r.bitmap_array("bitmaps")?,
            reduce_ids: r.int_array("reduceIds")?,
            sizes: r.long_array("sizes")?,
        },
        id::FETCH_SHUFFLE_BLOCK_CHUNKS => FetchShuffleBlockChunks {
            app_id: r.string("appId")?,
            exec_id: r.string("execId")?,
            shuffle_id: r.i32("shuffleId")?,
            shuffle_merge_id: r.i32("shuffleMergeId")?,
            reduce_ids: r.int_array("reduceIds")?,
            chunk_ids: r.int_arrays("chunkIds")?,
        },
        id::DIAGNOSE_CORRUPTION => DiagnoseCorruption {
            app_id: r.string("appId")?,
            exec_id: r.string("execId")?,
            shuffle_id: r.i32("shuffleId")?,
            map_id: r.i64("mapId")?,
            reduce_id: r.i32("reduceId")?,
            checksum: r.i64("checksum")?,
            algorithm: r.string("algorithm")?,
        },
        id::CORRUPTION_CAUSE => CorruptionCause {
            cause: r.u8("cause")?,
        },
        id::BLOCK_PUSH_RETURN_CODE => BlockPushReturnCode {
            return_code: r.u8("returnCode")?,
            failure_block_id: r.string("failureBlockId")?,
        },
        id::REMOVE_SHUFFLE_MERGE => RemoveShuffleMerge {
            app_id: r.string("appId")?,
            app_attempt_id: r.i32("appAttemptId")?,
            shuffle_id: r.i32("shuffleId")?,
            shuffle_merge_id: r.i32("shuffleMergeId")?,
        },
        other => {
            return Err(DecodeError::Invalid {
                what: "type",
                reason: format!("unknown type {other}"),
            })
        }
    })
}

pub fn type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        id::OPEN_BLOCKS => "OpenBlocks",
        id::UPLOAD_BLOCK => "UploadBlock",
        id::REGISTER_EXECUTOR => "RegisterExecutor",
        id::STREAM_HANDLE => "StreamHandle",
        id::REGISTER_DRIVER => "RegisterDriver",
        id::HEARTBEAT => "ShuffleServiceHeartbeat",
        id::UPLOAD_BLOCK_STREAM => "UploadBlockStream",
        id::REMOVE_BLOCKS => "RemoveBlocks",
        id::BLOCKS_REMOVED => "BlocksRemoved",
        id::FETCH_SHUFFLE_BLOCKS => "FetchShuffleBlocks",
        id::GET_LOCAL_DIRS_FOR_EXECUTORS => "GetLocalDirsForExecutors",
        id::LOCAL_DIRS_FOR_EXECUTORS => "LocalDirsForExecutors",
        id::PUSH_BLOCK_STREAM => "PushBlockStream",
        id::FINALIZE_SHUFFLE_MERGE => "FinalizeShuffleMerge",
        id::MERGE_STATUSES => "MergeStatuses",
        id::FETCH_SHUFFLE_BLOCK_CHUNKS => "FetchShuffleBlockChunks",
        id::DIAGNOSE_CORRUPTION => "DiagnoseCorruption",
        id::CORRUPTION_CAUSE => "CorruptionCause",
        id::BLOCK_PUSH_RETURN_CODE => "BlockPushReturnCode",
        id::REMOVE_SHUFFLE_MERGE => "RemoveShuffleMerge",
        _ => return None,
    })
}
