//! The channel cipher after an auth engine handshake: Spark's `CtrTransportCipher`
//! (`AES/CTR/NoPadding`), pure and in place.
//!
//! What Spark 3.5 does on the wire (`CtrTransportCipher` in spark-network-common): the
//! encryption and decryption handlers sit *below* Spark's frame codec and pass the raw TCP byte
//! stream through one AES-CTR keystream per direction. Nothing is re-framed: no record header,
//! no length, no MAC; ciphertext byte `i` of a direction is plaintext byte `i` XOR keystream
//! byte `i`, counted from the first byte after the handshake's `RpcResponse`. Spark's 8-byte
//! frame lengths are therefore encrypted too. The keystream is never reset across messages.
//!
//! The counter block starts at the 16-byte IV and is incremented as one 128-bit big-endian
//! integer (javax `AES/CTR/NoPadding`), so a carry out of the low 64 bits reaches the high
//! half. The key is 32 bytes (AES-256, auth engine v1) or 16 bytes (AES-128, v2).
//!
//! Use: [`CtrChannel::new`] from the session keys (or [`super::engine::SessionKeys`]'s
//! `server_channel`/`client_channel`), then [`CtrChannel::split`] so the reader task owns the
//! [`Decryptor`] and the writer task the [`Encryptor`]. Both work in place on any batch size
//! (AES-NI through the `aes` crate when the CPU has it); feed every byte of a direction, in
//! order, exactly once.

use aes::{Aes128, Aes256};
use ctr::cipher::{KeyIvInit, StreamCipher};
use thiserror::Error;

/// The only transformation this cipher implements, as Spark names it
/// (`spark.network.crypto.cipher`, default).
pub const TRANSFORMATION: &str = "AES/CTR/NoPadding";
/// Length of each direction's IV (one AES block).
pub const IV_LEN: usize = 16;

/// A key of a length AES does not take (never retryable).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("AES/CTR key must be 16 or 32 bytes, got {0}")]
pub struct KeyLengthError(pub usize);

impl KeyLengthError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

enum Core {
    Aes128(ctr::Ctr128BE<Aes128>),
    Aes256(ctr::Ctr128BE<Aes256>),
}

/// One direction's keystream: XORs each byte passed through with the next keystream byte.
/// Encryption and decryption are the same operation.
pub struct CtrStream {
    core: Core,
    processed: u64,
}

impl std::fmt::Debug for CtrStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = match self.core {
            Core::Aes128(_) => 128,
            Core::Aes256(_) => 256,
        };
        f.debug_struct("CtrStream")
            .field("aes_bits", &bits)
            .field("processed", &self.processed)
            .finish_non_exhaustive()
    }
}

impl CtrStream {
    /// A keystream starting at counter block `iv`.
    pub fn new(key: &[u8], iv: &[u8; IV_LEN]) -> Result<CtrStream, KeyLengthError> {
        let core = match key.len() {
            16 => Core::Aes128(
                ctr::Ctr128BE::<Aes128>::new_from_slices(key, iv)
                    .map_err(|_| KeyLengthError(key.len()))?,
            ),
            32 => Core::Aes256(
                ctr::Ctr128BE::<Aes256>::new_from_slices(key, iv)
                    .map_err(|_| KeyLengthError(key.len()))?,
            ),
            n => return Err(KeyLengthError(n)),
        };
        Ok(CtrStream { core, processed: 0 })
    }

    /// Encrypts (or decrypts) `data` in place, continuing the keystream.
    pub fn apply(&mut self, data: &mut [u8]) {
        match &mut self.core {
            Core::Aes128(c) => c.apply_keystream(data),
            Core::Aes256(c) => c.apply_keystream(data),
        }
        self.processed += data.len() as u64;
    }

    /// Bytes passed through so far (the stream position).
    pub fn processed(&self) -> u64 {
        self.processed
    }
}

/// The sending half of a channel: encrypts what we write.
#[derive(Debug)]
pub struct Encryptor(CtrStream);

impl Encryptor {
    /// Encrypts `data` in place; the next call continues the stream.
    pub fn encrypt(&mut self, data: &mut [u8]) {
        self.0.apply(data)
    }

    /// Bytes encrypted so far.
    pub fn processed(&self) -> u64 {
        self.0.processed()
    }
}

/// The receiving half of a channel: decrypts what we read.
#[derive(Debug)]
pub struct Decryptor(CtrStream);

impl Decryptor {
    /// Decrypts `data` in place; the next call continues the stream.
    pub fn decrypt(&mut self, data: &mut [u8]) {
        self.0.apply(data)
    }

    /// Bytes decrypted so far.
    pub fn processed(&self) -> u64 {
        self.0.processed()
    }
}

/// Both directions of one authenticated connection, as seen from one end.
#[derive(Debug)]
pub struct CtrChannel {
    pub encryptor: Encryptor,
    pub decryptor: Decryptor,
}

impl CtrChannel {
    /// `out_iv` starts the keystream of what this end sends, `in_iv` the one of what it receives
    /// (Spark's `CtrTransportCipher(key, inIv, outIv)`).
    pub fn new(
        key: &[u8],
        in_iv: &[u8; IV_LEN],
        out_iv: &[u8; IV_LEN],
    ) -> Result<CtrChannel, KeyLengthError> {
        Ok(CtrChannel {
            encryptor: Encryptor(CtrStream::new(key, out_iv)?),
            decryptor: Decryptor(CtrStream::new(key, in_iv)?),
        })
    }

