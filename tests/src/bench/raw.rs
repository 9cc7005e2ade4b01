//! The physical limit: a deliberately minimal server for the same data set with the same
//! framing, nothing else. All indexes are loaded and all data files opened at start-up; one
//! blocking thread per connection; a chunk is the 21-byte header sent with `MSG_MORE`
//! followed by one `sendfile` of the segment. No registry, validation, metrics or limits:
//! only what the protocol forces, so "ours / raw" is the share of the hardware we get.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;

use super::data::{DataError, DataSet};
use super::wire::{self, Cursor};

struct MapOutput {
    data: File,
    offsets: Vec<u64>,
}

type Outputs = HashMap<(i32, u32), MapOutput>;

/// Why the raw server could not start.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("raw server cannot open {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("raw server cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("data set {0} holds no shuffle (run `croupier-shuffle-bench gen` first)")]
    Empty(std::path::PathBuf),
}

impl RawError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, RawError::Bind { .. })
    }
}

/// Loads every shuffle of `data`, binds `addr`, logs `listening on <addr>` and serves forever.
pub fn serve(data: &DataSet, addr: SocketAddr) -> Result<(), RawError> {
    let mut outputs = Outputs::new();
    let shapes = data.shapes()?;
    if shapes.is_empty() {
        return Err(RawError::Empty(data.root.clone()));
    }
    for s in &shapes {
        for m in 0..s.maps {
            let ip = data.index_path(s.shuffle_id, m);
            let mut raw = Vec::new();
            File::open(&ip)
                .and_then(|mut f| f.read_to_end(&mut raw))
                .map_err(|source| RawError::Open {
                    path: ip.clone(),
                    source,
                })?;
            let offsets = raw
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
                .collect();
            let dp = data.data_path(s.shuffle_id, m);
            let file = File::open(&dp).map_err(|source| RawError::Open {
                path: dp.clone(),
                source,
            })?;
            outputs.insert(
                (s.shuffle_id, m),
                MapOutput {
                    data: file,
                    offsets,
                },
            );
        }
    }
    let outputs = Arc::new(outputs);
    let listener = TcpListener::bind(addr).map_err(|source| RawError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| RawError::Bind { addr, source })?;
    eprintln!("listening on {local}");
    for sock in listener.incoming() {
        let Ok(sock) = sock else { continue };
        let outputs = outputs.clone();
        std::thread::spawn(move || {
            let _ = sock.set_nodelay(true);
            let peer = sock.peer_addr().ok();
            if let Err(e) = connection(sock, &outputs) {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    eprintln!("raw server: connection {peer:?}: {e}");
                }
            }
        });
    }
    Ok(())
}

