//! Real-server test harness for xbus.
//!
//! This crate starts real XMPP servers on loopback for tests, registers fresh
//! accounts on them and cleans everything up again. The servers deal only
//! in host, port and JID strings: they do not use `xbus`, so the bus is
//! tested against the harness the same way any other client would be. Only
//! [`instance`] (a bus in a process of its own, for process-fault tests)
//! uses `xbus`.
//!
//! # Servers
//!
//! * [`Prosody`]: Prosody 0.12 from Debian (`apt-get install -y prosody`),
//!   with a pubsub component at `pubsub.localhost`.
//! * [`Ejabberd`]: ejabberd 23.01 from Debian (`apt-get install -y
//!   ejabberd`), with mod_pubsub at `pubsub.localhost`.
//! * [`EjabberdCluster`]: two such ejabberd nodes joined in a cluster,
//!   each on a loopback address of its own; its
//!   [`addr`](XmppServer::addr) hands the nodes out in turn, so the
//!   clients of one test land on different nodes.
//!
//! Each server implements [`XmppServer`], so a test can run against every
//! kind in [`ServerKind`]. [`ServerKind::from_env`] reads the list a test
//! run is meant to cover from `XBUS_TEST_SERVERS` (default
//! [`DEFAULT_SERVERS`]); an unknown name is an error, never a skip.
//!
//! ```no_run
//! use xbus_integration_tests::{Prosody, XmppServer};
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
//! * Every wait is bounded (Prosody: startup 10 s, each `prosodyctl` call
//!   10 s, graceful stop 2 s then `SIGKILL`; ejabberd: startup 30 s, each
//!   registration 10 s, graceful stop 5 s then `SIGKILL`).
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
//! * `XBUS_TEST_EJABBERD_LOG_LEVEL=debug`: the same for ejabberd
//!   (`logs/ejabberd.log` in its directory).
//! * `XBUS_TEST_SERVERS=embedded,prosody,ejabberd,ejabberd-cluster`: the servers the integration
//!   tests run against (see [`ServerKind::from_env`]).
#![deny(missing_docs)]

mod certs;
mod ejabberd;
mod ejabberd_cluster;
mod ejabberd_config;
mod ejabberd_register;
mod ejabberd_user;
mod embedded;
mod exit_hook;
pub mod instance;
mod launch;
mod process;
mod prosody;
pub mod proxy;
pub mod raw;
mod template;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use ejabberd::Ejabberd;
pub use ejabberd_cluster::{CLUSTER_NODES, EjabberdCluster};
pub use embedded::Embedded;
pub use instance::{InstanceProcess, InstanceSettings};
pub use prosody::{ACCOUNT_POOL_SIZE, Prosody};
pub use proxy::CutProxy;

/// How `apt-get` installs Prosody; part of the panic message when it is
/// missing. `sqlite3` creates its database in WAL mode ([`Storage::Tuned`]).
pub const PROSODY_INSTALL_HINT: &str =
    "apt-get update && apt-get install -y prosody lua-dbi-sqlite3 sqlite3";

/// How Prosody and ejabberd store pubsub items. Both keep what they
/// acknowledged across a `SIGKILL` either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// The storage docs/SERVERS.md recommends, and what the tests run on:
    /// ejabberd's `pubsub_item` table as `disc_copies` (in RAM, logged to
    /// disk) through `ejabberd.schema` in the spool directory, and
    /// Prosody's SQLite database created in WAL mode.
    #[default]
    Tuned,
    /// The servers' own defaults: ejabberd's `pubsub_item` on disk only
    /// (DETS), Prosody's SQLite in its default rollback-journal mode. For
    /// the benchmark's side-by-side rows.
    Stock,
}

/// How `apt-get` installs ejabberd; part of the panic message when it is missing.
pub const EJABBERD_INSTALL_HINT: &str = "apt-get update && apt-get install -y ejabberd";

/// Environment variable with the comma-separated server kinds the
/// integration tests run against (see [`ServerKind::from_env`]).
pub const SERVERS_ENV: &str = "XBUS_TEST_SERVERS";

/// The servers the integration tests run against when `XBUS_TEST_SERVERS`
/// is unset.
pub const DEFAULT_SERVERS: &str = "embedded,prosody,ejabberd,ejabberd-cluster";

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

/// Declares [`ServerKind`]: one line per kind (variant, name, server type).
macro_rules! server_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal, $server:ty;)+) => {
        /// The kinds of server the harness can run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ServerKind {
            $($(#[$doc])* $variant,)+
        }

        impl ServerKind {
            /// Every kind the harness implements.
            pub const ALL: &'static [ServerKind] = &[$(ServerKind::$variant),+];

            /// Lower-case name, e.g. `"prosody"`.
            pub fn name(self) -> &'static str {
                match self {
                    $(ServerKind::$variant => $name,)+
                }
            }

            /// Starts a server of this kind (see e.g. [`Prosody::start`]).
            ///
            /// # Panics
            ///
            /// If the server is not installed; the message says how to
            /// install it.
            pub fn start(self) -> Result<Box<dyn XmppServer>, HarnessError> {
                match self {
                    $(ServerKind::$variant => Ok(Box::new(<$server>::start()?)),)+
                }
            }
        }
    };
}

