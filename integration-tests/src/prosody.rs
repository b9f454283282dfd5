//! Prosody 0.12 as a test server.
//!
//! Each [`Prosody`] runs `prosody --config DIR/prosody.cfg.lua -F` (in the
//! foreground, as our child process) with everything in its own temporary
//! directory `DIR`: config, `data/`, `certs/`, `prosody.pid`, `prosody.log`
//! and `prosody.console` (the process's stdout and stderr). It listens on one
//! free port on 127.0.0.1 for c2s and opens no other port (no s2s, no
//! component port, no HTTP, no direct TLS), which the tests check.
//!
//! # What Prosody 0.12.3's source says (checked in `/usr/lib/prosody`)
//!
//! * **Publisher in notifications** (`modules/mod_pubsub/mod_pubsub.lua`):
//!   `expose_publisher` is a real option (`get_option_boolean`, default
//!   false). With it, `<item>` in notifications keeps `publisher=`, the
//!   publisher's *bare* JID (set from `stanza.attr.from` through
//!   `normalize_jid = jid_bare` in `pubsub.lib.lua`).
//! * **Who may create nodes** (`util/pubsub.lua`): the service-wide
//!   `capabilities` table gives `create = false` and `publish = false` to
//!   `none`, `member` and `publisher`; only `owner` may create. On a missing
//!   node the default affiliation is `member` (access model `open`), so a
//!   plain user can neither create nor publish, even with
//!   `autocreate_on_publish` (publish is checked before the auto-create).
//!   mod_pubsub passes no `capabilities` and has no option such as
//!   `pubsub_create_access`; 0.12 has no role/permission settings either
//!   (roles arrived in 0.13). Its `get_affiliation` returns
//!   `default_admin_affiliation` (default `owner`) for
//!   `usermanager.is_admin(jid, "pubsub.localhost")`, which for
//!   `user@localhost` (a "remote" JID on the component) is true only if the
//!   JID is in the `admins` option read when the module loads
//!   (`mod_authz_internal`: `get_jid_roles`; `set_jid_roles` is a no-op). So
//!   the `admins` list on the component is the only config-level way, and
//!   it must be complete before start: the config lists a pool of names
//!   `u1`..`u{ACCOUNT_POOL_SIZE}` and [`Prosody::account`] registers the next
//!   unused one. Verified on the running server: an admin's publish to a
//!   missing node creates it; a non-admin gets `forbidden` for create and
//!   publish.
//! * **Pubsub defaults** (`util/pubsub.lua`, `mod_pubsub.lua`): a new node
//!   gets `max_items = 20`, `persist_items = true`, `access_model = open`,
//!   `publish_model = publishers`, `send_last_published_item = never`.
//!   `pubsub_max_items` (default 256) is only the *cap* a node may be
//!   configured to: nodes still keep 20 items unless created or configured
//!   with `pubsub#max_items` (a number or `max`, which means the cap). 0.12
//!   has no option for the default node config. Notifications are
//!   `<message type='headline'>` unless the node sets
//!   `pubsub#notification_type` to `normal`.
//! * **Stream management** (`modules/mod_smacks.lua`): the resumption queue
//!   is a ring buffer of `smacks_max_queue_size` stanzas (default 500);
//!   once more are unacked the oldest are dropped, and resuming fails with
//!   `resource-constraint` (the connection itself goes on). The config sets
//!   it to 100 000, above what a fault test sends through one session
//!   (10 000 events plus their IQ results), and not higher because
//!   `util.queue` allocates the whole buffer (16 bytes a slot, 1.6 MB here)
//!   for every session that enables SM. `smacks_hibernation_time` stays at
//!   600 s (the `max` in `<enabled/>`), `smacks_max_unacked_stanzas` at 0
//!   (ask for an ack as soon as one stanza is unacked) and
//!   `smacks_max_old_sessions` at 10 (expired sessions whose `h` is kept
//!   for `<failed h=.../>`); all are written out in the config. 0.12 has
//!   no `smacks_max_hibernated_sessions`.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod config;

