//! Child processes, commands with timeouts, ports.
//!
//! Linux-only helpers: listening sockets are found in `/proc/net/tcp{,6}` and
//! matched against `/proc/PID/fd`, which tells *our* server apart from any
//! other process that happens to listen on the same port.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::{HarnessError, exit_hook};

/// How long a server gets between `SIGTERM` and `SIGKILL`.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);

/// Polling interval of every wait loop.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// The first executable file called `name` in `PATH`.
/// A temporary directory for one server's files, named `PREFIX…`.
///
/// In `XBUS_TEST_TMPDIR` if set, else in `/dev/shm` where it exists: the
/// servers sync their item stores (Prosody's SQLite, ejabberd's Mnesia) to
/// disk on every publish, which on a disk-backed `/tmp` caps a run at a few
/// hundred publishes a second. A test server's data needs no durability
/// beyond the process (a `SIGKILL` of the server keeps what it wrote either
/// way).
pub(crate) fn server_dir(prefix: &str) -> Result<tempfile::TempDir, HarnessError> {
    let root = std::env::var_os("XBUS_TEST_TMPDIR")
        .map(PathBuf::from)
        .or_else(|| {
            let shm = Path::new("/dev/shm");
            (free_bytes(shm) >= SHM_NEEDED && tempfile::tempdir_in(shm).is_ok())
                .then(|| shm.to_owned())
        })
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&root)
        .map_err(|e| {
            HarnessError::io(
                format!(
                    "creating the server's temporary directory in {}",
                    root.display()
                ),
                e,
            )
        })
}

/// Free space `/dev/shm` must have to be used (containers often give it
/// only 64 MiB).
const SHM_NEEDED: u64 = 1 << 30;

/// Bytes available to unprivileged users on the file system of `path`; 0
/// if unknown.
fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: a valid NUL-terminated path and a buffer of the right type.
    if unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between targets (u32 on some 32-bit ones).
    #[allow(clippy::useless_conversion)]
    u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize))
}

pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// A loopback port that was free a moment ago and that this process has not
/// handed out before (so parallel tests never get the same one).
pub(crate) fn free_port() -> Result<u16, HarnessError> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| HarnessError::io("binding 127.0.0.1:0 to find a free port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::io("reading the free port", e))?
            .port();
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(HarnessError::io(
        "finding a free port",
        io::Error::other("the kernel kept returning ports handed out before"),
    ))
}

/// Copies the files and directories in `from` into `to` (which exists).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), HarnessError> {
    let context = || format!("copying {} to {}", from.display(), to.display());
    for entry in fs::read_dir(from).map_err(|e| HarnessError::io(context(), e))? {
        let entry = entry.map_err(|e| HarnessError::io(context(), e))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| HarnessError::io(context(), e))?;
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(|e| HarnessError::io(context(), e))?;
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).map_err(|e| HarnessError::io(context(), e))?;
        }
    }
    Ok(())
}

/// Whether something accepts TCP connections at `addr` right now.
pub(crate) fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The TCP sockets that process `pid` listens on.
pub(crate) fn listening_sockets(pid: u32) -> io::Result<Vec<SocketAddr>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue; // closed meanwhile
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue; // no IPv6 in this kernel
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                found.extend(parse_proc_addr(fields[1]));
            }
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits plus port (IPv6) as the
/// kernel prints them: the address as native-endian 32-bit words.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for chunk in ip.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The last `lines` lines of `path` from byte `offset` on (a note if unreadable).
pub(crate) fn tail(path: &Path, offset: u64, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
            let text = String::from_utf8_lossy(&bytes[start..]);
            let all: Vec<&str> = text.lines().collect();
            if all.is_empty() {
                return "(empty)".to_owned();
            }
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} unreadable: {e})", path.display()),
    }
}

