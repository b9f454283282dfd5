//! Opening an authenticated XMPP stream: TCP (with `TCP_NODELAY`),
//! STARTTLS with the configured trust roots, SASL.
//!
//! tokio-xmpp's own connectors verify only against the system roots and
//! never set `TCP_NODELAY` (Nagle adds 10-40 ms per event on loopback), so
//! xbus opens the stream itself and hands it to tokio-xmpp's
//! [`StanzaStream`](tokio_xmpp::stanzastream::StanzaStream), which binds the
//! resource, runs XEP-0198 and reconnects.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
use tokio_xmpp::connect::AsyncReadAndWrite;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::stanzastream::Connection;
use tokio_xmpp::xmlstream::{
    ReadError, StreamHeader, Timeouts, XmppStream, XmppStreamElement, accept_stream,
    initiate_stream,
};
use tracing::warn;
use xmpp_parsers::bind::BindFeature;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stream_features::StreamFeatures;

use crate::config::{BusConfig, Password, Tls};
use crate::error::ConnectError;
use crate::mechanism::{LastMechanism, Mechanism};
use crate::servers::Servers;
use crate::write_batch::WriteBatch;

type BoxIo = Box<dyn AsyncReadAndWrite + Send + 'static>;

/// Everything needed to open a stream again, cheap to clone.
#[derive(Clone)]
pub(crate) struct Login {
    jid: Jid,
    password: Password,
    servers: Servers,
    /// With several servers: how long one of them gets before the next is
    /// tried (a share of the connect timeout).
    per_server: Duration,
    tls: Option<Arc<ClientConfig>>,
    timeouts: Timeouts,
    /// The SASL mechanism of the last login, shared with the bus.
    mechanism: LastMechanism,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("jid", &self.jid)
            .field("server", &self.servers.current_address())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Login {
    /// Prepares a login from the configuration; reads the CA file.
    pub(crate) fn new(config: &BusConfig) -> Result<Login, ConnectError> {
        let servers = Servers::new(&config.servers);
        let server = servers.all_addresses();
        let tls = match &config.tls {
            Tls::Plaintext => None,
            Tls::Required => Some(tls_config(system_roots(), &server)?),
            Tls::CustomCa(path) => Some(tls_config(ca_file_roots(path, &server)?, &server)?),
        };
        Ok(Login {
            jid: config.jid.clone(),
            password: config.password.clone(),
            per_server: (config.connect_timeout / servers.len() as u32).max(Duration::from_secs(2)),
            servers,
            tls,
            mechanism: LastMechanism::default(),
            // A silent connection is probed (`<r/>` or a ping) after 10 s
            // and given up 5 s later: a bus notices a dead connection in
            // 15 s, not tokio-xmpp's default 40 s.
            timeouts: Timeouts {
                read_timeout: Duration::from_secs(10),
                response_timeout: Duration::from_secs(5),
            },
        })
    }

    /// The SASL mechanism of the last login.
    pub(crate) fn mechanism(&self) -> LastMechanism {
        self.mechanism.clone()
    }

    /// The configured servers, and the one in use.
    pub(crate) fn servers(&self) -> &Servers {
        &self.servers
    }

    /// Connects, secures and authenticates one stream, ready for resource
    /// binding: to the server in use, or, when it does not answer, to the
    /// next one that does (each gets a share of the connect timeout).
    ///
    /// A refused login ends the search at once: the servers of one domain
    /// share their accounts, so the others would refuse it too.
    pub(crate) async fn connect(&self) -> Result<Connection, ConnectError> {
        if self.servers.len() == 1 {
            return self.connect_to(0).await;
        }
        let mut failures = Vec::new();
        for index in self.servers.in_turn() {
            let attempt = tokio::time::timeout(self.per_server, self.connect_to(index))
                .await
                .unwrap_or_else(|_| {
                    Err(ConnectError::TimedOut {
                        server: self.servers.address(index),
                        after: self.per_server,
                    })
                });
            match attempt {
                Ok(connection) => {
                    self.servers.settle_on(index);
                    return Ok(connection);
                }
                Err(error @ ConnectError::Auth { .. }) => return Err(error),
                Err(error) => {
                    warn!(server = %self.servers.address(index), %error, "server unavailable; trying the next one");
                    failures.push(error);
                }
            }
        }
        Err(ConnectError::NoServer { failures })
    }

    /// [`connect`](Self::connect) to server `index` alone.
    async fn connect_to(&self, index: usize) -> Result<Connection, ConnectError> {
        let server = self.servers.address(index);
        let (host, port) = self.servers.host_port(index);
        let addrs: Vec<_> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| ConnectError::UnknownHost {
                host: host.to_owned(),
                source,
            })?
            .collect();
        if self.tls.is_none()
            && let Some(far) = addrs.iter().find(|addr| !addr.ip().is_loopback())
        {
            return Err(ConnectError::PlaintextNotLoopback {
                server,
                address: far.ip(),
            });
        }
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last_error = e,
            }
        }
        let tcp = tcp.ok_or(ConnectError::Unreachable {
            server: server.clone(),
            source: last_error,
        })?;
        // Without this every small stanza waits for the previous one's ACK.
        tcp.set_nodelay(true)
            .map_err(|source| ConnectError::Unreachable {
                server: server.clone(),
                source,
            })?;
        let io: BoxIo = match &self.tls {
            // Reads are buffered, and writes gathered until tokio-xmpp's
            // flush (see `write_batch`): one write for the stanzas queued
            // together instead of one per stanza.
            None => Box::new(WriteBatch::new(BufReader::new(tcp))),
            Some(config) => Box::new(WriteBatch::new(BufReader::new(
                self.starttls(tcp, config.clone(), &server).await?,
            ))),
        };
        self.authenticate(io, &server).await
    }

    /// A connection whose far end has already hung up: an in-memory stream
    /// that offers resource binding (and no stream management), then ends.
    ///
    /// tokio-xmpp's worker panics ("Backend was unable to handle reconnect
    /// request.") when the reconnect callback drops the slot it was given.
    /// A bus that is gone hands this over instead: binding fails at once,
    /// and the worker, seeing its frontend gone, ends the stream.
    pub(crate) async fn dead_end(&self) -> io::Result<Connection> {
        let (near, far) = tokio::io::duplex(4096);
        let responder = async move {
            let accepted =
                accept_stream(BufReader::new(far), ns::JABBER_CLIENT, self.timeouts).await?;
            let pending = accepted
                .send_header(StreamHeader {
                    to: None,
                    from: Some(Cow::Borrowed(self.jid.domain().as_str())),
                    id: Some(Cow::Borrowed("xbus-closed")),
                })
                .await?;
            let features = StreamFeatures {
                bind: Some(BindFeature { required: true }),
                ..StreamFeatures::default()
            };
            pending
                .send_features::<XmppStreamElement>(&features)
                .await
                .map(drop)
        };
        let initiator = async {
            let near: BoxIo = Box::new(BufReader::new(near));
            initiate_stream(near, ns::JABBER_CLIENT, self.header(), self.timeouts)
                .await?
                .recv_features()
                .await
                .map_err(io::Error::other)
        };
        let (far, near) = tokio::join!(responder, initiator);
        far?;
        let (features, stream) = near?;
        Ok(Connection {
            stream,
            features,
            identity: self.jid.clone(),
        })
    }

    fn header(&self) -> StreamHeader<'_> {
        StreamHeader {
            to: Some(Cow::Borrowed(self.jid.domain().as_str())),
            from: None,
            id: None,
        }
    }

    async fn starttls(
        &self,
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        server: &str,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
        let server = server.to_owned();
        let protocol = |reason: String| ConnectError::Protocol {
            server: server.clone(),
            reason,
        };
        let pending = initiate_stream(
            BufReader::new(tcp),
            ns::JABBER_CLIENT,
            self.header(),
            self.timeouts,
        )
        .await
        .map_err(|e| protocol(e.to_string()))?;
        let (features, mut stream): (_, XmppStream<BufReader<TcpStream>>) = pending
            .recv_features()
            .await
            .map_err(|e| protocol(e.to_string()))?;
        if !features.can_starttls() {
            return Err(ConnectError::Tls {
                server,
                reason: "the server does not offer STARTTLS (use Tls::Plaintext only for loopback)"
                    .into(),
            });
        }
        stream
            .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                starttls::Request,
            )))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        loop {
            match stream
                .next()
                .await
                .map(|r| r.and_then(|el| el.into_read_error()))
            {
                Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
                Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => continue,
                Some(Err(e)) => return Err(protocol(format!("during STARTTLS: {e}"))),
                None => return Err(protocol("stream closed during STARTTLS".into())),
            }
        }
        let tcp = stream.into_inner().into_inner();
        let name = ServerName::try_from(self.jid.domain().as_str().to_owned()).map_err(|e| {
            ConnectError::Tls {
                server: server.clone(),
                reason: e.to_string(),
            }
        })?;
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::Tls {
                server,
                reason: with_certificate_hint(e.to_string()),
            })
    }

    async fn authenticate(&self, io: BoxIo, server: &str) -> Result<Connection, ConnectError> {
        let protocol = |reason: String| ConnectError::Protocol {
            server: server.to_owned(),
            reason,
        };
        let pending = initiate_stream(io, ns::JABBER_CLIENT, self.header(), self.timeouts)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let (features, stream) = pending
            .recv_features()
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let mechanism =
            Mechanism::pick(&features.sasl_mechanisms).ok_or_else(|| ConnectError::Auth {
                jid: self.jid.to_string(),
                condition: format!(
                    "the server offers no SASL mechanism xbus logs in with (offered: {}; \
                     xbus uses SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN)",
                    Vec::from_iter(features.sasl_mechanisms.iter().map(String::as_str)).join(", ")
                ),
            })?;
        let username = self.jid.node().map(|n| n.as_str()).unwrap_or_default();
        let creds = sasl::common::Credentials::default()
            .with_username(username)
            .with_password(self.password.expose().to_owned());
        // tokio-xmpp tries the mechanisms it knows in its own order, which
        // ends with ANONYMOUS: it is handed the one xbus picked, alone.
        let only = BTreeSet::from([mechanism.name().to_owned()]);
        let stream = tokio_xmpp::client_login(stream, only, creds)
            .await
            .map_err(|e| match e {
                tokio_xmpp::Error::Auth(tokio_xmpp::error::AuthError::Fail(condition)) => {
                    ConnectError::Auth {
                        jid: self.jid.to_string(),
                        condition: format!("{condition:?}"),
                    }
                }
                other => protocol(format!("during SASL: {other}")),
            })?;
        self.mechanism.set(mechanism);
        let pending = stream
            .send_header(self.header())
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let (features, stream) = pending
            .recv_features()
            .await
            .map_err(|e| protocol(e.to_string()))?;
        Ok(Connection {
            stream,
            features,
            identity: self.jid.clone(),
        })
    }
}

