//! STUB, in this worktree only: the raw tokio-xmpp driver is written by another
//! helper; this stands in with its public names so that `run` compiles.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;

use super::servers::XmppTarget;
use super::system::{Caller, EventSystem, Publisher, RpcSystem, Subscriber};

/// A bare tokio-xmpp client on an XMPP server (stub: every client fails).
pub struct RawSystem {
    target: Arc<XmppTarget>,
}

impl RawSystem {
    /// The raw client on `target`.
    pub fn new(target: Arc<XmppTarget>) -> RawSystem {
        RawSystem { target }
    }
}

#[async_trait]
impl EventSystem for RawSystem {
    fn name(&self) -> String {
        format!("raw-xmpp/{}", self.target.server)
    }

    fn addr(&self) -> SocketAddr {
        self.target.addr
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let account = self.target.account()?;
        anyhow::bail!(
            "stub raw-xmpp driver: would log in as {} ({}-byte password) on {}, pubsub {}",
            account.jid,
            account.password.len(),
            self.target.domain,
            self.target.pubsub
        )
    }

    async fn subscriber(&self, _topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        anyhow::bail!("stub raw-xmpp driver")
    }

    async fn idle_client(
        &self,
        _via: SocketAddr,
        _topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>> {
        anyhow::bail!("stub raw-xmpp driver")
    }
}

#[async_trait]
impl RpcSystem for RawSystem {
    fn name(&self) -> String {
        format!("raw-xmpp/{}", self.target.server)
    }

    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>> {
        anyhow::bail!("stub raw-xmpp driver")
    }

    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        anyhow::bail!("stub raw-xmpp driver")
    }
}
