//! Last-resort cleanup when the test process exits.
//!
//! Servers kept in a `static` are never dropped, so their processes would
//! outlive the test run. An `atexit` hook kills every server process still
//! registered (`SIGKILL`, then `waitpid`) and removes every temporary
//! directory still registered (unless `XBUS_TEST_KEEP` is set). It does not
//! help when the test process itself is killed by a signal.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

/// What the exit hook kills and removes if the owners were never dropped.
#[derive(Default)]
struct ExitCleanup {
    pids: Vec<u32>,
    /// Process groups (by leader pid) whose every member is killed.
    groups: Vec<u32>,
    dirs: Vec<PathBuf>,
}

static EXIT_CLEANUP: Mutex<ExitCleanup> = Mutex::new(ExitCleanup {
    pids: Vec::new(),
    groups: Vec::new(),
    dirs: Vec::new(),
});

/// Edits the exit-time cleanup list (installing the hook on first use).
fn exit_cleanup(edit: impl FnOnce(&mut ExitCleanup)) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: registers a plain `extern "C"` function without arguments.
        unsafe { libc::atexit(at_exit) };
    });
    edit(&mut EXIT_CLEANUP.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Registers a server process to kill at exit unless forgotten before.
pub(crate) fn kill_at_exit(pid: u32) {
    exit_cleanup(|c| c.pids.push(pid));
}

/// Registers a process group (led by our child `leader`, which started it
/// with `setpgid(0, 0)`) to kill as a whole at exit unless forgotten before:
/// for servers whose real work runs in a grandchild (ejabberd's
/// `ejabberdctl` script runs the Erlang VM as its child).
pub(crate) fn kill_group_at_exit(leader: u32) {
    exit_cleanup(|c| c.groups.push(leader));
}

/// Unregisters a pid registered with [`kill_at_exit`] or
/// [`kill_group_at_exit`] (after reaping it).
pub(crate) fn forget_pid(pid: u32) {
    exit_cleanup(|c| {
        c.pids.retain(|p| *p != pid);
        c.groups.retain(|p| *p != pid);
    });
}

/// Registers a directory to remove at exit unless unregistered before.
pub(crate) fn remove_dir_at_exit(dir: &Path) {
    exit_cleanup(|c| c.dirs.push(dir.to_owned()));
}

/// Unregisters a directory registered with [`remove_dir_at_exit`].
pub(crate) fn forget_dir_at_exit(dir: &Path) {
    exit_cleanup(|c| c.dirs.retain(|d| d != dir));
}

extern "C" fn at_exit() {
    // Never block or panic at exit: skip if the list is busy.
    let Ok(cleanup) = EXIT_CLEANUP.try_lock() else {
        return;
    };
    for &leader in &cleanup.groups {
        if let Ok(pid) = libc::pid_t::try_from(leader) {
            // SAFETY: plain syscalls; the leader is our unreaped child, so
            // its process group id cannot have been reused.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
    for &pid in &cleanup.pids {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: plain syscalls on our own unreaped children.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
    if !crate::keep_dirs() {
        for dir in &cleanup.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
