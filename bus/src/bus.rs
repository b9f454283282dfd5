//! [`Bus`]: the cloneable handle that services use.

mod access;
mod direct;
mod nodes;

pub use access::{AccessError, TopicAccessLists};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use tokio::sync::{Notify, OnceCell, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_xmpp::stanzastream::{Event as StreamItem, StanzaStream, StreamEvent};
use tracing::{Instrument, debug, info, info_span, warn};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;

use crate::access::AccessNotApplied;
use crate::codec::RawPayload;
use crate::command::{Command, Dropped, IqOutcome, Shared};
use crate::config::BusConfig;
use crate::error::{CloseError, ConnectError, PublishError, ServerError, SubscribeError};
use crate::event::{Event, Persistence, validate_topic};
use crate::headers::Headers;
use crate::login::Login;
use crate::mechanism::LastMechanism;
use crate::meter;
use crate::pubsub;
use crate::pubsub::{Incoming, Repeatable};
use crate::queue::{self, Consumer, Producer};
use crate::reconnect::reconnector;
use crate::servers::Servers;
use crate::status::{StatusSender, StatusStream};
use crate::subscription::{DropGuard, RawSubscription, Replay, SubscribeOptions, Subscription};
use crate::task::{Channels, Task};

/// Confirmation that the pubsub service stored an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishReceipt {
    /// The topic (node) it was published to.
    pub topic: String,
    /// The item id: subscribers see the same id in
    /// [`Delivery::item_id`](crate::Delivery::item_id).
    pub item_id: String,
}

/// A connection to the bus: publish, subscribe, send.
///
/// `Bus` is a cheap handle: clone it freely. All clones share one XMPP
/// connection, owned by a background task that reconnects by itself.
#[derive(Debug, Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: BusConfig,
    /// Boxed: a channel allocates its first block of 32 slots when it is
    /// made, which for a 208-byte `Command` was 6.6 KiB of every idle bus.
    commands: mpsc::Sender<Box<Command>>,
    dropped: mpsc::UnboundedSender<Dropped>,
    shared: Arc<Shared>,
    pubsub: Jid,
    /// Per topic: set once this bus has created or found its node.
    known_nodes: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    /// Topics whose event type restricts access (`#[event(access_model)]`),
    /// merged with the config's lists.
    derived_access: Mutex<HashMap<String, Arc<crate::TopicAccess>>>,
    /// Publish calls under way, for `close()` to wait on.
    publishing: AtomicUsize,
    /// Signalled when `publishing` drops to zero.
    publish_idle: Notify,
    /// Set by `close()`: new publishes fail with `Closed`.
    closing: AtomicBool,
    /// One permit per publish that may be unconfirmed at once.
    outbox: Arc<Semaphore>,
    /// The configured servers and the one in use.
    servers: Servers,
    /// The SASL mechanism of the last login.
    mechanism: LastMechanism,
}

/// Counts one publish call as under way while it lives.
struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    fn start(inner: &'a Inner) -> Option<InFlight<'a>> {
        inner.publishing.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(inner);
        // Checked after counting, so close() either sees this publish or
        // this publish sees close().
        (!inner.closing.load(Ordering::SeqCst)).then_some(guard)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.publishing.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.publish_idle.notify_waiters();
        }
    }
}

/// What went wrong with one IQ, before it is mapped to a concern's error.
#[derive(Debug)]
enum IqError {
    Server(ServerError),
    TimedOut,
    Closed,
}

