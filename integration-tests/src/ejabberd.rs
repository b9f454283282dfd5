//! ejabberd 23.01 as a test server.
//!
//! Each [`Ejabberd`] runs `ejabberdctl --config-dir DIR --spool DIR/spool
//! --logs DIR/logs foreground-quiet` as our child, in its own process group,
//! as user `ejabberd` (ejabberdctl refuses any other user and, as root,
//! would switch with `su`, which hides the VM from us), with everything in
//! its own temporary directory `DIR` (owned by `ejabberd`): `ejabberd.yml`,
//! `ejabberdctl.cfg`, `inetrc`, `certs/`, `spool/` (Mnesia), `logs/`
//! (`ejabberd.log`, `error.log`) and `ejabberd.console` (the script's
//! stdout and stderr).
//!
//! The Erlang node gets its own name (`xbus-RANDOM@localhost`), its own
//! random cookie and a fixed distribution port (`ERL_DIST_PORT`, a free
//! port on 127.0.0.1), so no `epmd` is started and nothing outlives the
//! server. It listens on the c2s port and on that distribution port, both
//! on 127.0.0.1, and on nothing else (the tests check).
//!
//! # Choices, checked against ejabberd 23.01 on this machine
//!
//! * **Accounts** are registered in-band (XEP-0077) over a loopback socket:
//!   about 30 ms each, where `ejabberdctl register` boots a second Erlang VM
//!   per call (0.45 s and 0.4 s of CPU each; a test suite on 2 cores would
//!   spend minutes on it). `mod_register` allows it from 127.0.0.1 and
//!   `registration_timeout: infinity` lifts the one-registration-per-IP-per-
//!   10-minutes limit. The reply is the IQ result, sent once the account is
//!   stored: the account exists before [`Ejabberd::account`] returns.
//!   `ejabberdctl` itself works against the node ([`Ejabberd::ctl`]; the
//!   harness tests list the registered users with it).
//! * **Who may create nodes**: any local user (`access_createnode:
//!   pubsub_createnode`, `allow: local`), so there is no account pool as
//!   for Prosody, and new nodes get `publish_model: open`, so any account
//!   may publish to a node another one created.
//! * **No duplicate deliveries**: `send_last_published_item: never` in
//!   `default_node_config` (ejabberd's default, `on_sub_and_presence`,
//!   re-sends a node's last item at every subscribe and every login).
//! * **Publisher in notifications**: `itemreply: publisher` puts the
//!   publisher's JID into each notification's `<item publisher=...>`, as
//!   `expose_publisher` does for Prosody.
//! * **Throttles lifted** (see `/work/shared/SERVERS.md`): no `shaper:` or
//!   `shaper_rules:` sections and `shaper: none` on the listener (ejabberd's
//!   stock config allows 3000 B/s), `backlog: 1024` (5), `max_stanza_size:
//!   10 MiB` on c2s, `max_items_node: 100000` (1000) and a 10 MiB
//!   `max_payload_size` per item (250000), `max_fsm_queue: 1000000` on the
//!   listener (10000: messages waiting in a session's process; more kill
//!   the session).
//! * **Stream management** (`mod_stream_mgmt`, options from its
//!   `mod_doc/0`): `max_ack_queue: infinity` (5000; more unacked stanzas
//!   kill the session, which a fault test sending 10 000 events would hit
//!   after a cut), `resume_timeout: 300` (the default, written out; it also
//!   caps what a client may ask for, as `max_resume_timeout` defaults to
//!   it), `queue_type: ram`. `ack_timeout` stays at 1 minute: no `<a/>` that
//!   long after an `<r/>` closes the connection but keeps the session
//!   resumable.
//! * **Stopping**: `SIGTERM` to the Erlang VM, which ejabberd (OTP ≥ 19)
//!   handles as `init:stop()`, the same clean shutdown `ejabberdctl stop`
//!   asks for, without booting a second VM for it; `SIGKILL` to the whole
//!   process group if it is not gone within 5 s.
//! * **Ready** means ejabberd sent `READY=1` to the harness's
//!   `NOTIFY_SOCKET` (the systemd protocol, which ejabberd speaks) and
//!   accepts connections: its c2s port opens about 0.8 s before it has fully
//!   started, and a `SIGTERM` in that window could hang the VM for good
//!   (Mnesia stopped under a starting ejabberd; seen 2 times in 8 start-stop
//!   cycles).
//! * **TLS**: `certs/localhost.pem` holds the server certificate and its
//!   key (ejabberd wants both in one file), `ca_file` the test CA (without
//!   it ejabberd logs the certificate as invalid). STARTTLS is offered, not
//!   required; PLAIN over plaintext is allowed (loopback only).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tempfile::TempDir;

