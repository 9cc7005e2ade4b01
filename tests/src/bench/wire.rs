//! The handful of Spark frames the benchmark needs, encoded and decoded by hand so the hot path
//! works on fixed-size headers and reusable buffers (no per-chunk allocation in the client).
//! Layouts: `network-common` frames (i64 length counting itself, u8 type, header, body) and
//! `BlockTransferMessage` payloads, all big-endian.

use std::io;

pub const CHUNK_FETCH_REQUEST: u8 = 0;
pub const CHUNK_FETCH_SUCCESS: u8 = 1;
pub const CHUNK_FETCH_FAILURE: u8 = 2;
pub const RPC_REQUEST: u8 = 3;
pub const RPC_RESPONSE: u8 = 4;
pub const RPC_FAILURE: u8 = 5;

pub const OPEN_BLOCKS: u8 = 0;
pub const REGISTER_EXECUTOR: u8 = 2;
pub const STREAM_HANDLE: u8 = 3;
pub const FETCH_SHUFFLE_BLOCKS: u8 = 9;

/// Length + type + 12-byte header: ChunkFetchRequest/Success, and the fixed part of RPC frames.
pub const HEADER: usize = 21;

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as i32).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// Appends an RpcRequest frame carrying `body`.
pub fn rpc_request(out: &mut Vec<u8>, request_id: i64, body: &[u8]) {
    out.extend_from_slice(&((HEADER + body.len()) as i64).to_be_bytes());
    out.push(RPC_REQUEST);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
}

/// Appends a ChunkFetchRequest frame.
pub fn chunk_fetch_request(out: &mut Vec<u8>, stream_id: i64, chunk: i32) {
    out.extend_from_slice(&(HEADER as i64).to_be_bytes());
    out.push(CHUNK_FETCH_REQUEST);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(&chunk.to_be_bytes());
}

/// A frame header as `(type, frame length, i64 at 9, i32 at 17)` from the first 21 bytes.
pub fn parse_header(h: &[u8; HEADER]) -> (u8, i64, i64, i32) {
    let len = i64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    let a = i64::from_be_bytes([h[9], h[10], h[11], h[12], h[13], h[14], h[15], h[16]]);
    let b = i32::from_be_bytes([h[17], h[18], h[19], h[20]]);
    (h[8], len, a, b)
}

/// Appends the 21-byte ChunkFetchSuccess header for a body of `body_len` bytes.
pub fn chunk_success_header(out: &mut Vec<u8>, stream_id: i64, chunk: i32, body_len: u64) {
    out.extend_from_slice(&((HEADER as u64 + body_len) as i64).to_be_bytes());
    out.push(CHUNK_FETCH_SUCCESS);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(&chunk.to_be_bytes());
}

pub fn register_executor(
    app: &str,
    exec: &str,
    local_dirs: &[String],
    sub_dirs: i32,
    manager: &str,
) -> Vec<u8> {
    let mut b = vec![REGISTER_EXECUTOR];
    put_str(&mut b, app);
    put_str(&mut b, exec);
    b.extend_from_slice(&(local_dirs.len() as i32).to_be_bytes());
    for d in local_dirs {
        put_str(&mut b, d);
    }
    b.extend_from_slice(&sub_dirs.to_be_bytes());
    put_str(&mut b, manager);
    b
}

/// FetchShuffleBlocks: `per_map[i]` are map `map_ids[i]`'s reduce ids (or `[start, end)` when
/// `batch`).
pub fn fetch_shuffle_blocks(
    out: &mut Vec<u8>,
    app: &str,
    exec: &str,
    shuffle: i32,
    maps: &[i64],
    per_map: &[&[i32]],
    batch: bool,
) {
    out.push(FETCH_SHUFFLE_BLOCKS);
    put_str(out, app);
    put_str(out, exec);
    out.extend_from_slice(&shuffle.to_be_bytes());
    out.extend_from_slice(&(maps.len() as i32).to_be_bytes());
    for m in maps {
        out.extend_from_slice(&m.to_be_bytes());
    }
    out.extend_from_slice(&(per_map.len() as i32).to_be_bytes());
    for r in per_map {
        out.extend_from_slice(&(r.len() as i32).to_be_bytes());
        for x in *r {
            out.extend_from_slice(&x.to_be_bytes());
        }
    }
    out.push(u8::from(batch));
}

