//! Finding the Mesos install the tier runs against (`MESOS_PREFIX`).

use std::path::{Path, PathBuf};

use super::error::MesosError;

/// How to get Mesos, as printed when it is missing.
pub const HOW_TO_GET: &str = "run scripts/test.sh as root (it installs ../shared/mesos), or \
     eval \"$(bash ../shared/mesos/install.sh)\" to install Apache Mesos 1.11.0 and set MESOS_PREFIX";

/// A Mesos 1.11 install: `sbin/mesos-{master,agent}`, `bin/mesos-execute`, `libexec/mesos/`.
#[derive(Debug, Clone)]
pub struct Install {
    /// `MESOS_PREFIX`.
    pub prefix: PathBuf,
}

impl Install {
    /// The install named by `MESOS_PREFIX`, with every binary the harness uses present.
    ///
    /// Errors with [`MesosError::NotInstalled`], whose text starts `NOT RUN: real-Mesos tier`
    /// and says how to get Mesos.
    pub fn find() -> Result<Install, MesosError> {
        let Some(prefix) = std::env::var_os("MESOS_PREFIX").filter(|p| !p.is_empty()) else {
            return Err(MesosError::NotInstalled {
                why: "MESOS_PREFIX is not set".into(),
                how: HOW_TO_GET.into(),
            });
        };
        let install = Install {
            prefix: PathBuf::from(prefix),
        };
        let missing: Vec<String> = [
            install.master(),
            install.agent(),
            install.execute(),
            install.libexec().join("mesos-executor"),
            install.libexec().join("mesos-containerizer"),
            install.libexec().join("mesos-fetcher"),
        ]
        .iter()
        .filter(|p| !is_executable(p))
        .map(|p| p.display().to_string())
        .collect();
        if !missing.is_empty() {
            return Err(MesosError::NotInstalled {
                why: format!(
                    "MESOS_PREFIX={} lacks {}",
                    install.prefix.display(),
                    missing.join(", ")
                ),
                how: HOW_TO_GET.into(),
            });
        }
        Ok(install)
    }

    /// [`Install::find`], panicking with its message: what a tier test calls first, so that
    /// running it without Mesos fails saying that the tier did not run and how to get Mesos.
    pub fn require() -> Install {
        match Install::find() {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    /// `sbin/mesos-master`.
    pub fn master(&self) -> PathBuf {
        self.prefix.join("sbin/mesos-master")
    }

    /// `sbin/mesos-agent`.
    pub fn agent(&self) -> PathBuf {
        self.prefix.join("sbin/mesos-agent")
    }

    /// `bin/mesos-execute`.
    pub fn execute(&self) -> PathBuf {
        self.prefix.join("bin/mesos-execute")
    }

    /// `libexec/mesos`: the agent's default `--launcher_dir`.
    pub fn libexec(&self) -> PathBuf {
        self.prefix.join("libexec/mesos")
    }

    /// `LD_LIBRARY_PATH` needed when the install is not at the prefix its RUNPATH names.
    pub fn ld_library_path(&self) -> Option<PathBuf> {
        if self.prefix == Path::new("/opt/mesos-1.11") {
            None
        } else {
            Some(self.prefix.join("lib"))
        }
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
