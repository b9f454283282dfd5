//! Streams of deliveries: [`Subscription`] (typed), [`RawSubscription`]
//! (bytes), and what they yield.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use crate::codec::RawPayload;
use crate::command::Dropped;
use crate::error::DeliveryError;
use crate::event::{Event, Persistence};
use crate::headers::Headers;
use crate::pubsub::Incoming;
use crate::queue::{BufferPolicy, Consumer};
use crate::trace::ReceiveSpan;

/// Which stored events a new subscription delivers before live ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Replay {
    /// None: only events published after the subscription is confirmed.
    #[default]
    None,
    /// The last `n` events the topic keeps (at most its `max_items`),
    /// oldest first, then live ones: no gap between them and no duplicate.
    Last(u32),
}

impl Replay {
    pub(crate) fn count(self) -> usize {
        match self {
            Replay::None => 0,
            Replay::Last(n) => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }
}

/// How [`Bus::subscribe_with`](crate::Bus::subscribe_with) subscribes.
///
/// A [`Replay`] converts into options, so
/// `bus.subscribe_with::<E>(Replay::Last(10))` works; the rest default to
/// the bus's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct SubscribeOptions {
    pub(crate) replay: Replay,
    pub(crate) buffer: Option<BufferPolicy>,
    pub(crate) capacity: Option<usize>,
    pub(crate) persistence: Persistence,
}

impl SubscribeOptions {
    /// No replay, the configured buffer capacity and policy.
    pub fn new() -> SubscribeOptions {
        SubscribeOptions::default()
    }

    /// Stored events to deliver first. Default: [`Replay::None`].
    pub fn replay(mut self, replay: Replay) -> Self {
        self.replay = replay;
        self
    }

    /// This subscription's buffer policy. Default: the configured
    /// [`buffer_policy`](crate::BusConfigBuilder::buffer_policy).
    pub fn buffer_policy(mut self, policy: BufferPolicy) -> Self {
        self.buffer = Some(policy);
        self
    }

    /// Whether the topic keeps its events, for
    /// [`subscribe_raw_with`](crate::Bus::subscribe_raw_with): a
    /// [`Transient`](Persistence::Transient) topic gets no gap fill after a
    /// session reset, and refuses a replay. A typed subscription takes it
    /// from its event type. Default: [`Persistence::Persistent`].
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// This subscription's buffer capacity (at least 1). Default: the
    /// configured
    /// [`subscription_capacity`](crate::BusConfigBuilder::subscription_capacity).
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = Some(events.max(1));
        self
    }
}

impl From<Replay> for SubscribeOptions {
    fn from(replay: Replay) -> SubscribeOptions {
        SubscribeOptions::new().replay(replay)
    }
}

impl From<BufferPolicy> for SubscribeOptions {
    fn from(policy: BufferPolicy) -> SubscribeOptions {
        SubscribeOptions::new().buffer_policy(policy)
    }
}

/// One typed event as delivered, with where it came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery<E> {
    /// The event.
    pub event: E,
    /// The pubsub item id (for events sent with
    /// [`Bus::send`](crate::Bus::send): the message id, if any).
    pub item_id: Option<String>,
    /// The topic.
    pub topic: String,
    /// Who published or sent it, as stamped by the server, when known.
    pub publisher: Option<String>,
    /// XEP-0131 headers: the publisher's, then the server's.
    pub headers: Headers,
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) span: ReceiveSpan,
}

#[cfg(feature = "otel")]
impl<E> Delivery<E> {
    /// The `delivery` span (feature `otel`): a child of the publisher's
    /// `publish` or `send` span when the event carried a `traceparent`
    /// header. It ends when the last clone of it is dropped, so it covers
    /// the handling of the event if that runs in it:
    /// `handle(d.event).instrument(d.span().clone())`, or
    /// `let _entered = d.span().enter();` around synchronous code.
    pub fn span(&self) -> &tracing::Span {
        &self.span.0
    }
}

/// One event as bytes, for tools and bridges that do not know its type.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RawDelivery {
    /// Topic, encoding, version, the serialized event and the publisher's
    /// headers.
    pub payload: RawPayload,
    /// The pubsub item id, or the message id.
    pub item_id: Option<String>,
    /// Who published or sent it, when known.
    pub publisher: Option<String>,
    /// Headers added by the server (e.g. the pubsub service).
    pub server_headers: Headers,
    span: ReceiveSpan,
}

