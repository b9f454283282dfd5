//! The errors of setting a bus up: [`ConfigError`] and [`ConnectError`].

use std::time::Duration;

/// A configuration value is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required value is missing.
    #[error("{variable} is not set")]
    Missing {
        /// The environment variable or builder setting.
        variable: &'static str,
    },
    /// A value does not parse.
    #[error("{setting}={value:?} is invalid: {reason}")]
    Invalid {
        /// The environment variable or builder setting.
        setting: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// [`Bus::connect`](crate::Bus::connect) failed. The first connection is
/// never retried: the error comes back within the connect timeout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server rejected the credentials (SASL failure).
    #[error("authentication as {jid} failed: {condition}")]
    Auth {
        /// The account that tried to log in.
        jid: String,
        /// The SASL condition, e.g. `not-authorized`.
        condition: String,
    },
    /// The host name could not be resolved.
    #[error("cannot resolve {host}: {source}")]
    UnknownHost {
        /// The host that did not resolve.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// No TCP connection could be made.
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        /// `host:port` that was tried.
        server: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// TLS could not be set up: no STARTTLS offered, a certificate that does
    /// not verify, an unreadable CA file.
    #[error("TLS with {server} failed: {reason}")]
    Tls {
        /// The server.
        server: String,
        /// What failed.
        reason: String,
    },
    /// A plaintext connection ([`Tls::Plaintext`](crate::Tls::Plaintext))
    /// to a server that is not on loopback: it would send the password
    /// and every event in clear text over a network. Nothing was sent.
    #[error(
        "refusing plaintext to {server} ({address}): plaintext is allowed only to a loopback address; use TLS (XBUS_TLS=required, or a CA file)"
    )]
    PlaintextNotLoopback {
        /// The configured server.
        server: String,
        /// The address it resolved to, not a loopback one.
        address: std::net::IpAddr,
    },
    /// Login did not finish within the connect timeout.
    #[error("connecting to {server} timed out after {after:?}")]
    TimedOut {
        /// The server.
        server: String,
        /// The connect timeout.
        after: Duration,
    },
    /// The server broke the XMPP protocol or closed the stream.
    #[error("XMPP stream with {server} failed: {reason}")]
    Protocol {
        /// The server.
        server: String,
        /// What happened.
        reason: String,
    },
    /// Several servers are configured and none of them took the connection.
    #[error("none of the {} configured servers took the connection: {}", failures.len(), list_failures(failures))]
    NoServer {
        /// What went wrong with each server, in the order they were tried.
        failures: Vec<ConnectError>,
    },
}

/// `failures` as one line: `a; b; c`.
fn list_failures(failures: &[ConnectError]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
