//! The files an ejabberd for one test runs with: `ejabberdctl.cfg` (its
//! own node, cookie and distribution port) and `ejabberd.yml` (every
//! throttle lifted, pubsub as xbus needs it). See `docs/SERVERS.md`.

use std::fmt::Write as _;
use std::path::Path;

use crate::ejabberd::{DOMAIN, LOG_LEVEL_ENV, PUBSUB};

/// `ejabberdctl.cfg`: own node name, cookie and distribution port (so no
/// `epmd`), distribution on loopback only (set directly: the script's
/// `INET_DIST_INTERFACE` boots an extra Erlang VM just to parse it).
pub(crate) fn ctl_config_text(root: &Path, node: &str, cookie: &str, dist_port: u16) -> String {
    format!(
        "# Written by xbus-integration-tests for one test server.\n\
         ERLANG_NODE={node}\n\
         ERL_DIST_PORT={dist_port}\n\
         ERL_OPTIONS=\"-setcookie {cookie} -kernel inet_dist_use_interface {{127,0,0,1}} -env ERL_CRASH_DUMP_BYTES 0\"\n\
         EJABBERD_PID_PATH={}\n\
         EJABBERD_BYPASS_WARNINGS=true\n\
         CONTRIB_MODULES_PATH={}\n",
        root.join("ejabberd.pid").display(),
        root.join("contrib").display(),
    )
}

/// The whole `ejabberd.yml` for a server in `root` with c2s on
/// 127.0.0.1:`port` (see the module docs for why each setting is there).
pub(crate) fn config_text(root: &Path, port: u16) -> String {
    let level = std::env::var(LOG_LEVEL_ENV).unwrap_or_else(|_| "info".to_owned());
    let level = match level.as_str() {
        "debug" | "info" | "notice" | "warning" | "error" => level,
        _ => "info".to_owned(),
    };
    let path = |name: &str| yaml_string(&root.join(name).to_string_lossy());
    let mut text = String::new();
    let _ = write!(
        text,
        r#"# Written by xbus-integration-tests for one test server.
hosts: [{DOMAIN}]
loglevel: {level}
log_rotate_count: 0
# Keep every line at debug level (the default drops lines beyond 500/s).
log_burst_limit_count: 1000000
certfiles: [{pem}]
ca_file: {ca}

# Loopback c2s on one port, no other listener. No shaper: or shaper_rules:
# sections at all (the stock config limits c2s to 3000 B/s).
listen:
  - port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
    starttls_required: false
    max_stanza_size: 10485760
    shaper: none
    backlog: 1024
    # Messages waiting in a session's Erlang process (default 10000 for
    # c2s; more kill the session, no resumption): a subscriber sent 10 000
    # events at full speed could reach it.
    max_fsm_queue: 1000000

auth_method: internal
auth_password_format: plain
registration_timeout: infinity
s2s_access: none

acl:
  local:
    user_regexp: ""

access_rules:
  register:
    allow: all
  pubsub_createnode:
    allow: local

modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_caps: {{}}
  mod_ping: {{}}
  # XEP-0198 for fault tests that cut connections in the middle of thousands
  # of stanzas. max_ack_queue: unacked stanzas kept for resumption (default
  # 5000); exceeding it kills the session, so no limit. resume_timeout: how
  # long a session that lost its connection waits to be resumed (the
  # default, 5 minutes), also the most a client may ask for
  # (max_resume_timeout defaults to it). ack_timeout (1 minute: no <a/>
  # after an <r/> closes the connection, the session stays resumable) and
  # resend_on_timeout (false) keep their defaults; queue_type is ram.
  mod_stream_mgmt:
    max_ack_queue: infinity
    resume_timeout: 300
    queue_type: ram
  mod_offline: {{}}
  mod_register:
    access: register
    ip_access: all
  mod_pubsub:
    host: {PUBSUB}
    access_createnode: pubsub_createnode
    max_items_node: 100000
    plugins: [flat, pep]
    default_node_config:
      max_payload_size: 10485760
      send_last_published_item: never
      publish_model: open
      access_model: open
      itemreply: publisher
      notification_type: headline
"#,
        pem = path("certs/localhost.pem"),
        ca = path("certs/ca.crt"),
    );
    text
}

/// A double-quoted YAML string.
fn yaml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