/// Size of the file at `path` (0 if missing).
pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// `n` random alphanumeric characters from `/dev/urandom`.
pub(crate) fn random_alnum(n: usize) -> Result<String, HarnessError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut urandom = std::fs::File::open("/dev/urandom")
        .map_err(|e| HarnessError::io("opening /dev/urandom", e))?;
    let mut out = String::with_capacity(n);
    let mut bytes = [0u8; 64];
    while out.len() < n {
        urandom
            .read_exact(&mut bytes)
            .map_err(|e| HarnessError::io("reading /dev/urandom", e))?;
        // 248 = 4 * 62: skip the rest to keep the distribution uniform.
        for b in bytes.iter().filter(|b| **b < 248).take(n - out.len()) {
            out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

/// Runs `command` to completion, killing it after `timeout`.
///
/// `shown` is the command line used in errors (so secrets can be masked).
/// Fails unless the command exits with status 0.
pub(crate) fn run(
    mut command: Command,
    shown: &str,
    timeout: Duration,
) -> Result<Output, HarnessError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::io(format!("spawning `{shown}`"), e))?;
    let pipe = |reader: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut reader) = reader {
                let _ = reader.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = pipe(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let stderr = pipe(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => return Err(HarnessError::io(format!("waiting for `{shown}`"), e)),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match status {
        Some(status) if status.success() => Ok(Output {
            status,
            stdout: out,
            stderr: err,
        }),
        Some(status) => Err(HarnessError::CommandFailed {
            command: shown.to_owned(),
            status: status.to_string(),
            stdout: lossy(&out),
            stderr: lossy(&err),
        }),
        None => Err(HarnessError::CommandTimeout {
            command: shown.to_owned(),
            timeout,
            stdout: lossy(&out),
            stderr: lossy(&err),
        }),
    }
}

/// Sends `signal` to `pid` (for example a server that a launcher script
/// runs as its child).
pub(crate) fn signal_pid(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain syscall. Callers pass the child of a launcher that
        // has not exited yet, so the pid is still that child's.
        unsafe { libc::kill(pid, signal) };
    }
}

/// The children of `parent` whose command name (`/proc/PID/comm`) is `comm`.
pub(crate) fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may contain spaces and parentheses.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, name)| name);
        let mut fields = tail.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && name == comm && state != Some("Z") {
            found.push(pid);
        }
    }
    found
}

/// Whether process `pid` is gone (no such process, or a zombie: this
/// machine's init may never reap orphans).
#[cfg(test)]
pub(crate) fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, tail)| tail.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// A long-running server process owned by the harness.
///
/// Dropping it stops the process (see [`ServerProcess::stop`]).
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    /// Whether the child leads its own process group (see
    /// [`ServerProcess::spawn_group`]).
    group: bool,
}

impl ServerProcess {
    /// Spawns `command` and registers it for killing at process exit.
    pub(crate) fn spawn(mut command: Command) -> io::Result<ServerProcess> {
        let child = command.spawn()?;
        exit_hook::kill_at_exit(child.id());
        Ok(ServerProcess {
            child,
            group: false,
        })
    }

    /// Spawns `command` as the leader of a new process group, registered
    /// for killing (the whole group) at process exit.
    ///
    /// For a launcher script whose server runs as its child: dropping or
    /// [`ServerProcess::kill`] then kills the server too, not only the
    /// script. A graceful stop must signal the server itself (see
    /// [`signal_pid`]) and then wait with [`ServerProcess::wait_exit`].
    pub(crate) fn spawn_group(mut command: Command) -> io::Result<ServerProcess> {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        let child = command.spawn()?;
        exit_hook::kill_group_at_exit(child.id());
        Ok(ServerProcess { child, group: true })
    }

    /// Waits up to `timeout` for the process to exit; whether it did.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `SIGTERM`, up to [`STOP_GRACE`] to exit, then `SIGKILL`; always reaps.
    pub(crate) fn stop(mut self) {
        self.stop_in_place();
    }

    /// `SIGKILL` at once (to the whole group for
    /// [`ServerProcess::spawn_group`]); reaps the process.
    pub(crate) fn kill(mut self) {
        self.signal(libc::SIGKILL);
        self.reap();
    }

