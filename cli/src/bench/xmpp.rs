//! STUB, in this worktree only: the xbus driver is written by another
//! helper; this stands in with its public names so that `run` compiles.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;

use super::servers::XmppTarget;
use super::system::{Caller, EventSystem, Publisher, RpcSystem, Subscriber};

/// xbus on an XMPP server (stub: every client fails).
pub struct XbusSystem {
    target: Arc<XmppTarget>,
}

impl XbusSystem {
    /// xbus on `target`.
    pub fn new(target: Arc<XmppTarget>) -> XbusSystem {
        XbusSystem { target }
    }
}

/// `n` connected, idle buses (stub: fails).
pub async fn connect_idle_buses(_target: &XmppTarget, _n: usize) -> anyhow::Result<Vec<xbus::Bus>> {
    anyhow::bail!("stub xbus driver")
}

#[async_trait]
impl EventSystem for XbusSystem {
    fn name(&self) -> String {
        format!("xbus/{}", self.target.server)
    }

    fn addr(&self) -> SocketAddr {
        self.target.addr
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let account = self.target.account()?;
        anyhow::bail!(
            "stub xbus driver: would log in as {} ({}-byte password) on {}, pubsub {}",
            account.jid,
            account.password.len(),
            self.target.domain,
            self.target.pubsub
        )
    }

    async fn subscriber(&self, _topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        anyhow::bail!("stub xbus driver")
    }

    async fn idle_client(
        &self,
        _via: SocketAddr,
        _topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>> {
        anyhow::bail!("stub xbus driver")
    }
}

#[async_trait]
impl RpcSystem for XbusSystem {
    fn name(&self) -> String {
        format!("xbus/{}", self.target.server)
    }

    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>> {
        anyhow::bail!("stub xbus driver")
    }

    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        anyhow::bail!("stub xbus driver")
    }
}
