//! Many concurrent connections: opens plain blocking sockets to a shuffle service in steps,
//! reads the server's resident memory at each step, then sends one request on every connection
//! and checks that every one is answered (each held, none silently dropped).
//!
//! The request is a ChunkFetchRequest for a stream that does not exist: every Spark 3.5
//! shuffle service answers it with a ChunkFetchFailure for that stream and keeps the
//! connection, and it needs no registered executor or data on disk.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::procfs::Proc;
use super::wire;

/// The stream asked for on every connection (never opened by anyone).
pub const UNKNOWN_STREAM: i64 = 0x0C0F_FEE0;

#[derive(Debug, thiserror::Error)]
pub enum ConnsError {
    #[error("connection {index} to shuffle server {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        index: usize,
        source: io::Error,
    },
    #[error("connection {index} to shuffle server {addr}: {source}")]
    Io {
        addr: SocketAddr,
        index: usize,
        source: io::Error,
    },
    #[error("connection {index} to shuffle server {addr}: expected a ChunkFetchFailure for stream {UNKNOWN_STREAM}, got frame type {kind} for stream {stream}")]
    Unexpected {
        addr: SocketAddr,
        index: usize,
        kind: u8,
        stream: i64,
    },
    #[error("reading the memory of server pid {pid}: {source}")]
    Proc { pid: u32, source: io::Error },
    #[error("the open-file limit: {0}")]
    Limit(io::Error),
}

impl ConnsError {
    /// A refused or reset connection may succeed on a retry; a wrong answer will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnsError::Connect { .. } | ConnsError::Io { .. })
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to at least `want` (up to the hard limit; as
/// root the hard limit too). Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> Result<u64, ConnsError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(ConnsError::Limit(io::Error::last_os_error()));
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let mut new = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        // Not root: as far as the hard limit goes.
        new = libc::rlimit {
            rlim_cur: lim.rlim_max.min(want),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(ConnsError::Limit(io::Error::last_os_error()));
        }
    }
    Ok(new.rlim_cur)
}

/// Opens connections until `held` has `total` of them.
pub fn open_to(
    addr: SocketAddr,
    held: &mut Vec<TcpStream>,
    total: usize,
) -> Result<(), ConnsError> {
    while held.len() < total {
        let index = held.len();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(30)).map_err(|source| {
            ConnsError::Connect {
                addr,
                index,
                source,
            }
        })?;
        held.push(s);
    }
    Ok(())
}

/// Sends one ChunkFetchRequest on every connection, then reads every answer (in connection
/// order, each within `timeout`). Returns how many were answered (all, or an error).
pub fn ask_all(
    addr: SocketAddr,
    held: &mut [TcpStream],
    timeout: Duration,
) -> Result<usize, ConnsError> {
    let mut req = Vec::new();
    wire::chunk_fetch_request(&mut req, UNKNOWN_STREAM, 0);
    for (index, s) in held.iter_mut().enumerate() {
        s.write_all(&req).map_err(|source| ConnsError::Io {
            addr,
            index,
            source,
        })?;
    }
    let mut rest = Vec::new();
    for (index, s) in held.iter_mut().enumerate() {
        let io = |source| ConnsError::Io {
            addr,
            index,
            source,
        };
        s.set_read_timeout(Some(timeout)).map_err(io)?;
        let mut h = [0u8; wire::HEADER];
        s.read_exact(&mut h).map_err(io)?;
        let (kind, len, stream, _) = wire::parse_header(&h);
        // The error string: bounded, the test's own server answers a line of text.
        let body = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_sub(wire::HEADER))
            .filter(|&l| l <= 1 << 16)
            .ok_or_else(|| {
                io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("frame length {len}"),
                ))
            })?;
        rest.resize(body, 0);
        s.read_exact(&mut rest).map_err(io)?;
        if kind != wire::CHUNK_FETCH_FAILURE || stream != UNKNOWN_STREAM {
            return Err(ConnsError::Unexpected {
                addr,
                index,
                kind,
                stream,
            });
        }
    }
    Ok(held.len())
}

/// The server's VmRSS in KiB once it has settled: read every 100 ms until two readings in a
/// row differ by less than 1% (at most `within`).
pub fn settled_rss_kib(server: Proc, within: Duration) -> Result<u64, ConnsError> {
    let read = || {
        server
            .rss()
            .map(|b| b / 1024)
            .map_err(|source| ConnsError::Proc {
                pid: server.0,
                source,
            })
    };
    let end = Instant::now() + within;
    let mut last = read()?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = read()?;
        if now.abs_diff(last) * 100 <= last || Instant::now() >= end {
            return Ok(now);
        }
        last = now;
    }
}
