//! The xbus driver: [`XbusSystem`] drives the scenarios through the xbus
//! library itself, as a service would use it.
//!
//! Every client is a [`Bus`] with its own account. Publishers and
//! subscribers use the untyped forms ([`Bus::publish_raw`],
//! [`Bus::subscribe_raw`]) because the scenarios choose the topic at run
//! time, while [`BenchEvent`]'s own topic is fixed; the bytes on the wire
//! are those of `bus.publish(&event)` with another `topic` attribute and
//! node. Calls go to the responder's full JID, so no presence discovery is
//! involved, as with the raw client.
//!
//! The buffers are sized so that the scenarios measure throughput, not
//! xbus's defaults: up to [`MAX_IN_FLIGHT`] unconfirmed publishes per bus,
//! [`SUBSCRIPTION_CAPACITY`] buffered deliveries per subscription with
//! back-pressure, and as many handlers at once as calls in flight.
//!
//! A consumer group's instances ([`GroupSystem`]) are buses of one account
//! with resources `g1`, `g2`, ..., each holding up to [`GROUP_IN_FLIGHT`]
//! jobs.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use futures::StreamExt;
use xbus::{
    BufferPolicy, Bus, BusConfig, ConsumeOptions, Context, Persistence, RawConsumer, RawPayload,
    RawSubscription, RpcError, SubscribeOptions,
};

use super::servers::{Account, XmppTarget};
use super::system::{
    BenchEvent, Caller, EventSystem, GroupSystem, LastResponder, Publisher, RpcSystem, Subscriber,
};

/// Most publishes (and calls) one client keeps in flight: the outbox and
/// the handler limit are this large.
pub const MAX_IN_FLIGHT: usize = 1024;

/// Deliveries a bench subscription buffers before it holds back its
/// connection (back-pressure: nothing is dropped).
pub const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// Jobs one instance of a bench consumer group holds unsettled: as many
/// as the scenarios' default window, so that xbus's default (16) does not
/// set the pace.
pub const GROUP_IN_FLIGHT: usize = 256;

/// The name of the bench consumer groups (each on a topic of its own).
pub const GROUP: &str = "bench";

/// How many idle buses [`connect_idle_buses`] connects at once.
pub const IDLE_CONNECT_CONCURRENCY: usize = 32;

/// xbus on one XMPP server, for events and calls.
pub struct XbusSystem {
    target: Arc<XmppTarget>,
    /// The full JID of the last responder started, for the callers.
    responder: LastResponder<String>,
    /// Whether the topics it publishes to keep their events.
    persistence: Persistence,
}

impl XbusSystem {
    /// xbus clients of `target`.
    pub fn new(target: Arc<XmppTarget>) -> XbusSystem {
        XbusSystem {
            target,
            responder: LastResponder::default(),
            persistence: Persistence::Persistent,
        }
    }

    /// xbus clients of `target` whose events topics are `persistence`.
    pub fn with_persistence(target: Arc<XmppTarget>, persistence: Persistence) -> XbusSystem {
        XbusSystem {
            persistence,
            ..XbusSystem::new(target)
        }
    }

    /// A bus with a fresh account, connected to `addr` (the server, or a
    /// relay in front of it), with the bench's buffer sizes.
    async fn connect(&self, addr: SocketAddr) -> anyhow::Result<Bus> {
        let account = self.target.fresh_account().await?;
        let config = bench_config(&self.target.pubsub, &account, addr)?;
        Bus::connect(config)
            .await
            .with_context(|| format!("connect {} to {addr}", account.jid))
    }
}

/// The configuration every bench bus uses: plaintext on loopback, the
/// given pubsub service, and buffers larger than any scenario's window.
pub(crate) fn bench_config(
    pubsub: &str,
    account: &Account,
    addr: SocketAddr,
) -> anyhow::Result<BusConfig> {
    BusConfig::builder(account.jid.clone(), account.password.clone())
        .server(addr.to_string())
        .pubsub_service(pubsub)
        .allow_plaintext()
        .outbox_capacity(MAX_IN_FLIGHT)
        .command_capacity(MAX_IN_FLIGHT)
        .max_concurrent_handlers(MAX_IN_FLIGHT)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .buffer_policy(BufferPolicy::BackPressure)
        .build()
        .context("bench bus configuration")
}

