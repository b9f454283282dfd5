//! The embedded `xbus-server` behind the harness's [`XmppServer`] trait,
//! so the suite runs against it like against Prosody and ejabberd.
//!
//! The server runs on a runtime of its own (two worker threads), so it
//! keeps serving whatever runtime the test uses, and the harness's
//! synchronous API (start, restart, drop) works from inside a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Account, HarnessError, ServerKind, XmppServer};

/// An embedded server for one test: `localhost` on a free loopback port,
/// STARTTLS on a generated certificate, registered accounts (SCRAM).
#[derive(Debug)]
pub struct Embedded {
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<xbus_server::Server>,
    addr: SocketAddr,
    ca: PathBuf,
    next_account: AtomicU64,
}

impl Embedded {
    /// Starts the server; it stops when the value is dropped.
    pub fn start() -> Result<Embedded, HarnessError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("xbus-embedded")
            .enable_all()
            .build()
            .map_err(|source| HarnessError::Io {
                context: "start the embedded server's runtime".into(),
                source,
            })?;
        let server = block_on(&runtime, async {
            xbus_server::Server::builder()
                .domain("localhost")
                .bind("127.0.0.1:0")
                .tls_generated()
                .fixed_accounts()
                // Fault tests cut connections in the middle of 10 000 events:
                // a session must stay resumable however far behind it is.
                // Unacked stanzas kept for resumption (default 10 000; more
                // end the session with a stream error).
                .max_unacked(1_000_000)
                // Stanzas waiting for a session (default 4096; more end the
                // session). While a session waits to be resumed, everything
                // routed to it waits here, so a small queue would end it.
                // The channel grows as it fills: no cost up front.
                .outbound_queue(1_000_000)
                .start()
                .await
        })
        .map_err(|e| embedded_error("start the embedded server", e))?;
        let addr = server.addr();
        let ca = server
            .ca_file()
            .ok_or_else(|| embedded_error("find the generated certificate", "no CA file"))?
            .to_path_buf();
        Ok(Embedded {
            runtime: Some(runtime),
            server: Some(server),
            addr,
            ca,
            next_account: AtomicU64::new(1),
        })
    }

    fn server(&self) -> Result<&xbus_server::Server, HarnessError> {
        self.server
            .as_ref()
            .ok_or_else(|| embedded_error("use the embedded server", "it was killed"))
    }
}

/// Runs `future` to completion on `runtime` from any thread, including
/// one that is inside another runtime (a test's).
fn block_on<F: std::future::Future + Send>(
    runtime: &tokio::runtime::Runtime,
    future: F,
) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(future))
            .join()
            .expect("the embedded server's start-up panicked")
    })
}

fn embedded_error(context: &str, error: impl std::fmt::Display) -> HarnessError {
    HarnessError::Io {
        context: context.into(),
        source: std::io::Error::other(error.to_string()),
    }
}

impl XmppServer for Embedded {
    fn kind(&self) -> ServerKind {
        ServerKind::Embedded
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn ca_file(&self) -> &Path {
        &self.ca
    }

    fn account(&self) -> Result<Account, HarnessError> {
        let n = self.next_account.fetch_add(1, Ordering::Relaxed);
        let user = format!("u{n}");
        let password = format!("pw{n}-{:08x}", rand_u32());
        self.server()?
            .register(&user, &password)
            .map_err(|e| embedded_error("register an account", e))?;
        Ok(Account {
            jid: format!("{user}@localhost"),
            password,
        })
    }

    /// Drops every connection and session at once, like a crash. Unlike a
    /// crashed process, the embedded server listens again at once (it
    /// keeps its data either way), so a [`restart`](XmppServer::restart)
    /// afterwards is a second crash-and-restart.
    fn kill(&mut self) {
        if let Err(error) = self.restart() {
            eprintln!("xbus-integration-tests: kill (restart) of the embedded server: {error}");
        }
    }

    /// Restarts on the same port, keeping accounts, rosters and pubsub data;
    /// every session is dropped.
    fn restart(&mut self) -> Result<(), HarnessError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| embedded_error("restart the embedded server", "no runtime"))?;
        let server = self
            .server
            .as_mut()
            .ok_or_else(|| embedded_error("restart the embedded server", "it was killed"))?;
        block_on(runtime, server.restart())
            .map_err(|e| embedded_error("restart the embedded server", e))
    }

    /// The embedded server logs through `tracing` (RUST_LOG), not to a file.
    fn log_path(&self) -> PathBuf {
        PathBuf::from("/dev/null")
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            {
                let _inside = runtime.enter();
                drop(self.server.take());
            }
            runtime.shutdown_background();
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id() as u64);
    hasher.finish() as u32
}
