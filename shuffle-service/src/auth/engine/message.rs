//! The auth engine's `AuthMessage` wire codec (no I/O).
//!
//! Layout (big-endian lengths, as Spark 3.5's `AuthMessage` encodes it):
//!
//! ```text
//! 0xFB | i32 len | appId (UTF-8) | i32 len | salt | i32 len | ciphertext
//! ```
//!
//! Both the client's challenge and the server's response use it; it is the whole body of the
//! first `RpcRequest` (challenge) and of its `RpcResponse` (response). Every length is checked
//! against a fixed bound and against the bytes actually present before anything is allocated.
//! Like Spark, decoding ignores bytes after the ciphertext; the handshake transcript is built
//! from the re-encoded message, never from the raw input.

use thiserror::Error;

/// First byte of every auth engine message (Spark's `AuthMessage` tag).
pub const AUTH_MESSAGE_TAG: u8 = 0xFB;

/// Longest appId accepted. Spark-on-Mesos app ids are framework ids (a few dozen bytes).
pub const MAX_APP_ID_LEN: usize = 1024;
/// Longest salt accepted (Spark sends 16 bytes).
pub const MAX_SALT_LEN: usize = 64;
/// Longest ciphertext accepted (Spark sends 60: 12-byte IV, 32-byte key, 16-byte tag).
pub const MAX_CIPHERTEXT_LEN: usize = 256;

/// Which length-prefixed field of an `AuthMessage` a decoding error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    AppId,
    Salt,
    Ciphertext,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::AppId => "appId",
            Field::Salt => "salt",
            Field::Ciphertext => "ciphertext",
        })
    }
}

/// Why bytes are not an `AuthMessage`. None of these is retryable: the peer sent garbage or
/// speaks another protocol (a first byte of `0xEA` is a SASL message, see [`Self::is_sasl`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthMessageError {
    #[error("empty auth message")]
    Empty,
    #[error("not an auth engine message: first byte is 0x{0:02x}, expected 0xfb")]
    WrongTag(u8),
    #[error("auth message truncated in the {field} length: {available} of 4 bytes present")]
    TruncatedLength { field: Field, available: usize },
    #[error("auth message {field} length {len} is negative")]
    NegativeLength { field: Field, len: i32 },
    #[error("auth message {field} length {len} exceeds the limit of {max} bytes")]
    TooLong {
        field: Field,
        len: usize,
        max: usize,
    },
    #[error("auth message truncated in the {field}: {len} bytes declared, {available} present")]
    Truncated {
        field: Field,
        len: usize,
        available: usize,
    },
    #[error("auth message appId is not valid UTF-8")]
    AppIdNotUtf8,
}

impl AuthMessageError {
    /// Always false: a malformed message stays malformed.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// True when the bytes start with Spark's SASL tag (`0xEA`): the server may hand the same
    /// message to SASL (`spark.network.crypto.saslFallback`).
    pub fn is_sasl(&self) -> bool {
        matches!(self, AuthMessageError::WrongTag(0xEA))
    }
}

