//! Spark's shuffle wire protocol, both directions (the server decodes requests and encodes
//! responses; the test client in `croupier-testkit` does the opposite with the same code).
//!
//! # Layout
//! - [`wire`]: big-endian primitives (`Encoders`), every length bounded by the bytes present.
//! - [`frame`]: `network-common` frames (`Message.Type` 0..=12) and the frame decoder.
//! - [`message`]: `BlockTransferMessage` payloads (type ids 0..=19).

pub mod frame;
pub mod message;
pub mod wire;

#[cfg(test)]
mod tests;

pub use frame::{Message, StreamChunkId};
pub use message::{BlockTransferMessage, ExecutorShuffleInfo};
