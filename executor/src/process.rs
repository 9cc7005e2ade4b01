//! Process supervision: spawning a task's command in its own session, finding every process
//! that belongs to a task (even ones that `setsid` or double-fork away), killing them, and
//! reaping every child of the executor.
//!
//! The executor makes itself a *child subreaper* ([`become_subreaper`]), so orphaned descendants
//! of a task are reparented to it rather than to init. [`reap_all`] collects every zombie with
//! `waitpid(-1)`; all child processes of the executor must therefore be spawned here (a
//! `tokio::process` child would lose its exit status to [`reap_all`]).

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

/// The environment variable that tags a custom-mode task's processes with its task id, so that
/// processes which escaped the task's session can still be attributed to it.
pub const TASK_MARKER_ENV: &str = "CROUPIER_TASK_ID";

/// What to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `sh -c <command>`.
    Shell(String),
    /// `execvp(path, argv)`; `argv` is the full argument vector including argv\[0\].
    Argv { path: String, argv: Vec<String> },
}

/// Where a stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The executor's own stream (drop-in mode: the sandbox's stdout/stderr).
    Inherit,
    /// Append to this file (created 0644).
    File(PathBuf),
    /// The executor's own standard error (health-check probes' output, as upstream).
    ExecutorStderr,
}

/// A task process to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub program: Program,
    /// The complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub stdout: Output,
    pub stderr: Output,
    /// Switch to this user before exec (only honoured when running as root).
    pub user: Option<String>,
    /// Enter the mount namespace of this process before exec, then change to `cwd` inside it
    /// (COMMAND probes of a container-image task, which see the task's root filesystem).
    pub mount_namespace_of: Option<i32>,
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("unknown user {user:?}: {reason}")]
    UnknownUser { user: String, reason: String },
    #[error("cannot open {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to execute {what:?}: {source}")]
    Exec {
        what: String,
        source: std::io::Error,
    },
    #[error("the working directory {} does not exist (or is not a directory)", .path.display())]
    MissingDirectory { path: PathBuf },
    #[error("'sh' (needed to run the shell command {command:?}) was not found on the task's PATH={path}")]
    MissingShell { command: String, path: String },
    #[error("the binary {program:?} was not found{}", .on_path.as_ref().map(|p| format!(" on the task's PATH={p}")).unwrap_or_default())]
    MissingProgram {
        program: String,
        /// The PATH searched, when the program was a bare name.
        on_path: Option<String>,
    },
    #[error(
        "{program:?} exists but cannot be executed: its interpreter (#! line) or loader is missing"
    )]
    MissingInterpreter { program: String },
}

impl SpawnError {
    /// Not retryable: the same command would fail the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Resolved credentials for a user switch.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
}

/// Look up `user` (name) for a switch; `None` if no switch is needed or possible.
pub fn credentials_for(user: Option<&str>) -> Result<Option<Credentials>, SpawnError> {
    let Some(name) = user else { return Ok(None) };
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let unknown = |reason: String| SpawnError::UnknownUser {
        user: name.to_string(),
        reason,
    };
    let u = nix::unistd::User::from_name(name)
        .map_err(|e| unknown(e.to_string()))?
        .ok_or_else(|| unknown("no such user".into()))?;
    if u.uid == Uid::effective() {
        return Ok(None);
    }
    let cname = CString::new(name).map_err(|e| unknown(e.to_string()))?;
    let groups = nix::unistd::getgrouplist(&cname, u.gid).unwrap_or_else(|_| vec![u.gid]);
    Ok(Some(Credentials {
        uid: u.uid,
        gid: u.gid,
        groups,
    }))
}

fn open_output(o: &Output) -> Result<Stdio, SpawnError> {
    match o {
        Output::Inherit => Ok(Stdio::inherit()),
        Output::ExecutorStderr => std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(Stdio::from)
            .map_err(|source| SpawnError::Output {
                path: PathBuf::from("/dev/stderr"),
                source,
            }),
        Output::File(p) => {
            use std::os::unix::fs::OpenOptionsExt;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(p)
                .map_err(|source| SpawnError::Output {
                    path: p.clone(),
                    source,
                })?;
            Ok(Stdio::from(f))
        }
    }
}

