//! RecordIO framing, as used by the Mesos streaming APIs: each record is its length in ASCII
//! decimal, a `\n`, then exactly that many bytes.
//!
//! [`encode`] appends one record to a buffer. [`Decoder`] is incremental: feed it the bytes
//! received so far (call [`Decoder::decode`] after every chunk, repeatedly until it returns
//! `Ok(None)`); it consumes complete records from the front of the buffer and leaves partial
//! ones in place. Lengths are checked against a maximum *before* any of the record is buffered
//! or allocated, and a malformed length line is a clear, terminal error.

use bytes::{BufMut, Bytes, BytesMut};

/// The longest length line accepted, in digits (`u64::MAX` has 20).
pub const MAX_LENGTH_DIGITS: usize = 20;

/// A malformed RecordIO stream. None of these is retryable on the same stream: the framing is
/// lost, so the connection must be dropped (a fresh connection may of course be tried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    /// The length line held something other than ASCII digits.
    #[error("malformed RecordIO length line {line:?}: expected decimal digits followed by '\\n'")]
    InvalidLength {
        /// The offending line (or its first bytes), lossily decoded.
        line: String,
    },
    /// No `\n` within [`MAX_LENGTH_DIGITS`] bytes.
    #[error("malformed RecordIO length line: no '\\n' within {MAX_LENGTH_DIGITS} digits")]
    LengthLineTooLong,
    /// The announced record is bigger than the decoder's limit.
    #[error("RecordIO record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The announced length.
        len: u64,
        /// The decoder's limit.
        max: usize,
    },
    /// The stream ended in the middle of a record.
    #[error("RecordIO stream ended inside a record ({buffered} bytes of an unfinished record)")]
    Truncated {
        /// How many bytes of the unfinished record (or length line) were buffered.
        buffered: usize,
    },
}

