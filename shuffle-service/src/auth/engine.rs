//! Spark's auth engine (`spark.network.crypto.enabled=true`), versions 1 and 2: the pure core
//! of the handshake, no I/O.
//!
//! # The protocol (Spark 3.5's `AuthEngine`, read from spark-network-common 3.5.x)
//! - The pre-shared key is the UTF-8 bytes of the secret string as configured
//!   (`_SPARK_AUTH_SECRET` / `spark.authenticate.secret`), not Base64 as SASL uses it.
//! - Client → server, the first `RpcRequest` body: an [`AuthMessage`] `{appId, salt1,
//!   seal(kek1, clientPub, aad1)}` with `aad1 = appId ‖ salt1` and
//!   `kek1 = HKDF-SHA256(ikm = psk, salt = salt1, info = aad1, 16 bytes)`. `seal` is AES-128-GCM
//!   as Tink writes it: `iv(12) ‖ ciphertext ‖ tag(16)`, so 60 bytes for a 32-byte X25519 key.
//! - Server → client, the `RpcResponse` body: `{appId, salt2, seal(kek2, serverPub, aad2)}` with
//!   `aad2 = appId ‖ salt2 ‖ encode(challenge)` and `kek2 = HKDF(psk, salt2, aad2, 16)`.
//!   The response is sent in the clear; every byte after it, both ways, is AES-CTR
//!   ([`super::ctr`]).
//! - `shared = X25519(own private, peer public)`; the transcript
//!   `T = encode(challenge) ‖ encode(response)` (re-encoded, trailing bytes dropped).
//! - Session key: v1 (`spark.network.crypto.authEngineVersion=1`, Spark's default) uses
//!   `shared` itself (AES-256); any other version uses `HKDF(shared, T, "derivedKey", 16)`
//!   (AES-128).
//! - IVs: `HKDF(shared, T, "outputIv", 16)` starts the client → server stream and
//!   `HKDF(shared, T, "inputIv", 16)` the server → client stream.
//! - Nothing on the wire says which version or cipher is in use: both ends must be configured
//!   alike, or the handshake succeeds and the traffic after it is garbage.
//!
//! # API for the server (what `auth/mod.rs`'s gate calls)
//! ```ignore
//! use crate::auth::engine::{self, AuthMessage, EngineError, EngineVersion};
//! let version = EngineVersion::from_config(auth_engine_version); // 1 → V1, else V2
//! // First RpcRequest body on a new connection (pre-auth):
//! let challenge = match AuthMessage::decode(body) {   // Err: AuthMessageError (→ EngineError)
//!     Ok(m) => m,
//!     Err(e) if e.is_sasl() => { /* 0xEA: SASL fallback, if spark.network.crypto.saslFallback */ }
//!     Err(e) => { /* "Unknown challenge message." (or SASL fallback), close */ }
//! };
//! match engine::server_response(secret_utf8_bytes, &challenge, version) {
//!     Ok((response, keys)) => {
//!         // 1. send response.encode() as the RpcResponse body, in the clear;
//!         // 2. keys.channel()?.split() → (Encryptor, Decryptor): the writer encrypts every
//!         //    byte after that response, the reader decrypts every byte after the
//!         //    challenge's frame (both in place, any batch size);
//!         // 3. the connection's clientId is challenge.app_id.
//!     }
//!     Err(e) => { /* RpcFailure "java.lang.IllegalArgumentException: Authentication failed.",
//!                    close, log e (it names the app, never a key) */ }
//! }
//! ```
//! `keys.key`, `keys.rx_iv`, `keys.tx_iv` are public for a cipher of one's own
//! ([`super::ctr::CtrStream::new`]`(&keys.key, &keys.rx_iv)`). The client side
//! ([`ClientAuth::start`] / [`ClientAuth::finish`]) is for our test and bench clients; its
//! `SessionKeys` has `rx_iv`/`tx_iv` from the client's point of view.
//!
//! # Secrets
//! The pre-shared key, the key-encryption keys, the X25519 private keys, the shared secret and
//! the session key are zeroized when dropped; none is printed by `Debug` or named by an error.
//! The only secret-dependent comparisons are AES-GCM's tag check (constant time in `aes-gcm`)
//! and X25519's low-order check (constant time in `x25519-dalek`).

pub mod message;