/// Start `spec` as the leader of a new session (and process group). Returns its pid.
pub fn spawn(spec: &SpawnSpec) -> Result<Pid, SpawnError> {
    let creds = credentials_for(spec.user.as_deref())?;
    let (mut cmd, what) = match &spec.program {
        Program::Shell(s) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(s);
            (c, s.clone())
        }
        Program::Argv { path, argv } => {
            let mut c = Command::new(path);
            if let Some((first, rest)) = argv.split_first() {
                c.arg0(first).args(rest);
            }
            (c, path.clone())
        }
    };
    // A probe entering a task's mount namespace changes directory once inside it.
    let mount_ns = match spec.mount_namespace_of {
        Some(pid) => {
            let ns = format!("/proc/{pid}/ns/mnt");
            let f = std::fs::File::open(&ns).map_err(|source| SpawnError::Exec {
                what: format!("{what} (entering the mount namespace {ns})"),
                source,
            })?;
            let cwd = CString::new(spec.cwd.as_os_str().as_encoded_bytes()).map_err(|e| {
                SpawnError::Exec {
                    what: what.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                }
            })?;
            Some((f, cwd))
        }
        None => {
            cmd.current_dir(&spec.cwd);
            None
        }
    };
    let ns_fd = mount_ns.as_ref().map(|(f, c)| (f.as_raw_fd(), c.clone()));
    cmd.env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(open_output(&spec.stdout)?)
        .stderr(open_output(&spec.stderr)?);
    let groups: Vec<libc::gid_t> = creds
        .as_ref()
        .map(|c| c.groups.iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    let ids = creds.as_ref().map(|c| (c.uid.as_raw(), c.gid.as_raw()));
    // SAFETY: the closure only makes async-signal-safe system calls (setsid, setgroups,
    // setgid, setuid) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((fd, cwd)) = &ns_fd {
                if libc::setns(*fd, libc::CLONE_NEWNS) != 0 || libc::chdir(cwd.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some((uid, gid)) = ids {
                if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| {
        if mount_ns.is_some() {
            SpawnError::Exec { what, source }
        } else {
            diagnose(spec, what, source)
        }
    })?;
    // The child is reaped by `reap_all`; `std::process::Child` never waits on drop.
    Ok(Pid::from_raw(child.id() as i32))
}

/// The PATH a bare program name is searched on: the task's own `PATH`, else the default the C
/// library's `execvp` uses.
fn task_path(spec: &SpawnSpec) -> String {
    spec.env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "(unset: /bin:/usr/bin)".to_string())
}

fn on_path(name: &str, path: &str) -> bool {
    let path = path
        .strip_prefix("(unset: ")
        .map_or(path, |p| p.trim_end_matches(')'));
    path.split(':')
        .filter(|d| !d.is_empty())
        .any(|d| std::path::Path::new(d).join(name).is_file())
}

/// Turn a "not found" from the spawn into what is actually missing: the working directory,
/// `sh` on the task's PATH, the binary, or the interpreter of a script.
fn diagnose(spec: &SpawnSpec, what: String, source: std::io::Error) -> SpawnError {
    if source.kind() != std::io::ErrorKind::NotFound {
        return SpawnError::Exec { what, source };
    }
    if !spec.cwd.is_dir() {
        return SpawnError::MissingDirectory {
            path: spec.cwd.clone(),
        };
    }
    let path = task_path(spec);
    match &spec.program {
        Program::Shell(command) if !on_path("sh", &path) => SpawnError::MissingShell {
            command: command.clone(),
            path,
        },
        Program::Argv { path: program, .. } if program.contains('/') => {
            let p = if program.starts_with('/') {
                PathBuf::from(program)
            } else {
                spec.cwd.join(program)
            };
            if p.exists() {
                SpawnError::MissingInterpreter {
                    program: program.clone(),
                }
            } else {
                SpawnError::MissingProgram {
                    program: program.clone(),
                    on_path: None,
                }
            }
        }
        Program::Argv { path: program, .. } if !on_path(program, &path) => {
            SpawnError::MissingProgram {
                program: program.clone(),
                on_path: Some(path),
            }
        }
        _ => SpawnError::Exec { what, source },
    }
}

/// Make this process a child subreaper (Linux), so orphaned descendants are reparented to us.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    SUBREAPER.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Set once [`become_subreaper`] succeeded.
static SUBREAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Can there be no process left of any task? True when this process is a child subreaper and
/// has no child at all (see [`has_children`]); without the subreaper role, orphans go to init
/// and only a scan of the process table can find them.
fn nothing_left() -> bool {
    SUBREAPER.load(std::sync::atomic::Ordering::Relaxed) && !has_children()
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal { signal: i32, core_dumped: bool },
}

impl Exit {
    /// `WSTRINGIFY`-style text: `exited with status N` / `terminated with signal <strsignal>`.
    pub fn describe(&self) -> String {
        match self {
            Exit::Code(c) => format!("exited with status {c}"),
            Exit::Signal {
                signal,
                core_dumped,
            } => {
                format!(
                    "terminated with signal {}{}",
                    strsignal(*signal),
                    if *core_dumped { " (core dumped)" } else { "" }
                )
            }
        }
    }