use crate::launch::{LaunchOutput, ServerHome};
use crate::process::{self, LaunchError, ServerProcess};
use crate::{
    Account, HarnessError, PROSODY_INSTALL_HINT, ServerKind, Storage, XmppServer, require_binary,
};

/// How many accounts one [`Prosody`] can hand out (names `u1`..`u500`, all
/// admins of the pubsub component).
pub const ACCOUNT_POOL_SIZE: usize = 500;

const DOMAIN: &str = "localhost";
const PUBSUB: &str = "pubsub.localhost";
const START_TIMEOUT: Duration = Duration::from_secs(10);
const PROSODYCTL_TIMEOUT: Duration = Duration::from_secs(10);
const BIND_FAILED: &str = "Failed to open server port";
const LOG_LEVEL_ENV: &str = "XBUS_TEST_PROSODY_LOG_LEVEL";

/// A Prosody server on a free loopback port, for one test or a few.
///
/// Dropping it stops the server (`SIGTERM`, then `SIGKILL` after 2 s), waits
/// for it and removes its directory (unless `XBUS_TEST_KEEP=1`).
#[derive(Debug)]
pub struct Prosody {
    dir: Option<TempDir>,
    root: PathBuf,
    config: PathBuf,
    ca_file: PathBuf,
    addr: SocketAddr,
    process: Option<ServerProcess>,
    next_account: AtomicUsize,
    /// Accounts handed out by [`XmppServer::plain_account`].
    next_plain: AtomicUsize,
    /// Debian's own `prosody.cfg.lua`, when the server runs on it instead
    /// of `deploy/prosody/prosody.cfg.lua`.
    debian: Option<String>,
}

/// Where Debian's `prosody` package puts its config.
const DEBIAN_CONFIG: &str = "/etc/prosody/prosody.cfg.lua";

impl Prosody {
    /// Starts a Prosody on a free port of 127.0.0.1 and waits (at most 10 s)
    /// until it accepts connections.
    ///
    /// If the port turns out to be taken, tries again on another one (three
    /// tries in all).
    ///
    /// # Panics
    ///
    /// If `prosody`, `prosodyctl`, `sqlite3` or `openssl` is not installed;
    /// the message says how to install it.
    pub fn start() -> Result<Prosody, HarnessError> {
        Prosody::start_with(Storage::Tuned)
    }

    /// [`Prosody::start`] with the given item storage: with
    /// [`Storage::Tuned`], the SQLite database is created in WAL mode
    /// before Prosody opens it (Prosody 0.12 sets no pragmas of its own).
    pub fn start_with(storage: Storage) -> Result<Prosody, HarnessError> {
        require_binary("prosody", PROSODY_INSTALL_HINT);
        require_binary("prosodyctl", PROSODY_INSTALL_HINT);
        // The config stores data in SQLite (see config.rs).
        let sqlite_driver = ["5.4", "5.3", "5.2", "5.1"].iter().any(|v| {
            Path::new(&format!("/usr/lib/x86_64-linux-gnu/lua/{v}/dbd/sqlite3.so")).exists()
                || Path::new(&format!(
                    "/usr/lib/aarch64-linux-gnu/lua/{v}/dbd/sqlite3.so"
                ))
                .exists()
        });
        assert!(
            sqlite_driver,
            "Prosody's SQLite driver (lua-dbi-sqlite3) is not installed; install it with: {PROSODY_INSTALL_HINT}"
        );
        let home = ServerHome::create("xbus-prosody-", &["data"])?;
        if storage == Storage::Tuned {
            wal_database(&home.root.join(config::SQLITE_FILE))?;
        }
        Prosody::start_in(home, None)
    }

