//! # xbus: typed events and RPC for microservices over XMPP
//!
//! Services declare their events and requests as plain Rust structs; xbus
//! maps them onto XMPP stanzas and a real XMPP server (Prosody, ejabberd) pushes them over
//! persistent connections. No polling.
//!
//! - [`Bus::publish`] puts an event on its topic: an XEP-0060 pubsub node,
//!   created on first use with persistent items. It resolves when the
//!   server has stored it.
//! - [`Bus::subscribe`] returns a typed [`Subscription`], a
//!   [`Stream`](futures::Stream) of [`Delivery`]s.
//! - [`Bus::send`] and [`Bus::inbox`] carry an event to one service as a
//!   `<message/>`.
//! - [`Bus::serve`] answers typed calls, [`Bus::request`] makes them: an
//!   `<iq/>` to one instance, with a timeout and error kinds that say what
//!   to do ([`RequestError`]).
//! - Presence is liveness: every bus is an instance of its service (its
//!   bare JID). [`Bus::watch`] and [`Bus::instances`] show which instances
//!   are online; a call or [`Bus::send_to_any`] to a service picks one.
//! - The untyped forms ([`Bus::publish_raw`], [`Bus::subscribe_raw`],
//!   [`Bus::request_raw`], [`Bus::serve_raw`]) serve tools and bridges.
//!
//! The wire format is specified in `docs/PROTOCOL.md` so that any XMPP
//! client can take part.
//!
//! ## Example
//!
//! ```no_run
//! use futures::StreamExt;
//! use serde::{Deserialize, Serialize};
//! use xbus::{Bus, BusConfig, Event};
//!
//! #[derive(Event, Serialize, Deserialize, Debug)]
//! #[event(topic = "orders.created")]
//! struct OrderCreated {
//!     id: u64,
//!     total_cents: u64,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // XBUS_JID, XBUS_PASSWORD, and optionally XBUS_SERVER, XBUS_PUBSUB, XBUS_TLS.
//! let bus = Bus::connect(BusConfig::from_env()?).await?;
//! let mut orders = bus.subscribe::<OrderCreated>().await?;
//! bus.publish(&OrderCreated { id: 7, total_cents: 1299 }).await?;
//! if let Some(delivery) = orders.next().await {
//!     let delivery = delivery?; // a payload that does not decode is an Err; the stream goes on
//!     println!("order {} from {:?}", delivery.event.id, delivery.publisher);
//! }
//! bus.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Calls
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use xbus::{Bus, BusConfig, Context, Request, RequestError, RpcError};
//!
//! #[derive(Request, Serialize, Deserialize)]
//! #[request(method = "inventory.check", response = u32)]
//! struct CheckStock {
//!     sku: String,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // An instance of the inventory service...
//! let inventory = Bus::connect(BusConfig::from_env()?).await?;
//! inventory
//!     .serve(|req: CheckStock, _ctx: Context| async move {
//!         match req.sku.as_str() {
//!             "A1" => Ok(3),
//!             other => Err(RpcError::new("unknown_sku", format!("no SKU {other}"))),
//!         }
//!     })
//!     .await?;
//!
//! // ...and a caller elsewhere: a bare JID picks an online instance.
//! # let shop = inventory.clone();
//! match shop.request("inventory@example.org", CheckStock { sku: "A1".into() }).await {
//!     Ok(level) => println!("{level} left"),
//!     Err(RequestError::Remote { error, .. }) => println!("refused: {}", error.code),
//!     Err(RequestError::NoResponder { .. }) => println!("no instance online"),
//!     Err(other) => return Err(other.into()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Acknowledgements, recovery and back-pressure
//!
//! The guarantees and their limits are in `docs/RELIABILITY.md`; in short:
//!
//! - [`Bus::publish`] resolves when the pubsub service's result IQ arrives:
//!   the server has stored the item. Unconfirmed publishes wait in a bounded
//!   outbox ([`outbox_capacity`](BusConfigBuilder::outbox_capacity)) and are
//!   re-sent after a session reset. No answer within the publish timeout is
//!   [`PublishError::TimedOut`], and the outcome is then unknown.
//! - A confirmed event reaches every live subscription exactly once across
//!   reconnects: XEP-0198 resumption where the server offers it; otherwise
//!   the bus re-subscribes, fetches what the topic stored meanwhile and
//!   drops duplicates by item id. [`Bus::subscribe_with`] with
//!   [`Replay::Last`] starts with stored events.
//! - Every subscription and inbox buffers up to
//!   [`subscription_capacity`](BusConfigBuilder::subscription_capacity)
//!   deliveries (1024 by default), then applies its [`BufferPolicy`]:
//!   back-pressure (the connection task waits for the consumer, holding back
//!   all incoming traffic of that bus) or drop-oldest (counted in
//!   [`Subscription::dropped`]).
//! - [`Bus::status`] streams [`ConnectionEvent`]s: reconnect attempts,
//!   resumptions, session resets.
//! - [`Bus::close`] waits (bounded) for the publishes already started.
//!
//! ## Cargo features
//!
//! Both off by default; without them xbus has no OpenTelemetry or
//! `metrics` dependency and behaves exactly as without observability.
//!
//! - `otel`: W3C trace context across every hop. [`Bus::publish`],
//!   [`Bus::send`], [`Bus::send_to_any`] and [`Bus::request`] write the
//!   context of their span as the [`TRACEPARENT`] (and [`TRACESTATE`])
//!   headers, and the receiving `handler`, `delivery` and `job` spans
//!   continue that trace, through `tracing-opentelemetry`. Handlers run
//!   inside their span; `Delivery::span` and `Job::span` give the span
//!   to run a subscriber's work in.
//! - `metrics`: counters, gauges and histograms (events published and
//!   consumed per topic, publish-confirm and call latencies, calls in
//!   flight, handler outcomes, reconnects, buffer drops, consumer-group
//!   redeliveries and dead letters) through the `metrics` facade, named
//!   after the OpenTelemetry messaging and RPC conventions.
//!
//! Every span, metric and label is listed in `docs/OBSERVABILITY.md`; the
//! headers in `docs/PROTOCOL.md` (§2.1).
//!
//! ## `#[derive(Event)]`
//!
//! `#[event(topic = "...", encoding = "msgpack" | "json", version = N,
//! transient, publish_model = "publishers", access_model = "whitelist" |
//! "presence" | "authorize")]`, every key optional: the topic defaults to the type name in
//! snake case (`OrderCreated` → `order_created`), the encoding to
//! MessagePack, the version to 1. A topic is 1 to 255 ASCII letters,
//! digits, `.`, `_` and `-` without empty `.`-segments; an invalid one is a
//! compile error. The flag `transient` makes a topic whose events the
//! server does not keep ([`Persistence::Transient`]: no storage cost, no
//! replay, no gap fill after a session reset). `publish_model` and
//! `access_model` restrict the topic ([`EventAccess`]; the accounts on its
//! lists come from [`BusConfigBuilder::topic_access`]). The type must also
//! implement serde's `Serialize` and `Deserialize`.
//!
//! ## `#[derive(Request)]`
//!
//! `#[request(method = "...", response = Type, encoding = "msgpack" | "json",
//! version = N)]`. Only `response` is required: the type a handler answers
//! with, any type (`response = StockLevel`, `response = Vec<u8>`,
//! `response = ()`). The method follows the topic rules and defaults to the
//! type name in snake case (`CheckStock` → `check_stock`); the encoding
//! defaults to MessagePack and the version to 1, and both apply to the
//! response too. The request and response types must implement serde's
//! `Serialize` and `Deserialize`.
#![deny(missing_docs)]

