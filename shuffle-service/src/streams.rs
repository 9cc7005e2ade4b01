//! The global stream table (Spark's `OneForOneStreamManager`): OpenBlocks/FetchShuffleBlocks
//! register a stream; chunks are handed out strictly in order; a stream dies with its last chunk
//! or with the connection that opened it.
//!
//! Per-stream state is O(1) plus 16 bytes per block (`(mapId, startReduce, endReduce)`):
//! no file handles, paths or buffers are kept — chunks are resolved lazily at send time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One shuffle chunk: the contiguous reduce range `[start, end)` of one map output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub map_id: i64,
    pub start: i32,
    pub end: i32,
}

/// What a stream serves.
#[derive(Debug)]
pub enum Source {
    Shuffle {
        shuffle_id: i32,
        blocks: Box<[BlockRange]>,
    },
    Rdd {
        blocks: Box<[(i32, i32)]>,
    },
}

impl Source {
    pub fn len(&self) -> usize {
        match self {
            Source::Shuffle { blocks, .. } => blocks.len(),
            Source::Rdd { blocks } => blocks.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct StreamState {
    conn: u64,
    app_id: Arc<str>,
    exec_id: Arc<str>,
    source: Source,
    next: usize,
}

/// A chunk to send, resolved from the table.
#[derive(Debug, Clone)]
pub struct ChunkRef {
    pub app_id: Arc<str>,
    pub exec_id: Arc<str>,
    pub what: ChunkWhat,
}

#[derive(Debug, Clone, Copy)]
pub enum ChunkWhat {
    Shuffle { shuffle_id: i32, range: BlockRange },
    Rdd { rdd_id: i32, split: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("Requested chunk not available since streamId {0} is closed")]
    Closed(i64),
    #[error(
        "Received out-of-order chunk index {got} (expected {expected}) for streamId {stream_id}"
    )]
    OutOfOrder {
        stream_id: i64,
        got: i32,
        expected: usize,
    },
    #[error("java.lang.SecurityException: Client {client} not authorized to read stream {stream_id} (app {app_id}).")]
    NotAuthorized {
        client: String,
        stream_id: i64,
        app_id: String,
    },
}

impl StreamError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

pub struct StreamTable {
    next_id: AtomicI64,
    streams: Mutex<HashMap<i64, StreamState>>,
    in_flight: AtomicU64,
}

impl Default for StreamTable {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamTable {
    pub fn new() -> Self {
        // Like Spark, start somewhere unpredictable so ids from a restarted service differ.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as i64 ^ d.as_secs() as i64)
            .unwrap_or(1)
            % i32::MAX as i64;
        StreamTable {
            next_id: AtomicI64::new(seed * 1000),
            streams: Mutex::default(),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Registers a stream owned by connection `conn`; returns its id.
    pub fn register(&self, conn: u64, app_id: Arc<str>, exec_id: Arc<str>, source: Source) -> i64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if !source.is_empty() {
            let mut s = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            s.insert(
                id,
                StreamState {
                    conn,
                    app_id,
                    exec_id,
                    source,
                    next: 0,
                },
            );
        }
        id
    }

    /// Hands out chunk `index` of `stream_id`, which must be the next one.
    pub fn next_chunk(&self, stream_id: i64, index: i32) -> Result<ChunkRef, StreamError> {
        self.next_chunk_for(stream_id, index, None)
    }

    /// [`StreamTable::next_chunk`] for a connection authenticated as `client`: a stream of
    /// another application is refused (and left untouched), as Spark's `checkAuthorization`.
    pub fn next_chunk_for(
        &self,
        stream_id: i64,
        index: i32,
        client: Option<&str>,
    ) -> Result<ChunkRef, StreamError> {
        let mut s = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let st = s
            .get_mut(&stream_id)
            .ok_or(StreamError::Closed(stream_id))?;
        if let Some(client) = client {
            if *st.app_id != *client {
                return Err(StreamError::NotAuthorized {
                    client: client.to_owned(),
                    stream_id,
                    app_id: st.app_id.to_string(),
                });
            }
        }
        if index < 0 || index as usize != st.next {
            return Err(StreamError::OutOfOrder {
                stream_id,
                got: index,
                expected: st.next,
            });
        }
        let i = st.next;
        st.next += 1;
        let what = match &st.source {
            Source::Shuffle { shuffle_id, blocks } => ChunkWhat::Shuffle {
                shuffle_id: *shuffle_id,
                range: blocks[i],
            },
            Source::Rdd { blocks } => ChunkWhat::Rdd {
                rdd_id: blocks[i].0,
                split: blocks[i].1,
            },
        };
        let chunk = ChunkRef {
            app_id: st.app_id.clone(),
            exec_id: st.exec_id.clone(),
            what,
        };
        if st.next == st.source.len() {
            s.remove(&stream_id);
        }
        Ok(chunk)
    }

    /// Drops every stream opened on `conn`.
    pub fn connection_closed(&self, conn: u64) -> usize {
        let mut s = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let before = s.len();
        s.retain(|_, st| st.conn != conn);
        before - s.len()
    }

    pub fn len(&self) -> usize {
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chunks queued or being written, across all connections.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one chunk in flight until the guard drops.
    pub fn chunk_guard(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// Decrements the in-flight count when dropped (sent, failed or abandoned).
pub struct InFlight(Arc<StreamTable>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_removed() {
        let t = StreamTable::new();
        let blocks = vec![
            BlockRange {
                map_id: 1,
                start: 0,
                end: 1,
            },
            BlockRange {
                map_id: 2,
                start: 0,
                end: 5,
            },
        ];
        let id = t.register(
            7,
            "a".into(),
            "0".into(),
            Source::Shuffle {
                shuffle_id: 3,
                blocks: blocks.into(),
            },
        );
        assert_eq!(
            t.next_chunk(id, 1).unwrap_err(),
            StreamError::OutOfOrder {
                stream_id: id,
                got: 1,
                expected: 0
            }
        );
        t.next_chunk(id, 0).unwrap();
        assert_eq!(t.len(), 1);
        t.next_chunk(id, 1).unwrap();
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_chunk(id, 2).unwrap_err(), StreamError::Closed(id));
        let id2 = t.register(
            8,
            "a".into(),
            "0".into(),
            Source::Rdd {
                blocks: vec![(1, 2)].into(),
            },
        );
        assert_eq!(t.connection_closed(8), 1);
        assert!(t.next_chunk(id2, 0).is_err());
    }
}
