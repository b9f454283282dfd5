//! [`BusConfig`]: where to connect, as whom, and the bus's limits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use xmpp_parsers::jid::{BareJid, Jid};

use crate::access::TopicAccess;
use crate::allow::Allow;
use crate::error::ConfigError;
use crate::event::validate_topic;
use crate::liveness::Liveness;
use crate::presence::SubscriptionPolicy;
use crate::queue::BufferPolicy;

mod env;
mod password;

pub(crate) use password::Password;

/// How the connection to the server is secured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Tls {
    /// STARTTLS is required and the server certificate is verified against
    /// the system's trusted roots. The default.
    #[default]
    Required,
    /// STARTTLS is required and the server certificate is verified against
    /// the PEM certificates in this file (a private CA, a self-signed test
    /// server) instead of the system roots.
    CustomCa(PathBuf),
    /// No TLS at all: credentials and events travel in clear text. Only for
    /// a server on loopback; must be chosen explicitly.
    Plaintext,
}

/// Everything [`Bus::connect`](crate::Bus::connect) needs.
///
/// Build it with [`BusConfig::builder`] or [`BusConfig::from_env`]. Every
/// setting not given keeps the default documented on its builder method.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub(crate) jid: Jid,
    pub(crate) password: Password,
    /// The servers to try, in order, as `(host, port)`; never empty.
    pub(crate) servers: Vec<(String, u16)>,
    pub(crate) pubsub: Option<BareJid>,
    pub(crate) tls: Tls,
    pub(crate) connect_timeout: Duration,
    pub(crate) publish_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) max_items: u32,
    pub(crate) subscription_capacity: usize,
    pub(crate) command_capacity: usize,
    pub(crate) max_payload: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) discovery_timeout: Duration,
    pub(crate) liveness: Liveness,
    pub(crate) max_concurrent_handlers: usize,
    pub(crate) subscription_policy: SubscriptionPolicy,
    pub(crate) outbox_capacity: usize,
    pub(crate) buffer_policy: BufferPolicy,
    pub(crate) allow: Allow,
    /// Restricted topics: topic → access set when this bus creates it.
    pub(crate) topic_access: HashMap<String, Arc<TopicAccess>>,
}

impl BusConfig {
    /// Starts a builder for the account `jid` (a bare JID such as
    /// `orders@example.org`, or a full JID to ask for a resource) with its
    /// password.
    pub fn builder(jid: impl Into<String>, password: impl Into<String>) -> BusConfigBuilder {
        BusConfigBuilder {
            jid: jid.into(),
            password: Password::new(password.into()),
            servers: Vec::new(),
            pubsub: None,
            tls: Tls::default(),
            connect_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_items: 1000,
            subscription_capacity: 1024,
            command_capacity: 1024,
            max_payload: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            discovery_timeout: Duration::from_secs(1),
            liveness: Liveness::default(),
            max_concurrent_handlers: 256,
            subscription_policy: SubscriptionPolicy::default(),
            outbox_capacity: 1024,
            buffer_policy: BufferPolicy::default(),
            allow: Allow::default(),
            topic_access: Vec::new(),
        }
    }

    /// The account JID.
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// The pubsub service JID: the configured one, or `pubsub.<domain>`.
    pub fn pubsub_service(&self) -> BareJid {
        self.pubsub.clone().unwrap_or_else(|| {
            BareJid::from_str(&format!("pubsub.{}", self.jid.domain()))
                .expect("a valid domain prefixed with 'pubsub.' is a valid domain")
        })
    }
}

/// Builder for [`BusConfig`]; every method documents its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct BusConfigBuilder {
    jid: String,
    password: Password,
    servers: Vec<String>,
    pubsub: Option<String>,
    tls: Tls,
    connect_timeout: Duration,
    publish_timeout: Duration,
    close_timeout: Duration,
    max_items: u32,
    subscription_capacity: usize,
    command_capacity: usize,
    max_payload: usize,
    request_timeout: Duration,
    discovery_timeout: Duration,
    liveness: Liveness,
    max_concurrent_handlers: usize,
    subscription_policy: SubscriptionPolicy,
    outbox_capacity: usize,
    buffer_policy: BufferPolicy,
    allow: Allow,
    topic_access: Vec<(String, TopicAccess)>,
}

