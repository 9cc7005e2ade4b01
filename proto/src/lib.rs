//! Mesos v1 executor wire types and codecs for Croupier. **No I/O** lives here.
//!
//! # Layout
//! - [`v1`]: the generated `mesos.v1` messages (our own `.proto` subset, upstream numbering);
//!   [`v1::executor`]: the generated `mesos.v1.executor` [`Call`](v1::executor::Call) and
//!   [`Event`](v1::executor::Event).
//! - [`recordio`]: the RecordIO framing of the SUBSCRIBE stream (`<decimal length>\n<record>`),
//!   with an incremental, bounded decoder.
//! - [`duration`]: the Mesos (stout) duration syntax used in `MESOS_*` variables (`5secs`, `1.5mins`).
//! - [`json`]: the Mesos JSON mapping of calls and events (proto field names, enum names,
//!   base64 bytes, 64-bit integers as JSON numbers).

/// Generated `mesos.v1` types.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/mesos.v1.rs"));

    /// Generated `mesos.v1.executor` types: [`Call`](executor::Call), [`Event`](executor::Event)
    /// and their nested messages in [`executor::call`] / [`executor::event`].
    #[allow(clippy::all, missing_docs)]
    pub mod executor {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.executor.rs"));
    }
}

pub mod duration;
pub mod json;
pub mod recordio;

/// The serialized `FileDescriptorSet` of our `.proto` files (used by [`json`]).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mesos_descriptor.bin"));

/// Is `state` terminal in Mesos' sense (the task is over; exactly one such update per task)?
///
/// `TASK_UNREACHABLE` and `TASK_UNKNOWN` are not terminal.
pub fn is_terminal(state: v1::TaskState) -> bool {
    use v1::TaskState::*;
    matches!(
        state,
        TaskFinished
            | TaskFailed
            | TaskKilled
            | TaskError
            | TaskLost
            | TaskDropped
            | TaskGone
            | TaskGoneByOperator
    )
}