mod launch;

use crate::ejabberd_config::{TUNED_SCHEMA, config_text, ctl_config_text, debian_text};
use crate::ejabberd_register::register_in_band;
use crate::ejabberd_user::{chown_tree, ejabberd_user};
use crate::launch::{LaunchOutput, ServerHome};
use crate::process::{self, LaunchError, ServerProcess};
use crate::{Account, EJABBERD_INSTALL_HINT, HarnessError, ServerKind, Storage, XmppServer, certs};

pub(crate) const DOMAIN: &str = "localhost";
/// ejabberd needs about 1 s to open its port on an idle machine; much more
/// when the test threads keep both cores busy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A cluster node that comes back loads its tables from the others while
/// they serve clients: 27 s seen on 2 busy cores.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a clean shutdown may take before the group is killed (about
/// 1-2 s when idle; a kill loses the last 3 s of writes, see
/// [`Ejabberd::kill`]).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Bound of each `ejabberdctl` call and each in-band registration.
const CTL_TIMEOUT: Duration = Duration::from_secs(15);
pub(crate) const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const LOG_LEVEL_ENV: &str = "XBUS_TEST_EJABBERD_LOG_LEVEL";
/// The Erlang VM's command name, as `/proc/PID/comm` shows it.
const BEAM: &str = "beam.smp";

/// An ejabberd server on a free loopback port, for one test or a few.
///
/// Dropping it stops the server (`SIGTERM` to the Erlang VM, the whole
/// process group killed after 5 s), waits for it and removes its directory
/// (unless `XBUS_TEST_KEEP=1`).
#[derive(Debug)]
pub struct Ejabberd {
    dir: Option<TempDir>,
    root: PathBuf,
    ca_file: PathBuf,
    addr: SocketAddr,
    node: String,
    cookie: String,
    dist_port: u16,
    /// In a cluster every node keeps the one distribution port they share;
    /// a lone server takes a fresh one per launch.
    fixed_dist_port: bool,
    user: Option<(u32, u32)>,
    process: Option<ServerProcess>,
    /// The Erlang VM, the child of the `ejabberdctl` script.
    beam: Option<u32>,
    next_account: AtomicUsize,
    /// Debian's own `ejabberd.yml`, when the server runs on it instead of
    /// `deploy/ejabberd/ejabberd.yml`.
    debian: Option<String>,
}

/// Where Debian's `ejabberd` package puts its config.
const DEBIAN_CONFIG: &str = "/etc/ejabberd/ejabberd.yml";

impl Ejabberd {
    /// Starts an ejabberd on a free port of 127.0.0.1 and waits (at most
    /// 30 s) until it accepts connections.
    ///
    /// If a port turns out to be taken, tries again on other ones (three
    /// tries in all).
    ///
    /// # Panics
    ///
    /// If `ejabberdctl`, `erl` or `openssl` is not installed, or the user
    /// `ejabberd` does not exist; the message says how to install them.
    pub fn start() -> Result<Ejabberd, HarnessError> {
        Ejabberd::start_with(Storage::Tuned)
    }