impl BusConfigBuilder {
    /// Restricts who may publish to and subscribe to `topic`: this bus sets
    /// `access` on the topic's node when it creates it, and becomes its
    /// owner (docs/DEPLOYMENT.md, "Topic access"). A topic given twice
    /// takes the last access. Change the lists later with
    /// [`Bus::topic_access`](crate::Bus::topic_access).
    pub fn topic_access(mut self, topic: impl Into<String>, access: TopicAccess) -> Self {
        self.topic_access.push((topic.into(), access));
        self
    }

    /// The server to connect to, as `host:port`, or several, comma-separated
    /// (`"a.example.org:5222,b.example.org:5222"`), like [`servers`](Self::servers).
    /// Default: the JID's domain, port 5222 (no SRV lookup).
    pub fn server(self, host_port: impl Into<String>) -> Self {
        let list: String = host_port.into();
        self.servers(list.split(','))
    }

    /// Several servers that serve the same XMPP domain, e.g. the nodes of an
    /// ejabberd cluster, as `host:port` each; replaces what
    /// [`server`](Self::server) set.
    ///
    /// The bus starts with a server picked at random, so that a fleet of
    /// services spreads over the nodes, and goes on to the next one in the
    /// list when a server does not answer: on the first connection, and on
    /// every reconnection, so a bus whose server died moves to another.
    /// [`Bus::server`](crate::Bus::server) tells which one it is on.
    pub fn servers<I>(mut self, host_ports: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.servers = host_ports
            .into_iter()
            .map(Into::into)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        self
    }

    /// The XEP-0060 pubsub service that holds the topics. Default:
    /// `pubsub.<domain of the JID>`.
    pub fn pubsub_service(mut self, jid: impl Into<String>) -> Self {
        self.pubsub = Some(jid.into());
        self
    }

    /// How the connection is secured. Default: [`Tls::Required`].
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Trust the PEM certificates in `path` instead of the system roots.
    /// Shorthand for `tls(Tls::CustomCa(path))`.
    pub fn ca_file(self, path: impl Into<PathBuf>) -> Self {
        self.tls(Tls::CustomCa(path.into()))
    }

    /// Allows a plaintext connection (no TLS). Meant for a server on
    /// loopback. Shorthand for `tls(Tls::Plaintext)`.
    pub fn allow_plaintext(self) -> Self {
        self.tls(Tls::Plaintext)
    }

    /// How long the first connection and login may take before
    /// [`Bus::connect`](crate::Bus::connect) fails. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a publish waits for the server's confirmation. Default: 10 s.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long [`Bus::close`](crate::Bus::close) waits for pending
    /// publishes to be confirmed. Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// `pubsub#max_items` for the nodes this bus creates: how many past
    /// events the server keeps per topic. Default: 1000.
    ///
    /// It also sizes recovery: after a session reset a subscription fetches
    /// up to this many past items to fill its gap, and each subscription
    /// remembers the ids of this many delivered items to drop duplicates.
    pub fn max_items(mut self, max_items: u32) -> Self {
        self.max_items = max_items;
        self
    }