impl Bus {
    /// Connects and logs in, sends initial presence and starts the
    /// connection task.
    ///
    /// It returns once the server has handled the initial presence (the
    /// answer to a ping sent after it has come back), so the bus is online
    /// to everyone as soon as it is returned: a message sent to its bare
    /// JID right away reaches it. Before that, ejabberd could take the bus
    /// for offline and store such a message for its next login.
    ///
    /// The first connection is tried once: a wrong password, an unknown
    /// host or an unreachable server returns a [`ConnectError`] within the
    /// connect timeout (5 s by default). Later connection losses are
    /// repaired in the background.
    pub async fn connect(config: BusConfig) -> Result<Bus, ConnectError> {
        let login = Login::new(&config)?;
        meter::describe();
        let servers = login.servers().clone();
        let mechanism = login.mechanism();
        let server = servers.all_addresses();
        let started = Instant::now();
        let timed_out = || ConnectError::TimedOut {
            server: server.clone(),
            after: config.connect_timeout,
        };
        let first = tokio::time::timeout(config.connect_timeout, login.connect())
            .await
            .map_err(|_| timed_out())??;
        let status = StatusSender::new();
        let (reconnect, health) = reconnector(login, first, status.clone());
        let mut stream = StanzaStream::new(reconnect, 256);
        let remaining = config.connect_timeout.saturating_sub(started.elapsed());
        let (bound, stream_management) = tokio::time::timeout(remaining, async {
            while let Some(item) = stream.next().await {
                if let StreamItem::Stream(StreamEvent::Reset {
                    bound_jid,
                    features,
                }) = item
                {
                    return Some((bound_jid, features.stream_management.is_some()));
                }
            }
            None
        })
        .await
        .map_err(|_| timed_out())?
        .ok_or_else(|| ConnectError::Protocol {
            server: server.clone(),
            reason: "the stream ended during resource binding".into(),
        })?;
        let bound = FullJid::try_from(bound).map_err(|jid| ConnectError::Protocol {
            server: server.clone(),
            reason: format!("the server bound a bare JID {jid}"),
        })?;
        health.established();
        info!(jid = %bound, server = %servers.current_address(), sasl = mechanism.name(), stream_management, "connected");
        // Initial presence is sent by the task, after its roster request
        // (see `Task::start_session`).
        let (commands, commands_rx) = mpsc::channel(config.command_capacity);
        let (dropped, dropped_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            bound: RwLock::new(bound.clone()),
            status,
        });
        let pubsub = Jid::from(config.pubsub_service());
        let (online, announced) = oneshot::channel();
        let channels = Channels {
            commands: commands_rx,
            dropped: dropped_rx,
            online,
        };
        let task = Task::new(
            stream,
            channels,
            shared.clone(),
            &config,
            stream_management,
            health,
        );
        tokio::spawn(task.run().instrument(info_span!("xbus", jid = %bound)));
        let remaining = config.connect_timeout.saturating_sub(started.elapsed());
        if tokio::time::timeout(remaining, announced).await.is_err() {
            warn!(
                server,
                "the server did not confirm the initial presence within the connect timeout; going on"
            );
        }
        Ok(Bus {
            inner: Arc::new(Inner {
                commands,
                dropped,
                shared,
                pubsub,
                known_nodes: Mutex::new(HashMap::new()),
                derived_access: Mutex::new(HashMap::new()),
                publishing: AtomicUsize::new(0),
                publish_idle: Notify::new(),
                closing: AtomicBool::new(false),
                outbox: Arc::new(Semaphore::new(config.outbox_capacity)),
                servers,
                mechanism,
                config,
            }),
        })
    }

    /// The full JID of this bus's current session.
    pub fn jid(&self) -> FullJid {
        self.inner
            .shared
            .bound
            .read()
            .expect("lock poisoned")
            .clone()
    }

    /// The connection's changes as a stream, starting with the current
    /// state: `Reconnecting` with the attempt number while the connection
    /// is down, then `Resumed` or `SessionReset` (see
    /// [`ConnectionEvent`](crate::ConnectionEvent)). The same events are
    /// logged (target `xbus`).
    pub fn status(&self) -> StatusStream {
        self.inner.shared.status.subscribe()
    }

    /// The server this bus is connected to, as `host:port` (or, while it
    /// reconnects, the one it was on). With several servers configured
    /// ([`BusConfigBuilder::servers`](crate::BusConfigBuilder::servers)),
    /// this changes when the bus fails over, which the status stream
    /// reports as [`ConnectionEvent::FailedOver`](crate::ConnectionEvent::FailedOver).
    pub fn server(&self) -> String {
        self.inner.servers.current_address()
    }

    /// The SASL mechanism the bus logged in with last: `SCRAM-SHA-256`,
    /// `SCRAM-SHA-1` or `PLAIN`. xbus picks the strongest the server
    /// offers, so `PLAIN` means the server offers no SCRAM (the embedded
    /// server's plaintext mode, or a server whose accounts are stored for
    /// PLAIN only).
    pub fn sasl_mechanism(&self) -> &'static str {
        self.inner.mechanism.name()
    }

    /// The configuration this bus was started with.
    pub fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    /// Publishes `event` to its topic and resolves once the server has
    /// stored it (a [transient](Persistence::Transient) topic: accepted
    /// it). The topic's node is created on first use, with persistent
    /// items and the configured `max_items`, or for a transient event type
    /// with `persist_items` off.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<PublishReceipt, PublishError> {
        self.note_access::<E>();
        self.publish_raw_with(RawPayload::encode(event)?, E::PERSISTENCE)
            .await
    }

    /// Publishes `event` with XEP-0131 headers (trace ids, correlation ids).
    pub async fn publish_with_headers<E: Event>(
        &self,
        event: &E,
        headers: Headers,
    ) -> Result<PublishReceipt, PublishError> {
        let mut payload = RawPayload::encode(event)?;
        payload.headers = headers;
        self.note_access::<E>();
        self.publish_raw_with(payload, E::PERSISTENCE).await
    }

    /// Publishes an already serialized payload: the untyped form, for
    /// tools and bridges. A topic it creates keeps its events; see
    /// [`publish_raw_with`](Self::publish_raw_with) for a transient one.
    pub async fn publish_raw(&self, payload: RawPayload) -> Result<PublishReceipt, PublishError> {
        self.publish_raw_with(payload, Persistence::Persistent)
            .await
    }

    /// [`publish_raw`](Self::publish_raw), creating the topic (if this bus
    /// is the first to use it) with the given [`Persistence`]. A topic
    /// that exists keeps its configuration.
    pub async fn publish_raw_with(
        &self,
        mut payload: RawPayload,
        persistence: Persistence,
    ) -> Result<PublishReceipt, PublishError> {
        validate_topic(&payload.topic)?;
        payload.headers.validate()?;
        let span = info_span!("publish", topic = payload.topic.as_str());
        crate::trace::inject(&span, &mut payload.headers);
        if let Some((size, max)) = self.oversize(&payload) {
            return Err(PublishError::PayloadTooLarge { size, max });
        }
        let Some(_in_flight) = InFlight::start(&self.inner) else {
            return Err(PublishError::Closed);
        };
        let topic = payload.topic.clone();
        // Shared with the connection task, which keeps it (not a copy of
        // the request element) to re-send the publish after a session reset.
        let payload = Arc::new(payload);
        let measured = payload.clone();
        let started = Instant::now();
        let outcome = async {
            let timeout = self.inner.config.publish_timeout;
            let deadline = Instant::now() + timeout;
            let timed_out = || PublishError::TimedOut {
                topic: topic.clone(),
                after: timeout,
            };
            // Waits while the outbox is full; held until the outcome is known.
            let Ok(Ok(_permit)) =
                tokio::time::timeout_at(deadline, self.inner.outbox.clone().acquire_owned()).await
            else {
                return Err(PublishError::OutboxFull {
                    topic: topic.clone(),
                    after: timeout,
                });
            };
            self.ensure_node(&topic, persistence, deadline)
                .await
                .map_err(|e| match e {
                    IqError::TimedOut => timed_out(),
                    IqError::Server(error) => AccessNotApplied {
                        topic: topic.clone(),
                        error,
                    }
                    .into(),
                    IqError::Closed => PublishError::Closed,
                })?;
            let item_id = pubsub::new_item_id();
            let request = Repeatable::Publish { item_id, payload };
            match self.iq(request, deadline).await {
                Ok(result) => {
                    let item_id = match result.as_ref().and_then(confirmed_item_id) {
                        Some(confirmed) => confirmed.to_owned(),
                        None => pubsub::item_id_text(item_id),
                    };
                    debug!(item_id, "published");
                    Ok(PublishReceipt { topic, item_id })
                }
                Err(IqError::Server(error)) if error.is_access_refusal() => {
                    Err(PublishError::Forbidden { topic, error })
                }
                Err(IqError::Server(error)) => Err(PublishError::Rejected { topic, error }),
                Err(IqError::TimedOut) => Err(timed_out()),
                Err(IqError::Closed) => Err(PublishError::Closed),
            }
        }
        .instrument(span)
        .await;
        let error = outcome.as_ref().err().map(meter::publish_error_type);
        meter::sent(
            meter::Outgoing::Publish,
            &measured.topic,
            started.elapsed(),
            error,
        );
        outcome
    }

    /// Subscribes to events of type `E` on their topic.
    ///
    /// Several subscriptions to one topic in one process share a single
    /// server subscription; dropping the last one unsubscribes.
    pub async fn subscribe<E: Event>(&self) -> Result<Subscription<E>, SubscribeError> {
        self.subscribe_with(SubscribeOptions::default()).await
    }

    /// Subscribes with options: a replay of stored events
    /// (`bus.subscribe_with::<E>(Replay::Last(10))`), a buffer size or
    /// policy of its own.
    pub async fn subscribe_with<E: Event>(
        &self,
        options: impl Into<SubscribeOptions>,
    ) -> Result<Subscription<E>, SubscribeError> {
        let options = options.into().persistence(E::PERSISTENCE);
        self.note_access::<E>();
        Ok(Subscription::new(
            self.subscribe_raw_with(E::TOPIC, options).await?,
        ))
    }

    /// Subscribes to a topic without decoding: the untyped form.
    pub async fn subscribe_raw(&self, topic: &str) -> Result<RawSubscription, SubscribeError> {
        self.subscribe_raw_with(topic, SubscribeOptions::default())
            .await
    }

    /// [`subscribe_with`](Self::subscribe_with) without decoding.
    pub async fn subscribe_raw_with(
        &self,
        topic: &str,
        options: impl Into<SubscribeOptions>,
    ) -> Result<RawSubscription, SubscribeError> {
        let options = options.into();
        validate_topic(topic)?;
        let transient = options.persistence == Persistence::Transient;
        if transient && options.replay != Replay::None {
            return Err(SubscribeError::TransientTopic {
                topic: topic.to_owned(),
            });
        }
        let timeout = self.inner.config.publish_timeout;
        let deadline = Instant::now() + timeout;
        let timed_out = || SubscribeError::TimedOut {
            topic: topic.to_owned(),
            after: timeout,
        };
        self.ensure_node(topic, options.persistence, deadline)
            .await
            .map_err(|e| match e {
                IqError::TimedOut => timed_out(),
                IqError::Server(error) => AccessNotApplied {
                    topic: topic.to_owned(),
                    error,
                }
                .into(),
                IqError::Closed => SubscribeError::Closed,
            })?;
        let (tx, rx) = self.buffer(&options);
        let (reply, answer) = oneshot::channel();
        self.command(Command::Subscribe {
            topic: topic.to_owned(),
            tx,
            replay: options.replay.count(),
            transient,
            reply,
        })
        .await
        .map_err(|_| SubscribeError::Closed)?;
        let id = match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(SubscribeError::Closed),
            Err(_) => return Err(timed_out()),
        };
        debug!(topic, id, "subscribed");
        Ok(RawSubscription {
            topic: topic.to_owned(),
            rx,
            _guard: self.guard(Dropped::Subscription {
                topic: topic.to_owned(),
                id,
            }),
        })
    }

    /// A subscription's buffer, as `options` or the configuration say.
    fn buffer(&self, options: &SubscribeOptions) -> (Producer<Incoming>, Consumer<Incoming>) {
        let config = &self.inner.config;
        queue::channel(
            options.capacity.unwrap_or(config.subscription_capacity),
            options.buffer.unwrap_or(config.buffer_policy),
        )
    }

    /// Closes the connection for every clone of this bus: waits until the
    /// publishes already started are confirmed, sends unavailable presence
    /// (callers stop picking this instance; a call that still arrives is
    /// refused with `service-unavailable`, and a caller that named the
    /// service retries it elsewhere), waits for the handlers already running
    /// to answer, and ends the stream. All but the stream's end (a round
    /// trip, bounded by 5 s) happens within the close timeout (5 s by
    /// default). Publishes started after `close()` fail with
    /// [`PublishError::Closed`]; subscriptions end after the items already
    /// received.
    ///
    /// Returns [`CloseError::Unconfirmed`] if publishes were still
    /// unconfirmed at the timeout, and [`CloseError::HandlersAbandoned`] if
    /// handlers were still running: their callers get no answer.
    pub async fn close(&self) -> Result<(), CloseError> {
        let inner = &self.inner;
        if inner.closing.swap(true, Ordering::SeqCst) {
            return Err(CloseError::AlreadyClosed);
        }
        let timeout = inner.config.close_timeout;
        let deadline = Instant::now() + timeout;
        let idle = async {
            loop {
                let notified = inner.publish_idle.notified();
                if inner.publishing.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            let pending = inner.publishing.load(Ordering::SeqCst);
            warn!(
                pending,
                "close: publishes still unconfirmed at the close timeout"
            );
        }
        let (reply, answer) = oneshot::channel();
        self.command(Command::Close { reply, deadline })
            .await
            .map_err(|_| CloseError::AlreadyClosed)?;
        answer.await.map_err(|_| CloseError::AlreadyClosed)?
    }

    /// `(size, max)` when the payload exceeds the configured maximum.
    pub(crate) fn oversize(&self, payload: &RawPayload) -> Option<(usize, usize)> {
        let max = self.inner.config.max_payload;
        (payload.data.len() > max).then_some((payload.data.len(), max))
    }

    pub(crate) fn guard(&self, what: Dropped) -> DropGuard {
        DropGuard {
            dropped: self.inner.dropped.clone(),
            what: Some(what),
        }
    }

    pub(crate) async fn command(&self, command: Command) -> Result<(), ()> {
        self.inner
            .commands
            .send(Box::new(command))
            .await
            .map_err(|_| ())
    }

    /// Sends `request` to the pubsub service; the task sends it again if
    /// the session is reset before the answer comes.
    async fn iq(&self, request: Repeatable, deadline: Instant) -> Result<Option<Element>, IqError> {
        // Built here rather than in the task: the task is the bottleneck
        // of a busy bus, the callers are many.
        let payload = request.to_element();
        self.pubsub_iq(true, payload, Some(request), deadline).await
    }

    /// An IQ to the pubsub service, re-sent after a session reset if
    /// `resend` says how.
    async fn pubsub_iq(
        &self,
        set: bool,
        payload: Element,
        resend: Option<Repeatable>,
        deadline: Instant,
    ) -> Result<Option<Element>, IqError> {
        let (reply, answer) = oneshot::channel::<IqOutcome>();
        let send = self.command(Command::Iq {
            to: self.inner.pubsub.clone(),
            set,
            payload,
            resend,
            reply,
        });
        match tokio::time::timeout_at(deadline, send).await {
            Err(_) => return Err(IqError::TimedOut),
            Ok(Err(())) => return Err(IqError::Closed),
            Ok(Ok(())) => {}
        }
        // Dropping `answer` on timeout lets the task forget the IQ.
        match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => Err(IqError::TimedOut),
            Ok(Err(_)) => Err(IqError::Closed),
            Ok(Ok(outcome)) => outcome.map_err(IqError::Server),
        }
    }
}

/// The item id the server confirmed, if it says (XEP-0060 §7.1.2).
fn confirmed_item_id(result: &Element) -> Option<&str> {
    let publish = result.get_child("publish", pubsub::NS_PUBSUB)?;
    let item = publish.get_child("item", pubsub::NS_PUBSUB)?;
    item.attr("id")
}