pub use message::{AuthMessage, AuthMessageError, AUTH_MESSAGE_TAG};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes128Gcm;
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use super::ctr::{CtrChannel, KeyLengthError, IV_LEN, TRANSFORMATION};

const DERIVED_KEY_INFO: &[u8] = b"derivedKey";
const INPUT_IV_INFO: &[u8] = b"inputIv";
const OUTPUT_IV_INFO: &[u8] = b"outputIv";
const KEY_ID_INFO: &[u8] = b"keyID";
/// AES-128-GCM key size used for sealing the ephemeral keys, and the v2 session key size.
const KEK_LEN: usize = 16;
const SALT_LEN: usize = 16;
const GCM_IV_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;
const X25519_LEN: usize = 32;
/// Length of a sealed X25519 public key: IV, key, tag.
pub const SEALED_KEY_LEN: usize = GCM_IV_LEN + X25519_LEN + GCM_TAG_LEN;

/// `spark.network.crypto.authEngineVersion`: how the session key is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineVersion {
    /// The X25519 output is the AES-256 key (Spark's default).
    V1,
    /// The AES-128 key is HKDF'd from the X25519 output and the transcript.
    V2,
}

impl EngineVersion {
    /// As Spark reads the setting: 1 is v1, any other number v2.
    pub fn from_config(value: i64) -> EngineVersion {
        if value == 1 {
            EngineVersion::V1
        } else {
            EngineVersion::V2
        }
    }
}

/// Why a handshake failed. None is retryable: the peer must reconnect with the right secret
/// (Spark's server answers every one of these with "Authentication failed." and closes).
/// Messages name the app, never key material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    #[error(transparent)]
    Message(#[from] AuthMessageError),
    #[error(
        "auth message from app {app_id:?} carries a {len}-byte sealed key, expected {SEALED_KEY_LEN}"
    )]
    SealedKeyLength { app_id: String, len: usize },
    #[error(
        "authentication failed for app {app_id:?}: its key does not open with our secret \
         (the secrets differ or the message was altered)"
    )]
    Rejected { app_id: String },
    #[error("authentication failed for app {app_id:?}: its ephemeral key is a low-order point")]
    WeakPublicKey { app_id: String },
    #[error("the server answered for app {got:?}, but this client authenticates app {expected:?}")]
    AppIdMismatch { expected: String, got: String },
    #[error(transparent)]
    KeyLength(#[from] KeyLengthError),
}

impl EngineError {
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// True when the first RpcRequest was a SASL message (tag `0xEA`), not an auth engine one.
    pub fn is_sasl(&self) -> bool {
        matches!(self, EngineError::Message(e) if e.is_sasl())
    }
}

/// The session keys of one end of an authenticated connection, zeroized on drop, never
/// printed. `rx_iv` starts the keystream this end receives, `tx_iv` the one it sends: on the
/// server `rx_iv` is the client → server IV (HKDF info `"outputIv"`) and `tx_iv` the
/// server → client IV (`"inputIv"`); on a client the other way round.
pub struct SessionKeys {
    /// 32 bytes (v1, AES-256) or 16 bytes (v2, AES-128).
    pub key: Zeroizing<Vec<u8>>,
    pub rx_iv: [u8; IV_LEN],
    pub tx_iv: [u8; IV_LEN],
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.rx_iv.zeroize();
        self.tx_iv.zeroize();
    }
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("transformation", &TRANSFORMATION)
            .field("key_len", &self.key.len())
            .finish_non_exhaustive()
    }
}

/// Which end of the connection a [`SessionKeys`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

