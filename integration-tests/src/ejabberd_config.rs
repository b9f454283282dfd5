//! The files an ejabberd for one test runs with: `ejabberdctl.cfg` (its
//! own node, cookie and distribution port) and `ejabberd.yml` (every
//! throttle lifted, pubsub as xbus needs it: `deploy/ejabberd/ejabberd.yml`
//! adapted). See `docs/SERVERS.md`.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::ejabberd::{DOMAIN, LOG_LEVEL_ENV};
use crate::template::Template;

/// `ejabberdctl.cfg`: own node name, cookie and distribution port (so no
/// `epmd`), distribution on loopback only (set directly: the script's
/// `INET_DIST_INTERFACE` boots an extra Erlang VM just to parse it).
pub(crate) fn ctl_config_text(
    root: &Path,
    node: &str,
    cookie: &str,
    ip: Ipv4Addr,
    dist_port: u16,
) -> String {
    let interface = ip.octets().map(|o| o.to_string()).join(",");
    format!(
        "# Written by xbus-integration-tests for one test server.\n\
         ERLANG_NODE={node}\n\
         ERL_DIST_PORT={dist_port}\n\
         ERL_OPTIONS=\"-setcookie {cookie} -kernel inet_dist_use_interface {{{interface}}} -env ERL_CRASH_DUMP_BYTES 0\"\n\
         EJABBERD_PID_PATH={}\n\
         EJABBERD_BYPASS_WARNINGS=true\n\
         CONTRIB_MODULES_PATH={}\n",
        root.join("ejabberd.pid").display(),
        root.join("contrib").display(),
    )
}

/// The config users deploy.
const DEPLOYED: &str = include_str!("../../deploy/ejabberd/ejabberd.yml");

/// Mnesia's table types that [`Storage::Tuned`](crate::Storage::Tuned)
/// changes, as users deploy them (read by ejabberd at start-up from the
/// spool directory; see docs/SERVERS.md).
pub(crate) const TUNED_SCHEMA: &str = include_str!("../../deploy/ejabberd/ejabberd.schema");

/// What a cluster template made from these files depends on (see
/// `ejabberd_cluster`): the deployed config and the schema.
pub(crate) fn fingerprint() -> String {
    format!("{DEPLOYED}\n{TUNED_SCHEMA}")
}

/// The whole `ejabberd.yml` for a server in `root` with c2s on
/// 127.0.0.1:`port`: `deploy/ejabberd/ejabberd.yml` with what a test
/// server needs changed (see the `ejabberd` module docs for why each
/// setting is there).
pub(crate) fn config_text(root: &Path, ip: Ipv4Addr, port: u16) -> String {
    let level = std::env::var(LOG_LEVEL_ENV).unwrap_or_else(|_| "info".to_owned());
    let level = match level.as_str() {
        "debug" | "info" | "notice" | "warning" | "error" => level,
        _ => "info".to_owned(),
    };
    let path = |name: &str| yaml_string(&root.join(name).to_string_lossy());
    Template::new("deploy/ejabberd/ejabberd.yml", DEPLOYED)
        .set("hosts:", &format!("hosts: [{DOMAIN}]"))
        .set("loglevel:", &format!("loglevel: {level}"))
        .set(
            "certfiles:",
            &format!("certfiles: [{}]", path("certs/localhost.pem")),
        )
        .set("ca_file:", &format!("ca_file: {}", path("certs/ca.crt")))
        .set("- port:", &format!("- port: {port}"))
        .set("ip:", &format!("ip: \"{ip}\""))
        // Accounts registered in-band from the loopback, stored plain (no
        // hashing per registration and login), logging in without TLS on
        // the loopback.
        .set("starttls_required:", "starttls_required: false")
        .set("auth_password_format:", "auth_password_format: plain")
        .insert_after(
            "# (the test harness adds its settings here)",
            "registration_timeout: infinity\n\
             log_rotate_count: 0\n\
             # Every line at debug level (the default drops lines beyond 500/s).\n\
             log_burst_limit_count: 1000000",
        )
        .set(
            "access_rules:",
            "access_rules:\n  register:\n    allow: all",
        )
        .insert_after(
            "# (the test harness adds its modules here)",
            "mod_register:\n  access: register\n  ip_access: all",
        )
        .finish("#")
}

/// Debian's own config (`debian`, the text of `/etc/ejabberd/ejabberd.yml`)
/// for a server in `root` with c2s on 127.0.0.1:`port`: its `listen:`
/// section becomes its own c2s listener alone, on that port (no s2s, HTTP,
/// STUN or MQTT listeners: they would take fixed ports), and `certfiles:`
/// the test certificate; everything else is Debian's.
pub(crate) fn debian_text(debian: &str, root: &Path, port: u16) -> String {
    let path = |name: &str| yaml_string(&root.join(name).to_string_lossy());
    let listen = format!(
        "listen:\n\
         \x20 -\n\
         \x20   port: {port}\n\
         \x20   ip: \"127.0.0.1\"\n\
         \x20   module: ejabberd_c2s\n\
         \x20   max_stanza_size: 262144\n\
         \x20   shaper: c2s_shaper\n\
         \x20   access: c2s\n\
         \x20   starttls_required: true\n\
         \x20   protocol_options: 'TLS_OPTIONS'"
    );
    Template::new(DEBIAN_FILE, debian)
        .replace_block("listen:", &listen)
        .replace_block(
            "certfiles:",
            &format!(
                "certfiles:\n  - {}\nca_file: {}",
                path("certs/localhost.pem"),
                path("certs/ca.crt")
            ),
        )
        .finish("#")
}

/// Debian's config, for messages.
const DEBIAN_FILE: &str = "/etc/ejabberd/ejabberd.yml";

/// A double-quoted YAML string.
fn yaml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_deployed_config_is_adapted_setting_by_setting() {
        let text = super::config_text(
            std::path::Path::new("/srv/t"),
            std::net::Ipv4Addr::LOCALHOST,
            4242,
        );
        for line in [
            "hosts: [localhost]",
            "- port: 4242",
            "ip: \"127.0.0.1\"",
            "starttls_required: false",
            "registration_timeout: infinity",
            "mod_register:",
            "ip_access: all",
            // Kept as deployed:
            "max_items_node: 100000",
            "shaper: none",
        ] {
            assert!(text.lines().any(|l| l.trim() == line), "{line}\n{text}");
        }
        assert!(!text.contains("example.org"), "{text}");
    }
}
