-- Prosody 0.12 for xbus (Debian: apt-get install prosody lua-dbi-sqlite3 sqlite3).
--
-- Copy to /etc/prosody/prosody.cfg.lua and change the three names marked
-- CHANGE: the domain, the pubsub component's name and the service accounts
-- that may create topics. docs/DEPLOYMENT.md says why each setting is here.
--
-- The test harness (integration-tests/src/prosody/config.rs) runs every
-- Prosody test and benchmark on this file: it changes only the values a
-- test server needs (loopback port, paths in a temporary directory, test
-- certificate, in-band registration and plaintext login on loopback, a
-- longer resumption queue for the fault tests), each by the setting's name.

pidfile = "/run/prosody/prosody.pid"
data_path = "/var/lib/prosody"
certificates = "certs"
log = { info = "/var/log/prosody/prosody.log"; error = "/var/log/prosody/prosody.err" }

-- Clients only (c2s on 5222, STARTTLS); no server-to-server, components or HTTP.
interfaces = { "*" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
modules_disabled = { "s2s" }

-- Throttles (DEPLOYMENT.md, "Throttles"): no "limits" module (10 kB/s per
-- connection otherwise), no Nagle (40 ms delays otherwise), stanzas up to
-- 10 MiB (256 KiB otherwise; xbus's max_payload is 1 MiB by default).
network_settings = { nagle = false }
c2s_stanza_size_limit = 10*1024*1024

-- Accounts: hashed passwords, created by an operator with prosodyctl
-- (DEPLOYMENT.md, "Service accounts"); nobody registers in-band.
authentication = "internal_hashed"
allow_registration = false
c2s_require_encryption = true
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "smacks"; "offline"; "posix" }

-- Topics (pubsub nodes and items) in SQLite in WAL mode (DEPLOYMENT.md,
-- "Storage"): create the file in WAL mode before the first start,
--   sqlite3 /var/lib/prosody/prosody.sqlite 'PRAGMA journal_mode=WAL;'
--   chown prosody:prosody /var/lib/prosody/prosody.sqlite
-- Prosody's file store rewrites a node's whole item list on every publish.
-- Accounts stay in files: prosodyctl writes them while the server runs.
default_storage = "internal"
storage = { pubsub_nodes = "sql"; pubsub_data = "sql" }
sql = { driver = "SQLite3", database = "prosody.sqlite" }

-- Stream management (XEP-0198; DEPLOYMENT.md, "Resumption"). A session
-- keeps this many unacknowledged stanzas for resumption; more, and its
-- resumption fails. Prosody allocates the whole queue for every session
-- (16 bytes a slot): 10,000 is 160 kB each.
smacks_max_queue_size = 10000
-- How long a lost session waits to be resumed, in seconds (the `max` in
-- <enabled/>).
smacks_hibernation_time = 600
smacks_max_unacked_stanzas = 0
smacks_max_old_sessions = 10

-- (the test harness adds its settings here)

VirtualHost "example.org" -- CHANGE: your domain

Component "pubsub.example.org" "pubsub" -- CHANGE: pubsub.<your domain>
    -- Prosody 0.12 lets only admins of the component create nodes, and an
    -- admin owns every node. One admin account sets the topics up
    -- (`xbus topic create TOPIC --publisher SERVICE`); the services stay
    -- plain accounts (DEPLOYMENT.md, "Who may create topics").
    admins = { "admin@example.org"; } -- CHANGE: the account that sets topics up
    autocreate_on_publish = true
    -- The most events a topic may keep (xbus asks for max_items, 1000 by
    -- default; Prosody's own cap is 256 and its default 20).
    pubsub_max_items = 10000
    -- Notifications name the publisher (Delivery::publisher).
    expose_publisher = true
