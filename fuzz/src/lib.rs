//! Fuzz targets for Croupier's decoders and parsers. Each target takes raw bytes and asserts
//! properties, not only "no panic": no allocation beyond the decoder's declared bound, nothing
//! written outside the sandbox, and decode(encode(x)) = x where both directions exist.
//!
//! The same functions run under libFuzzer (`fuzz_targets/main.rs`, feature `engine`) and under
//! `cargo test` (corpus replay and the named regression tests in `tests/`).

pub mod alloc;
pub mod targets;

#[global_allocator]
static GLOBAL: alloc::Tracking = alloc::Tracking;

/// A fuzz target: its name (the corpus directory under `corpus/`) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order of FUZZING.md.
pub const TARGETS: &[Target] = &[
    ("recordio", targets::recordio),
    ("event_protobuf", targets::event_protobuf),
    ("event_json", targets::event_json),
    ("task_command", targets::task_command),
    ("spark_frame", targets::spark_frame),
    ("block_transfer_message", targets::block_transfer_message),
    ("sasl_message", targets::sasl_message),
    ("auth_message", targets::auth_message),
    ("ids", targets::ids),
    ("extract", targets::extract),
    ("uri", targets::uri),
    ("durations", targets::durations),
    ("properties", targets::properties),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