impl SessionKeys {
    fn derive(
        version: EngineVersion,
        role: Role,
        shared: &[u8; X25519_LEN],
        transcript: &[u8],
    ) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(transcript), shared);
        let key = match version {
            EngineVersion::V1 => Zeroizing::new(shared.to_vec()),
            EngineVersion::V2 => {
                let mut k = Zeroizing::new(vec![0u8; KEK_LEN]);
                expand(&hk, DERIVED_KEY_INFO, &mut k);
                k
            }
        };
        let mut server_to_client = [0u8; IV_LEN];
        expand(&hk, INPUT_IV_INFO, &mut server_to_client);
        let mut client_to_server = [0u8; IV_LEN];
        expand(&hk, OUTPUT_IV_INFO, &mut client_to_server);
        let (rx_iv, tx_iv) = match role {
            Role::Server => (client_to_server, server_to_client),
            Role::Client => (server_to_client, client_to_server),
        };
        client_to_server.zeroize();
        server_to_client.zeroize();
        SessionKeys { key, rx_iv, tx_iv }
    }

    /// Always `AES/CTR/NoPadding`: the only channel cipher 3.5 clients can use end to end.
    pub fn transformation(&self) -> &'static str {
        TRANSFORMATION
    }

    /// Spark's `getKeyId`: `HKDF(key, no salt, "keyID", 32)`, a non-secret tag of the key.
    pub fn key_id(&self) -> [u8; 32] {
        let mut id = [0u8; 32];
        expand(&Hkdf::<Sha256>::new(None, &self.key), KEY_ID_INFO, &mut id);
        id
    }

    /// This end's ciphers: [`CtrChannel::split`] gives the encryptor for every byte sent after
    /// the handshake and the decryptor for every byte received after it.
    pub fn channel(&self) -> Result<CtrChannel, EngineError> {
        Ok(CtrChannel::new(&self.key, &self.rx_iv, &self.tx_iv)?)
    }
}

/// The server side: checks the client's challenge (the first `RpcRequest` body, decoded)
/// against `secret` (the UTF-8 bytes of the configured string) and returns the response to
/// send (as the `RpcResponse` body, in the clear) and this connection's session keys. The
/// connection's clientId is `challenge.app_id`. Randomness from the OS.
pub fn server_response(
    secret: &[u8],
    challenge: &AuthMessage,
    version: EngineVersion,
) -> Result<(AuthMessage, SessionKeys), EngineError> {
    server_response_with_rng(secret, challenge, version, &mut rand::rngs::OsRng)
}

/// [`server_response`] with the caller's CSPRNG.
pub fn server_response_with_rng<R: RngCore + CryptoRng>(
    secret: &[u8],
    challenge: &AuthMessage,
    version: EngineVersion,
    rng: &mut R,
) -> Result<(AuthMessage, SessionKeys), EngineError> {
    let client_public = open_key(secret, challenge, &[])?;
    let server_private = random_private_key(rng);
    let mut transcript = challenge.encode();
    let response = seal_key(
        secret,
        &challenge.app_id,
        PublicKey::from(&server_private).as_bytes(),
        &transcript,
        rng,
    );
    let shared = agree(&server_private, &client_public, &challenge.app_id)?;
    response.encode_into(&mut transcript);
    let keys = SessionKeys::derive(version, Role::Server, &shared, &transcript);
    Ok((response, keys))
}

