//! The byte transforms of an authenticated, encrypted connection, below Spark's framing:
//! AES-CTR (auth engine) or SASL `auth-conf` records. The server's reader feeds what it reads
//! through an [`Inbound`]; its writer seals everything it sends with an [`Outbound`], chunk
//! bodies included (read from the file in large batches, then encrypted in place).

use bytes::BytesMut;

use super::ctr::{Decryptor, Encryptor};
use super::sasl::{SaslError, SaslUnwrap, SaslWrap};

/// Largest SASL record accepted from a client (Spark sends at most
/// `spark.network.sasl.maxEncryptedBlockSize` of plaintext per record, 64 KiB by default).
pub const MAX_SASL_RECORD: u64 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("SASL record length {0} is out of bounds (8 to {MAX_SASL_RECORD} bytes)")]
    RecordLength(u64),
    #[error(transparent)]
    Sasl(#[from] SaslError),
}

impl ChannelError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// How received bytes are decrypted.
pub enum Inbound {
    Ctr(Box<Decryptor>),
    Sasl {
        unwrap: Box<SaslUnwrap>,
        /// Received bytes not yet forming a whole record.
        raw: BytesMut,
    },
}

impl Inbound {
    /// `buf[from..]` was just read from the socket: turns it into plaintext in place (CTR),
    /// or moves it to the record buffer and appends every complete record's plaintext (SASL).
    pub fn after_read(&mut self, buf: &mut BytesMut, from: usize) -> Result<(), ChannelError> {
        match self {
            Inbound::Ctr(d) => {
                d.decrypt(&mut buf[from..]);
                Ok(())
            }
            Inbound::Sasl { unwrap, raw } => {
                raw.extend_from_slice(&buf[from..]);
                buf.truncate(from);
                while raw.len() >= 8 {
                    let mut len_bytes = [0u8; 8];
                    len_bytes.copy_from_slice(&raw[..8]);
                    let len = u64::from_be_bytes(len_bytes);
                    if !(8..=MAX_SASL_RECORD).contains(&len) {
                        return Err(ChannelError::RecordLength(len));
                    }
                    if (raw.len() as u64) < len {
                        break;
                    }
                    let rec = raw.split_to(len as usize);
                    let plain = unwrap.unwrap(&rec[8..])?;
                    buf.extend_from_slice(&plain);
                }
                Ok(())
            }
        }
    }
}

/// How sent bytes are encrypted.
pub enum Outbound {
    Ctr(Box<Encryptor>),
    Sasl {
        wrap: Box<SaslWrap>,
        /// Plaintext bytes per record (`spark.network.sasl.maxEncryptedBlockSize`).
        max_block: usize,
    },
}

impl Outbound {
    /// Seals `data` (consumed) into the bytes to write: in place for CTR, as
    /// `u64 length ‖ wrapped` records of at most `max_block` plaintext bytes for SASL.
    pub fn seal(&mut self, mut data: Vec<u8>) -> Vec<u8> {
        match self {
            Outbound::Ctr(e) => {
                e.encrypt(&mut data);
                data
            }
            Outbound::Sasl { wrap, max_block } => {
                let mut out = Vec::with_capacity(data.len() + 32 * (1 + data.len() / *max_block));
                for piece in data.chunks((*max_block).max(1)) {
                    let at = out.len();
                    out.extend_from_slice(&[0u8; 8]);
                    wrap.wrap(piece, &mut out);
                    let len = (out.len() - at) as u64;
                    out[at..at + 8].copy_from_slice(&len.to_be_bytes());
                }
                out
            }
        }
    }

    /// Seals in place where the cipher allows it (CTR), else returns the sealed copy.
    pub fn seal_buf<'a>(&mut self, data: &'a mut [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        match self {
            Outbound::Ctr(e) => {
                e.encrypt(data);
                data
            }
            Outbound::Sasl { .. } => {
                *scratch = self.seal(data.to_vec());
                scratch
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sasl::SaslPrivacy;

    #[test]
    fn sasl_records_across_reads() {
        let ha1 = [9u8; 16];
        let (wrap, _) = SaslPrivacy::client(&ha1).split();
        let (_, unwrap) = SaslPrivacy::server(&ha1).split();
        let mut out = Outbound::Sasl {
            wrap: Box::new(wrap),
            max_block: 1000,
        };
        let mut inb = Inbound::Sasl {
            unwrap: Box::new(unwrap),
            raw: BytesMut::new(),
        };
        let msg: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let sealed = out.seal(msg.clone());
        assert_eq!(sealed.len(), 5000 + 5 * (8 + 16));
        let mut buf = BytesMut::new();
        for piece in sealed.chunks(777) {
            let from = buf.len();
            buf.extend_from_slice(piece);
            inb.after_read(&mut buf, from).unwrap();
        }
        assert_eq!(&buf[..], &msg[..]);
        let mut bad = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 3][..]);
        assert!(inb.after_read(&mut bad, 0).is_err());
    }
}
