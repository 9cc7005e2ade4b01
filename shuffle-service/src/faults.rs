//! Test failpoints for disk I/O (the `fail` crate's registry, as TiKV and raft-rs use it),
//! compiled into debug builds only: the tests' builds. The `failpoints` feature adds them to a
//! release build; release builds, which the packages ship, otherwise have none.
//!
//! A failpoint's action is `return(ERRNO:PATH_PART[:N])`, e.g. `return(ENOSPC:/tmp/.tmpX:1)`:
//! the error (EIO or ENOSPC) is injected only for a file whose path contains `PATH_PART`
//! (tests run in parallel in one process, each with its own directory), and with `:N` only the
//! first N times such a file is reached. (The `fail` crate's own `N*return(..)` counts every
//! evaluation, for any file, so another test's writes could spend it.) `fired` says how many
//! times an action was injected. Configured in-process
//! with `fail::cfg`, or in a spawned service binary with `CROUPIER_FAILPOINTS`.
//! Failpoints: `store_file::{write,sync,set_len}` ([`crate::store_file`]), `index::read`
//! ([`crate::index_cache`]) and `data::open` (opening a data or RDD block file to send it,
//! [`crate::send`]).

use std::io;
use std::path::Path;

/// The error failpoint `point` injects for `path`, if one is configured for it.
#[cfg(any(debug_assertions, feature = "failpoints"))]
pub fn injected(point: &str, path: &Path) -> Option<io::Error> {
    let arg = fail::eval(point, |arg| arg)??;
    let (errno, scope) = arg.split_once(':')?;
    let (part, limit) = match scope.rsplit_once(':') {
        Some((part, n)) => match n.parse::<u64>() {
            Ok(n) => (part, Some(n)),
            Err(_) => (scope, None),
        },
        None => (scope, None),
    };
    if !path.to_string_lossy().contains(part) {
        return None;
    }
    {
        let mut fired = FIRED.lock().unwrap_or_else(|p| p.into_inner());
        let count = fired.entry((point.to_owned(), arg.clone())).or_insert(0);
        if limit.is_some_and(|n| *count >= n) {
            return None;
        }
        *count += 1;
    }
    let code = match errno {
        "ENOSPC" => libc::ENOSPC,
        _ => libc::EIO,
    };
    Some(io::Error::from_raw_os_error(code))
}

/// How many times each (failpoint, action argument) was injected.
#[cfg(any(debug_assertions, feature = "failpoints"))]
static FIRED: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// How many times failpoint `point` injected the action whose argument is `arg` (e.g.
/// `EIO:/tmp/.tmpX:1`): a test asserts its fault really happened.
#[cfg(test)]
pub(crate) fn fired(point: &str, arg: &str) -> u64 {
    let fired = FIRED.lock().unwrap_or_else(|p| p.into_inner());
    fired
        .get(&(point.to_owned(), arg.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// Release builds: no failpoints.
#[cfg(not(any(debug_assertions, feature = "failpoints")))]
pub fn injected(_point: &str, _path: &Path) -> Option<io::Error> {
    None
}

/// Test hook: `CROUPIER_FAILPOINTS="name=actions;name=actions"` configures failpoints in a
/// spawned debug-build service binary. A malformed entry is logged and skipped, never fatal.
#[cfg(any(debug_assertions, feature = "failpoints"))]
pub fn configure_from_env() {
    let Ok(spec) = std::env::var("CROUPIER_FAILPOINTS") else {
        return;
    };
    for item in spec.split(';').filter(|s| !s.trim().is_empty()) {
        match item.split_once('=') {
            Some((name, actions)) => match fail::cfg(name.trim(), actions.trim()) {
                Ok(()) => tracing::warn!("CROUPIER_FAILPOINTS: failpoint {name} set to {actions}"),
                Err(e) => tracing::error!("CROUPIER_FAILPOINTS: {item:?} ignored: {e}"),
            },
            None => tracing::error!("CROUPIER_FAILPOINTS: {item:?} ignored: expected name=actions"),
        }
    }
}

/// Release builds ignore `CROUPIER_FAILPOINTS`.
#[cfg(not(any(debug_assertions, feature = "failpoints")))]
pub fn configure_from_env() {}

/// Unit tests that configure failpoints, or write through them, take this first: a failpoint
/// is one process-wide setting (two tests configuring it would overwrite each other's), and
/// every evaluation uses up a `fail` count (`2*return(...)`) whatever path it is for, so
/// another test's writes would spend the faults one test meant for its own file: counts go in
/// the argument (`return(EIO:PART:2)`).
#[cfg(test)]
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
