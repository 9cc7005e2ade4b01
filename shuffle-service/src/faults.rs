//! Test failpoints for disk I/O (the `fail` crate's registry, as TiKV and raft-rs use it),
//! compiled into debug builds and unit tests only. The `failpoints` feature adds them to a
//! release build; release builds, which the packages ship, otherwise have none.
//!
//! A failpoint's action is `return(ERRNO[*N]:PATH_PART)`, e.g. `return(ENOSPC*1:/tmp/.tmpX)`:
//! the error (EIO or ENOSPC) is injected only for a file whose path contains `PATH_PART`
//! (tests run in parallel in one process, each with its own directory; the part is everything
//! after the first `:`, colons included), and with `*N` only the first N times such a file is
//! reached. (The `fail` crate's own `N*return(..)` counts every evaluation, for any file, so
//! another test's writes could spend it.) `fired` says how many times an action was injected.
//! Configured in-process with `fail::cfg` (unit tests: `set`, which also resets the count), or
//! in a spawned service binary with `CROUPIER_FAILPOINTS`.
//!
//! Failpoints: `store_file::{write,sync,set_len}` ([`crate::store_file`]), `journal::write`
//! (an append, which then writes half its bytes and fails) and `journal::truncate` (cutting a
//! failed append back) ([`crate::journal`]), `index::read` ([`crate::index_cache`]) and
//! `data::open` (opening a data or RDD block file to send it, [`crate::send`]).

use std::io;
use std::path::Path;

/// An action's argument, `ERRNO[*N]:PATH_PART`, read.
#[cfg(any(test, debug_assertions, feature = "failpoints"))]
struct Action<'a> {
    errno: i32,
    limit: Option<u64>,
    part: &'a str,
}

#[cfg(any(test, debug_assertions, feature = "failpoints"))]
fn parse(arg: &str) -> Result<Action<'_>, String> {
    let (error, part) = arg
        .split_once(':')
        .ok_or_else(|| format!("{arg:?}: expected ERRNO[*N]:PATH_PART"))?;
    let (name, limit) = match error.split_once('*') {
        Some((name, n)) => (
            name,
            Some(
                n.parse::<u64>()
                    .map_err(|_| format!("{arg:?}: the count {n:?} is not a number"))?,
            ),
        ),
        None => (error, None),
    };
    let errno = match name {
        "EIO" => libc::EIO,
        "ENOSPC" => libc::ENOSPC,
        _ => return Err(format!("{arg:?}: the error {name:?} is not EIO or ENOSPC")),
    };
    if part.is_empty() {
        return Err(format!(
            "{arg:?}: the path part is empty (it would match every file)"
        ));
    }
    Ok(Action { errno, limit, part })
}

/// The error failpoint `point` injects for `path`, if one is configured for it. A malformed
/// action is a panic: failpoints exist only in test builds, and a fault that silently never
/// happens would let a test pass without testing anything (`CROUPIER_FAILPOINTS` entries are
/// checked, and skipped with an error, before they are set).
#[cfg(any(test, debug_assertions, feature = "failpoints"))]
pub fn injected(point: &str, path: &Path) -> Option<io::Error> {
    let arg = match fail::eval(point, |arg| arg)? {
        Some(arg) => arg,
        None => panic!("failpoint {point}: `return` needs an argument, ERRNO[*N]:PATH_PART"),
    };
    let action = parse(&arg).unwrap_or_else(|e| panic!("failpoint {point}: {e}"));
    if !path.to_string_lossy().contains(action.part) {
        return None;
    }
    {
        let mut fired = FIRED.lock().unwrap_or_else(|p| p.into_inner());
        let count = fired.entry((point.to_owned(), arg.clone())).or_insert(0);
        if action.limit.is_some_and(|n| *count >= n) {
            return None;
        }
        *count += 1;
    }
    Some(io::Error::from_raw_os_error(action.errno))
}

/// How many times each (failpoint, action argument) was injected.
#[cfg(any(test, debug_assertions, feature = "failpoints"))]
static FIRED: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Sets failpoint `point` to `actions` and forgets how often it fired before, so `fired`
/// counts this test's injections alone.
#[cfg(test)]
pub(crate) fn set(point: &str, actions: &str) {
    FIRED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(p, _), _| p != point);
    if let Err(e) = check(actions).and_then(|()| fail::cfg(point, actions)) {
        panic!("failpoint {point}={actions}: {e}");
    }
}