    pub fn success(&self) -> bool {
        matches!(self, Exit::Code(0))
    }
}

/// The C library's description of a signal (`Terminated`, `Killed`, ...).
pub fn strsignal(sig: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string; we copy it at once.
    unsafe {
        let p = libc::strsignal(sig);
        if p.is_null() {
            return format!("Unknown signal {sig}");
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Reap every exited child (tasks and adopted orphans). Returns the exits by pid.
pub fn reap_all() -> Vec<(Pid, Exit)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, core)) => out.push((
                pid,
                Exit::Signal {
                    signal: sig as i32,
                    core_dumped: core,
                },
            )),
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: no children at all
        }
    }
    out
}

/// One row of the process table.
#[derive(Debug, Clone, Copy)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub zombie: bool,
}

/// Read `/proc/<pid>/stat` (fields after the parenthesised command name).
///
/// One `open` and (usually) one `read` into a stack buffer: [`snapshot`] does this for every
/// process on the host, and `read_to_string` would add a `statx` and four growing reads each.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    // The line is a few hundred bytes (the command name is at most 64); 4 KiB is ample.
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if buf[len - 1] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    let s = std::str::from_utf8(&buf[..len]).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?;
    let ppid = it.next()?.parse().ok()?;
    let pgrp = it.next()?.parse().ok()?;
    let session = it.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgrp,
        session,
        zombie: state == "Z" || state == "X",
    })
}

/// A snapshot of every process on the host.
pub fn snapshot() -> HashMap<i32, ProcInfo> {
    let mut map = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
                if let Some(pi) = proc_info(pid) {
                    map.insert(pid, pi);
                }
            }
        }
    }
    map
}

