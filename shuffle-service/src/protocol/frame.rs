//! Spark `network-common` framing: `i64 frameLength` (counting itself), `u8 type`, a per-type
//! header and, for some types, the body inside the frame. All integers big-endian.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::wire::{string_len, DecodeError, PutExt, Reader};

/// Bytes of the frame length field.
pub const LEN_FIELD: usize = 8;
/// Header size of ChunkFetchSuccess (length + type + stream id + chunk index): 21 bytes.
pub const CHUNK_SUCCESS_HEADER: usize = 8 + 1 + 12;
/// Spark's decoder rejects frames whose size (excluding the length field) is >= this.
pub const SPARK_MAX_FRAME: u64 = i32::MAX as u64;

/// `Message.Type` ids.
pub mod kind {
    pub const CHUNK_FETCH_REQUEST: u8 = 0;
    pub const CHUNK_FETCH_SUCCESS: u8 = 1;
    pub const CHUNK_FETCH_FAILURE: u8 = 2;
    pub const RPC_REQUEST: u8 = 3;
    pub const RPC_RESPONSE: u8 = 4;
    pub const RPC_FAILURE: u8 = 5;
    pub const STREAM_REQUEST: u8 = 6;
    pub const STREAM_RESPONSE: u8 = 7;
    pub const STREAM_FAILURE: u8 = 8;
    pub const ONE_WAY_MESSAGE: u8 = 9;
    pub const UPLOAD_STREAM: u8 = 10;
    pub const MERGED_BLOCK_META_REQUEST: u8 = 11;
    pub const MERGED_BLOCK_META_SUCCESS: u8 = 12;
}

/// `(streamId, chunkIndex)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamChunkId {
    pub stream_id: i64,
    pub chunk_index: i32,
}

/// One network-common message. Bodies that travel *after* the frame (StreamResponse,
/// UploadStream) are not part of the value: only their byte counts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    ChunkFetchRequest(StreamChunkId),
    ChunkFetchSuccess {
        id: StreamChunkId,
        body: Bytes,
    },
    ChunkFetchFailure {
        id: StreamChunkId,
        error: String,
    },
    RpcRequest {
        request_id: i64,
        body: Bytes,
    },
    RpcResponse {
        request_id: i64,
        body: Bytes,
    },
    RpcFailure {
        request_id: i64,
        error: String,
    },
    StreamRequest {
        stream_id: String,
    },
    StreamResponse {
        stream_id: String,
        byte_count: i64,
    },
    StreamFailure {
        stream_id: String,
        error: String,
    },
    OneWayMessage {
        body: Bytes,
    },
    UploadStream {
        request_id: i64,
        meta: Bytes,
        body_byte_count: i64,
    },
    MergedBlockMetaRequest {
        request_id: i64,
        app_id: String,
        shuffle_id: i32,
        shuffle_merge_id: i32,
        reduce_id: i32,
    },
    MergedBlockMetaSuccess {
        request_id: i64,
        num_chunks: i32,
        body: Bytes,
    },
}

/// A frame that could not be taken off the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is out of range: the stream cannot be re-synchronised.
    #[error(
        "frame length {len} out of range (must be 9..={max} including the 8-byte length field)"
    )]
    BadLength { len: i64, max: u64 },
    /// A well-delimited frame with a type byte we do not know (already consumed).
    #[error("unknown network message type {kind} in a frame of {len} bytes")]
    UnknownType { kind: u8, len: usize },
    /// A known type whose header does not parse.
    #[error("malformed {name} frame: {source}")]
    Malformed {
        name: &'static str,
        request_id: Option<i64>,
        source: DecodeError,
    },
}

impl FrameError {
    /// Protocol errors come from the peer's bytes; never retryable on the same bytes.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl Message {
    pub fn kind(&self) -> u8 {
        use kind::*;
        match self {
            Message::ChunkFetchRequest(_) => CHUNK_FETCH_REQUEST,
            Message::ChunkFetchSuccess { .. } => CHUNK_FETCH_SUCCESS,
            Message::ChunkFetchFailure { .. } => CHUNK_FETCH_FAILURE,
            Message::RpcRequest { .. } => RPC_REQUEST,
            Message::RpcResponse { .. } => RPC_RESPONSE,
            Message::RpcFailure { .. } => RPC_FAILURE,
            Message::StreamRequest { .. } => STREAM_REQUEST,
            Message::StreamResponse { .. } => STREAM_RESPONSE,
            Message::StreamFailure { .. } => STREAM_FAILURE,
            Message::OneWayMessage { .. } => ONE_WAY_MESSAGE,
            Message::UploadStream { .. } => UPLOAD_STREAM,
            Message::MergedBlockMetaRequest { .. } => MERGED_BLOCK_META_REQUEST,
            Message::MergedBlockMetaSuccess { .. } => MERGED_BLOCK_META_SUCCESS,
        }
    }

