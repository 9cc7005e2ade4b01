//! The harness's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// A failure of the real-Mesos harness. Timeouts are retryable (a longer wait may help); a
/// missing Mesos install, a process that died or a refused call are not.
#[derive(Debug, thiserror::Error)]
pub enum MesosError {
    /// Mesos is not installed where the harness looks (see [`super::install::Install::find`]).
    #[error("NOT RUN: real-Mesos tier ({why}; {how})")]
    NotInstalled {
        /// What is missing.
        why: String,
        /// How to get it.
        how: String,
    },
    /// Starting a process failed.
    #[error("cannot start {what} ({path}): {source}")]
    Spawn {
        /// Which process.
        what: String,
        /// The binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A process we started exited while we waited for it.
    #[error("{what} exited ({status}) while {during}; its log: {log}, ending:\n{tail}")]
    Exited {
        /// Which process.
        what: String,
        /// Its exit status.
        status: String,
        /// What we were waiting for.
        during: String,
        /// Where its output went.
        log: PathBuf,
        /// The last lines of that log (what a CI log shows without the file).
        tail: String,
    },
    /// A condition did not become true in time.
    #[error("timed out after {waited:?} waiting for {what}; {details}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// What was seen so far.
        details: String,
    },
    /// An HTTP exchange with a master or agent failed at the transport level.
    #[error("HTTP {method} {url}: {message}")]
    Http {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// The cause.
        message: String,
    },
    /// A master or agent answered a call with an unexpected status.
    #[error("{url} answered {status} to {call}: {body}")]
    Refused {
        /// The URL.
        url: String,
        /// The call (type).
        call: String,
        /// The status code.
        status: u16,
        /// The body (the master's error text).
        body: String,
    },
    /// A response or event could not be understood.
    #[error("unexpected answer from {peer}: {message}")]
    Protocol {
        /// Who sent it.
        peer: String,
        /// What was wrong.
        message: String,
    },
}

impl MesosError {
    /// Whether trying again (e.g. waiting longer) may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, MesosError::Timeout { .. } | MesosError::Http { .. })
    }

    /// Whether a process died because its port was taken (libprocess aborts with `Failed to
    /// bind on ADDR: Address already in use`), so that starting it on another port may help.
    pub fn lost_its_port(&self) -> bool {
        matches!(self, MesosError::Exited { tail, .. }
            if tail.contains("Failed to bind") && tail.contains("Address already in use"))
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        MesosError::Io {
            context: context.into(),
            source,
        }
    }
}