/// One auth engine message: the sender's appId, a fresh salt and the AES-GCM-sealed ephemeral
/// X25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMessage {
    pub app_id: String,
    pub salt: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl AuthMessage {
    /// Number of bytes [`Self::encode`] produces.
    pub fn encoded_len(&self) -> usize {
        1 + 4 + self.app_id.len() + 4 + self.salt.len() + 4 + self.ciphertext.len()
    }

    /// Appends the wire form to `out`.
    ///
    /// Field lengths beyond `i32::MAX` cannot be represented; messages built by this crate are
    /// always far below (see the `MAX_*` bounds), so this is checked only in debug builds.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(AUTH_MESSAGE_TAG);
        for field in [self.app_id.as_bytes(), &self.salt, &self.ciphertext] {
            debug_assert!(field.len() <= i32::MAX as usize);
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Parses an `AuthMessage` from the start of `buf`; trailing bytes are ignored, as Spark
    /// does.
    pub fn decode(buf: &[u8]) -> Result<AuthMessage, AuthMessageError> {
        let (&tag, mut rest) = buf.split_first().ok_or(AuthMessageError::Empty)?;
        if tag != AUTH_MESSAGE_TAG {
            return Err(AuthMessageError::WrongTag(tag));
        }
        let app_id = take(&mut rest, Field::AppId, MAX_APP_ID_LEN)?;
        let salt = take(&mut rest, Field::Salt, MAX_SALT_LEN)?;
        let ciphertext = take(&mut rest, Field::Ciphertext, MAX_CIPHERTEXT_LEN)?;
        let app_id = std::str::from_utf8(app_id)
            .map_err(|_| AuthMessageError::AppIdNotUtf8)?
            .to_owned();
        Ok(AuthMessage {
            app_id,
            salt: salt.to_vec(),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// Splits one `i32`-length-prefixed field off the front of `rest`, bounded by `max`.
fn take<'a>(rest: &mut &'a [u8], field: Field, max: usize) -> Result<&'a [u8], AuthMessageError> {
    let Some((len_bytes, tail)) = rest.split_first_chunk::<4>() else {
        return Err(AuthMessageError::TruncatedLength {
            field,
            available: rest.len(),
        });
    };
    let len = i32::from_be_bytes(*len_bytes);
    let len = usize::try_from(len).map_err(|_| AuthMessageError::NegativeLength { field, len })?;
    if len > max {
        return Err(AuthMessageError::TooLong { field, len, max });
    }
    if len > tail.len() {
        return Err(AuthMessageError::Truncated {
            field,
            len,
            available: tail.len(),
        });
    }
    let (value, tail) = tail.split_at(len);
    *rest = tail;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Spark's client challenge from `AuthEngineSuite` (appId "appId").
    const CLIENT_CHALLENGE: &str = "fb00000005617070496400000010890b6e960f48e998777267a7e4e623220000003c48ad7dc7ec9466da93bda9f11488dc9404050e02c661d87d67c782444944c6e369b27e0a416c30845a2d9e64271511ca98b41d65f8c426e18ff380f6";

    #[test]
    fn decodes_and_reencodes_spark_vector() {
        let bytes = hex::decode(CLIENT_CHALLENGE).unwrap();
        let msg = AuthMessage::decode(&bytes).unwrap();
        assert_eq!(msg.app_id, "appId");
        assert_eq!(hex::encode(&msg.salt), "890b6e960f48e998777267a7e4e62322");
        assert_eq!(msg.ciphertext.len(), 60);
        assert_eq!(msg.encoded_len(), bytes.len());
        assert_eq!(msg.encode(), bytes);
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut bytes = hex::decode(CLIENT_CHALLENGE).unwrap();
        let expected = AuthMessage::decode(&bytes).unwrap();
        bytes.extend_from_slice(b"trailing");
        assert_eq!(AuthMessage::decode(&bytes).unwrap(), expected);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = hex::decode(CLIENT_CHALLENGE).unwrap();
        for cut in 0..bytes.len() {
            let err = AuthMessage::decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    AuthMessageError::Empty
                        | AuthMessageError::TruncatedLength { .. }
                        | AuthMessageError::Truncated { .. }
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn rejects_bad_tags_lengths_and_utf8() {
        assert_eq!(
            AuthMessage::decode(&[0xEA, 0, 0]).unwrap_err(),
            AuthMessageError::WrongTag(0xEA)
        );
        assert!(AuthMessage::decode(&[0xEA]).unwrap_err().is_sasl());
        assert!(!AuthMessage::decode(&[0xFA]).unwrap_err().is_sasl());
        // A huge declared appId length is refused before looking for (or allocating) it.
        let err = AuthMessage::decode(&[0xFB, 0x7f, 0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(
            err,
            AuthMessageError::TooLong {
                field: Field::AppId,
                len: i32::MAX as usize,
                max: MAX_APP_ID_LEN
            }
        );
        let err = AuthMessage::decode(&[0xFB, 0xff, 0xff, 0xff, 0xfe]).unwrap_err();
        assert_eq!(
            err,
            AuthMessageError::NegativeLength {
                field: Field::AppId,
                len: -2
            }
        );
        let err =
            AuthMessage::decode(&[0xFB, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err, AuthMessageError::AppIdNotUtf8);
        let mut big_salt = vec![0xFB, 0, 0, 0, 0];
        big_salt.extend_from_slice(&((MAX_SALT_LEN + 1) as u32).to_be_bytes());
        assert!(matches!(
            AuthMessage::decode(&big_salt).unwrap_err(),
            AuthMessageError::TooLong {
                field: Field::Salt,
                ..
            }
        ));
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(
            app_id in "\\PC{0,64}",
            salt in proptest::collection::vec(any::<u8>(), 0..=MAX_SALT_LEN),
            ciphertext in proptest::collection::vec(any::<u8>(), 0..=MAX_CIPHERTEXT_LEN),
        ) {
            let msg = AuthMessage { app_id, salt, ciphertext };
            let bytes = msg.encode();
            prop_assert_eq!(bytes.len(), msg.encoded_len());
            prop_assert_eq!(AuthMessage::decode(&bytes).unwrap(), msg);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = AuthMessage::decode(&bytes);
        }
    }
}
