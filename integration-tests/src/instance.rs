//! A bus in a process of its own, for process-fault tests: `SIGKILL` a
//! service instance or a caller, `SIGSTOP`/`SIGCONT` it, `SIGTERM` it and
//! watch it stop gracefully.
//!
//! The binary is `src/bin/xbus_instance.rs`; an integration test finds it
//! as `env!("CARGO_BIN_EXE_xbus_instance")`. This module holds what the
//! binary and the tests share: the request and event types it serves, how
//! its settings travel (environment variables) and the lines it prints, and
//! [`InstanceProcess`], the handle a test spawns and signals it through.
//!
//! ```text
//! xbus_instance serve                       # serves Echo and an inbox of Job
//! xbus_instance call SERVICE [--count N] [--interval-ms N] [--sleep-ms N]
//!                            [--timeout-ms N] [--wait]
//! xbus_instance subscribe TOPIC             # a raw subscription to TOPIC
//! xbus_instance consume GROUP [--sleep-ms N] [--timeout-ms ACK-WAIT]
//!                                           # Job events of fault.job in GROUP
//! ```
//!
//! Settings come from the same variables as `BusConfig::from_env`
//! (`XBUS_JID` with the resource, `XBUS_PASSWORD`, `XBUS_SERVER`,
//! `XBUS_TLS`, `XBUS_PUBSUB`); [`InstanceSettings`] fills them from a test
//! server the way the tests' `config()` does (plaintext on loopback).
//!
//! # Lines on stdout (one per event, flushed at once)
//!
//! | mode | line | when |
//! |---|---|---|
//! | both | `ready FULL-JID` | connected (`serve`: handler and inbox in place) |
//! | serve | `call SEQ` | an [`Echo`] call was handled (after its sleep, just before the answer leaves) |
//! | serve | `job SEQ` | a [`Job`] arrived in the inbox |
//! | serve | `draining` | `SIGTERM`/`SIGINT` received: status set to `draining` |
//! | both | `closed` / `close-error ERROR` | after `close()` |
//! | call | `ok RESOURCE` / `err ERROR` | one line per call, in order |
//! | subscribe | `event ITEM-ID` | an event arrived on the topic |
//! | consume | `job SEQ ATTEMPT` / `acked SEQ` | a group job arrived / was acked |
//! | call | `waiting` | the calls are done and `--wait` keeps the process (and its session) alive |
//!
//! A failure to connect prints `connect-error ERROR` and exits with code 1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use xbus::{Event, Request};

use crate::{Account, XmppServer};

/// The call an instance serves: it sleeps `sleep_ms`, then answers.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "fault.echo", response = Echoed)]
pub struct Echo {
    /// Echoed back, to match answers with calls.
    pub seq: u64,
    /// How long the handler sleeps before it answers.
    pub sleep_ms: u64,
}

/// The answer to [`Echo`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Echoed {
    /// The resource of the instance that answered.
    pub resource: String,
    /// The call's `seq`.
    pub seq: u64,
}

/// Work for exactly one instance (`send_to_any`); a serving instance
/// prints `job SEQ` for each.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "fault.job")]
pub struct Job {
    /// Identifies the job in the instance's output.
    pub seq: u64,
}

/// How the helper process connects: the `XBUS_*` variables it is given.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    /// Full JID: the account and the resource to bind.
    pub jid: String,
    /// The account's password.
    pub password: String,
    /// `host:port` of the server.
    pub server: String,
    /// `None`: plaintext (loopback only); `Some(file)`: STARTTLS trusting
    /// the PEM certificate in `file`.
    pub ca_file: Option<PathBuf>,
    /// The pubsub service, if not `pubsub.<domain>`.
    pub pubsub: Option<String>,
}

impl InstanceSettings {
    /// `account` with the resource `resource` on `server`, in plaintext
    /// on loopback: what the tests' `config()` sets.
    pub fn new(server: &dyn XmppServer, account: &Account, resource: &str) -> InstanceSettings {
        InstanceSettings {
            jid: format!("{}/{resource}", account.jid),
            password: account.password.clone(),
            server: server.addr().to_string(),
            ca_file: None,
            pubsub: Some(server.pubsub_service()),
        }
    }

