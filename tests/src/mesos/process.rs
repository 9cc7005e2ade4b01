//! Processes the harness starts: each is owned by a [`Proc`] that stops it by pid (SIGTERM,
//! then SIGKILL) when dropped, panicking test or not; and free loopback ports.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::error::MesosError;

/// A child process with its output in a log file; stopped by pid on drop.
#[derive(Debug)]
pub struct Proc {
    what: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` in its own process group with stdout and stderr appended to `log`.
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> Result<Proc, MesosError> {
        use std::os::unix::process::CommandExt;
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| MesosError::io(format!("open log {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| MesosError::io(format!("dup log {}", log.display()), e))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let path = PathBuf::from(cmd.get_program());
        let child = cmd.spawn().map_err(|source| MesosError::Spawn {
            what: what.to_string(),
            path,
            source,
        })?;
        Ok(Proc {
            what: what.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Where its output goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Err(Exited)` if it has exited (reaping it).
    pub fn check_alive(&mut self, during: &str) -> Result<(), MesosError> {
        let status = match self.child.as_mut().map(Child::try_wait) {
            None => "stopped by the harness".to_string(),
            Some(Ok(None)) => return Ok(()),
            Some(Ok(Some(s))) => s.to_string(),
            Some(Err(e)) => format!("wait failed: {e}"),
        };
        Err(MesosError::Exited {
            what: self.what.clone(),
            status,
            during: during.to_string(),
            log: self.log.clone(),
            tail: log_tail(&self.log, TAIL_LINES),
        })
    }

    /// SIGKILL by pid and reap (for "the agent crashed" scenarios).
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGTERM by pid, up to `grace` for it to exit, then SIGKILL; reaps it.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        if let Ok(None) = child.try_wait() {
            let _ = kill(pid, Signal::SIGTERM);
            let until = Instant::now() + grace;
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// How many lines of a dead process's log an error carries.
const TAIL_LINES: usize = 20;

/// The last `n` lines of a log file (or why it could not be read).
pub fn log_tail(log: &Path, n: usize) -> String {
    match std::fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

/// A port on 127.0.0.1 that is free now, outside the kernel's ephemeral range (see
/// [`crate::ports`]).
pub fn free_port() -> Result<u16, MesosError> {
    crate::ports::free_port().map_err(|e| MesosError::io("pick a free port on 127.0.0.1", e))
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the field after the parenthesised command name
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}