server_kinds! {
    /// The embedded `xbus-server`, in process, see [`Embedded`].
    Embedded => "embedded", Embedded;
    /// Prosody, see [`Prosody`].
    Prosody => "prosody", Prosody;
    /// ejabberd, see [`Ejabberd`].
    Ejabberd => "ejabberd", Ejabberd;
    /// A cluster of ejabberd nodes, see [`EjabberdCluster`]; clients of
    /// one test are spread over its nodes.
    EjabberdCluster => "ejabberd-cluster", EjabberdCluster;
}

/// An unknown server name in `XBUS_TEST_SERVERS` (or an empty list).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{SERVERS_ENV}={list:?}: {problem}; known servers: {known} (comma-separated, e.g. {DEFAULT_SERVERS:?})"
)]
pub struct UnknownServer {
    /// The whole list as given.
    pub list: String,
    /// What is wrong with it.
    pub problem: String,
    /// The known names, comma-separated.
    pub known: String,
}

impl ServerKind {
    /// The kind called `name` (case-insensitive, surrounding blanks
    /// ignored).
    pub fn from_name(name: &str) -> Option<ServerKind> {
        let name = name.trim();
        ServerKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
    }

    /// Parses a comma-separated list such as `"prosody,ejabberd"`: every
    /// name must be known, at least one must be given; duplicates are
    /// dropped, the order is kept.
    pub fn parse_list(list: &str) -> Result<Vec<ServerKind>, UnknownServer> {
        let error = |problem: String| UnknownServer {
            list: list.to_owned(),
            problem,
            known: ServerKind::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(","),
        };
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = ServerKind::from_name(name)
                .ok_or_else(|| error(format!("unknown server {name:?}")))?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            return Err(error("no server named".to_owned()));
        }
        Ok(kinds)
    }

    /// The servers named in `XBUS_TEST_SERVERS`, or [`DEFAULT_SERVERS`] if
    /// it is unset. An unknown name or an empty list is an error: a test
    /// run never silently covers fewer servers than asked for.
    pub fn from_env() -> Result<Vec<ServerKind>, UnknownServer> {
        match std::env::var(SERVERS_ENV) {
            Ok(list) => ServerKind::parse_list(&list),
            Err(_) => ServerKind::parse_list(DEFAULT_SERVERS),
        }
    }
}

impl ServerKind {
    /// Whether the server software is ejabberd (a lone server or a
    /// cluster): what the server does, as opposed to how many nodes do it.
    pub fn is_ejabberd(self) -> bool {
        matches!(self, ServerKind::Ejabberd | ServerKind::EjabberdCluster)
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
    fn domain(&self) -> &str {
        "localhost"
    }
    /// The JID of the pubsub service, `"pubsub.localhost"`.
    fn pubsub_service(&self) -> String {
        format!("pubsub.{}", self.domain())
    }
    /// The client-to-server address, `127.0.0.1:PORT`.
    fn addr(&self) -> SocketAddr;
    /// PEM certificate the server presents for `localhost` and
    /// `pubsub.localhost`; trust it as a CA for STARTTLS.
    fn ca_file(&self) -> &Path;
    /// Registers a fresh account (unique name, random password).
    fn account(&self) -> Result<Account, HarnessError>;
    /// Registers a fresh account that no pubsub setting favours, to test
    /// access control with: on Prosody one outside the component's
    /// `admins` (who bypass every node's access model, and are the only
    /// accounts that may create nodes); elsewhere every account is one.
    fn plain_account(&self) -> Result<Account, HarnessError> {
        self.account()
    }
    /// Kills the server with `SIGKILL` (no clean shutdown) and waits for it.
    fn kill(&mut self);
    /// Stops the server if it runs, then starts it again on the same port
    /// with the same data.
    fn restart(&mut self) -> Result<(), HarnessError>;
    /// The server's log file.
    fn log_path(&self) -> PathBuf;
}

/// A boxed server is a server: `&Box<dyn XmppServer>` goes where a
/// `&dyn XmppServer` is expected.
impl<T: XmppServer + ?Sized> XmppServer for Box<T> {
    fn kind(&self) -> ServerKind {
        (**self).kind()
    }
    fn domain(&self) -> &str {
        (**self).domain()
    }
    fn pubsub_service(&self) -> String {
        (**self).pubsub_service()
    }
    fn addr(&self) -> SocketAddr {
        (**self).addr()
    }
    fn ca_file(&self) -> &Path {
        (**self).ca_file()
    }
    fn account(&self) -> Result<Account, HarnessError> {
        (**self).account()
    }
    fn plain_account(&self) -> Result<Account, HarnessError> {
        (**self).plain_account()
    }
    fn kill(&mut self) {
        (**self).kill()
    }
    fn restart(&mut self) -> Result<(), HarnessError> {
        (**self).restart()
    }
    fn log_path(&self) -> PathBuf {
        (**self).log_path()
    }
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
