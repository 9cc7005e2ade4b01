//! Opening a local file (`file://` or an absolute path) with the task user's permissions.
//!
//! A root executor must not hand a task a file its user could not read (MESOS-5845). Checking
//! the permissions first and opening afterwards is a race: a user who owns a directory on the
//! path can swap a symlink in between. So the file is opened *as the user*: on a short-lived
//! thread of its own whose file-system credentials (fsuid, fsgid, supplementary groups: all
//! per-thread on Linux when set by raw system calls, unlike libc's process-wide wrappers) are
//! the user's. The kernel then checks every path component at the moment of the open, and the
//! open file is what gets copied. The thread ends right after, taking its credentials with it.

use std::fs::File;
use std::io;
use std::path::Path;

use super::extract::Owner;

/// Opens `path` read-only as `owner` (with `groups` as supplementary groups), or as the
/// executor itself when `owner` is `None`.
pub(crate) fn open_as(path: &Path, owner: Option<Owner>, groups: &[u32]) -> io::Result<File> {
    let Some(o) = owner else {
        return File::open(path);
    };
    let (path, groups) = (path.to_path_buf(), groups.to_vec());
    std::thread::Builder::new()
        .name("croupier-open-as".into())
        .spawn(move || {
            become_user_for_files(o, &groups)?;
            File::open(&path)
        })?
        .join()
        .map_err(|_| {
            io::Error::other("the thread opening a local file as the task user panicked")
        })?
}

/// Sets this thread's supplementary groups, fsgid and fsuid to the user's. Only the calling
/// thread changes: the raw system calls bypass glibc's all-threads broadcast.
fn become_user_for_files(o: Owner, groups: &[u32]) -> io::Result<()> {
    let gids: Vec<libc::gid_t> = if groups.is_empty() {
        vec![o.gid]
    } else {
        groups.to_vec()
    };
    // SAFETY: plain system calls with a valid pointer/length pair; they change only the
    // calling thread's credentials, and this thread exists only for one open().
    unsafe {
        if libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::syscall(libc::SYS_setfsgid, o.gid);
        libc::syscall(libc::SYS_setfsuid, o.uid);
        // setfs*id report the previous value, never an error: read back to be sure.
        let now = libc::syscall(libc::SYS_setfsuid, u32::MAX);
        if now != i64::from(o.uid) {
            return Err(io::Error::other(format!(
                "could not take the file-system identity of uid {}",
                o.uid
            )));
        }
    }
    Ok(())
}