pub fn open_blocks(out: &mut Vec<u8>, app: &str, exec: &str, block_ids: &[String]) {
    out.push(OPEN_BLOCKS);
    put_str(out, app);
    put_str(out, exec);
    out.extend_from_slice(&(block_ids.len() as i32).to_be_bytes());
    for id in block_ids {
        put_str(out, id);
    }
}

pub fn stream_handle(stream_id: i64, num_chunks: i32) -> [u8; 13] {
    let mut b = [0u8; 13];
    b[0] = STREAM_HANDLE;
    b[1..9].copy_from_slice(&stream_id.to_be_bytes());
    b[9..13].copy_from_slice(&num_chunks.to_be_bytes());
    b
}

/// A bounds-checked cursor for decoding request bodies (raw server) and error strings.
pub struct Cursor<'a>(pub &'a [u8]);

fn short(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("truncated {what}"))
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> io::Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(short(what));
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    pub fn u8(&mut self, what: &str) -> io::Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub fn i32(&mut self, what: &str) -> io::Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i64(&mut self, what: &str) -> io::Result<i64> {
        let b = self.take(8, what)?;
        Ok(i64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }
    fn count(&mut self, what: &str, elem: usize) -> io::Result<usize> {
        let n = self.i32(what)?;
        if n < 0 || (n as usize).saturating_mul(elem) > self.0.len() {
            return Err(short(what));
        }
        Ok(n as usize)
    }
    pub fn string(&mut self, what: &str) -> io::Result<String> {
        let n = self.count(what, 1)?;
        let b = self.take(n, what)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }
    pub fn strings(&mut self, what: &str) -> io::Result<Vec<String>> {
        let n = self.count(what, 4)?;
        (0..n).map(|_| self.string(what)).collect()
    }
    pub fn ints(&mut self, what: &str) -> io::Result<Vec<i32>> {
        let n = self.count(what, 4)?;
        (0..n).map(|_| self.i32(what)).collect()
    }
    pub fn longs(&mut self, what: &str) -> io::Result<Vec<i64>> {
        let n = self.count(what, 8)?;
        (0..n).map(|_| self.i64(what)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_spark_layout() {
        let mut b = Vec::new();
        rpc_request(&mut b, 7, &[]);
        assert_eq!(b.len(), 21);
        assert_eq!(&b[..9], &[0, 0, 0, 0, 0, 0, 0, 21, RPC_REQUEST]);
        let mut c = Vec::new();
        chunk_fetch_request(&mut c, 5, 2);
        let h: [u8; 21] = c[..21].try_into().unwrap();
        assert_eq!(parse_header(&h), (CHUNK_FETCH_REQUEST, 21, 5, 2));
        let mut f = Vec::new();
        fetch_shuffle_blocks(&mut f, "a", "0", 1, &[4, 5], &[&[1], &[1]], false);
        let mut cur = Cursor(&f[1..]);
        assert_eq!(cur.string("app").unwrap(), "a");
        assert_eq!(cur.string("exec").unwrap(), "0");
        assert_eq!(cur.i32("shuffle").unwrap(), 1);
        assert_eq!(cur.longs("maps").unwrap(), vec![4, 5]);
        assert_eq!(cur.i32("n").unwrap(), 2);
        assert_eq!(cur.ints("r").unwrap(), vec![1]);
        assert_eq!(cur.ints("r").unwrap(), vec![1]);
        assert_eq!(cur.u8("batch").unwrap(), 0);
        assert!(cur.0.is_empty());
    }
}
