//! STUB, in this worktree only: the NATS driver is written by another
//! helper; this stands in with its public names so that `run` compiles.

use std::net::SocketAddr;

use async_trait::async_trait;

use super::system::{Caller, EventSystem, Publisher, RpcSystem, Subscriber};

/// A nats-server child process (stub: never starts).
pub struct NatsServer {
    addr: SocketAddr,
}

impl NatsServer {
    /// Starts nats-server on a free port (stub: fails).
    pub fn start() -> anyhow::Result<NatsServer> {
        anyhow::bail!("stub NATS driver")
    }

    /// Its client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// NATS core through async-nats (stub: every client fails).
pub struct NatsSystem {
    addr: SocketAddr,
}

impl NatsSystem {
    /// NATS at `addr`.
    pub fn new(addr: SocketAddr) -> NatsSystem {
        NatsSystem { addr }
    }
}

#[async_trait]
impl EventSystem for NatsSystem {
    fn name(&self) -> String {
        "nats".to_owned()
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        anyhow::bail!("stub NATS driver")
    }

    async fn subscriber(&self, _topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        anyhow::bail!("stub NATS driver")
    }

    async fn idle_client(
        &self,
        _via: SocketAddr,
        _topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>> {
        anyhow::bail!("stub NATS driver")
    }
}

#[async_trait]
impl RpcSystem for NatsSystem {
    fn name(&self) -> String {
        "nats".to_owned()
    }

    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>> {
        anyhow::bail!("stub NATS driver")
    }

    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        anyhow::bail!("stub NATS driver")
    }
}
