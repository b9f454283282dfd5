//! What xbus replaces: plain HTTP between services. [`HttpRpc`] is a JSON
//! `POST` to an axum handler; [`Polling`] is a REST event log that
//! consumers poll.
//!
//! Both servers run in this process on the current tokio runtime, so their
//! CPU time is the bench process's own; the clients use `reqwest` over
//! HTTP/1.1 with keep-alive (one connection per request in flight, reused
//! afterwards), the way services typically call each other.

mod polling;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use axum::routing::post;
use axum::serve::ListenerExt as _;
use axum::{Json, Router};

use super::system::{BenchEvent, Caller, RpcSystem};

pub use polling::Polling;

/// The echo route of [`HttpRpc`].
pub const ECHO_PATH: &str = "/rpc/bench.echo";

/// Bound on every HTTP request of a client (as async-nats bounds a request
/// by 10 s by default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle keep-alive connections a client keeps per host: more than the 64
/// requests the scenarios keep in flight, so none is closed and reopened.
const POOL_IDLE_PER_HOST: usize = 128;

/// An axum server on `127.0.0.1` and a free port, as a task of the current
/// runtime; stopped on drop.
#[derive(Debug)]
struct ServerTask {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ServerTask {
    /// Serves `router` on `127.0.0.1:0` (`TCP_NODELAY` on every
    /// connection, as reqwest and async-nats set it on theirs).
    async fn start(router: Router) -> anyhow::Result<ServerTask> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind 127.0.0.1:0")?;
        let addr = listener.local_addr().context("local address")?;
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%addr, %error, "HTTP bench server stopped");
            }
        });
        Ok(ServerTask { addr, task })
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A reqwest client: HTTP/1.1, keep-alive pool of [`POOL_IDLE_PER_HOST`],
/// no proxy, every request bounded by [`REQUEST_TIMEOUT`].
fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("build an HTTP client")
}

/// RPC as JSON over HTTP/1.1: `POST /rpc/bench.echo` on an in-process axum
/// server that answers with the request body.
#[derive(Debug)]
pub struct HttpRpc {
    server: ServerTask,
}

impl HttpRpc {
    /// Starts the server on `127.0.0.1` and a free port; it runs for the
    /// life of the value.
    pub async fn start() -> anyhow::Result<HttpRpc> {
        let router = Router::new().route(ECHO_PATH, post(echo));
        Ok(HttpRpc {
            server: ServerTask::start(router).await?,
        })
    }

    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
}

/// The handler: decodes the JSON event (a malformed body gets axum's 4xx)
/// and encodes it back.
async fn echo(Json(event): Json<BenchEvent>) -> Json<BenchEvent> {
    Json(event)
}

#[async_trait]
impl RpcSystem for HttpRpc {
    fn name(&self) -> String {
        "http".to_owned()
    }

    /// The handler is part of the server, which runs for the life of the
    /// system; the guard holds nothing.
    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>> {
        Ok(Box::new(()))
    }

    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        Ok(Box::new(HttpCaller {
            client: http_client()?,
            url: format!("http://{}{ECHO_PATH}", self.server.addr),
        }))
    }
}

/// A reqwest client of the echo route, with its own connection pool.
struct HttpCaller {
    client: reqwest::Client,
    url: String,
}

#[async_trait]
impl Caller for HttpCaller {
    async fn call(&self, request: &BenchEvent) -> anyhow::Result<BenchEvent> {
        let response = self
            .client
            .post(&self.url)
            .json(request)
            .send()
            .await
            .with_context(|| format!("POST {}", self.url))?
            .error_for_status()
            .with_context(|| format!("POST {}", self.url))?;
        response
            .json()
            .await
            .with_context(|| format!("decode the answer of POST {}", self.url))
    }
}

/// `text` with everything but RFC 3986's unreserved characters
/// percent-encoded, for a topic as one path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