#[cfg(feature = "otel")]
impl RawDelivery {
    /// The `delivery` span (feature `otel`), as
    /// [`Delivery::span`] describes it.
    pub fn span(&self) -> &tracing::Span {
        &self.span.0
    }
}

impl RawDelivery {
    /// Decodes into a typed [`Delivery`].
    pub fn decode<E: Event>(self) -> Result<Delivery<E>, DeliveryError> {
        match self.payload.decode::<E>() {
            Ok(event) => {
                let mut headers = self.payload.headers;
                for (name, value) in self.server_headers.iter() {
                    headers.insert(name, value);
                }
                Ok(Delivery {
                    event,
                    item_id: self.item_id,
                    topic: self.payload.topic,
                    publisher: self.publisher,
                    headers,
                    span: self.span,
                })
            }
            Err(reason) => Err(DeliveryError::new(
                reason,
                self.payload.topic.clone(),
                self.item_id,
                self.publisher,
                String::from(&self.payload.to_element()),
            )),
        }
    }
}

pub(crate) fn into_raw(incoming: Incoming) -> Result<RawDelivery, DeliveryError> {
    match incoming.payload {
        Ok(payload) => {
            // Counted as the application takes it from the stream.
            crate::meter::consumed(&payload.topic, None);
            Ok(RawDelivery {
                span: ReceiveSpan::delivery(
                    &payload.topic,
                    incoming.item_id.as_deref(),
                    &payload.headers,
                ),
                payload,
                item_id: incoming.item_id,
                publisher: incoming.from,
                server_headers: incoming.headers,
            })
        }
        Err((reason, raw_xml)) => Err(DeliveryError::new(
            reason,
            incoming.topic,
            incoming.item_id,
            incoming.from,
            raw_xml,
        )),
    }
}

/// Tells the connection task when a stream is dropped.
#[derive(Debug)]
pub(crate) struct DropGuard {
    pub(crate) dropped: mpsc::UnboundedSender<Dropped>,
    pub(crate) what: Option<Dropped>,
}

impl DropGuard {
    /// Disarms the guard: the task needs no telling.
    pub(crate) fn defuse(guard: &mut DropGuard) {
        guard.what = None;
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(what) = self.what.take() {
            // The task may be gone already; then there is nothing to undo.
            let _ = self.dropped.send(what);
        }
    }
}

/// A stream of undecoded deliveries on one topic (or of direct events).
///
/// Dropping the last subscription to a topic unsubscribes on the server.
#[derive(Debug)]
pub struct RawSubscription {
    pub(crate) topic: String,
    pub(crate) rx: Consumer<Incoming>,
    pub(crate) _guard: DropGuard,
}

impl RawSubscription {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// How many events this subscription's
    /// [`DropOldest`](BufferPolicy::DropOldest) buffer dropped so far
    /// (always 0 under back-pressure).
    pub fn dropped(&self) -> u64 {
        self.rx.dropped()
    }

    /// How many events wait in the buffer now.
    pub fn queued(&self) -> usize {
        self.rx.len()
    }
}

impl Stream for RawSubscription {
    type Item = Result<RawDelivery, DeliveryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|item| item.map(into_raw))
    }
}

/// A typed stream of events of type `E`: from a topic
/// ([`Bus::subscribe`](crate::Bus::subscribe)) or sent directly to this bus
/// ([`Bus::inbox`](crate::Bus::inbox)).
///
/// Items that cannot be decoded come as `Err(DeliveryError)` carrying the
/// reason and the raw XML; the stream goes on. It ends only when the bus
/// is closed.
#[derive(Debug)]
pub struct Subscription<E> {
    raw: RawSubscription,
    _event: PhantomData<fn() -> E>,
}

impl<E: Event> Subscription<E> {
    pub(crate) fn new(raw: RawSubscription) -> Self {
        Subscription {
            raw,
            _event: PhantomData,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        self.raw.topic()
    }

    /// How many events the [`DropOldest`](BufferPolicy::DropOldest)
    /// buffer dropped so far (always 0 under back-pressure).
    pub fn dropped(&self) -> u64 {
        self.raw.dropped()
    }

    /// How many events wait in the buffer now.
    pub fn queued(&self) -> usize {
        self.raw.queued()
    }
}

impl<E: Event> Stream for Subscription<E> {
    type Item = Result<Delivery<E>, DeliveryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.raw)
            .poll_next(cx)
            .map(|item| item.map(|raw| raw.and_then(RawDelivery::decode)))
    }
}