    /// [`Ejabberd::start`] with the given item storage: with
    /// [`Storage::Tuned`], `spool/ejabberd.schema` declares `pubsub_item` a
    /// `disc_copies` table, and the server is started three times, since
    /// ejabberd 23.01 applies the file to existing tables only and drops
    /// the table's index while it converts it (see the code). Mnesia then keeps
    /// the items in RAM and logs every write to disk, instead of a DETS
    /// file whose per-node index costs O(`max_items`) per publish.
    pub fn start_with(storage: Storage) -> Result<Ejabberd, HarnessError> {
        Ejabberd::start_in(storage, None)
    }

    /// An ejabberd on Debian's own config (`/etc/ejabberd/ejabberd.yml`,
    /// as the package installs it) with only where it listens and its
    /// certificate adapted: its `listen:` section becomes the one c2s
    /// listener it has (its own options kept: `shaper: c2s_shaper`,
    /// `max_stanza_size: 262144`, `starttls_required: true`) on a free
    /// loopback port, and `certfiles:` the test certificate. Accounts are
    /// registered with `ejabberdctl register` (its `mod_register` allows one
    /// in-band registration per address per 10 minutes). Item storage is
    /// ejabberd's own.
    ///
    /// # Panics
    ///
    /// If ejabberd, or its config file, is not installed; the message says
    /// how to install it.
    pub fn start_on_debian_config() -> Result<Ejabberd, HarnessError> {
        let debian = fs::read_to_string(DEBIAN_CONFIG).unwrap_or_else(|e| {
            panic!("cannot read Debian's ejabberd config {DEBIAN_CONFIG} ({e}); install it with: {EJABBERD_INSTALL_HINT}")
        });
        Ejabberd::start_in(Storage::Stock, Some(debian))
    }

    fn start_in(storage: Storage, debian: Option<String>) -> Result<Ejabberd, HarnessError> {
        let node = format!(
            "xbus-{}@localhost",
            process::random_alnum(10)?.to_lowercase()
        );
        let mut server = Ejabberd::prepare(storage, debian, node, process::random_alnum(32)?)?;
        process::start_on_free_port(&mut server, "ejabberd", |server, port| {
            server.addr.set_port(port);
            server.launch()?;
            Ok((server.addr, server.root.clone()))
        })?;
        server.convert_storage(storage)?;
        Ok(server)
    }

    /// One node of a cluster, not launched yet: c2s on `addr`, Erlang node
    /// `node` with `cookie`, distribution on `addr`'s IP and `dist_port`
    /// (the same for every node). With `spool`, its Mnesia directory starts
    /// as a copy of that one. With [`Storage::Tuned`] the schema file is
    /// there, but it is the caller that converts the first node's tables
    /// ([`Self::convert_storage`]); the others get theirs when they join.
    pub(crate) fn cluster_node(
        storage: Storage,
        addr: SocketAddr,
        node: String,
        cookie: String,
        dist_port: u16,
        spool: Option<&Path>,
    ) -> Result<Ejabberd, HarnessError> {
        let mut server = Ejabberd::prepare(storage, None, node, cookie)?;
        server.addr = addr;
        server.dist_port = dist_port;
        server.fixed_dist_port = true;
        if let Some(from) = spool {
            process::copy_tree(from, &server.root.join("spool"))?;
        }
        Ok(server)
    }

    /// Launches a server made by [`Self::cluster_node`] and waits until it
    /// is ready.
    pub(crate) fn launch_now(&mut self) -> Result<(), HarnessError> {
        self.launch()
            .map_err(|(LaunchError::PortTaken(e) | LaunchError::Fatal(e))| e)
    }