/// The task id recorded in a process's initial environment ([`TASK_MARKER_ENV`]).
pub fn task_marker(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{TASK_MARKER_ENV}=");
    raw.split(|b| *b == 0).find_map(|kv| {
        kv.strip_prefix(prefix.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// How to find a task's processes.
#[derive(Debug, Clone)]
pub struct TaskScope {
    /// The task's root process (session leader), if it was started.
    pub root: Option<i32>,
    /// The task id written in [`TASK_MARKER_ENV`].
    pub marker: Option<String>,
    /// Claim every adopted orphan (drop-in mode: there is only one task).
    pub claim_all_orphans: bool,
    /// The root was reaped: its pid may belong to another process now, so only its process
    /// group and session (which keep the pid from being reused while they have members) and
    /// orphans find the task's processes.
    pub root_reaped: bool,
    /// Sessions that are never the task's (the executor's own health-check probes, each the
    /// leader of its own session), even when their processes are direct children of the
    /// executor.
    pub exclude_sessions: Vec<i32>,
}

/// Every live process belonging to the task: the root's descendants, its process group and
/// session, and orphans re-parented to the executor (this process) that carry the task's marker
/// (or, with `claim_all_orphans`, all of them), with their descendants. Never this process.
pub fn members(scope: &TaskScope, procs: &HashMap<i32, ProcInfo>) -> BTreeSet<i32> {
    let me = std::process::id() as i32;
    let excluded = |p: &ProcInfo| scope.exclude_sessions.contains(&p.session);
    let mut set = BTreeSet::new();
    if let Some(root) = scope.root {
        for p in procs.values() {
            if p.pid != me
                && !p.zombie
                && !excluded(p)
                && ((p.pid == root && !scope.root_reaped) || p.pgrp == root || p.session == root)
            {
                set.insert(p.pid);
            }
        }
    }
    // Adopted orphans: direct children of the executor that are not a task root.
    for p in procs.values() {
        if p.ppid != me || p.zombie || excluded(p) || Some(p.pid) == scope.root {
            continue;
        }
        if scope.claim_all_orphans
            || scope
                .marker
                .as_ref()
                .is_some_and(|m| task_marker(p.pid).as_deref() == Some(m.as_str()))
        {
            set.insert(p.pid);
        }
    }
    // Close over descendants.
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut stack: Vec<i32> = set.iter().copied().collect();
    while let Some(pid) = stack.pop() {
        for &c in children.get(&pid).map(|v| v.as_slice()).unwrap_or(&[]) {
            if c != me && procs.get(&c).is_some_and(|p| !p.zombie && !excluded(p)) && set.insert(c)
            {
                stack.push(c);
            }
        }
    }
    set
}

/// Does this process have any child (running, stopped or an unreaped zombie)? Nothing is
/// reaped (`WNOWAIT`).
///
/// As a child subreaper, every live process descended from a task is a descendant of the
/// executor (orphans are re-parented to us), and every descendant has a live ancestor chain
/// through one of our children: with no child there is nothing of any task left to find.
pub fn has_children() -> bool {
    use nix::sys::wait::{waitid, Id};
    loop {
        match waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return false,
            // A status, StillAlive, or an unexpected error: assume there may be some.
            _ => return true,
        }
    }
}

/// Signal every process of the task with `sig`. The tree is frozen first (SIGSTOP, repeated
/// until no new process appears) so nothing can fork away mid-kill, then signalled, then
/// resumed (SIGCONT) so a pending SIGTERM is delivered. Returns the pids signalled.
pub fn kill_task(scope: &TaskScope, sig: Signal) -> Vec<i32> {
    if nothing_left() {
        // The common end of a task: its process was reaped and left nothing behind. Skip
        // reading the whole process table.
        return Vec::new();
    }
    let mut frozen: BTreeSet<i32> = BTreeSet::new();
    for _ in 0..20 {
        let found = members(scope, &snapshot());
        let new: Vec<i32> = found.difference(&frozen).copied().collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            frozen.insert(pid);
        }
    }
    for &pid in &frozen {
        let _ = kill(Pid::from_raw(pid), sig);
    }
    if sig != Signal::SIGKILL {
        for &pid in &frozen {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }
    frozen.into_iter().collect()
}

/// Signal the session led by `leader` (a probe started by [`spawn`]) and its descendants.
pub fn kill_session(leader: i32, sig: Signal) -> Vec<i32> {
    kill_task(
        &TaskScope {
            root: Some(leader),
            marker: None,
            claim_all_orphans: false,
            root_reaped: false,
            exclude_sessions: Vec::new(),
        },
        sig,
    )
}

/// Every live descendant of this process (used as a last sweep before exiting).
pub fn all_descendants() -> BTreeSet<i32> {
    if nothing_left() {
        return BTreeSet::new();
    }
    let me = std::process::id() as i32;
    let procs = snapshot();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut set = BTreeSet::new();
    let mut stack = vec![me];
    while let Some(pid) = stack.pop() {
        for &c in children.get(&pid).map(|v| v.as_slice()).unwrap_or(&[]) {
            if procs.get(&c).is_some_and(|p| !p.zombie) && set.insert(c) {
                stack.push(c);
            }
        }
    }
    set
}

/// SIGKILL every descendant of this process (frozen first), then reap them.
pub fn kill_all_descendants() -> usize {
    let mut frozen = BTreeSet::new();
    for _ in 0..20 {
        let new: Vec<i32> = all_descendants().difference(&frozen).copied().collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            frozen.insert(pid);
        }
    }
    for &pid in &frozen {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    frozen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_descriptions_match_upstream() {
        assert_eq!(Exit::Code(3).describe(), "exited with status 3");
        assert_eq!(
            Exit::Signal {
                signal: 15,
                core_dumped: false
            }
            .describe(),
            "terminated with signal Terminated"
        );
        assert_eq!(
            Exit::Signal {
                signal: 9,
                core_dumped: false
            }
            .describe(),
            "terminated with signal Killed"
        );
    }

    #[test]
    fn has_children_sees_running_and_zombie_children_without_reaping() {
        // Other tests of this binary may have children of their own; only assert what ours
        // guarantee.
        let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(has_children());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !proc_info(pid).is_some_and(|p| p.zombie) {
            assert!(
                std::time::Instant::now() < deadline,
                "sleep 0.2 did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // A zombie: still a child, and still waitable afterwards (WNOWAIT reaps nothing).
        assert!(has_children());
        let status = child.wait().unwrap();
        assert!(status.success());
    }

    #[test]
    fn proc_info_of_a_child_with_an_odd_name() {
        // A command name with spaces and a ')' must not confuse the field parsing.
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("a b) c");
        // A symlink (the kernel names the process after the path it executed) rather than a
        // copy: a copy's write descriptor could leak into a concurrent fork (ETXTBSY).
        std::os::unix::fs::symlink("/bin/sleep", &exe).unwrap();
        let mut child = Command::new(&exe).arg("5").spawn().unwrap();
        let pid = child.id() as i32;
        let p = proc_info(pid).unwrap();
        assert_eq!(p.pid, pid);
        assert_eq!(p.ppid, std::process::id() as i32);
        assert!(!p.zombie);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn proc_info_of_self() {
        let me = std::process::id() as i32;
        let p = proc_info(me).unwrap();
        assert_eq!(p.pid, me);
        assert!(!p.zombie);
    }
}