    /// For a group: `SIGTERM` is useless to the launcher, so `SIGKILL` the
    /// group (a graceful stop is the owner's job, before this).
    fn stop_in_place(&mut self) {
        if self.group {
            self.signal(libc::SIGKILL);
        } else if self.exited().is_none() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            while self.exited().is_none() && Instant::now() < deadline {
                thread::sleep(POLL);
            }
            if self.exited().is_none() {
                self.signal(libc::SIGKILL);
            }
        }
        self.reap();
    }

    fn signal(&mut self, signal: libc::c_int) {
        if self.group
            && let Ok(pid) = libc::pid_t::try_from(self.child.id())
        {
            // Even after the leader exited, members may live on; the group
            // id stays theirs (a pid is not handed out while a group of
            // that id exists).
            // SAFETY: plain syscall on our own process group.
            unsafe { libc::kill(-pid, signal) };
            return;
        }
        if self.exited().is_some() {
            return; // reaped: the pid may belong to someone else by now
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: plain syscall; the pid is our unreaped child, so it
            // cannot have been reused by another process.
            unsafe { libc::kill(pid, signal) };
        }
    }

    fn reap(&mut self) {
        let _ = self.child.wait();
        let pid = self.child.id();
        exit_hook::forget_pid(pid);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop_in_place();
    }
}

/// Why one launch of a server did not work.
pub(crate) enum LaunchError {
    /// A port turned out to be taken: worth another try on other ports.
    PortTaken(HarnessError),
    /// Anything else.
    Fatal(HarnessError),
}

/// How many ports a server start tries before it gives up.
const START_ATTEMPTS: usize = 3;

/// Launches `server` on a free loopback port with `launch_on(server,
/// port)`, trying other ports (three in all) when another process takes
/// the one picked before the server binds it. Then, with `XBUS_TEST_KEEP`,
/// says where the server keeps its files.
pub(crate) fn start_on_free_port<S>(
    server: &mut S,
    name: &str,
    mut launch_on: impl FnMut(&mut S, u16) -> Result<(SocketAddr, PathBuf), LaunchError>,
) -> Result<(), HarnessError> {
    let mut attempt = 1;
    loop {
        match launch_on(server, free_port()?) {
            Ok((addr, root)) => {
                if crate::keep_dirs() {
                    eprintln!(
                        "xbus-integration-tests: {name} at {addr} keeps its files in {}",
                        root.display()
                    );
                }
                return Ok(());
            }
            Err(LaunchError::PortTaken(_)) if attempt < START_ATTEMPTS => attempt += 1,
            Err(LaunchError::PortTaken(e) | LaunchError::Fatal(e)) => return Err(e),
        }
    }
}

/// When a test is failing (the thread panics), prints the last lines of
/// the server's log, so the failure shows what the server saw.
pub(crate) fn report_log_if_failing(log: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "xbus-integration-tests: a test failed; last lines of {}:\n{}",
            log.display(),
            tail(log, 0, 40)
        );
    }
}

/// Releases a server's temporary directory: removed now, or kept (and
/// named) with `XBUS_TEST_KEEP`; either way no longer removed at exit.
pub(crate) fn release_dir(dir: Option<tempfile::TempDir>, name: &str) {
    if let Some(dir) = dir {
        crate::exit_hook::forget_dir_at_exit(dir.path());
        if crate::keep_dirs() {
            let path = dir.keep();
            eprintln!(
                "xbus-integration-tests: kept {name}'s files in {}",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_addresses() {
        assert_eq!(
            parse_proc_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0035"),
            Some("[::1]:53".parse().unwrap())
        );
    }

    #[test]
    fn sees_own_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(
            listening_sockets(std::process::id())
                .unwrap()
                .contains(&addr)
        );
    }

    #[test]
    fn run_times_out_and_reports_failures() {
        let mut sleep = Command::new("sleep");
        sleep.arg("5");
        let started = Instant::now();
        let err = run(sleep, "sleep 5", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, HarnessError::CommandTimeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let mut fail = Command::new("sh");
        fail.args(["-c", "echo oops >&2; exit 3"]);
        let err = run(fail, "sh", Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(err.contains("oops") && err.contains('3'), "{err}");
    }

    #[test]
    fn random_alnum_is_alnum() {
        let s = random_alnum(40).unwrap();
        assert_eq!(s.len(), 40);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(s, random_alnum(40).unwrap());
    }
}