    /// Everything but the launch: the directory, certificates, schema file.
    fn prepare(
        storage: Storage,
        debian: Option<String>,
        node: String,
        cookie: String,
    ) -> Result<Ejabberd, HarnessError> {
        crate::require_binary("ejabberdctl", EJABBERD_INSTALL_HINT);
        crate::require_binary("erl", EJABBERD_INSTALL_HINT);
        let user = ejabberd_user();
        let home = ServerHome::create("xbus-ejabberd-", &["spool", "logs"])?;
        let (root, certs) = (home.root, certs::shared()?);
        if storage == Storage::Tuned {
            let schema = root.join("spool/ejabberd.schema");
            fs::write(&schema, TUNED_SCHEMA)
                .map_err(|e| HarnessError::io(format!("writing {}", schema.display()), e))?;
        }
        let pem = root.join("certs/localhost.pem");
        fs::write(&pem, format!("{}{}", certs.cert_pem, certs.key_pem))
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&pem, fs::Permissions::from_mode(0o600))
            })
            .map_err(|e| HarnessError::io(format!("writing {}", pem.display()), e))?;
        let inetrc = root.join("inetrc");
        fs::copy("/etc/ejabberd/inetrc", &inetrc)
            .or_else(|_| {
                // Debian's file; the same resolver settings if it is missing.
                fs::write(
                    &inetrc,
                    "{lookup,[\"file\",\"native\"]}.\n{host,{127,0,0,1}, [\"localhost\"]}.\n\
                     {file, resolv, \"/etc/resolv.conf\"}.\n",
                )
                .map(|()| 0)
            })
            .map_err(|e| HarnessError::io(format!("writing {}", inetrc.display()), e))?;
        Ok(Ejabberd {
            dir: Some(home.dir),
            root,
            ca_file: home.ca_file,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            node,
            cookie,
            dist_port: 0,
            fixed_dist_port: false,
            user,
            process: None,
            beam: None,
            next_account: AtomicUsize::new(0),
            debian,
        })
    }

    /// With [`Storage::Tuned`], restarts the server twice so that
    /// `pubsub_item` becomes `disc_copies` with its index (see below).
    pub(crate) fn convert_storage(&mut self, storage: Storage) -> Result<(), HarnessError> {
        let server = self;
        if storage == Storage::Tuned {
            // ejabberd 23.01 creates a missing table with its default type
            // and applies ejabberd.schema to existing tables only. The
            // second start converts pubsub_item ("Changing Mnesia table
            // 'pubsub_item' from disc_only_copies to disc_copies") but
            // drops its index on the node ("Deleting index 'nodeidx'"),
            // without which no item can be read back; the third start adds
            // the index again ("Adding index 'nodeidx'").
            for _ in 0..2 {
                server.stop();
                server
                    .launch()
                    .map_err(|(LaunchError::PortTaken(e) | LaunchError::Fatal(e))| e)?;
            }
        }
        Ok(())
    }

    /// Runs `ejabberdctl ARGS` against this server's node (at most 15 s)
    /// and returns its stdout, e.g. `ctl(&["registered_users",
    /// "localhost"])`. Each call boots a small Erlang VM (about 0.5 s).
    pub fn ctl(&self, args: &[&str]) -> Result<String, HarnessError> {
        self.ctl_within(args, CTL_TIMEOUT)
    }

    /// [`Self::ctl`] with its own time limit (`join_cluster` restarts
    /// ejabberd on the node and takes longer).
    pub fn ctl_within(&self, args: &[&str], timeout: Duration) -> Result<String, HarnessError> {
        let mut command = self.ejabberdctl();
        command.args(args);
        let shown = format!(
            "ejabberdctl --config-dir {} {}",
            self.root.display(),
            args.join(" ")
        );
        let output = process::run(command, &shown, timeout)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The generated `ejabberd.yml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("ejabberd.yml")
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The Erlang node name, `xbus-RANDOM@localhost`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The Erlang VM's process id, `None` after [`Ejabberd::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and(self.beam)
    }

    /// The Erlang distribution port (127.0.0.1), used by `ejabberdctl`.
    pub fn dist_port(&self) -> u16 {
        self.dist_port
    }

    /// The loopback address it listens on (127.0.0.1, or the node's own
    /// in a cluster).
    fn ip(&self) -> Ipv4Addr {
        match self.addr.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
        }
    }

    /// Stops the server cleanly, if it runs (see [`Ejabberd`]).
    pub(crate) fn shut_down(&mut self) {
        self.stop();
    }

    /// Whether the server runs (not killed or stopped).
    pub(crate) fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Clean shutdown: `SIGTERM` to the VM, then up to 10 s; then `SIGKILL`
    /// to the group (with a note on stderr). Always reaps.
    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            if let Some(beam) = self.beam.take() {
                if process.exited().is_none() {
                    process::signal_pid(beam, libc::SIGTERM);
                }
                if !process.wait_exit(STOP_GRACE) {
                    eprintln!(
                        "xbus-integration-tests: ejabberd at {} did not stop within {STOP_GRACE:?}; \
                         killed. Last lines of {}:\n{}\n--- console ---\n{}",
                        self.addr,
                        self.log_path().display(),
                        process::tail(&self.log_path(), 0, 15),
                        process::tail(&self.console_path(), 0, 15),
                    );
                }
            }
            process.kill();
        }
    }

    fn console_path(&self) -> PathBuf {
        self.root.join("ejabberd.console")
    }

    /// `ejabberdctl` with this server's directories, as user `ejabberd`.
    fn ejabberdctl(&self) -> Command {
        let mut command = Command::new("ejabberdctl");
        command
            .arg("--config-dir")
            .arg(&self.root)
            .arg("--spool")
            .arg(self.root.join("spool"))
            .arg("--logs")
            .arg(self.root.join("logs"))
            .current_dir(&self.root)
            .env("HOME", &self.root);
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        command
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        process::report_log_if_failing(&self.log_path());
        self.stop();
        process::release_dir(self.dir.take(), "ejabberd");
    }
}