    pub fn name(&self) -> &'static str {
        kind_name(self.kind()).unwrap_or("Unknown")
    }

    /// Header length after the type byte.
    fn header_len(&self) -> usize {
        match self {
            Message::ChunkFetchRequest(_) | Message::ChunkFetchSuccess { .. } => 12,
            Message::ChunkFetchFailure { error, .. } => 12 + string_len(error),
            Message::RpcRequest { .. } | Message::RpcResponse { .. } => 12,
            Message::RpcFailure { error, .. } => 8 + string_len(error),
            Message::StreamRequest { stream_id } => string_len(stream_id),
            Message::StreamResponse { stream_id, .. } => string_len(stream_id) + 8,
            Message::StreamFailure { stream_id, error } => {
                string_len(stream_id) + string_len(error)
            }
            Message::OneWayMessage { .. } => 4,
            Message::UploadStream { meta, .. } => 8 + 4 + meta.len() + 8,
            Message::MergedBlockMetaRequest { app_id, .. } => 8 + string_len(app_id) + 12,
            Message::MergedBlockMetaSuccess { .. } => 12,
        }
    }

    /// The body carried inside the frame, if any.
    fn in_frame_body(&self) -> Option<&Bytes> {
        match self {
            Message::ChunkFetchSuccess { body, .. }
            | Message::RpcRequest { body, .. }
            | Message::RpcResponse { body, .. }
            | Message::OneWayMessage { body }
            | Message::MergedBlockMetaSuccess { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The full frame length as written in the length field.
    pub fn frame_len(&self) -> usize {
        LEN_FIELD + 1 + self.header_len() + self.in_frame_body().map_or(0, |b| b.len())
    }

    /// Appends the complete frame (length, type, header, in-frame body) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.frame_len());
        dst.put_i64(self.frame_len() as i64);
        dst.put_u8(self.kind());
        match self {
            Message::ChunkFetchRequest(id) => put_chunk_id(dst, id),
            Message::ChunkFetchSuccess { id, .. } => put_chunk_id(dst, id),
            Message::ChunkFetchFailure { id, error } => {
                put_chunk_id(dst, id);
                dst.put_string(error);
            }
            Message::RpcRequest { request_id, body }
            | Message::RpcResponse { request_id, body } => {
                dst.put_i64(*request_id);
                dst.put_i32(body.len() as i32);
            }
            Message::RpcFailure { request_id, error } => {
                dst.put_i64(*request_id);
                dst.put_string(error);
            }
            Message::StreamRequest { stream_id } => dst.put_string(stream_id),
            Message::StreamResponse {
                stream_id,
                byte_count,
            } => {
                dst.put_string(stream_id);
                dst.put_i64(*byte_count);
            }
            Message::StreamFailure { stream_id, error } => {
                dst.put_string(stream_id);
                dst.put_string(error);
            }
            Message::OneWayMessage { body } => dst.put_i32(body.len() as i32),
            Message::UploadStream {
                request_id,
                meta,
                body_byte_count,
            } => {
                dst.put_i64(*request_id);
                dst.put_byte_array(meta);
                dst.put_i64(*body_byte_count);
            }
            Message::MergedBlockMetaRequest {
                request_id,
                app_id,
                shuffle_id,
                shuffle_merge_id,
                reduce_id,
            } => {
                dst.put_i64(*request_id);
                dst.put_string(app_id);
                dst.put_i32(*shuffle_id);
                dst.put_i32(*shuffle_merge_id);
                dst.put_i32(*reduce_id);
            }
            Message::MergedBlockMetaSuccess {
                request_id,
                num_chunks,
                ..
            } => {
                dst.put_i64(*request_id);
                dst.put_i32(*num_chunks);
            }
        }
        if let Some(body) = self.in_frame_body() {
            dst.put_slice(body);
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }
}

/// The 21-byte header of a ChunkFetchSuccess whose `body_len` body bytes are sent separately
/// (the zero-copy path).
pub fn chunk_success_header(id: StreamChunkId, body_len: u64) -> [u8; CHUNK_SUCCESS_HEADER] {
    let mut h = [0u8; CHUNK_SUCCESS_HEADER];
    h[..8].copy_from_slice(&((CHUNK_SUCCESS_HEADER as u64 + body_len) as i64).to_be_bytes());
    h[8] = kind::CHUNK_FETCH_SUCCESS;
    h[9..17].copy_from_slice(&id.stream_id.to_be_bytes());
    h[17..21].copy_from_slice(&id.chunk_index.to_be_bytes());
    h
}

pub fn kind_name(k: u8) -> Option<&'static str> {
    Some(match k {
        kind::CHUNK_FETCH_REQUEST => "ChunkFetchRequest",
        kind::CHUNK_FETCH_SUCCESS => "ChunkFetchSuccess",
        kind::CHUNK_FETCH_FAILURE => "ChunkFetchFailure",
        kind::RPC_REQUEST => "RpcRequest",
        kind::RPC_RESPONSE => "RpcResponse",
        kind::RPC_FAILURE => "RpcFailure",
        kind::STREAM_REQUEST => "StreamRequest",
        kind::STREAM_RESPONSE => "StreamResponse",
        kind::STREAM_FAILURE => "StreamFailure",
        kind::ONE_WAY_MESSAGE => "OneWayMessage",
        kind::UPLOAD_STREAM => "UploadStream",
        kind::MERGED_BLOCK_META_REQUEST => "MergedBlockMetaRequest",
        kind::MERGED_BLOCK_META_SUCCESS => "MergedBlockMetaSuccess",
        _ => return None,
    })
}

fn put_chunk_id(dst: &mut BytesMut, id: &StreamChunkId) {
    dst.put_i64(id.stream_id);
    dst.put_i32(id.chunk_index);
}

/// Reads the frame length at the start of `src` and checks it against `max_frame` (the largest
/// accepted frame size *excluding* the length field, at most [`SPARK_MAX_FRAME`] - 1).
/// Returns the total frame length once 8 bytes are available.
pub fn peek_frame_len(src: &[u8], max_frame: u64) -> Result<Option<usize>, FrameError> {
    if src.len() < LEN_FIELD {
        return Ok(None);
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&src[..8]);
    let len = i64::from_be_bytes(a);
    let max = max_frame.min(SPARK_MAX_FRAME - 1);
    // A frame needs at least the type byte.
    if len < LEN_FIELD as i64 + 1 || (len as u64 - LEN_FIELD as u64) > max {
        return Err(FrameError::BadLength {
            len,
            max: max + LEN_FIELD as u64,
        });
    }
    Ok(Some(len as usize))
}

/// How far ahead of the received bytes `decode` grows a buffer for a frame still arriving.
const RESERVE_STEP: usize = 256 * 1024;

/// Takes one complete frame off the front of `src`, if one is buffered. On `Err` the caller
/// must treat the connection as unusable unless the error is [`FrameError::UnknownType`] or
/// [`FrameError::Malformed`] (whose frame has been consumed, so boundaries are intact).
pub fn decode(src: &mut BytesMut, max_frame: u64) -> Result<Option<Message>, FrameError> {
    let Some(len) = peek_frame_len(src, max_frame)? else {
        return Ok(None);
    };
    if src.len() < len {
        // Grow towards the (bounded) frame size, but at most RESERVE_STEP ahead of the bytes
        // that actually arrived: a peer that declares a 64 MiB frame and sends nothing more
        // commits no more memory than that (a committed reservation counts against
        // `vm.overcommit_memory=2` and `ulimit -v` even while it is not resident).
        src.reserve((len - src.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    let mut frame = src.split_to(len).freeze();
    frame.advance(LEN_FIELD);
    let kind = frame.get_u8();
    decode_body(kind, frame, len).map(Some)
}

fn decode_body(kind: u8, frame: Bytes, len: usize) -> Result<Message, FrameError> {
    let first_i64 = |f: &Bytes| -> Option<i64> {
        (f.len() >= 8).then(|| i64::from_be_bytes([f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]]))
    };
    let Some(name) = kind_name(kind) else {
        return Err(FrameError::UnknownType { kind, len });
    };
    let request_id = match kind {
        kind::RPC_REQUEST
        | kind::RPC_RESPONSE
        | kind::RPC_FAILURE
        | kind::UPLOAD_STREAM
        | kind::MERGED_BLOCK_META_REQUEST
        | kind::MERGED_BLOCK_META_SUCCESS => first_i64(&frame),
        _ => None,
    };
    let mut r = Reader::new(&frame);
    let parsed = (|| -> Result<Message, DecodeError> {
        let msg = match kind {
            kind::CHUNK_FETCH_REQUEST => {
                let m = Message::ChunkFetchRequest(chunk_id(&mut r)?);
                r.finish("ChunkFetchRequest")?;
                m
            }
            kind::CHUNK_FETCH_SUCCESS => {
                let id = chunk_id(&mut r)?;
                let start = frame.len() - r.remaining();
                Message::ChunkFetchSuccess {
                    id,
                    body: frame.slice(start..),
                }
            }
            kind::CHUNK_FETCH_FAILURE => {
                let id = chunk_id(&mut r)?;
                let error = r.string("errorString")?;
                r.finish("ChunkFetchFailure")?;
                Message::ChunkFetchFailure { id, error }
            }
            kind::RPC_REQUEST | kind::RPC_RESPONSE | kind::ONE_WAY_MESSAGE => {
                let request_id = if kind == kind::ONE_WAY_MESSAGE {
                    0
                } else {
                    r.i64("requestId")?
                };
                // The i32 body length is redundant: the body is the rest of the frame.
                let _ = r.i32("bodyLength")?;
                let body = frame.slice(frame.len() - r.remaining()..);
                match kind {
                    kind::RPC_REQUEST => Message::RpcRequest { request_id, body },
                    kind::RPC_RESPONSE => Message::RpcResponse { request_id, body },
                    _ => Message::OneWayMessage { body },
                }
            }
            kind::RPC_FAILURE => {
                let request_id = r.i64("requestId")?;
                let error = r.string("errorString")?;
                r.finish("RpcFailure")?;
                Message::RpcFailure { request_id, error }
            }
            kind::STREAM_REQUEST => {
                let stream_id = r.string("streamId")?;
                r.finish("StreamRequest")?;
                Message::StreamRequest { stream_id }
            }
            kind::STREAM_RESPONSE => {
                let stream_id = r.string("streamId")?;
                let byte_count = r.i64("byteCount")?;
                r.finish("StreamResponse")?;
                if byte_count < 0 {
                    return Err(DecodeError::NegativeLength {
                        what: "byteCount",
                        len: byte_count,
                    });
                }
                Message::StreamResponse {
                    stream_id,
                    byte_count,
                }
            }
            kind::STREAM_FAILURE => {
                let stream_id = r.string("streamId")?;
                let error = r.string("error")?;
                r.finish("StreamFailure")?;
                Message::StreamFailure { stream_id, error }
            }
            kind::UPLOAD_STREAM => {
                let request_id = r.i64("requestId")?;
                let meta = r.bytes("meta")?;
                let body_byte_count = r.i64("bodyByteCount")?;
                r.finish("UploadStream")?;
                if body_byte_count < 0 {
                    return Err(DecodeError::NegativeLength {
                        what: "bodyByteCount",
                        len: body_byte_count,
                    });
                }
                Message::UploadStream {
                    request_id,
                    meta,
                    body_byte_count,
                }
            }
            kind::MERGED_BLOCK_META_REQUEST => {
                let m = Message::MergedBlockMetaRequest {
                    request_id: r.i64("requestId")?,
                    app_id: r.string("appId")?,
                    shuffle_id: r.i32("shuffleId")?,
                    shuffle_merge_id: r.i32("shuffleMergeId")?,
                    reduce_id: r.i32("reduceId")?,
                };
                r.finish("MergedBlockMetaRequest")?;
                m
            }
            kind::MERGED_BLOCK_META_SUCCESS => {
                let request_id = r.i64("requestId")?;
                let num_chunks = r.i32("numChunks")?;
                let body = frame.slice(frame.len() - r.remaining()..);
                Message::MergedBlockMetaSuccess {
                    request_id,
                    num_chunks,
                    body,
                }
            }
            _ => unreachable!("kind_name() covers every id matched here"),
        };
        Ok(msg)
    })();
    parsed.map_err(|source| FrameError::Malformed {
        name,
        request_id,
        source,
    })
}

fn chunk_id(r: &mut Reader<'_>) -> Result<StreamChunkId, DecodeError> {
    Ok(StreamChunkId {
        stream_id: r.i64("streamId")?,
        chunk_index: r.i32("chunkIndex")?,
    })
}
