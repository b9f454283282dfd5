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
use crate::event::Event;
use crate::headers::Headers;
use crate::pubsub::Incoming;

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

fn into_raw(incoming: Incoming) -> Result<RawDelivery, DeliveryError> {
    match incoming.payload {
        Ok(payload) => Ok(RawDelivery {
            payload,
            item_id: incoming.item_id,
            publisher: incoming.from,
            server_headers: incoming.headers,
        }),
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
    pub(crate) rx: mpsc::Receiver<Incoming>,
    pub(crate) _guard: DropGuard,
}

impl RawSubscription {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
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
}

impl<E: Event> Stream for Subscription<E> {
    type Item = Result<Delivery<E>, DeliveryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.raw)
            .poll_next(cx)
            .map(|item| item.map(|raw| raw.and_then(RawDelivery::decode)))
    }
}