/// The configuration of an idle bus: xbus's defaults, as a service that
/// does not tune anything would run.
fn idle_config(
    target: &XmppTarget,
    account: &Account,
    addr: SocketAddr,
) -> anyhow::Result<BusConfig> {
    BusConfig::builder(account.jid.clone(), account.password.clone())
        .server(addr.to_string())
        .pubsub_service(target.pubsub.clone())
        .allow_plaintext()
        .build()
        .context("idle bus configuration")
}

#[async_trait]
impl EventSystem for XbusSystem {
    fn name(&self) -> String {
        format!("xbus/{}", self.target.server)
    }

    fn addr(&self) -> SocketAddr {
        self.target.addr()
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let bus = self.connect(self.target.addr()).await?;
        Ok(Box::new(XbusPublisher {
            bus,
            persistence: self.persistence,
        }))
    }

    async fn subscriber(&self, topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        let bus = self.connect(self.target.addr()).await?;
        subscriber_with(bus, topic, self.persistence).await
    }

    async fn idle_client(
        &self,
        via: SocketAddr,
        topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>> {
        let account = self.target.fresh_account().await?;
        let bus = Bus::connect(idle_config(&self.target, &account, via)?)
            .await
            .with_context(|| format!("connect {} via {via}", account.jid))?;
        let subscription = bus
            .subscribe_raw(topic)
            .await
            .with_context(|| format!("subscribe to {topic}"))?;
        Ok(Box::new(IdleBus {
            _subscription: subscription,
            _bus: bus,
        }))
    }
}

/// The bench publisher that publishes through `bus` (for the raw client's
/// side-by-side tests).
#[cfg(test)]
pub(crate) fn publisher(bus: Bus) -> Box<dyn Publisher> {
    Box::new(XbusPublisher {
        bus,
        persistence: Persistence::Persistent,
    })
}

/// The bench subscriber of `topic` on `bus` (for the raw client's
/// side-by-side tests).
#[cfg(test)]
pub(crate) async fn subscriber(bus: Bus, topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
    subscriber_with(bus, topic, Persistence::Persistent).await
}

/// The bench subscriber of `topic`, a topic that is `persistence`.
async fn subscriber_with(
    bus: Bus,
    topic: &str,
    persistence: Persistence,
) -> anyhow::Result<Box<dyn Subscriber>> {
    let options = SubscribeOptions::new().persistence(persistence);
    let subscription = bus
        .subscribe_raw_with(topic, options)
        .await
        .with_context(|| format!("subscribe to {topic}"))?;
    Ok(Box::new(XbusSubscriber {
        subscription,
        _bus: bus,
    }))
}

/// Publishes through one bus; many publishes may be in flight.
struct XbusPublisher {
    bus: Bus,
    persistence: Persistence,
}

#[async_trait]
impl Publisher for XbusPublisher {
    async fn publish(&self, topic: &str, event: &BenchEvent) -> anyhow::Result<()> {
        let mut payload = RawPayload::encode(event)?;
        payload.topic = topic.to_owned();
        self.bus.publish_raw_with(payload, self.persistence).await?;
        Ok(())
    }
}

/// One subscription and the bus it lives on (dropping the bus would
/// close the connection).
struct XbusSubscriber {
    subscription: RawSubscription,
    _bus: Bus,
}

#[async_trait]
impl Subscriber for XbusSubscriber {
    async fn next(&mut self) -> anyhow::Result<BenchEvent> {
        let delivery = self
            .subscription
            .next()
            .await
            .context("the subscription ended")??;
        // The topic is the scenario's, not BenchEvent::TOPIC, so the bytes
        // are decoded directly rather than with `RawPayload::decode`.
        Ok(rmp_serde::from_slice(&delivery.payload.data)?)
    }
}

/// An idle client: connected, subscribed, never read.
struct IdleBus {
    _subscription: RawSubscription,
    _bus: Bus,
}

#[async_trait]
impl GroupSystem for XbusSystem {
    /// Buses `ACCOUNT/g1`, `ACCOUNT/g2`, ... of one fresh account, each
    /// consuming group [`GROUP`] on `topic` from its start.
    async fn group(
        &self,
        topic: &str,
        instances: usize,
    ) -> anyhow::Result<Vec<Box<dyn Subscriber>>> {
        let account = self.target.fresh_account().await?;
        let mut members = Vec::with_capacity(instances);
        for i in 1..=instances {
            let instance = Account {
                jid: format!("{}/g{i}", account.jid),
                password: account.password.clone(),
            };
            let config = bench_config(&self.target.pubsub, &instance, self.target.addr())?;
            let bus = Bus::connect(config)
                .await
                .with_context(|| format!("connect {}", instance.jid))?;
            members.push(group_member(bus, topic).await?);
        }
        Ok(members)
    }
}

/// An instance of group [`GROUP`] on `topic`, on `bus`.
pub(crate) async fn group_member(bus: Bus, topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
    let options = ConsumeOptions::new().max_in_flight(GROUP_IN_FLIGHT);
    let consumer = bus
        .consume_raw(topic, GROUP, options)
        .await
        .with_context(|| format!("{}: consume {topic} as group {GROUP}", bus.jid()))?;
    Ok(Box::new(XbusGroupMember {
        consumer,
        _bus: bus,
    }))
}

/// One instance of a consumer group and the bus it lives on.
struct XbusGroupMember {
    consumer: RawConsumer,
    _bus: Bus,
}

#[async_trait]
impl Subscriber for XbusGroupMember {
    /// The next job, acknowledged once its event is decoded.
    async fn next(&mut self) -> anyhow::Result<BenchEvent> {
        let job = self.consumer.next().await.context("the consumer ended")??;
        let event = rmp_serde::from_slice(&job.event.data)
            .with_context(|| format!("decode item {}", job.item_id))?;
        job.ack()?;
        Ok(event)
    }
}

/// A bus that answers every [`BenchEvent`] call with the request.
struct Responder {
    _bus: Bus,
}

#[async_trait]
impl RpcSystem for XbusSystem {
    fn name(&self) -> String {
        format!("xbus/{}", self.target.server)
    }

    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>> {
        let bus = self.connect(self.target.addr()).await?;
        bus.serve(|request: BenchEvent, _ctx: Context| async move { Ok::<_, RpcError>(request) })
            .await
            .context("serve bench.echo")?;
        self.responder.set(bus.jid().to_string());
        Ok(Box::new(Responder { _bus: bus }))
    }

    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        let to = self.responder.get()?;
        let bus = self.connect(self.target.addr()).await?;
        Ok(Box::new(XbusCaller { bus, to }))
    }
}