    /// How many deliveries a subscription or inbox buffers before its
    /// [`BufferPolicy`] applies. Default: 1024.
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity.max(1);
        self
    }

    /// How many commands (publishes, sends, ...) may queue for the
    /// connection task before callers wait. Default: 1024.
    pub fn command_capacity(mut self, capacity: usize) -> Self {
        self.command_capacity = capacity.max(1);
        self
    }

    /// Largest encoded payload accepted on publish and on delivery, in
    /// bytes before base64. Default: 1 MiB.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// How long [`Bus::request`](crate::Bus::request) waits for an answer
    /// unless the call sets its own timeout. Default: 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long the first call, `instances()` or `send_to_any()` to a
    /// service this bus has never seen waits for the service's presence
    /// after asking to subscribe to it. Later calls know at once whether an
    /// instance is online. Default: 1 s.
    pub fn discovery_timeout(mut self, timeout: Duration) -> Self {
        self.discovery_timeout = timeout;
        self
    }

    /// How this bus notices that an instance it uses died or froze before
    /// its server says so: XEP-0199 pings to instances that owe an answer
    /// or have been silent (see [`Liveness`] for the rules and the cost).
    /// Default: [`Liveness::default`], out of the rotation within about
    /// 2 s; [`Liveness::disabled`] leaves it to presence alone.
    pub fn liveness(mut self, liveness: Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    /// How many handlers run at once on this bus. A call beyond the limit
    /// is refused at once with `resource-constraint`
    /// ([`RequestError::Overloaded`](crate::RequestError::Overloaded)), not
    /// queued: the caller learns of the overload and can try another
    /// instance, and memory stays bounded. Default: 256.
    pub fn max_concurrent_handlers(mut self, limit: usize) -> Self {
        self.max_concurrent_handlers = limit.max(1);
        self
    }

    /// Which presence subscription requests are approved, i.e. who may see
    /// this bus's instances and call them by service name. Default:
    /// [`SubscriptionPolicy::SameDomain`].
    pub fn subscription_policy(mut self, policy: SubscriptionPolicy) -> Self {
        self.subscription_policy = policy;
        self
    }

    /// What a full subscription or inbox buffer does: wait for the consumer
    /// or drop the oldest event. Default: [`BufferPolicy::BackPressure`].
    /// [`Bus::subscribe_with`](crate::Bus::subscribe_with) can choose per
    /// subscription.
    pub fn buffer_policy(mut self, policy: BufferPolicy) -> Self {
        self.buffer_policy = policy;
        self
    }

    /// How many publishes may be unconfirmed at once: sent and not yet
    /// stored by the server, or waiting for a connection. A publish beyond
    /// it waits for room (back-pressure) until its publish timeout.
    /// Default: 1024.
    pub fn outbox_capacity(mut self, publishes: usize) -> Self {
        self.outbox_capacity = publishes.max(1);
        self
    }

    /// Who may call this bus's handlers and send events to its inboxes,
    /// unless [`ServeBuilder::allow`](crate::ServeBuilder::allow) says
    /// otherwise for a method. Default: [`Allow::same_domain`], the
    /// accounts of the bus's own domain. Consumer-group jobs are taken only
    /// from instances of the bus's own account, whatever this says.
    pub fn allow(mut self, allow: Allow) -> Self {
        self.allow = allow;
        self
    }

    /// Checks the values and builds the configuration.
    pub fn build(self) -> Result<BusConfig, ConfigError> {
        self.build_named(&BUILDER_NAMES)
    }

    fn build_named(self, names: &SettingNames) -> Result<BusConfig, ConfigError> {
        let invalid = |setting: &'static str, value: &str, reason: String| ConfigError::Invalid {
            setting,
            value: value.to_owned(),
            reason,
        };
        let jid =
            Jid::from_str(&self.jid).map_err(|e| invalid(names.jid, &self.jid, e.to_string()))?;
        if jid.node().is_none() {
            return Err(invalid(
                names.jid,
                &self.jid,
                "an account JID needs a user part (user@domain)".into(),
            ));
        }
        if self.password.is_empty() {
            return Err(ConfigError::Missing {
                variable: names.password,
            });
        }
        let mut servers = Vec::with_capacity(self.servers.len().max(1));
        for server in &self.servers {
            let parsed =
                parse_host_port(server).map_err(|reason| invalid(names.server, server, reason))?;
            if !servers.contains(&parsed) {
                servers.push(parsed);
            }
        }
        if servers.is_empty() {
            servers.push((jid.domain().to_string(), 5222));
        }
        let pubsub = match &self.pubsub {
            Some(raw) => Some(
                BareJid::from_str(raw).map_err(|e| invalid(names.pubsub, raw, e.to_string()))?,
            ),
            None => None,
        };
        if self.tls == Tls::Plaintext {
            for (host, _) in &servers {
                if !may_be_loopback(host) {
                    return Err(invalid(
                        names.tls,
                        "plaintext",
                        format!(
                            "plaintext sends the password and every event in clear text, so it is \
                             allowed only to a loopback server, and {host} is not one: use TLS \
                             (the default; a private CA with {})",
                            if names.tls == "tls" {
                                "ca_file"
                            } else {
                                "XBUS_TLS=/path/to/ca.pem"
                            }
                        ),
                    ));
                }
            }
        }
        if let Tls::CustomCa(path) = &self.tls
            && !path.is_file()
        {
            return Err(invalid(
                names.tls,
                &path.display().to_string(),
                "no such CA file".into(),
            ));
        }
        let mut topic_access = HashMap::new();
        for (topic, access) in self.topic_access {
            validate_topic(&topic).map_err(|e| invalid("topic_access", &topic, e.to_string()))?;
            let access = access.normalized().map_err(|jid| {
                invalid(
                    "topic_access",
                    &jid,
                    format!("not an account's bare JID (for topic {topic:?}); give e.g. orders@example.org"),
                )
            })?;
            topic_access.insert(topic, Arc::new(access));
        }
        Ok(BusConfig {
            jid,
            password: self.password,
            servers,
            pubsub,
            tls: self.tls,
            connect_timeout: self.connect_timeout,
            publish_timeout: self.publish_timeout,
            close_timeout: self.close_timeout,
            max_items: self.max_items,
            subscription_capacity: self.subscription_capacity,
            command_capacity: self.command_capacity,
            max_payload: self.max_payload,
            request_timeout: self.request_timeout,
            discovery_timeout: self.discovery_timeout,
            liveness: self.liveness,
            max_concurrent_handlers: self.max_concurrent_handlers,
            subscription_policy: self.subscription_policy,
            outbox_capacity: self.outbox_capacity,
            buffer_policy: self.buffer_policy,
            allow: self.allow,
            topic_access,
        })
    }
}