    /// The two halves, for a writer task and a reader task.
    pub fn split(self) -> (Encryptor, Decryptor) {
        (self.encryptor, self.decryptor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    use proptest::prelude::*;

    /// Reference keystream: AES of the counter block, the counter a 128-bit big-endian integer.
    fn reference(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
        let mut ctr = u128::from_be_bytes(*iv);
        let mut out = Vec::with_capacity(data.len());
        for chunk in data.chunks(16) {
            let mut block = aes::Block::from(ctr.to_be_bytes());
            match key.len() {
                16 => Aes128::new_from_slice(key)
                    .unwrap()
                    .encrypt_block(&mut block),
                _ => Aes256::new_from_slice(key)
                    .unwrap()
                    .encrypt_block(&mut block),
            }
            out.extend(chunk.iter().zip(block.iter()).map(|(d, k)| d ^ k));
            ctr = ctr.wrapping_add(1);
        }
        out
    }

    #[test]
    fn nist_sp800_38a_aes128_ctr() {
        // F.5.1 CTR-AES128.Encrypt, first two blocks.
        let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let iv: [u8; 16] = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .unwrap()
            .try_into()
            .unwrap();
        let mut data =
            hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
                .unwrap();
        CtrStream::new(&key, &iv).unwrap().apply(&mut data);
        assert_eq!(
            hex::encode(data),
            "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
        );
    }

    #[test]
    fn nist_sp800_38a_aes256_ctr() {
        // F.5.5 CTR-AES256.Encrypt, first block.
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .unwrap();
        let iv: [u8; 16] = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .unwrap()
            .try_into()
            .unwrap();
        let mut data = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        CtrStream::new(&key, &iv).unwrap().apply(&mut data);
        assert_eq!(hex::encode(data), "601ec313775789a5b7a7f504bbf3d228");
    }

    /// The IV Spark's own stream check uses: the counter crosses the low 64 bits' carry
    /// (`...00ff ffff...` → `...0100 0000...`) after two blocks, and keeps going.
    #[test]
    fn counter_carries_across_the_low_64_bits() {
        let iv: [u8; 16] = hex::decode("00000000000000fffffffffffffffffe")
            .unwrap()
            .try_into()
            .unwrap();
        for key in [[7u8; 16].as_slice(), [9u8; 32].as_slice()] {
            let plain: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
            let mut s = CtrStream::new(key, &iv).unwrap();
            let mut data = plain.clone();
            // Two Spark messages of 50 000 bytes, as in the spec's check.
            let (a, b) = data.split_at_mut(50_000);
            s.apply(a);
            s.apply(b);
            assert_eq!(data, reference(key, &iv, &plain));
            assert_eq!(s.processed(), 100_000);
            // The third block's counter is ...0100 0000 0000 0000 0000: a real carry, not a
            // wrap of the low half to zero.
            let third: [u8; 16] = hex::decode("00000000000001000000000000000000")
                .unwrap()
                .try_into()
                .unwrap();
            assert_eq!(
                &data[32..48],
                &reference(key, &third, &plain[32..48])[..],
                "block 3 must use counter with the carry into the high 64 bits"
            );
        }
    }

    #[test]
    fn counter_wraps_at_2_pow_128() {
        let iv = [0xffu8; 16];
        let key = [1u8; 32];
        let plain = vec![0u8; 48];
        let mut data = plain.clone();
        CtrStream::new(&key, &iv).unwrap().apply(&mut data);
        assert_eq!(data, reference(&key, &iv, &plain));
        assert_eq!(
            &data[16..32],
            &reference(&key, &[0u8; 16], &plain[..16])[..]
        );
    }

    #[test]
    fn rejects_bad_key_lengths() {
        for n in [0, 8, 15, 24, 33] {
            assert_eq!(
                CtrStream::new(&vec![0; n], &[0; 16]).unwrap_err(),
                KeyLengthError(n)
            );
        }
    }

    #[test]
    fn channel_halves_pair_up() {
        let key = [3u8; 32];
        let (c2s, s2c) = ([1u8; 16], [2u8; 16]);
        let (mut client_enc, mut client_dec) = CtrChannel::new(&key, &s2c, &c2s).unwrap().split();
        let (mut server_enc, mut server_dec) = CtrChannel::new(&key, &c2s, &s2c).unwrap().split();
        let mut m = b"hello server".to_vec();
        client_enc.encrypt(&mut m);
        assert_ne!(&m, b"hello server");
        server_dec.decrypt(&mut m);
        assert_eq!(&m, b"hello server");
        let mut r = b"hello client".to_vec();
        server_enc.encrypt(&mut r);
        client_dec.decrypt(&mut r);
        assert_eq!(&r, b"hello client");
    }

    proptest! {
        /// Any split of a stream into batches gives the one continuous keystream.
        #[test]
        fn batching_does_not_matter(
            len in 0usize..2000,
            cuts in proptest::collection::vec(0usize..2000, 0..8),
            iv in any::<[u8; 16]>(),
            aes256 in any::<bool>(),
        ) {
            let key = if aes256 { vec![5u8; 32] } else { vec![5u8; 16] };
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(len)).collect();
            cuts.push(len);
            cuts.sort_unstable();
            let mut s = CtrStream::new(&key, &iv).unwrap();
            let mut data = plain.clone();
            let mut at = 0;
            for cut in cuts {
                s.apply(&mut data[at..cut]);
                at = cut;
            }
            prop_assert_eq!(&data, &reference(&key, &iv, &plain));
            let mut back = CtrStream::new(&key, &iv).unwrap();
            back.apply(&mut data);
            prop_assert_eq!(data, plain);
        }
    }
}
