//! Real-server test harness for xbus.
//!
//! This crate starts real XMPP servers on loopback for tests, registers fresh
//! accounts on them and cleans everything up again. It deals only in host,
//! port and JID strings: it does not depend on `xbus`, so the bus is tested
//! against the harness the same way any other client would be.
//!
//! # Servers
//!
//! * [`Prosody`]: Prosody 0.12 from Debian (`apt-get install -y prosody`),
//!   with a pubsub component at `pubsub.localhost`.
//!
//! Each server implements [`XmppServer`], so a test can run against every
//! kind in [`ServerKind`] (ejabberd is meant to join Prosody there).
//!
//! ```no_run
//! use xbus_integration_tests::Prosody;
//!
//! let server = Prosody::start()?;
//! let alice = server.account()?;
//! println!("{} / {} at {}", alice.jid, alice.password, server.addr());
//! # Ok::<(), xbus_integration_tests::HarnessError>(())
//! ```
//!
//! # Guarantees
//!
//! * A missing server binary makes `start()` **panic** with the command that
//!   installs it (see [`require_binary`]): tests fail loudly, never skip.
//! * Every server gets its own temporary directory (config, data, pidfile,
//!   logs, certificates) and its own free loopback port, so servers can run
//!   in parallel test threads. Only that port is opened.
//! * Every wait is bounded (startup 10 s, each `prosodyctl` call 10 s, graceful
//!   stop 2 s then `SIGKILL`).
//! * Dropping a server stops the process, waits for it and removes its
//!   directory. Servers still alive when the test process exits (for example
//!   ones kept in a `static`) are killed by an exit hook.
//!
//! # Environment
//!
//! * `XBUS_TEST_KEEP=1`: keep each server's temporary directory (config, data
//!   and `prosody.log`) after the server is dropped, and print its path to
//!   stderr (run the tests with `--nocapture` to see it).
//! * `XBUS_TEST_PROSODY_LOG_LEVEL=debug`: Prosody's log level (default
//!   `info`; `debug` logs every stanza, which slows the server down).
#![deny(missing_docs)]

mod certs;
mod exit_hook;
mod process;
mod prosody;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use prosody::{ACCOUNT_POOL_SIZE, Prosody};

/// How `apt-get` installs Prosody; part of the panic message when it is missing.
pub const PROSODY_INSTALL_HINT: &str =
    "apt-get update && apt-get install -y prosody lua-dbi-sqlite3";

/// How `apt-get` installs OpenSSL; part of the panic message when it is missing.
pub const OPENSSL_INSTALL_HINT: &str = "apt-get update && apt-get install -y openssl";

/// Environment variable that keeps the servers' temporary directories.
pub const KEEP_ENV: &str = "XBUS_TEST_KEEP";

/// An account registered on a test server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    /// Bare JID, `user@localhost`.
    pub jid: String,
    /// The account's password (random, alphanumeric).
    pub password: String,
}

impl Account {
    /// The local part of the JID (`user` in `user@localhost`).
    pub fn username(&self) -> &str {
        self.jid.split('@').next().unwrap_or(&self.jid)
    }
}

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A file-system or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command (`prosodyctl`, `openssl`, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status})\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}")]
    CommandFailed {
        /// The command line (secrets masked).
        command: String,
        /// How it exited.
        status: String,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A helper command did not finish in time and was killed.
    #[error(
        "`{command}` did not finish within {timeout:?} and was killed\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}"
    )]
    CommandTimeout {
        /// The command line (secrets masked).
        command: String,
        /// How long it was given.
        timeout: Duration,
        /// What it printed on stdout before it was killed.
        stdout: String,
        /// What it printed on stderr before it was killed.
        stderr: String,
    },
    /// The server did not come up (exited, failed to bind, or too slow).
    #[error("{server} did not start: {reason}\n--- last lines of {log} ---\n{log_tail}")]
    Startup {
        /// Which server.
        server: ServerKind,
        /// What went wrong.
        reason: String,
        /// The server's log file.
        log: PathBuf,
        /// The last lines of the server's log and console output.
        log_tail: String,
    },
    /// Every pre-configured account name of this server is used up.
    #[error(
        "{server}: all {size} pre-configured account names are in use; raise ACCOUNT_POOL_SIZE or use fewer accounts per server"
    )]
    AccountPoolExhausted {
        /// Which server.
        server: ServerKind,
        /// How many names the pool had.
        size: usize,
    },
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The kinds of server the harness can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerKind {
    /// Prosody, see [`Prosody`].
    Prosody,
}

impl ServerKind {
    /// Every kind the harness implements.
    pub const ALL: &'static [ServerKind] = &[ServerKind::Prosody];

    /// Lower-case name, e.g. `"prosody"`.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
        }
    }

    /// Starts a server of this kind (see [`Prosody::start`]).
    pub fn start(self) -> Result<Box<dyn XmppServer>, HarnessError> {
        match self {
            ServerKind::Prosody => Ok(Box::new(Prosody::start()?)),
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What every test server offers, whatever its kind.
///
/// All servers serve the XMPP domain `localhost` (c2s only, plaintext allowed,
/// STARTTLS offered) and a pubsub service on which every account from
/// [`XmppServer::account`] may create nodes and publish.
pub trait XmppServer: Send + Sync + fmt::Debug {
    /// Which kind of server this is.
    fn kind(&self) -> ServerKind;
    /// The XMPP domain, `"localhost"`.
    fn domain(&self) -> &str;
    /// The JID of the pubsub service, `"pubsub.localhost"`.
    fn pubsub_service(&self) -> String;
    /// The client-to-server address, `127.0.0.1:PORT`.
    fn addr(&self) -> SocketAddr;
    /// PEM certificate the server presents for `localhost` and
    /// `pubsub.localhost`; trust it as a CA for STARTTLS.
    fn ca_file(&self) -> &Path;
    /// Registers a fresh account (unique name, random password).
    fn account(&self) -> Result<Account, HarnessError>;
    /// Kills the server with `SIGKILL` (no clean shutdown) and waits for it.
    fn kill(&mut self);
    /// Stops the server if it runs, then starts it again on the same port
    /// with the same data.
    fn restart(&mut self) -> Result<(), HarnessError>;
    /// The server's log file.
    fn log_path(&self) -> PathBuf;
}

/// Panics unless `name` is an executable in `PATH`.
///
/// The panic message contains `install_hint` (e.g. [`PROSODY_INSTALL_HINT`]),
/// so a machine without the server fails loudly with the fix instead of
/// silently skipping tests.
pub fn require_binary(name: &str, install_hint: &str) -> PathBuf {
    match process::find_in_path(name) {
        Some(path) => path,
        None => panic!(
            "required binary `{name}` was not found in PATH; the real-server tests need it. \
             Install it with: {install_hint}"
        ),
    }
}

/// Whether `XBUS_TEST_KEEP` asks to keep temporary directories.
pub(crate) fn keep_dirs() -> bool {
    std::env::var(KEEP_ENV).is_ok_and(|value| !value.is_empty() && value != "0")
}
