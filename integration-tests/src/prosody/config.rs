//! The generated `prosody.cfg.lua` (see the `prosody` module for why each
//! setting is there).

use std::fmt::Write as _;
use std::path::Path;

use super::{ACCOUNT_POOL_SIZE, DOMAIN, LOG_LEVEL_ENV, PUBSUB};

/// `smacks_max_queue_size`: well above the 10 000 events (plus as many
/// IQ results) a fault test sends through one session, so a cut never
/// makes a session unresumable (the default is 500).
pub(super) const SMACKS_MAX_QUEUE_SIZE: usize = 100_000;

/// The whole config for a server in `root` with c2s on 127.0.0.1:`port`.
pub(super) fn text(root: &Path, port: u16) -> String {
    let path = |name: &str| lua_string(&root.join(name).to_string_lossy());
    let level = std::env::var(LOG_LEVEL_ENV).unwrap_or_else(|_| "info".to_owned());
    let level = match level.as_str() {
        "debug" | "info" | "warn" | "error" => level,
        _ => "info".to_owned(),
    };
    let mut admins = String::new();
    for n in 1..=ACCOUNT_POOL_SIZE {
        let sep = if n % 8 == 1 { "\n        " } else { " " };
        let _ = write!(admins, "{sep}\"u{n}@{DOMAIN}\";");
    }
    format!(
        r#"-- Written by xbus-integration-tests for one test server.
run_as_root = true
pidfile = {pidfile}
data_path = {data}
certificates = {certs}
log = {{ {level} = {log} }}

-- Loopback c2s on one port; every other listener off.
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_disabled = {{ "s2s" }}

-- No "limits" module (10 kB/s per c2s connection otherwise), no Nagle
-- (40 ms delays otherwise), stanzas up to 10 MiB (256 KiB otherwise).
network_settings = {{ nagle = false }}
c2s_stanza_size_limit = 10*1024*1024

authentication = "internal_plain"
-- Pubsub in SQLite (Debian: lua-dbi-sqlite3): the file-based "internal"
-- archive store rewrites a node's whole item list on every publish, so each
-- publish got slower as the node filled (3 ms, then 8 ms after 150 items).
-- Accounts stay in files: prosodyctl registers them while the server runs,
-- and two processes writing one SQLite file fail with "database is locked".
default_storage = "internal"
storage = {{ pubsub_nodes = "sql"; pubsub_data = "sql" }}
sql = {{ driver = "SQLite3", database = {sqlite} }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
allow_registration = true
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "smacks"; "offline"; "register"; "posix";
}}

-- Stream management (XEP-0198, modules/mod_smacks.lua), for fault tests that
-- cut connections in the middle of thousands of stanzas.
-- Unacked stanzas kept for resumption (default 500). It is a ring buffer:
-- once more are unacked, the oldest are dropped and a resumption fails with
-- `resource-constraint`. util.queue allocates the whole buffer when a
-- session enables SM (16 bytes a slot: 1.6 MB per session here), so it is
-- not made larger than the tests need.
smacks_max_queue_size = {smacks_queue}
-- Seconds a session that lost its connection waits to be resumed (the
-- default; it is the `max` in <enabled/>).
smacks_hibernation_time = 600
-- Ask for an ack as soon as one stanza is unacked (the default), so the
-- queue holds only what the client has not confirmed yet.
smacks_max_unacked_stanzas = 0
-- Expired sessions per user whose final `h` is remembered, so a late
-- resumption still gets <failed h=.../> (the default).
smacks_max_old_sessions = 10
-- (smacks_max_hibernated_sessions does not exist in 0.12: no limit.)

VirtualHost "{DOMAIN}"

Component "{PUBSUB}" "pubsub"
    -- Only admins may create nodes in Prosody 0.12: the account pool.
    admins = {{{admins}
    }}
    autocreate_on_publish = true
    pubsub_max_items = 10000
    expose_publisher = true
"#,
        pidfile = path("prosody.pid"),
        data = path("data"),
        certs = path("certs"),
        log = path("prosody.log"),
        sqlite = path(SQLITE_FILE),
        port = port,
        smacks_queue = SMACKS_MAX_QUEUE_SIZE,
    )
}

/// Prosody's SQLite database, relative to the server's directory.
pub(crate) const SQLITE_FILE: &str = "data/prosody.sqlite";

/// A Lua string literal.
fn lua_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