fn bad(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

fn connection(sock: TcpStream, outputs: &Outputs) -> io::Result<()> {
    let mut r = BufReader::with_capacity(64 << 10, sock.try_clone()?);
    let mut streams: HashMap<i64, Vec<(i32, u32, u32, u32)>> = HashMap::new();
    let mut next_stream = 1i64;
    let mut frame = Vec::new();
    let mut out = Vec::new();
    loop {
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let len = i64::from_be_bytes(len);
        if !(9..=(16 << 20)).contains(&len) {
            return Err(bad(format!("frame length {len}")));
        }
        frame.resize(len as usize - 8, 0);
        r.read_exact(&mut frame)?;
        let mut cur = Cursor(&frame[1..]);
        match frame[0] {
            wire::RPC_REQUEST => {
                let request_id = cur.i64("requestId")?;
                let _ = cur.i32("bodyLen")?;
                let body = cur.0;
                let mut b = Cursor(body.get(1..).unwrap_or_default());
                let chunks = match body.first() {
                    Some(&wire::REGISTER_EXECUTOR) => None,
                    Some(&wire::FETCH_SHUFFLE_BLOCKS) => {
                        let (_app, _exec) = (b.string("appId")?, b.string("execId")?);
                        let shuffle = b.i32("shuffleId")?;
                        let maps = b.longs("mapIds")?;
                        let n = b.i32("reduceIds")?;
                        let batch_at = b.0.len().saturating_sub(1);
                        let batch = b.0.get(batch_at) == Some(&1);
                        let mut chunks = Vec::new();
                        for m in maps.iter().take(n.max(0) as usize) {
                            let rs = b.ints("reduceIds")?;
                            let map = u32::try_from(*m).map_err(|_| bad(format!("map id {m}")))?;
                            if batch {
                                let (s, e) = (
                                    rs.first().copied().unwrap_or(0),
                                    rs.get(1).copied().unwrap_or(0),
                                );
                                chunks.push((shuffle, map, s as u32, e as u32));
                            } else {
                                chunks.extend(
                                    rs.iter().map(|r| (shuffle, map, *r as u32, *r as u32 + 1)),
                                );
                            }
                        }
                        Some(chunks)
                    }
                    Some(&wire::OPEN_BLOCKS) => {
                        let (_app, _exec) = (b.string("appId")?, b.string("execId")?);
                        let mut chunks = Vec::new();
                        for id in b.strings("blockIds")? {
                            let p: Vec<u32> = id
                                .split('_')
                                .skip(1)
                                .filter_map(|x| x.parse().ok())
                                .collect();
                            if p.len() != 3 {
                                return Err(bad(format!("block id {id}")));
                            }
                            chunks.push((p[0] as i32, p[1], p[2], p[2] + 1));
                        }
                        Some(chunks)
                    }
                    other => {
                        return Err(bad(format!("unsupported BlockTransferMessage {other:?}")))
                    }
                };
                let reply: Vec<u8> = match chunks {
                    None => Vec::new(),
                    Some(c) => {
                        let id = next_stream;
                        next_stream += 1;
                        let h = wire::stream_handle(id, c.len() as i32);
                        streams.insert(id, c);
                        h.to_vec()
                    }
                };
                out.clear();
                out.extend_from_slice(&((wire::HEADER + reply.len()) as i64).to_be_bytes());
                out.push(wire::RPC_RESPONSE);
                out.extend_from_slice(&request_id.to_be_bytes());
                out.extend_from_slice(&(reply.len() as i32).to_be_bytes());
                out.extend_from_slice(&reply);
                write_all(&sock, &out, 0)?;
            }
            wire::CHUNK_FETCH_REQUEST => {
                let stream = cur.i64("streamId")?;
                let idx = cur.i32("chunkIndex")?;
                let chunks = streams
                    .get(&stream)
                    .ok_or_else(|| bad(format!("unknown stream {stream}")))?;
                let &(s, m, start, end) = chunks
                    .get(idx as usize)
                    .ok_or_else(|| bad(format!("stream {stream} has no chunk {idx}")))?;
                if idx as usize + 1 == chunks.len() {
                    streams.remove(&stream);
                }
                let mo = outputs
                    .get(&(s, m))
                    .ok_or_else(|| bad(format!("no map output {s}/{m}")))?;
                let (off, stop) =
                    match (mo.offsets.get(start as usize), mo.offsets.get(end as usize)) {
                        (Some(a), Some(b)) if a <= b => (*a, *b),
                        _ => {
                            return Err(bad(format!(
                                "reduce range {start}..{end} outside map output {s}/{m}"
                            )))
                        }
                    };
                out.clear();
                wire::chunk_success_header(&mut out, stream, idx, stop - off);
                let more = if stop > off { libc::MSG_MORE } else { 0 };
                write_all(&sock, &out, more)?;
                let mut pos = off as i64;
                while (pos as u64) < stop {
                    let want = (stop - pos as u64) as usize;
                    match nix::sys::sendfile::sendfile64(
                        sock.as_fd(),
                        mo.data.as_fd(),
                        Some(&mut pos),
                        want,
                    ) {
                        Ok(0) => return Err(bad("data file shorter than its index".into())),
                        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            other => return Err(bad(format!("unsupported frame type {other}"))),
        }
    }
}

/// `send(2)` with `flags` (`MSG_MORE` for a header that a `sendfile` body follows) until done.
fn write_all(sock: &TcpStream, mut buf: &[u8], flags: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice for the call; the fd is an open socket.
        let n = unsafe { libc::send(sock.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}