/// Whether `host` may be a loopback address: an IP address must be in
/// 127.0.0.0/8 or be ::1; a name is only known once resolved, and the
/// connection checks the addresses it resolves to before it sends
/// anything (`Login::connect_to`).
fn may_be_loopback(host: &str) -> bool {
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(true)
}

/// The names that errors use for each setting: builder method names, or
/// environment variables.
struct SettingNames {
    jid: &'static str,
    password: &'static str,
    server: &'static str,
    pubsub: &'static str,
    tls: &'static str,
}

const BUILDER_NAMES: SettingNames = SettingNames {
    jid: "jid",
    password: "password",
    server: "server",
    pubsub: "pubsub_service",
    tls: "tls",
};

/// Splits `host:port` (IPv6 hosts in brackets).
pub(crate) fn parse_host_port(value: &str) -> Result<(String, u16), String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_owned())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = BusConfig::builder("a@example.org", "pw").build().unwrap();
        assert_eq!(config.pubsub_service().to_string(), "pubsub.example.org");
        assert_eq!(config.tls, Tls::Required);
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.max_items, 1000);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let builder = BusConfig::builder("a@example.org", "hunter2-s3cret");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let config = builder.build().unwrap();
        for shown in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("a@example.org"), "{shown}");
        }
    }

    #[test]
    fn host_port() {
        assert_eq!(parse_host_port("[::1]:5222"), Ok(("::1".into(), 5222)));
        assert_eq!(parse_host_port("h:1"), Ok(("h".into(), 1)));
        assert!(parse_host_port(":1").is_err());
    }
}
