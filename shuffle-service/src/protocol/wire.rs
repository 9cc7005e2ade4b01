//! Primitive big-endian readers/writers shared by both protocol layers (Spark's `Encoders`).
//!
//! Every length read here is checked against the bytes actually left in the (already bounded)
//! frame before anything is allocated, so a hostile length can never make us reserve memory.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a message could not be decoded. `what` names the field being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated while reading {what}: needed {needed} more bytes, {left} left")]
    Truncated {
        what: &'static str,
        needed: u64,
        left: usize,
    },
    #[error("negative length {len} for {what}")]
    NegativeLength { what: &'static str, len: i64 },
    #[error("{what} is not valid UTF-8")]
    BadUtf8 { what: &'static str },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{left} unexpected trailing bytes after {what}")]
    Trailing { what: &'static str, left: usize },
}

impl DecodeError {
    /// Decoding errors are caused by the peer's bytes: retrying the same bytes cannot help.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// A cursor over one message's bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() as u64 {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                left: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n as usize);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        Ok(self.u8(what)? != 0)
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// A length prefix (`i32`), rejected when negative or larger than what is left given that
    /// each element needs at least `min_elem` bytes.
    fn len(&mut self, what: &'static str, min_elem: u64) -> Result<usize, DecodeError> {
        let n = self.i32(what)?;
        if n < 0 {
            return Err(DecodeError::NegativeLength {
                what,
                len: n as i64,
            });
        }
        let need = n as u64 * min_elem;
        if need > self.buf.len() as u64 {
            return Err(DecodeError::Truncated {
                what,
                needed: need,
                left: self.buf.len(),
            });
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let n = self.len(what, 1)?;
        Ok(Bytes::copy_from_slice(self.take(n as u64, what)?))
    }

    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let n = self.len(what, 1)?;
        let raw = self.take(n as u64, what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8 { what })
    }

    pub fn string_array(&mut self, what: &'static str) -> Result<Vec<String>, DecodeError> {
        let n = self.len(what, 4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.string(what)?);
        }
        Ok(v)
    }

    pub fn int_array(&mut self, what: &'static str) -> Result<Vec<i32>, DecodeError> {
        let n = self.len(what, 4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.i32(what)?);
        }
        Ok(v)
    }

    pub fn long_array(&mut self, what: &'static str) -> Result<Vec<i64>, DecodeError> {
        let n = self.len(what, 8)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.i64(what)?);
        }
        Ok(v)
    }

    /// An array of `IntArray`s (count bounded by the bytes left).
    pub fn int_arrays(&mut self, what: &'static str) -> Result<Vec<Vec<i32>>, DecodeError> {
        let n = self.len(what, 4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.int_array(what)?);
        }
        Ok(v)
    }

    /// One RoaringBitmap in portable serialization; Spark writes no length prefix, so the size
    /// is computed from the bitmap's own header. The bytes are kept opaque.
    pub fn roaring_bitmap(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let size = roaring_serialized_size(self.buf).ok_or(DecodeError::Invalid {
            what,
            reason: "malformed RoaringBitmap".into(),
        })?;
        Ok(Bytes::copy_from_slice(self.take(size as u64, what)?))
    }

    pub fn bitmap_array(&mut self, what: &'static str) -> Result<Vec<Bytes>, DecodeError> {
        let n = self.len(what, 4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.roaring_bitmap(what)?);
        }
        Ok(v)
    }

    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing {
                what,
                left: self.buf.len(),
            })
        }
    }
}

/// Size in bytes of the RoaringBitmap (portable format) at the start of `b`, if well formed.
pub fn roaring_serialized_size(b: &[u8]) -> Option<usize> {
    const SERIAL_COOKIE_NO_RUN: u32 = 12346;
    const SERIAL_COOKIE: u32 = 12347;
    const NO_OFFSET_THRESHOLD: usize = 4;
    let le32 = |at: usize| -> Option<u32> {
        b.get(at..at + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let le16 = |at: usize| -> Option<usize> {
        b.get(at..at + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let cookie = le32(0)?;
    let (size, mut pos, run_bitmap_at, has_offsets) = if cookie & 0xFFFF == SERIAL_COOKIE {
        let size = (cookie >> 16) as usize + 1;
        let at = 4;
        let pos = at + size.div_ceil(8);
        (size, pos, Some(at), size >= NO_OFFSET_THRESHOLD)
    } else if cookie == SERIAL_COOKIE_NO_RUN {
        (le32(4)? as usize, 8, None, true)
    } else {
        return None;
    };
    if size > 65536 || pos > b.len() {
        return None;
    }
    let header = pos;
    pos += 4 * size; // (key, cardinality-1) pairs
    if has_offsets {
        pos += 4 * size;
    }
    for i in 0..size {
        let is_run = match run_bitmap_at {
            Some(at) => b.get(at + i / 8)? & (1 << (i % 8)) != 0,
            None => false,
        };
        if is_run {
            let runs = le16(pos)?;
            pos += 2 + 4 * runs;
        } else {
            let card = le16(header + 4 * i + 2)? + 1;
            pos += if card > 4096 { 8192 } else { 2 * card };
        }
        if pos > b.len() {
            return None;
        }
    }
    (pos <= b.len()).then_some(pos)
}

/// Writers for the same encodings.
pub trait PutExt: BufMut {
    fn put_string(&mut self, s: &str) {
        self.put_i32(s.len() as i32);
        self.put_slice(s.as_bytes());
    }
    fn put_byte_array(&mut self, b: &[u8]) {
        self.put_i32(b.len() as i32);
        self.put_slice(b);
    }
    fn put_string_array(&mut self, v: &[String]) {
        self.put_i32(v.len() as i32);
        for s in v {
            self.put_string(s);
        }
    }
    fn put_int_array(&mut self, v: &[i32]) {
        self.put_i32(v.len() as i32);
        for x in v {
            self.put_i32(*x);
        }
    }
    fn put_long_array(&mut self, v: &[i64]) {
        self.put_i32(v.len() as i32);
        for x in v {
            self.put_i64(*x);
        }
    }
}

impl PutExt for BytesMut {}
impl PutExt for Vec<u8> {}

/// Encoded length of a `Strings` value.
pub fn string_len(s: &str) -> usize {
    4 + s.len()
}