/// The client side of a handshake in progress (for test and bench clients).
pub struct ClientAuth {
    secret: Zeroizing<Vec<u8>>,
    version: EngineVersion,
    private: StaticSecret,
    challenge: AuthMessage,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("app_id", &self.challenge.app_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// Starts a handshake for `app_id`; returns the state and the challenge to send (encoded)
    /// as the first `RpcRequest` body.
    pub fn start<R: RngCore + CryptoRng>(
        secret: &[u8],
        app_id: &str,
        version: EngineVersion,
        rng: &mut R,
    ) -> (ClientAuth, AuthMessage) {
        let private = random_private_key(rng);
        let challenge = seal_key(
            secret,
            app_id,
            PublicKey::from(&private).as_bytes(),
            &[],
            rng,
        );
        let state = ClientAuth {
            secret: Zeroizing::new(secret.to_vec()),
            version,
            private,
            challenge: challenge.clone(),
        };
        (state, challenge)
    }

    /// Checks the server's response (the `RpcResponse` body, decoded) and derives the client's
    /// session keys; their [`SessionKeys::channel`] covers every byte after the response.
    pub fn finish(self, response: &AuthMessage) -> Result<SessionKeys, EngineError> {
        if response.app_id != self.challenge.app_id {
            return Err(EngineError::AppIdMismatch {
                expected: self.challenge.app_id.clone(),
                got: response.app_id.clone(),
            });
        }
        let mut transcript = self.challenge.encode();
        let server_public = open_key(&self.secret, response, &transcript)?;
        let shared = agree(&self.private, &server_public, &response.app_id)?;
        response.encode_into(&mut transcript);
        Ok(SessionKeys::derive(
            self.version,
            Role::Client,
            &shared,
            &transcript,
        ))
    }
}

fn random_private_key<R: RngCore + CryptoRng>(rng: &mut R) -> StaticSecret {
    let mut bytes = Zeroizing::new([0u8; X25519_LEN]);
    rng.fill_bytes(&mut bytes[..]);
    StaticSecret::from(*bytes)
}

fn expand(hk: &Hkdf<Sha256>, info: &[u8], out: &mut [u8]) {
    if let Err(e) = hk.expand(info, out) {
        // Output lengths here are at most 32 bytes, far below HKDF-SHA256's 8160.
        unreachable!("HKDF output of {} bytes: {e}", out.len());
    }
}

/// `appId ‖ salt ‖ transcript`: both the HKDF info of the key-encryption key and the GCM AAD.
fn aad(app_id: &str, salt: &[u8], transcript: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(app_id.len() + salt.len() + transcript.len());
    aad.extend_from_slice(app_id.as_bytes());
    aad.extend_from_slice(salt);
    aad.extend_from_slice(transcript);
    aad
}

fn key_encryption_key(secret: &[u8], salt: &[u8], aad: &[u8]) -> Aes128Gcm {
    let mut kek = Zeroizing::new([0u8; KEK_LEN]);
    expand(&Hkdf::<Sha256>::new(Some(salt), secret), aad, &mut kek[..]);
    match Aes128Gcm::new_from_slice(&kek[..]) {
        Ok(c) => c,
        Err(e) => unreachable!("AES-128 key of 16 bytes: {e}"),
    }
}

/// Seals our ephemeral public key for the peer (Tink `AesGcmJce` layout).
fn seal_key<R: RngCore + CryptoRng>(
    secret: &[u8],
    app_id: &str,
    public: &[u8; X25519_LEN],
    transcript: &[u8],
    rng: &mut R,
) -> AuthMessage {
    let mut salt = vec![0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    let mut iv = [0u8; GCM_IV_LEN];
    rng.fill_bytes(&mut iv);
    let aad = aad(app_id, &salt, transcript);
    let kek = key_encryption_key(secret, &salt, &aad);
    let sealed = match kek.encrypt(
        &iv.into(),
        Payload {
            msg: public,
            aad: &aad,
        },
    ) {
        Ok(s) => s,
        Err(e) => unreachable!("AES-GCM of a 32-byte message: {e}"),
    };
    let mut ciphertext = Vec::with_capacity(SEALED_KEY_LEN);
    ciphertext.extend_from_slice(&iv);
    ciphertext.extend_from_slice(&sealed);
    AuthMessage {
        app_id: app_id.to_owned(),
        salt,
        ciphertext,
    }
}

/// Opens the peer's sealed ephemeral public key.
fn open_key(secret: &[u8], msg: &AuthMessage, transcript: &[u8]) -> Result<PublicKey, EngineError> {
    if msg.ciphertext.len() != SEALED_KEY_LEN {
        return Err(EngineError::SealedKeyLength {
            app_id: msg.app_id.clone(),
            len: msg.ciphertext.len(),
        });
    }
    let aad = aad(&msg.app_id, &msg.salt, transcript);
    let kek = key_encryption_key(secret, &msg.salt, &aad);
    let (iv, sealed) = msg.ciphertext.split_at(GCM_IV_LEN);
    let iv: [u8; GCM_IV_LEN] = match iv.try_into() {
        Ok(iv) => iv,
        Err(_) => unreachable!("split at the IV length"),
    };
    let public = kek
        .decrypt(
            &iv.into(),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| EngineError::Rejected {
            app_id: msg.app_id.clone(),
        })?;
    let public: [u8; X25519_LEN] = match public.as_slice().try_into() {
        Ok(p) => p,
        Err(_) => unreachable!("GCM plaintext length = sealed length - IV - tag"),
    };
    Ok(PublicKey::from(public))
}

fn agree(
    private: &StaticSecret,
    public: &PublicKey,
    app_id: &str,
) -> Result<Zeroizing<[u8; X25519_LEN]>, EngineError> {
    let shared = private.diffie_hellman(public);
    if !shared.was_contributory() {
        return Err(EngineError::WeakPublicKey {
            app_id: app_id.to_owned(),
        });
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

#[cfg(test)]
mod tests;
