//! What every system under test offers the scenarios: event clients
//! ([`EventSystem`]), consumer groups on some ([`GroupSystem`]) and RPC
//! clients ([`RpcSystem`]).
//!
//! The scenarios (`scenario.rs`) only talk to these traits, so xbus, the raw
//! tokio-xmpp client, NATS and HTTP are driven by the same code with the
//! same payloads ([`BenchEvent`]).

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The event every system carries: a sequence number, the send time, and a
/// filler that brings the MessagePack encoding to about 200 bytes.
///
/// Every system sends the same value; each encodes it the way its users
/// would (xbus and raw XMPP: MessagePack in the xbus payload element; NATS:
/// MessagePack bytes; HTTP: JSON).
#[derive(xbus::Event, xbus::Request, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[event(topic = "bench.events")]
#[request(method = "bench.echo", response = BenchEvent)]
pub struct BenchEvent {
    /// 0, 1, 2, ... within one scenario run.
    pub seq: u64,
    /// [`now_ns`] when the event was handed to the system.
    pub sent_ns: u64,
    /// Filler.
    pub body: String,
}

/// Length of [`BenchEvent::body`]: with it the MessagePack encoding is
/// about 200 bytes.
pub const BODY_LEN: usize = 180;

impl BenchEvent {
    /// Event number `seq`, stamped now.
    pub fn new(seq: u64) -> BenchEvent {
        BenchEvent {
            seq,
            sent_ns: now_ns(),
            body: "x".repeat(BODY_LEN),
        }
    }

    /// Nanoseconds from [`BenchEvent::sent_ns`] to now.
    pub fn age_ns(&self) -> u64 {
        now_ns().saturating_sub(self.sent_ns)
    }
}

/// Nanoseconds since the first call in this process (monotonic clock).
/// Senders and receivers live in the same process, so their stamps compare.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A system that carries events from publishers to subscribers.
#[async_trait]
pub trait EventSystem: Send + Sync {
    /// Row label in the report, e.g. `xbus/prosody`, `nats`, `poll-100ms`.
    fn name(&self) -> String;

    /// The address clients connect to (for the idle-cost relay).
    fn addr(&self) -> SocketAddr;

    /// A connected publisher.
    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>>;

    /// A subscriber of `topic`. When this returns, every event published
    /// afterwards reaches it.
    async fn subscriber(&self, topic: &str) -> anyhow::Result<Box<dyn Subscriber>>;

    /// An idle client, connected to `via` instead of [`EventSystem::addr`]
    /// (a byte-counting relay in front of it), subscribed to `topic` and
    /// otherwise doing nothing. Dropping the value disconnects it.
    async fn idle_client(
        &self,
        via: SocketAddr,
        topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>>;
}

/// An event system with consumer groups: the instances of a group share a
/// topic's events, each event handled (and acknowledged) by one of them.
#[async_trait]
pub trait GroupSystem: EventSystem {
    /// `instances` instances of a new consumer group on `topic`, all of one
    /// service (one account, one connection each). Each instance's
    /// [`Subscriber::next`] is its next job, already acknowledged, as its
    /// event. When this returns every instance has joined; the group may
    /// still be choosing its leader, so the first events can take a while.
    async fn group(
        &self,
        topic: &str,
        instances: usize,
    ) -> anyhow::Result<Vec<Box<dyn Subscriber>>>;
}

/// Publishes events; `&self` so that the throughput scenario can keep many
/// publishes in flight on one connection.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes `event` to `topic`; returns when the system's own
    /// acknowledgement arrived (xbus, raw XMPP, HTTP: the server's answer)
    /// or when it was written (NATS core publish has no acknowledgement).
    async fn publish(&self, topic: &str, event: &BenchEvent) -> anyhow::Result<()>;

    /// Makes sure everything published has left the client (NATS: flush).
    async fn flush(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Receives the events of one topic, in order of arrival.
#[async_trait]
pub trait Subscriber: Send {
    /// The next event; an error if the connection failed or a payload did
    /// not decode.
    async fn next(&mut self) -> anyhow::Result<BenchEvent>;
}

/// A system that carries calls and their answers.
#[async_trait]
pub trait RpcSystem: Send + Sync {
    /// Row label in the report, e.g. `xbus/embedded`, `nats`, `http`.
    fn name(&self) -> String;

    /// A responder that answers every call with the request itself
    /// (an echo). Dropping the value stops it.
    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>>;

    /// A caller of that responder; `&self` calls may run concurrently.
    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>>;
}

/// The address of the responder an XMPP system started last, which the
/// callers it makes afterwards call.
#[derive(Debug)]
pub struct LastResponder<T>(Mutex<Option<T>>);

impl<T> Default for LastResponder<T> {
    fn default() -> Self {
        LastResponder(Mutex::new(None))
    }
}

impl<T: Clone> LastResponder<T> {
    /// Remembers `to` as the responder to call.
    pub fn set(&self, to: T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
    }

    /// The responder to call; an error before [`RpcSystem::responder`].
    pub fn get(&self) -> anyhow::Result<T> {
        use anyhow::Context as _;
        (self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .context("no responder started: call responder() first")
    }
}

/// Makes calls to the echo responder of its [`RpcSystem`].
#[async_trait]
pub trait Caller: Send + Sync {
    /// One call; returns the answer (the echoed request).
    async fn call(&self, request: &BenchEvent) -> anyhow::Result<BenchEvent>;
}
