//! Locating the real interop peers installed by `scripts/setup-venv.sh`.

use std::io::Write;
use std::path::PathBuf;

/// What to do when there is no venv, in one line.
pub const HOW_TO_MAKE_THE_VENV: &str =
    "run scripts/setup-venv.sh (it makes ~/.cache/croupier/venv, which tests find by themselves) or set CROUPIER_VENV";

/// The venv `scripts/setup-venv.sh` makes when `CROUPIER_VENV` is unset:
/// `${XDG_CACHE_HOME:-$HOME/.cache}/croupier/venv`, if it is complete (its stamp file exists).
pub fn default_venv() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let venv = cache.join("croupier").join("venv");
    (venv.join(".croupier-deps-v2").is_file() && venv.join("bin/python").exists()).then_some(venv)
}

/// `CROUPIER_VENV` when set (it must then be a venv: see [`venv`]), else [`default_venv`].
pub fn find_venv() -> Option<PathBuf> {
    match std::env::var_os("CROUPIER_VENV") {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => default_venv(),
    }
}

/// The venv holding pyspark 3.5.7, pymesos 0.3.15 and moto: `CROUPIER_VENV`, or the one
/// `scripts/setup-venv.sh` made in its default place.
///
/// Panics with a clear instruction when there is none or `CROUPIER_VENV` names no venv: a test
/// that reaches this without [`require_venv!`](crate::require_venv) fails, never skips.
pub fn venv() -> PathBuf {
    let Some(p) = find_venv() else {
        panic!("no venv with pyspark/pymesos/moto: {HOW_TO_MAKE_THE_VENV}");
    };
    assert!(
        p.join("bin/python").exists(),
        "CROUPIER_VENV={} has no bin/python: run scripts/setup-venv.sh",
        p.display()
    );
    p
}

/// For a test that needs the venv: `true` when there is none and `CROUPIER_VENV` is unset (a
/// plain `cargo test` on a fresh clone), after printing one line saying so and how to make it.
/// The line goes straight to the process's stderr, past the test harness's capture, so the
/// skip shows in `cargo test`'s output. Where `CROUPIER_VENV` is set (scripts/test.sh always
/// sets it) this never skips: a missing venv then fails the test.
pub fn skip_without_venv() -> bool {
    if find_venv().is_some() {
        return false;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: no venv with pyspark/pymesos/moto: {HOW_TO_MAKE_THE_VENV}"
    );
    true
}

/// First line of a test that needs the venv: returns from the test, with a visible one-line
/// `SKIPPED` notice, when there is no venv and `CROUPIER_VENV` is unset (see
/// [`env::skip_without_venv`](crate::env::skip_without_venv)).
#[macro_export]
macro_rules! require_venv {
    () => {
        if $crate::env::skip_without_venv() {
            return;
        }
    };
}

/// The venv's python interpreter.
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// `SPARK_HOME` inside the venv's pyspark package.
pub fn spark_home() -> PathBuf {
    let venv = venv();
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/pyspark"))
        .find(|p| p.join("jars").is_dir());
    match found {
        Some(p) => p,
        None => panic!(
            "no pyspark with jars/ under {}: run scripts/setup-venv.sh",
            lib.display()
        ),
    }
}