    /// A Prosody on Debian's own config (`/etc/prosody/prosody.cfg.lua`,
    /// as the package installs it), with only where it lives and listens
    /// adapted (pid file, data and log paths, the test certificate, c2s on
    /// a free loopback port and no other listener): what a new user who
    /// has not read docs/DEPLOYMENT.md runs xbus against. It has no pubsub
    /// component, requires TLS (trust [`XmppServer::ca_file`]) and throttles
    /// clients to 10 kB/s (`mod_limits`).
    ///
    /// # Panics
    ///
    /// If Prosody, or its config file, is not installed; the message says
    /// how to install it.
    pub fn start_on_debian_config() -> Result<Prosody, HarnessError> {
        require_binary("prosody", PROSODY_INSTALL_HINT);
        require_binary("prosodyctl", PROSODY_INSTALL_HINT);
        let debian = fs::read_to_string(DEBIAN_CONFIG).unwrap_or_else(|e| {
            panic!("cannot read Debian's Prosody config {DEBIAN_CONFIG} ({e}); install it with: {PROSODY_INSTALL_HINT}")
        });
        let home = ServerHome::create("xbus-prosody-debian-", &["data"])?;
        Prosody::start_in(home, Some(debian))
    }

    /// Starts a Prosody in `home`, on Debian's config if `debian` is its
    /// text, else on the deployed one.
    fn start_in(home: ServerHome, debian: Option<String>) -> Result<Prosody, HarnessError> {
        let mut server = Prosody {
            config: home.root.join("prosody.cfg.lua"),
            dir: Some(home.dir),
            root: home.root,
            ca_file: home.ca_file,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            process: None,
            next_account: AtomicUsize::new(0),
            next_plain: AtomicUsize::new(0),
            debian,
        };
        process::start_on_free_port(&mut server, "Prosody", |server, port| {
            server.addr.set_port(port);
            server.launch()?;
            Ok((server.addr, server.root.clone()))
        })?;
        Ok(server)
    }

    /// The generated `prosody.cfg.lua`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The server's process id, `None` after [`Prosody::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// Marks the first `used` names of the pool as taken.
    #[cfg(test)]
    pub(crate) fn next_account_for_test(&self, used: usize) {
        self.next_account.store(used, Ordering::SeqCst);
    }

    fn console_path(&self) -> PathBuf {
        self.root.join("prosody.console")
    }

    /// Writes the config for the current port, spawns Prosody and waits until
    /// it listens there.
    fn launch(&mut self) -> Result<(), LaunchError> {
        let fatal = LaunchError::Fatal;
        let text = match &self.debian {
            Some(debian) => config::debian_text(debian, &self.root, self.addr.port()),
            None => config::text(&self.root, self.addr.port()),
        };
        fs::write(&self.config, text).map_err(|e| {
            fatal(HarnessError::io(
                format!("writing {}", self.config.display()),
                e,
            ))
        })?;
        let output = LaunchOutput::begin(self.log_path(), self.console_path());
        let stdio = output.console_stdio().map_err(fatal)?;
        let mut command = Command::new("prosody");
        command
            .arg("--config")
            .arg(&self.config)
            .arg("-F")
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(stdio.0)
            .stderr(stdio.1);
        let mut child = ServerProcess::spawn(command)
            .map_err(|e| fatal(HarnessError::io("spawning `prosody`", e)))?;

        let failure = |reason| output.failure(ServerKind::Prosody, reason, None);
        let bind_failed = || output.log_says(&[BIND_FAILED]);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.exited() {
                let e = failure(format!("`prosody` exited with {status} during startup"));
                return Err(if bind_failed() {
                    LaunchError::PortTaken(e)
                } else {
                    fatal(e)
                });
            }
            if bind_failed() {
                child.stop();
                let why = format!("port {} is taken by another process", self.addr.port());
                return Err(LaunchError::PortTaken(failure(why)));
            }
            let listening = process::listening_sockets(child.pid()).unwrap_or_default();
            if listening.contains(&self.addr) && process::accepts_tcp(self.addr) {
                self.process = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                child.stop();
                let why = format!(
                    "{} did not accept connections within {START_TIMEOUT:?}",
                    self.addr
                );
                return Err(fatal(failure(why)));
            }
            thread::sleep(process::POLL);
        }
    }
}