mod access;
mod allow;
mod bus;
mod call;
mod codec;
mod command;
mod config;
mod consume;
mod dedup;
mod error;
mod event;
mod group;
mod headers;
mod liveness;
mod login;
mod mechanism;
mod meter;
mod presence;
mod pubsub;
mod queue;
mod raw_serve;
mod reconnect;
mod request;
mod rpc;
mod serve;
mod servers;
mod stats;
mod status;
mod subscription;
mod task;
mod trace;
mod write_batch;

pub use access::{AccessModel, AccessNotApplied, EventAccess, TopicAccess};
pub use allow::Allow;
/// Re-exported for implementing [`Handler`] on a type.
pub use async_trait::async_trait;
pub use bus::{AccessError, Bus, PublishReceipt, TopicAccessLists};
pub use call::{RequestBuilder, ServeBuilder};
pub use codec::RawPayload;
pub use config::{BusConfig, BusConfigBuilder, Tls};
pub use consume::{
    AckError, ConsumeOptions, Consumer, GroupError, Job, JobMeta, RawConsumer, StartAt,
    dead_letter_headers,
};
pub use error::{
    CloseError, ConfigError, ConnectError, ConsumeError, DecodeError, DeliveryError, EncodeError,
    PublishError, SendError, ServerError, SubscribeError, TopicSetupError,
};
pub use event::{
    Encoding, Event, MAX_TOPIC_LEN, Persistence, TopicError, UnknownEncoding, validate_topic,
};
pub use headers::{Headers, InvalidHeader};
pub use liveness::Liveness;
pub use presence::{Instance, InstanceEvent, Status, SubscriptionPolicy, Watch, WatchError};
pub use queue::BufferPolicy;
pub use raw_serve::{RawHandler, ServeRawBuilder};
pub use request::{Request, RequestError, RpcError, ServeError};
pub use rpc::{RawRequest, RawResponse};
pub use serve::{Context, Handler};
pub use stats::BusStats;
pub use status::{ConnectionEvent, StatusStream};
pub use subscription::{
    Delivery, RawDelivery, RawSubscription, Replay, SubscribeOptions, Subscription,
};
pub use trace::{TRACEPARENT, TRACESTATE};
/// Derives [`Event`](trait@Event); see the [crate docs](crate#deriveevent).
pub use xbus_macros::Event;
/// Derives [`Request`](trait@Request); see the [crate docs](crate#deriverequest).
pub use xbus_macros::Request;

/// Paths used by the code that `#[derive(Event)]` and `#[derive(Request)]`
/// generate. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use ::core;
    pub use ::serde;

    pub use crate::access::{AccessModel, EventAccess};
    pub use crate::event::{Encoding, Event, Persistence};
    pub use crate::request::Request;
}
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod testing;
