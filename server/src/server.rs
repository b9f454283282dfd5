//! The running server: the listener, its connection tasks and the handle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;
use xmpp_parsers::jid::BareJid;

use crate::ServerError;
use crate::config::{Config, TlsSource};
use crate::hub::Hub;

/// A running embedded XMPP server. Dropping it stops it (as
/// [`shutdown`](Self::shutdown) does, without waiting).
pub struct Server {
    addr: SocketAddr,
    domain: String,
    hub: Arc<Hub>,
    ca_pem: Option<String>,
    ca_file: Option<PathBuf>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// A builder with the defaults of [`ServerBuilder`](crate::ServerBuilder).
    pub fn builder() -> crate::ServerBuilder {
        crate::ServerBuilder::default()
    }

    /// Starts a server for `localhost` on a free loopback port with
    /// STARTTLS on a generated certificate and open accounts: the set-up
    /// examples and tests want.
    pub async fn start_local() -> Result<Server, ServerError> {
        Server::builder()
            .domain("localhost")
            .bind("127.0.0.1:0")
            .tls_generated()
            .start()
            .await
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The XMPP domain served.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The pubsub service's JID, `pubsub.<domain>`.
    pub fn pubsub_jid(&self) -> String {
        format!("pubsub.{}", self.domain)
    }

    /// PEM of the CA that signed the generated certificate
    /// ([`tls_generated`](crate::ServerBuilder::tls_generated) only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A file holding [`ca_pem`](Self::ca_pem), for clients that take a
    /// path (xbus `ca_file`). Removed when the server is dropped.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// How many sessions are bound right now (including those waiting to
    /// be resumed).
    pub fn session_count(&self) -> usize {
        self.hub
            .lock()
            .users
            .values()
            .map(|u| u.sessions.len())
            .sum()
    }

    /// Adds an account (or changes its password). Works in open mode too,
    /// where it fixes the password before the first login. Returns
    /// [`ServerError::Config`] if `user` is not a valid, lower-case JID
    /// node part.
    pub fn register(&self, user: &str, password: &str) -> Result<(), ServerError> {
        if self.hub.accounts.register(user, password) {
            Ok(())
        } else {
            Err(ServerError::Config(format!("invalid user name {user:?}")))
        }
    }

    /// Drops every connection and session, as a crash and restart of a
    /// real server would, and listens again on the same address. Accounts,
    /// rosters, offline messages and pubsub nodes and items are kept.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.hub.forget_sessions();
        let mut attempt = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                // The old socket may linger for a moment.
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(source) => {
                    return Err(ServerError::Bind {
                        addr: self.addr.to_string(),
                        source,
                    });
                }
            }
        };
        tracing::info!(addr = %self.addr, "xbus-server restarted");
        self.task = Some(tokio::spawn(accept_loop(
            listener,
            self.hub.clone(),
            self.acceptor.clone(),
        )));
        Ok(())
    }

    /// Stops accepting, closes every connection and waits for the listener
    /// task to end.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("domain", &self.domain)
            .field("tls", &self.acceptor.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(path) = &self.ca_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds, sets TLS up and spawns the accept loop.
pub(crate) async fn start(config: Config) -> Result<Server, ServerError> {
    let domain = BareJid::new(&config.domain)
        .map_err(|e| ServerError::Config(format!("domain {:?}: {e}", config.domain)))?;
    if domain.node().is_some() {
        return Err(ServerError::Config(format!(
            "domain {:?} must be a bare domain",
            config.domain
        )));
    }
    let pubsub_jid = BareJid::new(&format!("pubsub.{}", config.domain))
        .map_err(|e| ServerError::Config(e.to_string()))?;
    let listener = TcpListener::bind(&config.bind)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.bind.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.bind.clone(),
        source,
    })?;
    let loopback = addr.ip().is_loopback();
    let tls = match &config.tls {
        TlsSource::None if !loopback => {
            return Err(ServerError::Config(format!(
                "plaintext is allowed on loopback only, not on {addr}: configure TLS"
            )));
        }
        TlsSource::None => None,
        TlsSource::Generated => Some(crate::tls::generated(&config.domain)?),
        TlsSource::Pem { cert, key } => Some(crate::tls::from_pem(cert, key)?),
    };
    let (acceptor, ca_pem) = match tls {
        Some(setup) => (Some(setup.acceptor), setup.ca_pem),
        None => (None, None),
    };
    let ca_file = match &ca_pem {
        Some(pem) => {
            let path = std::env::temp_dir().join(format!(
                "xbus-server-ca-{}-{:016x}.pem",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::write(&path, pem)?;
            Some(path)
        }
        None => None,
    };
    let domain_name = config.domain.clone();
    let hub = Arc::new(Hub::new(config, domain, pubsub_jid, loopback));
    tracing::info!(%addr, domain = domain_name, tls = acceptor.is_some(), "xbus-server listening");
    let task = tokio::spawn(accept_loop(listener, hub.clone(), acceptor.clone()));
    Ok(Server {
        addr,
        domain: domain_name,
        hub,
        ca_pem,
        ca_file,
        acceptor,
        task: Some(task),
    })
}

async fn accept_loop(
    listener: TcpListener,
    hub: Arc<Hub>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let span = tracing::debug_span!("c2s", %peer);
                    connections.spawn(
                        crate::c2s::serve(hub.clone(), tcp, acceptor.clone()).instrument(span),
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
