//! The `prosody.cfg.lua` of a test server: `deploy/prosody/prosody.cfg.lua`
//! with what a test server needs changed (see the `prosody` module for why
//! each setting is there, and `docs/DEPLOYMENT.md`).

use std::fmt::Write as _;
use std::path::Path;

use super::{ACCOUNT_POOL_SIZE, DOMAIN, LOG_LEVEL_ENV, PUBSUB};
use crate::template::Template;

/// The config users deploy.
const DEPLOYED: &str = include_str!("../../../deploy/prosody/prosody.cfg.lua");

/// `smacks_max_queue_size`: well above the 10 000 events (plus as many
/// IQ results) a fault test sends through one session, so a cut never
/// makes a session unresumable (10 000 in the deployed config).
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
        let _ = write!(admins, " \"u{n}@{DOMAIN}\";");
    }
    Template::new("deploy/prosody/prosody.cfg.lua", DEPLOYED)
        .set("pidfile =", &format!("pidfile = {}", path("prosody.pid")))
        .set("data_path =", &format!("data_path = {}", path("data")))
        .set("certificates =", &format!("certificates = {}", path("certs")))
        .set("log =", &format!("log = {{ {level} = {} }}", path("prosody.log")))
        .set("interfaces =", "interfaces = { \"127.0.0.1\" }")
        .set("c2s_ports =", &format!("c2s_ports = {{ {port} }}"))
        // Accounts registered in-band from the loopback (the pool below),
        // in files, stored plain (no hashing per registration and login),
        // logging in without TLS on the loopback.
        .set("authentication =", "authentication = \"internal_plain\"")
        .set("allow_registration =", "allow_registration = true")
        .set("c2s_require_encryption =", "c2s_require_encryption = false")
        .set(
            "modules_enabled =",
            "modules_enabled = { \"roster\"; \"saslauth\"; \"tls\"; \"disco\"; \"ping\"; \"smacks\"; \"offline\"; \"posix\"; \"register\" }",
        )
        .set(
            "smacks_max_queue_size =",
            &format!("smacks_max_queue_size = {SMACKS_MAX_QUEUE_SIZE}"),
        )
        .insert_after(
            "-- (the test harness adds its settings here)",
            "run_as_root = true\nallow_unencrypted_plain_auth = true",
        )
        .set("VirtualHost \"", &format!("VirtualHost \"{DOMAIN}\""))
        .set("Component \"", &format!("Component \"{PUBSUB}\" \"pubsub\""))
        // Only admins may create nodes in Prosody 0.12: the account pool.
        .set("admins =", &format!("admins = {{{admins} }}"))
        .finish("--")
}

/// Debian's own config (`debian`, the text of `/etc/prosody/prosody.cfg.lua`)
/// for a server in `root` with c2s on 127.0.0.1:`port`: only where the
/// server lives and listens is changed, by settings added after its
/// `certificates` line (later settings win in Prosody's config), and its
/// `Include` of `/etc/prosody/conf.d` is left out.
pub(super) fn debian_text(debian: &str, root: &Path, port: u16) -> String {
    let path = |name: &str| lua_string(&root.join(name).to_string_lossy());
    let adapted = format!(
        "-- Adapted by xbus-integration-tests: where a test server lives and listens.\n\
         pidfile = {pidfile}\n\
         data_path = {data}\n\
         certificates = {certs}\n\
         log = {{ info = {log} }}\n\
         run_as_root = true\n\
         interfaces = {{ \"127.0.0.1\" }}\n\
         local_interfaces = {{ \"127.0.0.1\" }}\n\
         c2s_ports = {{ {port} }}\n\
         c2s_direct_tls_ports = {{ }}\n\
         legacy_ssl_ports = {{ }}\n\
         s2s_ports = {{ }}\n\
         component_ports = {{ }}\n\
         http_ports = {{ }}\n\
         https_ports = {{ }}",
        pidfile = path("prosody.pid"),
        data = path("data"),
        certs = path("certs"),
        log = path("prosody.log"),
    );
    Template::new(DEBIAN_FILE, debian)
        .insert_after("certificates =", &adapted)
        .set(
            "Include \"conf.d/",
            "-- Include \"conf.d/*.cfg.lua\": left out (its localhost.cfg.lua repeats the VirtualHost)",
        )
        .finish("--")
}

/// Debian's config, for messages.
const DEBIAN_FILE: &str = "/etc/prosody/prosody.cfg.lua";

/// Prosody's SQLite database, relative to the server's directory (the
/// deployed config names it relative to `data_path`).
pub(crate) const SQLITE_FILE: &str = "data/prosody.sqlite";

/// A Lua string literal.
fn lua_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_deployed_config_is_adapted_setting_by_setting() {
        let text = super::text(std::path::Path::new("/srv/t"), 4242);
        for line in [
            "c2s_ports = { 4242 }",
            "data_path = \"/srv/t/data\"",
            "allow_registration = true",
            "run_as_root = true",
            "VirtualHost \"localhost\"",
            "Component \"pubsub.localhost\" \"pubsub\"",
            "smacks_max_queue_size = 100000",
            // Kept as deployed:
            "storage = { pubsub_nodes = \"sql\"; pubsub_data = \"sql\" }",
            "pubsub_max_items = 10000",
        ] {
            assert!(text.lines().any(|l| l.trim() == line), "{line}\n{text}");
        }
        assert!(text.contains("\"u500@localhost\";"), "{text}");
        assert!(!text.contains("example.org"), "{text}");
    }
}

#[cfg(test)]
mod deployed_tests {
    /// The deployed file as a user copies it passes Prosody's own check.
    #[test]
    fn prosodyctl_check_config_passes_on_the_deployed_file() {
        let prosodyctl = crate::require_binary("prosodyctl", crate::PROSODY_INSTALL_HINT);
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/prosody/prosody.cfg.lua")
            .canonicalize()
            .expect("deploy/prosody/prosody.cfg.lua");
        let output = std::process::Command::new(prosodyctl)
            .arg("--config")
            .arg(&file)
            .args(["check", "config"])
            .output()
            .expect("run prosodyctl check config");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && text.contains("All checks passed"),
            "prosodyctl check config {}: {}\n{text}",
            file.display(),
            output.status
        );
    }
}