impl RecordIoError {
    /// Always `false`: a framing error is not cured by retrying on the same stream.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Append `record` to `out` as one RecordIO record.
pub fn encode(record: &[u8], out: &mut BytesMut) {
    let header = record.len().to_string();
    out.reserve(header.len() + 1 + record.len());
    out.put_slice(header.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(record);
}

/// Encode `record` as one RecordIO record into a fresh buffer.
pub fn encode_to_bytes(record: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    encode(record, &mut out);
    out.freeze()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a complete length line.
    Length,
    /// Waiting for this many record bytes.
    Body(usize),
    /// A previous error: the stream is unusable.
    Failed,
}

/// Incremental, bounded RecordIO decoder (see the module docs).
#[derive(Debug, Clone)]
pub struct Decoder {
    max_record_len: usize,
    state: State,
    last_error: Option<RecordIoError>,
}

impl Decoder {
    /// A decoder that rejects records longer than `max_record_len` bytes.
    pub fn new(max_record_len: usize) -> Self {
        Decoder {
            max_record_len,
            state: State::Length,
            last_error: None,
        }
    }

    /// The configured limit.
    pub fn max_record_len(&self) -> usize {
        self.max_record_len
    }

    /// Take the next complete record from the front of `buf`, if there is one.
    ///
    /// `Ok(None)` means "need more bytes". After an error every later call returns the same error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, RecordIoError> {
        loop {
            match self.state {
                State::Failed => {
                    return Err(self
                        .last_error
                        .clone()
                        .unwrap_or(RecordIoError::LengthLineTooLong))
                }
                State::Length => {
                    let scan = buf.len().min(MAX_LENGTH_DIGITS + 1);
                    let newline = buf[..scan].iter().position(|&b| b == b'\n');
                    let digits_end = newline.unwrap_or(scan);
                    if let Some(bad) = buf[..digits_end].iter().position(|b| !b.is_ascii_digit()) {
                        let shown = &buf[..digits_end.min(bad + 16)];
                        return self.fail(RecordIoError::InvalidLength {
                            line: String::from_utf8_lossy(shown).into_owned(),
                        });
                    }
                    let Some(nl) = newline else {
                        if buf.len() > MAX_LENGTH_DIGITS {
                            return self.fail(RecordIoError::LengthLineTooLong);
                        }
                        return Ok(None);
                    };
                    if nl == 0 {
                        return self.fail(RecordIoError::InvalidLength {
                            line: String::new(),
                        });
                    }
                    // All digits, at most 20 of them: only overflow of u64 can fail here.
                    let text = std::str::from_utf8(&buf[..nl]).unwrap_or("");
                    let len = match text.parse::<u64>() {
                        Ok(n) => n,
                        Err(_) => {
                            return self.fail(RecordIoError::RecordTooLarge {
                                len: u64::MAX,
                                max: self.max_record_len,
                            })
                        }
                    };
                    if len > self.max_record_len as u64 {
                        return self.fail(RecordIoError::RecordTooLarge {
                            len,
                            max: self.max_record_len,
                        });
                    }
                    let _ = buf.split_to(nl + 1);
                    // len <= max_record_len, which is a usize.
                    self.state = State::Body(len as usize);
                }
                State::Body(len) => {
                    if buf.len() < len {
                        return Ok(None);
                    }
                    let record = buf.split_to(len).freeze();
                    self.state = State::Length;
                    return Ok(Some(record));
                }
            }
        }
    }

    /// Call at end of stream: an error if a record (or length line) was left unfinished.
    pub fn finish(&self, buf: &BytesMut) -> Result<(), RecordIoError> {
        match self.state {
            State::Failed => Err(self
                .last_error
                .clone()
                .unwrap_or(RecordIoError::LengthLineTooLong)),
            State::Length if buf.is_empty() => Ok(()),
            State::Length | State::Body(_) => Err(RecordIoError::Truncated {
                buffered: buf.len(),
            }),
        }
    }

    fn fail(&mut self, e: RecordIoError) -> Result<Option<Bytes>, RecordIoError> {
        self.state = State::Failed;
        self.last_error = Some(e.clone());
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(records: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        for r in records {
            encode(r, &mut out);
        }
        out
    }

    fn drain(d: &mut Decoder, buf: &mut BytesMut) -> Vec<Bytes> {
        let mut got = Vec::new();
        while let Some(r) = d.decode(buf).expect("valid stream") {
            got.push(r);
        }
        got
    }

    #[test]
    fn encode_layout() {
        assert_eq!(&encode_to_bytes(b"hello")[..], b"5\nhello");
        assert_eq!(&encode_to_bytes(b"")[..], b"0\n");
    }

    #[test]
    fn split_at_every_byte() {
        let records: Vec<Vec<u8>> = vec![
            b"first".to_vec(),
            Vec::new(),
            vec![b'\n'; 12],
            (0..=255u8).collect(),
        ];
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        let wire = stream(&refs);
        for split in 0..=wire.len() {
            let mut d = Decoder::new(1024);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            buf.extend_from_slice(&wire[..split]);
            got.extend(drain(&mut d, &mut buf));
            buf.extend_from_slice(&wire[split..]);
            got.extend(drain(&mut d, &mut buf));
            assert_eq!(got.len(), records.len(), "split at {split}");
            for (g, r) in got.iter().zip(&records) {
                assert_eq!(&g[..], &r[..], "split at {split}");
            }
            assert!(buf.is_empty());
            d.finish(&buf).expect("clean end");
        }
    }

    #[test]
    fn byte_by_byte() {
        let wire = stream(&[b"abc", b"defgh", b"i"]);
        let mut d = Decoder::new(16);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            got.extend(drain(&mut d, &mut buf));
        }
        assert_eq!(got, vec![&b"abc"[..], &b"defgh"[..], &b"i"[..]]);
    }

    #[test]
    fn many_records_in_one_chunk() {
        let many: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("record-{i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = many.iter().map(|r| r.as_slice()).collect();
        let mut buf = stream(&refs);
        let mut d = Decoder::new(64);
        let got = drain(&mut d, &mut buf);
        assert_eq!(got.len(), 100);
        assert_eq!(&got[42][..], b"record-42");
    }

    #[test]
    fn oversize_rejected_before_buffering() {
        let mut d = Decoder::new(1024);
        // Only the header has arrived: it must be rejected now, without waiting for the body
        // and without reserving room for it.
        let mut buf = BytesMut::from(&b"1073741824\n"[..]);
        let cap_before = buf.capacity();
        let err = d.decode(&mut buf).expect_err("too large");
        assert_eq!(
            err,
            RecordIoError::RecordTooLarge {
                len: 1_073_741_824,
                max: 1024
            }
        );
        assert_eq!(buf.capacity(), cap_before);
        assert!(err.to_string().contains("exceeds the limit of 1024 bytes"));
        // Sticky.
        assert!(d.decode(&mut buf).is_err());
    }

    #[test]
    fn limit_is_inclusive() {
        let mut d = Decoder::new(3);
        let mut buf = stream(&[b"abc"]);
        assert_eq!(
            d.decode(&mut buf).expect("ok").as_deref(),
            Some(&b"abc"[..])
        );
        let mut buf = stream(&[b"abcd"]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(RecordIoError::RecordTooLarge { len: 4, max: 3 })
        ));
    }

    #[test]
    fn garbage_length_is_a_clear_error() {
        for garbage in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"12a\n",
            b"-5\nabc",
            b" 5\nhello",
            b"\nx",
        ] {
            let mut d = Decoder::new(1024);
            let mut buf = BytesMut::from(garbage);
            let err = d.decode(&mut buf).expect_err("garbage");
            assert!(
                matches!(err, RecordIoError::InvalidLength { .. }),
                "{garbage:?} gave {err:?}"
            );
            assert!(err.to_string().contains("malformed RecordIO length line"));
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn garbage_detected_before_newline() {
        let mut d = Decoder::new(1024);
        let mut buf = BytesMut::from(&b"{\"type\""[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(RecordIoError::InvalidLength { .. })
        ));
    }

    #[test]
    fn overlong_length_line() {
        let mut d = Decoder::new(usize::MAX);
        let mut buf = BytesMut::from(&b"123456789012345678901"[..]);
        assert_eq!(d.decode(&mut buf), Err(RecordIoError::LengthLineTooLong));
        // 20 digits that overflow u64.
        let mut d = Decoder::new(usize::MAX);
        let mut buf = BytesMut::from(&b"99999999999999999999\n"[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(RecordIoError::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_stream() {
        let mut d = Decoder::new(1024);
        let mut buf = BytesMut::from(&b"10\nabc"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(
            d.finish(&buf),
            Err(RecordIoError::Truncated { buffered: 3 })
        );
    }
}
