//! Spark shuffle protocol client (see crate docs).
