//! The raw XMPP driver: [`RawXmppSystem`] runs the scenarios with a plain
//! tokio-xmpp client that sends the very stanzas xbus sends
//! (`docs/PROTOCOL.md`): the ceiling that xbus is measured against.
//!
//! What it shares with xbus: tokio-xmpp's stanza stream (resource binding,
//! XEP-0198 when the server offers it, the same queue depth), plaintext TCP
//! with `TCP_NODELAY`, initial presence, node creation with xbus's
//! configuration, item ids of 128 random bits, the payload element built by
//! [`xbus::RawPayload::to_element`], and the request and response elements
//! of calls, decoded and encoded as xbus's typed handler does.
//!
//! What it leaves out: everything xbus adds for correctness and
//! convenience, i.e. reconnects and session recovery, the outbox, duplicate
//! detection, the presence table, handler tasks and their limit, tracing.
//! See [`client`] for the connection itself.

mod client;
mod stanzas;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use xmpp_parsers::jid::FullJid;

use self::client::{Deliveries, RawClient};
use super::servers::XmppTarget;
use super::system::{
    BenchEvent, Caller, EventSystem, LastResponder, Publisher, RpcSystem, Subscriber,
};

/// Deliveries a subscriber buffers before its connection waits for it (as
/// the xbus driver's subscriptions).
pub const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// Deliveries an idle client buffers (xbus's default subscription
/// capacity): it never reads them.
const IDLE_CAPACITY: usize = 1024;

/// Raw tokio-xmpp clients of one XMPP server, for events and calls.
pub struct RawXmppSystem {
    target: Arc<XmppTarget>,
    /// The full JID of the last responder started, for the callers.
    responder: LastResponder<FullJid>,
}

impl RawXmppSystem {
    /// Raw clients of `target`.
    pub fn new(target: Arc<XmppTarget>) -> RawXmppSystem {
        RawXmppSystem {
            target,
            responder: LastResponder::default(),
        }
    }

    /// A client with a fresh account, connected to `addr` (the server, or
    /// a relay in front of it); with `echo` it answers `bench.echo`.
    async fn connect(&self, addr: SocketAddr, echo: bool) -> anyhow::Result<RawClient> {
        let account = self.target.fresh_account().await?;
        RawClient::connect(addr, &account, &self.target.pubsub, echo)
            .await
            .with_context(|| format!("connect raw client {} to {addr}", account.jid))
    }
}

#[async_trait]
impl EventSystem for RawXmppSystem {
    fn name(&self) -> String {
        format!("raw-xmpp/{}", self.target.server)
    }

    fn addr(&self) -> SocketAddr {
        self.target.addr()
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let client = self.connect(self.target.addr(), false).await?;
        Ok(Box::new(RawPublisher { client }))
    }

    async fn subscriber(&self, topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        let client = self.connect(self.target.addr(), false).await?;
        let deliveries = client.subscribe(topic, SUBSCRIPTION_CAPACITY).await?;
        Ok(Box::new(RawSubscriber {
            deliveries,
            _client: client,
        }))
    }

    async fn idle_client(
        &self,
        via: SocketAddr,
        topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>> {
        let client = self.connect(via, false).await?;
        let deliveries = client.subscribe(topic, IDLE_CAPACITY).await?;
        Ok(Box::new(RawSubscriber {
            deliveries,
            _client: client,
        }))
    }
}

/// Publishes through one connection; many publishes may be in flight.
struct RawPublisher {
    client: RawClient,
}

#[async_trait]
impl Publisher for RawPublisher {
    async fn publish(&self, topic: &str, event: &BenchEvent) -> anyhow::Result<()> {
        self.client.publish(topic, event).await
    }
}

/// The deliveries of one node, and the connection they come over.
struct RawSubscriber {
    deliveries: Deliveries,
    _client: RawClient,
}

#[async_trait]
impl Subscriber for RawSubscriber {
    async fn next(&mut self) -> anyhow::Result<BenchEvent> {
        let payload = self
            .deliveries
            .recv()
            .await
            .context("the connection ended")??;
        Ok(rmp_serde::from_slice(&payload.data)?)
    }
}

/// A connection whose task answers `bench.echo` calls.
struct RawResponder {
    _client: RawClient,
}

#[async_trait]
impl RpcSystem for RawXmppSystem {
    fn name(&self) -> String {
        format!("raw-xmpp/{}", self.target.server)
    }

    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>> {
        let client = self.connect(self.target.addr(), true).await?;
        self.responder.set(client.jid().clone());
        Ok(Box::new(RawResponder { _client: client }))
    }

    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        let to = self.responder.get()?;
        let client = self.connect(self.target.addr(), false).await?;
        Ok(Box::new(RawCaller { client, to }))
    }
}

/// Calls the responder's full JID.
struct RawCaller {
    client: RawClient,
    to: FullJid,
}

#[async_trait]
impl Caller for RawCaller {
    async fn call(&self, request: &BenchEvent) -> anyhow::Result<BenchEvent> {
        self.client.call(&self.to, request).await
    }
}