impl XmppServer for Ejabberd {
    fn kind(&self) -> ServerKind {
        ServerKind::Ejabberd
    }

    /// The c2s address, `127.0.0.1:PORT` (the same across
    /// [`Self::restart`]).
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM certificate of the test CA that signed the server's
    /// certificate; trust it for STARTTLS.
    fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Registers a fresh account (`u1@localhost`, `u2@localhost`, ...;
    /// random password) in-band over loopback, at most 10 s. The account
    /// exists when this returns. Needs the server running. Thread-safe.
    fn account(&self) -> Result<Account, HarnessError> {
        let n = self.next_account.fetch_add(1, Ordering::SeqCst) + 1;
        let user = format!("u{n}");
        let password = process::random_alnum(20)?;
        if self.debian.is_some() {
            self.ctl(&["register", &user, DOMAIN, &password])?;
        } else {
            register_in_band(self.addr, &user, &password)?;
        }
        Ok(Account {
            jid: format!("{user}@{DOMAIN}"),
            password,
        })
    }

    /// Kills the server with `SIGKILL` (no clean shutdown, like a crash) and
    /// waits for it. Does nothing if it is not running.
    ///
    /// Like a real crash, this loses what ejabberd wrote in the last 3 s:
    /// Mnesia's `disc_only` tables (accounts, rosters, pubsub items) are
    /// dets files, and dets delays writes by up to 3 s.
    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            // The VM first, so that the script reaps it (this machine's
            // init may not reap orphans); then the whole group.
            if let Some(beam) = self.beam.take() {
                if process.exited().is_none() {
                    process::signal_pid(beam, libc::SIGKILL);
                }
                process.wait_exit(STOP_GRACE);
            }
            process.kill();
        }
    }

    /// Stops the server if it runs (cleanly, see [`Ejabberd`]), then starts
    /// it again on the same c2s port with the same data (accounts, nodes,
    /// items), waiting at most 30 s until it accepts connections.
    fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.launch()
            .map_err(|(LaunchError::PortTaken(e) | LaunchError::Fatal(e))| e)
    }

    /// ejabberd's main log file (`info` level unless
    /// `XBUS_TEST_EJABBERD_LOG_LEVEL` says otherwise; `debug` logs every
    /// stanza).
    fn log_path(&self) -> PathBuf {
        self.root.join("logs/ejabberd.log")
    }
}
