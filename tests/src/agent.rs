//! Mesos agent stand-in (see crate docs).
