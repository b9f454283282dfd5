//! Launching an [`Ejabberd`]: writing its config, spawning
//! `ejabberdctl foreground-quiet` and waiting until it is ready, in two
//! halves, so that the nodes of a cluster can be spawned together.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Stdio;
use std::thread;
use std::time::Instant;

use super::*;

impl Ejabberd {
    /// Writes the config for the current ports, spawns ejabberd and waits
    /// until it listens on the c2s port.
    pub(super) fn launch(&mut self) -> Result<(), LaunchError> {
        let launching = self.spawn()?;
        self.await_ready(launching)
    }

    /// The first half of [`Self::launch`]: writes the config and spawns
    /// ejabberd. The nodes of a cluster that went down together are
    /// spawned together: each waits for the others' tables.
    pub(crate) fn spawn(&mut self) -> Result<Launching, LaunchError> {
        let fatal = LaunchError::Fatal;
        if !self.fixed_dist_port {
            // A fresh distribution port per launch: the last one may linger.
            self.dist_port = process::free_port().map_err(fatal)?;
        }
        let write = |path: PathBuf, text: String| {
            fs::write(&path, text)
                .map_err(|e| fatal(HarnessError::io(format!("writing {}", path.display()), e)))
        };
        let config = match &self.debian {
            Some(debian) => debian_text(debian, &self.root, self.addr.port()),
            None => config_text(&self.root, self.ip(), self.addr.port()),
        };
        write(self.root.join("ejabberd.yml"), config)?;
        write(
            self.root.join("ejabberdctl.cfg"),
            ctl_config_text(
                &self.root,
                &self.node,
                &self.cookie,
                self.ip(),
                self.dist_port,
            ),
        )?;
        // ejabberd says READY=1 here (the systemd protocol) once it has
        // fully started: its port opens almost a second earlier, and a
        // SIGTERM in between can hang the VM (Mnesia stops under a
        // starting ejabberd).
        let notify_path = self.root.join("notify.sock");
        let _ = fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path)
            .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
            .map_err(|e| {
                fatal(HarnessError::io(
                    format!("binding {}", notify_path.display()),
                    e,
                ))
            })?;
        if let Some((uid, gid)) = self.user {
            chown_tree(&self.root, uid, gid).map_err(fatal)?;
        }
        let output = LaunchOutput::begin(self.log_path(), self.console_path());
        let stdio = output.console_stdio().map_err(fatal)?;
        let mut command = self.ejabberdctl();
        command
            .env("NOTIFY_SOCKET", &notify_path)
            .arg("foreground-quiet")
            .stdin(Stdio::null())
            .stdout(stdio.0)
            .stderr(stdio.1);
        let child = ServerProcess::spawn_group(command)
            .map_err(|e| fatal(HarnessError::io("spawning `ejabberdctl foreground`", e)))?;
        Ok(Launching {
            child,
            notify,
            output,
        })
    }

    /// The second half of [`Self::launch`]: waits until the server spawned
    /// by [`Self::spawn`] is ready.
    pub(crate) fn await_ready(&mut self, launching: Launching) -> Result<(), LaunchError> {
        let fatal = LaunchError::Fatal;
        let Launching {
            mut child,
            notify,
            output,
        } = launching;
        let error_log = self.root.join("logs/error.log");
        let failure = |reason| output.failure(ServerKind::Ejabberd, reason, Some(&error_log));
        let in_use = || {
            let needles = ["eaddrinuse", "address already in use"];
            output.log_says(&needles) || output.console_says(&needles)
        };
        let limit = if self.fixed_dist_port {
            NODE_START_TIMEOUT
        } else {
            START_TIMEOUT
        };
        let deadline = Instant::now() + limit;
        let mut ready = false;
        loop {
            if let Some(status) = child.exited() {
                let taken = in_use()
                    || !port_free(self.addr)
                    || !port_free(SocketAddr::from((self.ip(), self.dist_port)));
                return Err(if taken {
                    LaunchError::PortTaken(failure(format!(
                        "port {} or {} is taken by another process \
                         (`ejabberdctl foreground` exited with {status})",
                        self.addr.port(),
                        self.dist_port
                    )))
                } else {
                    fatal(failure(format!(
                        "`ejabberdctl foreground` exited with {status}"
                    )))
                });
            }
            // Not cached: the script may run short-lived VMs of its own.
            let beam = process::children_named(child.pid(), BEAM).first().copied();
            if in_use() {
                if let Some(pid) = beam {
                    process::signal_pid(pid, libc::SIGKILL);
                }
                child.wait_exit(STOP_GRACE);
                child.kill();
                let why = format!(
                    "port {} or {} is taken by another process",
                    self.addr.port(),
                    self.dist_port
                );
                return Err(LaunchError::PortTaken(failure(why)));
            }
            if let Some(pid) = beam {
                let listening = process::listening_sockets(pid).unwrap_or_default();
                let mut message = [0u8; 256];
                while let Ok(n) = notify.recv(&mut message) {
                    ready |= String::from_utf8_lossy(&message[..n])
                        .lines()
                        .any(|line| line == "READY=1");
                }
                if ready && listening.contains(&self.addr) && process::accepts_tcp(self.addr) {
                    self.beam = Some(pid);
                    self.process = Some(child);
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                if let Some(pid) = beam {
                    process::signal_pid(pid, libc::SIGKILL);
                }
                child.wait_exit(STOP_GRACE);
                child.kill();
                let why = format!(
                    "{} did not accept connections (or ejabberd did not report READY=1 on \
                     NOTIFY_SOCKET) within {limit:?}",
                    self.addr
                );
                return Err(fatal(failure(why)));
            }
            thread::sleep(process::POLL);
        }
    }
}

fn port_free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

/// A server spawned by [`Ejabberd::spawn`], not known to be ready yet.
pub(crate) struct Launching {
    child: ServerProcess,
    notify: UnixDatagram,
    output: LaunchOutput,
}