/// How many times failpoint `point` injected the action whose argument is `arg` (e.g.
/// `EIO*1:/tmp/.tmpX`) since it was last `set`: a test asserts its fault really happened.
#[cfg(test)]
pub(crate) fn fired(point: &str, arg: &str) -> u64 {
    let fired = FIRED.lock().unwrap_or_else(|p| p.into_inner());
    fired
        .get(&(point.to_owned(), arg.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// Release builds: no failpoints.
#[cfg(not(any(test, debug_assertions, feature = "failpoints")))]
pub fn injected(_point: &str, _path: &Path) -> Option<io::Error> {
    None
}

/// Test hook: `CROUPIER_FAILPOINTS="name=actions;name=actions"` configures failpoints in a
/// spawned debug-build service binary. A malformed entry is logged and skipped, never fatal.
#[cfg(any(test, debug_assertions, feature = "failpoints"))]
pub fn configure_from_env() {
    let Ok(spec) = std::env::var("CROUPIER_FAILPOINTS") else {
        return;
    };
    for item in spec.split(';').filter(|s| !s.trim().is_empty()) {
        match item.split_once('=') {
            Some((name, actions)) => match check(actions.trim())
                .and_then(|()| fail::cfg(name.trim(), actions.trim()))
            {
                Ok(()) => tracing::warn!("CROUPIER_FAILPOINTS: failpoint {name} set to {actions}"),
                Err(e) => tracing::error!("CROUPIER_FAILPOINTS: {item:?} ignored: {e}"),
            },
            None => tracing::error!("CROUPIER_FAILPOINTS: {item:?} ignored: expected name=actions"),
        }
    }
}

/// Checks the argument of every `return` in a `fail` action list (`A->B->...`, each
/// `[P%][N*]task[(arg)]`).
#[cfg(any(test, debug_assertions, feature = "failpoints"))]
fn check(actions: &str) -> Result<(), String> {
    for action in actions.split("->") {
        let Some(at) = action.find("return") else {
            continue;
        };
        let rest = &action[at + "return".len()..];
        let arg = rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| {
                format!("{action:?}: `return` needs an argument, ERRNO[*N]:PATH_PART")
            })?;
        parse(arg)?;
    }
    Ok(())
}

/// Release builds ignore `CROUPIER_FAILPOINTS`.
#[cfg(not(any(test, debug_assertions, feature = "failpoints")))]
pub fn configure_from_env() {}

/// Unit tests that configure failpoints, or write through them, take this first: a failpoint
/// is one process-wide setting (two tests configuring it would overwrite each other's), and
/// every evaluation uses up a `fail` count (`2*return(...)`) whatever path it is for, so
/// another test's writes would spend the faults one test meant for its own file: counts go in
/// the argument (`return(EIO*2:PART)`).
#[cfg(test)]
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count is `*N` after the error; a path part ending in `:<digits>` is a path, not a
    /// count.
    #[test]
    fn counts_and_path_parts_are_told_apart() {
        let _serial = serial();
        let point = "faults::self_test";
        let inject = |path: &str| injected(point, Path::new(path));
        set(point, "return(EIO*2:/d/a:5)");
        assert!(inject("/d/b:5/f").is_none(), "another path");
        assert!(inject("/d/a:5/f").is_some());
        assert!(inject("/d/a:5/g").is_some());
        assert!(inject("/d/a:5/h").is_none(), "only twice");
        assert_eq!(fired(point, "EIO*2:/d/a:5"), 2);
        set(point, "return(ENOSPC:/d/a:5)");
        for _ in 0..3 {
            let e = inject("/d/a:5/f").expect("every time");
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        }
        assert!(
            inject("/d/a/f").is_none(),
            "the part is the whole rest, colon included"
        );
        fail::remove(point);
        for bad in [
            "return(EIO*x:/d)",
            "return(EACCES:/d)",
            "return(EIO:)",
            "return(/d)",
            "return",
            "1*return(EIO:/d)->return(EIO* 1:/d)",
        ] {
            assert!(check(bad).is_err(), "{bad} accepted");
        }
        assert!(check("1*return(EIO:/d)->2*return(ENOSPC*1:/d:5)").is_ok());
        assert!(check("off").is_ok());
    }
}
