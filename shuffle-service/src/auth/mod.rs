//! `spark.authenticate`: every connection authenticates before anything is served, the way
//! Spark's `AuthServerBootstrap` decides (spec: `spark-auth.md` §1, §4).
//!
//! # Layout
//! Data flows top to bottom; no module here imports from the server or the handler.
//! - [`settings`]: the typed auth settings and the shared secret (`_SPARK_AUTH_SECRET`,
//!   `spark.authenticate.secret`, `croupier.authenticate.secret.file`), redacted in `Debug`.
//! - [`gate`]: the per-connection state machine before authentication: which protocol a
//!   first RpcRequest speaks (0xFB auth engine, 0xEA SASL, saslFallback), Spark's failure
//!   answers, and what a connection carries afterwards (its appId and its channel cipher).
//! - [`pending`]: the bound on connections still authenticating and the pre-auth frame cap.
//! - [`sasl`]: the DIGEST-MD5 server (qop `auth` and `auth-conf`) and the SASL record wrapper.
//! - [`engine`]: Spark's auth engine, pure: the AuthMessage codec and the server side of the
//!   X25519 + HKDF handshake, versions 1 and 2 (written on the `auth-engine` branch).
//! - [`ctr`]: the AES-CTR transport cipher state, one per direction (`auth-engine` branch).
//! - [`channel`]: the post-handshake byte transforms the server's reader and writer apply
//!   (CTR or SASL auth-conf records), with batch encryption of chunk bodies.
//!
//! # What `gate` needs from `engine` and `ctr`
//! Agreed signatures (the engine side implements them; Spark's vectors are its unit tests):
//!
//! ```text
//! // engine.rs
//! pub const AUTH_MESSAGE_TAG: u8 = 0xFB;
//! pub struct AuthMessage { pub app_id: String, pub salt: Vec<u8>, pub ciphertext: Vec<u8> }
//! impl AuthMessage {
//!     /// Parses an RpcRequest body; every length bounded before allocating; trailing bytes
//!     /// ignored (as Spark's decoder does). Err on wrong tag or truncation.
//!     pub fn decode(body: &[u8]) -> Result<AuthMessage, EngineError>;
//!     pub fn encode(&self) -> Vec<u8>;
//! }
//! #[derive(Clone, Copy, Debug, PartialEq, Eq)]
//! pub enum EngineVersion { V1, V2 }   // spark.network.crypto.authEngineVersion: 1 → V1, else V2
//! /// Session keys of one authenticated connection, zeroized on drop, never printed.
//! pub struct SessionKeys {
//!     pub key: zeroize::Zeroizing<Vec<u8>>, // 32 bytes (v1, AES-256) or 16 bytes (v2, AES-128)
//!     pub rx_iv: [u8; 16],                  // client → server, HKDF info "outputIv"
//!     pub tx_iv: [u8; 16],                  // server → client, HKDF info "inputIv"
//! }
//! /// The server's answer to a client challenge: decrypt the client's public key with
//! /// HKDF(secret, salt, appId‖salt), make an ephemeral X25519 key, encrypt it, derive keys.
//! /// `secret` is the raw UTF-8 bytes of the configured string.
//! pub fn server_response(secret: &[u8], challenge: &AuthMessage, version: EngineVersion)
//!     -> Result<(AuthMessage, SessionKeys), EngineError>;
//! #[derive(Debug, thiserror::Error)]
//! pub enum EngineError { .. }  // messages never contain key material
//!
//! // ctr.rs
//! /// One direction of the AES-CTR channel: 128-bit big-endian counter from `iv`, continuous.
//! pub struct CtrStream;
//! impl CtrStream {
//!     /// `key` is 16 or 32 bytes.
//!     pub fn new(key: &[u8], iv: &[u8; 16]) -> Result<CtrStream, EngineError>;
//!     /// Encrypts or decrypts `data` in place, continuing the keystream.
//!     pub fn apply(&mut self, data: &mut [u8]);
//! }
//! ```

pub mod channel;
pub mod ctr;
pub mod engine;
pub mod gate;
pub mod pending;
pub mod sasl;
pub mod settings;
