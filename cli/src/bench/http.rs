//! STUB, in this worktree only: the HTTP drivers are written by another
//! helper; this stands in with their public names so that `run` compiles.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

use super::system::{Caller, EventSystem, Publisher, RpcSystem, Subscriber};

/// HTTP/1.1 keep-alive RPC (stub: never starts).
pub struct HttpRpc;

impl HttpRpc {
    /// Starts the in-process server (stub: fails).
    pub async fn start() -> anyhow::Result<HttpRpc> {
        anyhow::bail!("stub HTTP driver")
    }
}

#[async_trait]
impl RpcSystem for HttpRpc {
    fn name(&self) -> String {
        "http".to_owned()
    }

    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>> {
        anyhow::bail!("stub HTTP driver")
    }

    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        anyhow::bail!("stub HTTP driver")
    }
}

/// REST polling (stub: never starts).
pub struct Polling {
    addr: SocketAddr,
    interval: Duration,
}

impl Polling {
    /// Starts the in-process event log, clients polling every `interval`
    /// (stub: fails).
    pub async fn start(interval: Duration) -> anyhow::Result<Polling> {
        anyhow::bail!("stub HTTP driver (polling every {interval:?})")
    }
}

#[async_trait]
impl EventSystem for Polling {
    fn name(&self) -> String {
        format!("poll-{}ms", self.interval.as_millis())
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        anyhow::bail!("stub HTTP driver")
    }

    async fn subscriber(&self, _topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        anyhow::bail!("stub HTTP driver")
    }

    async fn idle_client(
        &self,
        _via: SocketAddr,
        _topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>> {
        anyhow::bail!("stub HTTP driver")
    }
}