/// Creates the SQLite database at `path` in WAL mode, which the file keeps:
/// a publish then commits by appending to the log instead of rewriting a
/// rollback journal, and `synchronous` stays FULL, so a commit is on disk
/// when Prosody acknowledges the publish.
fn wal_database(path: &Path) -> Result<(), HarnessError> {
    require_binary("sqlite3", PROSODY_INSTALL_HINT);
    let mut command = Command::new("sqlite3");
    command.arg(path).arg("PRAGMA journal_mode=WAL;");
    let shown = format!("sqlite3 {} 'PRAGMA journal_mode=WAL;'", path.display());
    let output = process::run(command, &shown, PROSODYCTL_TIMEOUT)?;
    let mode = String::from_utf8_lossy(&output.stdout);
    if mode.trim() != "wal" {
        return Err(HarnessError::io(
            format!("{shown} answered {:?}, not \"wal\"", mode.trim()),
            std::io::Error::other("SQLite did not switch to WAL mode"),
        ));
    }
    Ok(())
}

impl Drop for Prosody {
    fn drop(&mut self) {
        process::report_log_if_failing(&self.log_path());
        if let Some(process) = self.process.take() {
            process.stop();
        }
        process::release_dir(self.dir.take(), "Prosody");
    }
}

impl XmppServer for Prosody {
    fn kind(&self) -> ServerKind {
        ServerKind::Prosody
    }

    /// The c2s address, `127.0.0.1:PORT` (the same across [`Self::restart`]).
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM certificate of the test CA that signed the server's
    /// certificate (for `localhost` and `pubsub.localhost`); trust it for
    /// STARTTLS.
    fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Registers a fresh account with `prosodyctl register` (at most 10 s).
    ///
    /// Names come from a pool of [`ACCOUNT_POOL_SIZE`] (`u1@localhost`,
    /// `u2@localhost`, ...), all admins of the pubsub component, so every
    /// account may create nodes and publish. Passwords are random. Works
    /// while the server runs (and while it does not). Thread-safe.
    fn account(&self) -> Result<Account, HarnessError> {
        let n = self.next_account.fetch_add(1, Ordering::SeqCst) + 1;
        if n > ACCOUNT_POOL_SIZE {
            return Err(HarnessError::AccountPoolExhausted {
                server: ServerKind::Prosody,
                size: ACCOUNT_POOL_SIZE,
            });
        }
        self.register(&format!("u{n}"))
    }

    /// Registers a fresh account outside the `admins` pool (`plain1`,
    /// `plain2`, ...): it may neither create nodes nor bypass their access
    /// models.
    fn plain_account(&self) -> Result<Account, HarnessError> {
        let n = self.next_plain.fetch_add(1, Ordering::SeqCst) + 1;
        self.register(&format!("plain{n}"))
    }

    /// Kills the server with `SIGKILL` (no clean shutdown, like a crash) and
    /// waits for it. Does nothing if it is not running.
    fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    /// Stops the server if it runs (`SIGTERM`, `SIGKILL` after 2 s), then
    /// starts it again on the same port with the same data (accounts, nodes,
    /// items), waiting at most 10 s until it accepts connections.
    fn restart(&mut self) -> Result<(), HarnessError> {
        if let Some(process) = self.process.take() {
            process.stop();
        }
        self.launch()
            .map_err(|(LaunchError::PortTaken(e) | LaunchError::Fatal(e))| e)
    }

    /// Prosody's log file (`info` level unless `XBUS_TEST_PROSODY_LOG_LEVEL`
    /// says otherwise).
    fn log_path(&self) -> PathBuf {
        self.root.join("prosody.log")
    }
}

impl Prosody {
    /// Registers `user@localhost` with `prosodyctl register` (at most 10 s)
    /// and a random password.
    fn register(&self, user: &str) -> Result<Account, HarnessError> {
        let password = process::random_alnum(20)?;
        let mut command = Command::new("prosodyctl");
        command
            .arg("--config")
            .arg(&self.config)
            .args(["register", user, DOMAIN, &password])
            .current_dir(&self.root);
        let shown = format!(
            "prosodyctl --config {} register {user} {DOMAIN} <password>",
            self.config.display()
        );
        process::run(command, &shown, PROSODYCTL_TIMEOUT)?;
        Ok(Account {
            jid: format!("{user}@{DOMAIN}"),
            password,
        })
    }
}
