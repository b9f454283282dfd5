//! The OS user the ejabberd test servers run as: ejabberdctl refuses any
//! other user, so the harness runs it as `ejabberd` and hands it its
//! directory.

use std::fs;
use std::path::Path;

use crate::{EJABBERD_INSTALL_HINT, HarnessError};

/// The uid and gid of user `ejabberd` if we run as root (ejabberdctl must
/// run as that user; root would `su` to it), `None` if we already are that
/// user.
///
/// # Panics
///
/// If the user does not exist (the Debian package creates it), or we are
/// neither root nor `ejabberd`.
pub(crate) fn ejabberd_user() -> Option<(u32, u32)> {
    // SAFETY: plain syscall without arguments.
    let euid = unsafe { libc::geteuid() };
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == "ejabberd").then(|| {
            (
                fields[2].parse::<u32>().unwrap_or(u32::MAX),
                fields[3].parse::<u32>().unwrap_or(u32::MAX),
            )
        })
    });
    let Some((uid, gid)) = entry.filter(|(uid, gid)| *uid != u32::MAX && *gid != u32::MAX) else {
        panic!(
            "user `ejabberd` not found in /etc/passwd; the ejabberd package creates it. \
             Install it with: {EJABBERD_INSTALL_HINT}"
        );
    };
    match euid {
        0 => Some((uid, gid)),
        _ if euid == uid => None,
        _ => panic!(
            "ejabberd test servers need root (to run ejabberdctl as user `ejabberd`) or user \
             `ejabberd` itself; running as uid {euid}"
        ),
    }
}

/// `chown -R uid:gid root`.
pub(crate) fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<(), HarnessError> {
    let chown = |path: &Path| {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| HarnessError::io(format!("chown {}", path.display()), e))
    };
    chown(root)?;
    let entries = fs::read_dir(root)
        .map_err(|e| HarnessError::io(format!("listing {}", root.display()), e))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| HarnessError::io(format!("listing {}", root.display()), e))?;
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            chown_tree(&path, uid, gid)?;
        } else {
            chown(&path)?;
        }
    }
    Ok(())
}
