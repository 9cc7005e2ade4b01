//! The build's identity, captured by `build.rs`: what an operator needs to tell which binary
//! runs on an agent and which agent OS it can run on.

use std::sync::OnceLock;

/// The crate version shared by the workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `git rev-parse --short HEAD` at build time, `CROUPIER_GIT_REV` if the packager set it, or
/// `unknown` when built outside a git checkout (e.g. from a source tarball).
pub const GIT_REV: &str = env!("CROUPIER_GIT_REV");
/// The target triple the binary was built for.
pub const TARGET: &str = env!("CROUPIER_TARGET");
/// The glibc version the build linked against (`none` for non-glibc targets, `unknown` when
/// the build could not tell).
pub const BUILD_GLIBC: &str = env!("CROUPIER_BUILD_GLIBC");

/// The glibc this process runs on, when it runs on glibc.
pub fn runtime_glibc() -> Option<String> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string.
        let p = unsafe { libc::gnu_get_libc_version() };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null, static and NUL-terminated (see above).
        let s = unsafe { std::ffi::CStr::from_ptr(p) };
        Some(s.to_string_lossy().into_owned())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// The version text after the program name, identical for every Croupier binary, e.g.
/// `0.1.0 (git 1a2b3c4d5e, target x86_64-unknown-linux-gnu, glibc 2.17 at build, 2.36 here)`.
pub fn version() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let glibc = match (BUILD_GLIBC, runtime_glibc()) {
            ("none", _) => "no glibc".to_string(),
            (b, Some(r)) => format!("glibc {b} at build, {r} here"),
            (b, None) => format!("glibc {b} at build"),
        };
        format!("{VERSION} (git {GIT_REV}, target {TARGET}, {glibc})")
    })
}

/// The whole `--version` line: `<program> <version()>`.
pub fn version_line(program: &str) -> String {
    format!("{program} {}", version())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_revision_target_and_glibc() {
        let v = version_line("croupier-x");
        assert!(v.starts_with(&format!("croupier-x {VERSION} (git ")), "{v}");
        assert!(v.contains(TARGET) && !TARGET.is_empty(), "{v}");
        assert!(!GIT_REV.is_empty());
        if cfg!(target_env = "gnu") {
            assert!(v.contains("glibc "), "{v}");
        }
    }
}