/// Calls the responder's full JID (no discovery).
struct XbusCaller {
    bus: Bus,
    to: String,
}

#[async_trait]
impl Caller for XbusCaller {
    async fn call(&self, request: &BenchEvent) -> anyhow::Result<BenchEvent> {
        Ok(self.bus.request(&self.to, request.clone()).await?)
    }
}

/// Connects `n` buses to `target`, each with its own account, at most
/// [`IDLE_CONNECT_CONCURRENCY`] at a time, with xbus's default
/// configuration. They do nothing but stay online; drop them to
/// disconnect. For the idle-memory scenario.
///
/// The accounts are all taken first, one after the other: on the embedded
/// server (open accounts) that is free; on Prosody and ejabberd each runs a
/// server tool (blocking this thread), and their harnesses hold a limited
/// pool (500 on Prosody).
pub async fn connect_idle_buses(target: &XmppTarget, n: usize) -> anyhow::Result<Vec<Bus>> {
    let configs = (0..n)
        .map(|_| {
            let account = target.account()?;
            Ok((idle_config(target, &account, target.addr())?, account.jid))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    futures::stream::iter(configs)
        .map(|(config, jid)| async move {
            Bus::connect(config)
                .await
                .with_context(|| format!("connect idle bus {jid}"))
        })
        .buffer_unordered(IDLE_CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