    /// STARTTLS, trusting the server's own certificate.
    pub fn with_tls(mut self, server: &dyn XmppServer) -> InstanceSettings {
        self.ca_file = Some(server.ca_file().to_owned());
        self
    }

    /// The environment variables `BusConfig::from_env` reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let tls = match &self.ca_file {
            None => "plaintext".to_owned(),
            Some(file) => file.display().to_string(),
        };
        let mut vars = vec![
            ("XBUS_JID", self.jid.clone()),
            ("XBUS_PASSWORD", self.password.clone()),
            ("XBUS_SERVER", self.server.clone()),
            ("XBUS_TLS", tls),
        ];
        if let Some(pubsub) = &self.pubsub {
            vars.push(("XBUS_PUBSUB", pubsub.clone()));
        }
        vars
    }
}

/// Lines of stderr kept for failure messages.
const STDERR_TAIL: usize = 40;

/// A running helper process; killed with `SIGKILL` (and reaped) when
/// dropped, so a failing test leaves nothing behind.
#[derive(Debug)]
pub struct InstanceProcess {
    child: Child,
    /// What it is, for messages: `serve i1@localhost/r`.
    label: String,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl InstanceProcess {
    /// Starts `binary` (the tests pass `env!("CARGO_BIN_EXE_xbus_instance")`)
    /// with `args` (e.g. `["serve"]`) and the variables of `settings`.
    /// Its stdout lines arrive through [`next_line`](Self::next_line);
    /// stderr (tracing, at `RUST_LOG` or `warn`) is kept for messages.
    pub fn spawn(
        binary: impl AsRef<Path>,
        settings: &InstanceSettings,
        args: &[&str],
    ) -> std::io::Result<InstanceProcess> {
        let mut command = Command::new(binary.as_ref());
        command
            .args(args)
            .envs(settings.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let label = format!("{} {} (pid {})", args.join(" "), settings.jid, child.id());
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let kept = stderr.clone();
        let pipe = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut kept = kept.lock().expect("lock poisoned");
                if kept.len() == STDERR_TAIL {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        Ok(InstanceProcess {
            child,
            label,
            lines,
            stderr,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `serve i1@localhost/r (pid N)`: for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The last lines it wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr.lock().expect("lock poisoned").join("\n")
    }

    /// The next stdout line, or `None` if none came within `timeout` or
    /// stdout ended.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        tokio::time::timeout(timeout, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next stdout line starting with `prefix` (earlier lines are
    /// skipped), with the prefix and one space taken off. Panics with the
    /// lines skipped and the stderr tail if none comes within `timeout`.
    pub async fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left).await {
                Some(line) if line == prefix || line.starts_with(&format!("{prefix} ")) => {
                    return line[prefix.len()..].trim_start().to_owned();
                }
                Some(line) => skipped.push(line),
                None => panic!(
                    "{}: no line {prefix:?} within {timeout:?}; lines seen: {skipped:?}\n\
                     --- stderr ---\n{}",
                    self.label,
                    self.stderr_tail()
                ),
            }
        }
    }

    /// Waits for the `ready FULL-JID` line and returns the full JID.
    pub async fn ready(&mut self, timeout: Duration) -> String {
        self.expect_line("ready", timeout).await
    }

    /// Every stdout line that has arrived so far, without waiting.
    pub fn drain_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            lines.push(line);
        }
        lines
    }

    /// Sends `signal` (`libc::SIGKILL`, `SIGTERM`, ...) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with our own child's pid; it is not reaped until
        // `wait`/drop, so the pid cannot name another process.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// `SIGKILL`: no goodbye to the server; its session stays behind
    /// (hibernating for resumption on Prosody and ejabberd).
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// `SIGSTOP`: the process freezes, its TCP connection stays open.
    pub fn stop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// `SIGCONT`: a stopped process goes on.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// `SIGTERM`: a `serve` process drains and closes (`draining`, then
    /// `closed`), then exits.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits up to `timeout` for the process to exit; `None` if it still
    /// runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for InstanceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