/// A handshake error, with what to do about the certificate problems a
/// new deployment meets (rustls names them in the error's text).
fn with_certificate_hint(reason: String) -> String {
    let hint = if reason.contains("CaUsedAsEndEntity") {
        "the server presents a CA certificate as its own (a plain self-signed one): \
         make a CA and a server certificate signed by it"
    } else if reason.contains("UnknownIssuer") {
        "the server's certificate is not signed by a trusted CA: give its CA with \
         BusConfig::ca_file or XBUS_TLS=/path/to/ca.pem"
    } else if reason.contains("NotValidForName") {
        "the server's certificate does not name the JID's domain (subjectAltName)"
    } else if reason.contains("Expired") {
        "the server's certificate has expired"
    } else {
        return reason;
    };
    format!("{reason}; {hint} (docs/DEPLOYMENT.md, \"TLS\")")
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

fn ca_file_roots(path: &std::path::Path, server: &str) -> Result<RootCertStore, ConnectError> {
    let tls_error = |reason: String| ConnectError::Tls {
        server: server.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(format!("cannot read CA file {}: {e}", path.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| tls_error(format!("bad PEM in {}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| tls_error(format!("bad certificate in {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(tls_error(format!("no certificate in {}", path.display())));
    }
    Ok(roots)
}

fn tls_config(roots: RootCertStore, server: &str) -> Result<Arc<ClientConfig>, ConnectError> {
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls {
            server: server.to_owned(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The rustls crypto provider: the process-wide default when the
/// application installed one, else *ring*.
///
/// *ring* has no post-quantum key exchange, which rustls 0.23.48 marks by
/// deprecating its provider. xbus builds on *ring* so that it needs no C
/// toolchain; an application that wants X25519MLKEM768 installs aws-lc-rs
/// with `CryptoProvider::install_default` before connecting, and xbus uses it.
fn crypto_provider() -> Arc<crypto::CryptoProvider> {
    crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| {
            #[allow(deprecated)]
            let ring = crypto::ring::default_provider();
            Arc::new(ring)
        })
}

// Keeps the trait bounds honest: the boxed stream must be usable by tokio-xmpp.
const _: fn() = || {
    fn assert_io<T: AsyncRead + AsyncWrite + Unpin + Send>() {}
    assert_io::<tokio_rustls::client::TlsStream<TcpStream>>();
};

#[cfg(test)]
mod tests {
    use super::with_certificate_hint;

    #[test]
    fn certificate_errors_say_what_to_do() {
        let hinted = with_certificate_hint(
            "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))".into(),
        );
        assert!(
            hinted.contains("make a CA and a server certificate"),
            "{hinted}"
        );
        assert!(hinted.contains("docs/DEPLOYMENT.md"), "{hinted}");
        let hinted = with_certificate_hint("invalid peer certificate: UnknownIssuer".into());
        assert!(hinted.contains("XBUS_TLS"), "{hinted}");
        assert_eq!(with_certificate_hint("eof".into()), "eof");
    }
}
