//! Server options: a builder with documented defaults.

use std::time::Duration;

use crate::pubsub::PubSubConfig;

/// How clients authenticate.
#[derive(Debug, Clone)]
pub(crate) enum Accounts {
    /// Any user name registers on its first login with the password it
    /// gives; later logins must repeat that password.
    Open,
    /// Only the listed accounts exist.
    Fixed(Vec<(String, String)>),
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone)]
pub(crate) enum TlsSource {
    /// No STARTTLS (allowed on loopback only).
    None,
    /// A CA and a certificate for the domain and `pubsub.<domain>` made at start.
    Generated,
    /// PEM certificate chain and private key given by the user.
    Pem { cert: Vec<u8>, key: Vec<u8> },
}

/// Resolved options, shared by every connection.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub domain: String,
    pub bind: String,
    pub accounts: Accounts,
    pub tls: TlsSource,
    pub max_stanza_size: usize,
    pub outbound_queue: usize,
    pub resume_timeout: Duration,
    pub max_unacked: usize,
    pub max_offline: usize,
    pub negotiation_timeout: Duration,
    pub pubsub: PubSubConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "localhost".into(),
            bind: "127.0.0.1:0".into(),
            accounts: Accounts::Open,
            tls: TlsSource::None,
            max_stanza_size: 10 * 1024 * 1024,
            outbound_queue: 4096,
            resume_timeout: Duration::from_secs(60),
            max_unacked: 10_000,
            max_offline: 1000,
            negotiation_timeout: Duration::from_secs(30),
            pubsub: PubSubConfig::default(),
        }
    }
}

/// Builds and starts a [`Server`](crate::Server).
///
/// Every option has a default suited to development and tests: domain
/// `localhost`, bound to `127.0.0.1:0` (a free port), open accounts,
/// plaintext (no STARTTLS), 10 MiB stanzas.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ServerBuilder {
    pub(crate) config: Config,
}

impl ServerBuilder {
    /// The XMPP domain served (default `localhost`). The pubsub service is
    /// `pubsub.<domain>`.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.config.domain = domain.into();
        self
    }

    /// The socket address to listen on (default `127.0.0.1:0`: a free
    /// loopback port; read it back with [`Server::addr`](crate::Server::addr)).
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.config.bind = addr.into();
        self
    }

    /// Open registration (the default): any user name and password
    /// registers on first login; later logins must give the same password.
    ///
    /// Open mode offers only SASL PLAIN, because SCRAM cannot register an
    /// account whose password the server has never seen. Use
    /// [`account`](Self::account) to get SCRAM-SHA-1 and SCRAM-SHA-256.
    pub fn open_accounts(mut self) -> Self {
        self.config.accounts = Accounts::Open;
        self
    }

    /// Turns open registration off without adding an account: only
    /// accounts from [`account`](Self::account) or
    /// [`Server::register`](crate::Server::register) may log in.
    pub fn fixed_accounts(mut self) -> Self {
        if let Accounts::Open = self.config.accounts {
            self.config.accounts = Accounts::Fixed(Vec::new());
        }
        self
    }

    /// Adds a fixed account and turns open registration off: only the
    /// listed accounts may log in. Offers SCRAM-SHA-256, SCRAM-SHA-1 and
    /// PLAIN.
    pub fn account(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        let entry = (user.into(), password.into());
        match &mut self.config.accounts {
            Accounts::Fixed(list) => list.push(entry),
            Accounts::Open => self.config.accounts = Accounts::Fixed(vec![entry]),
        }
        self
    }

    /// STARTTLS with a certificate made at start for the domain and
    /// `pubsub.<domain>`, signed by a throwaway CA that clients can trust
    /// through [`Server::ca_pem`](crate::Server::ca_pem) or
    /// [`Server::ca_file`](crate::Server::ca_file).
    ///
    /// On a loopback address STARTTLS is offered but not required; on any
    /// other address it is required before authentication.
    pub fn tls_generated(mut self) -> Self {
        self.config.tls = TlsSource::Generated;
        self
    }

    /// STARTTLS with the given PEM certificate chain and PEM private key.
    pub fn tls_pem(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.config.tls = TlsSource::Pem {
            cert: cert_pem.into(),
            key: key_pem.into(),
        };
        self
    }

    /// No STARTTLS at all (the default). Starting fails unless the bind
    /// address is a loopback address.
    pub fn plaintext(mut self) -> Self {
        self.config.tls = TlsSource::None;
        self
    }

    /// Largest stanza a client may send, in bytes (default 10 MiB). A
    /// larger one gets a `policy-violation` stream error and the stream is
    /// closed.
    pub fn max_stanza_size(mut self, bytes: usize) -> Self {
        self.config.max_stanza_size = bytes.max(1024);
        self
    }

    /// How many stanzas may wait to be written to one connection (default
    /// 4096). A client that reads too slowly to keep its queue below this
    /// is disconnected, so memory stays bounded.
    pub fn outbound_queue(mut self, stanzas: usize) -> Self {
        self.config.outbound_queue = stanzas.max(1);
        self
    }

    /// How long a XEP-0198 session that lost its connection waits to be
    /// resumed (default 60 s). After that it ends and unavailable presence
    /// is broadcast.
    pub fn resume_timeout(mut self, timeout: Duration) -> Self {
        self.config.resume_timeout = timeout;
        self
    }

    /// Most stanzas a XEP-0198 session keeps unacknowledged (default
    /// 10 000); a client that falls further behind is disconnected.
    pub fn max_unacked(mut self, stanzas: usize) -> Self {
        self.config.max_unacked = stanzas.max(1);
        self
    }

    /// Most offline messages stored per user (default 1000); the oldest is
    /// dropped when full.
    pub fn max_offline_messages(mut self, messages: usize) -> Self {
        self.config.max_offline = messages;
        self
    }

    /// Limits of the pubsub service at `pubsub.<domain>`.
    pub fn pubsub(mut self, config: PubSubConfig) -> Self {
        self.config.pubsub = config;
        self
    }

    /// Binds the listener and starts serving.
    pub async fn start(self) -> Result<crate::Server, crate::ServerError> {
        crate::server::start(self.config).await
    }
}
