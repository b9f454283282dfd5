//! The connection task: the one place that owns the XMPP stream.
//!
//! [`Bus`](crate::Bus) handles talk to it through a bounded command
//! channel; every command that needs an answer carries a `oneshot`. The
//! task routes IQ answers to their callers, fans pubsub notifications and
//! direct events out to local subscriptions, answers pings, and restores
//! presence and subscriptions after a reconnect that lost the session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_xmpp::Stanza;
use tokio_xmpp::stanzastream::{Event, StanzaStage, StanzaState, StanzaStream, StreamEvent};
use tracing::{debug, info, trace, warn};
use xmpp_parsers::iq::{Iq, IqPayload};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::codec::{RawPayload, find_payload};
use crate::command::{CloseReply, Command, Dropped, IqOutcome, Shared};
use crate::error::{CloseError, DecodeError, SendError, SubscribeError};
use crate::headers::Headers;
use crate::pubsub::{self, Incoming, NS_PUBSUB_EVENT};

enum PendingIq {
    Caller {
        to: Jid,
        reply: oneshot::Sender<IqOutcome>,
    },
    Subscribe {
        to: Jid,
        topic: String,
    },
    Fire {
        to: Jid,
        what: &'static str,
    },
}

impl PendingIq {
    fn to(&self) -> &Jid {
        match self {
            PendingIq::Caller { to, .. }
            | PendingIq::Subscribe { to, .. }
            | PendingIq::Fire { to, .. } => to,
        }
    }
}

#[derive(Default)]
struct Topic {
    /// The server confirmed the subscription.
    active: bool,
    /// Local subscriptions: id and sender.
    subs: Vec<(u64, mpsc::Sender<Incoming>)>,
    /// Subscribers waiting for the server's answer.
    waiting: Vec<(u64, oneshot::Sender<Result<u64, SubscribeError>>)>,
}

pub(crate) struct Task {
    stream: StanzaStream,
    commands: mpsc::Receiver<Command>,
    dropped: mpsc::UnboundedReceiver<Dropped>,
    shared: Arc<Shared>,
    pubsub: Jid,
    stream_management: bool,
    max_payload: usize,
    close_timeout: Duration,
    pending: HashMap<String, PendingIq>,
    topics: HashMap<String, Topic>,
    inboxes: HashMap<String, Vec<(u64, mpsc::Sender<Incoming>)>>,
    next_id: u64,
}

impl Task {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        stream: StanzaStream,
        commands: mpsc::Receiver<Command>,
        dropped: mpsc::UnboundedReceiver<Dropped>,
        shared: Arc<Shared>,
        pubsub: Jid,
        stream_management: bool,
        max_payload: usize,
        close_timeout: Duration,
    ) -> Task {
        Task {
            stream,
            commands,
            dropped,
            shared,
            pubsub,
            stream_management,
            max_payload,
            close_timeout,
            pending: HashMap::new(),
            topics: HashMap::new(),
            inboxes: HashMap::new(),
            next_id: 0,
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn bound(&self) -> FullJid {
        self.shared.bound.read().expect("lock poisoned").clone()
    }

    /// Runs until [`Command::Close`], until every handle is gone, or until
    /// the stream fails for good.
    pub(crate) async fn run(mut self) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        // Set once closing starts: the deadline, and whom to tell.
        let mut closing: Option<(Instant, Option<CloseReply>)> = None;
        loop {
            if let Some((deadline, _)) = &closing {
                if self.callers_pending() == 0 || Instant::now() >= *deadline {
                    break;
                }
            }
            tokio::select! {
                event = self.stream.next() => match event {
                    Some(Event::Stanza(stanza)) => self.on_stanza(stanza).await,
                    Some(Event::Stream(event)) => self.on_stream_event(event).await,
                    None => {
                        warn!("XMPP stream ended for good");
                        break;
                    }
                },
                Some(dropped) = self.dropped.recv() => self.on_dropped(dropped).await,
                command = self.commands.recv(), if closing.is_none() => match command {
                    Some(Command::Close { reply }) => {
                        closing = Some((Instant::now() + self.close_timeout, Some(reply)));
                    }
                    Some(command) => self.on_command(command).await,
                    None => closing = Some((Instant::now() + self.close_timeout, None)),
                },
                _ = sweep.tick() => {
                    // Callers that timed out dropped their receiver: forget them.
                    self.pending.retain(|_, p| !matches!(p, PendingIq::Caller { reply, .. } if reply.is_closed()));
                }
            }
        }
        let unconfirmed = self.callers_pending();
        let close_timeout = self.close_timeout;
        self.finish().await;
        if let Some((_, Some(reply))) = closing {
            let result = match unconfirmed {
                0 => Ok(()),
                pending => Err(CloseError::Unconfirmed {
                    pending,
                    after: close_timeout,
                }),
            };
            let _ = reply.send(result);
        }
    }

    fn callers_pending(&self) -> usize {
        self.pending
            .values()
            .filter(|p| matches!(p, PendingIq::Caller { reply, .. } if !reply.is_closed()))
            .count()
    }

    async fn finish(self) {
        let unavailable = Presence::new(PresenceType::Unavailable);
        let mut token = self.stream.send(Box::new(unavailable.into())).await;
        let _ =
            tokio::time::timeout(Duration::from_secs(2), token.wait_for(StanzaStage::Sent)).await;
        if tokio::time::timeout(Duration::from_secs(5), self.stream.close())
            .await
            .is_err()
        {
            debug!("stream did not close within 5 s; dropped");
        }
        info!("bus closed");
    }

    async fn send(&mut self, stanza: Stanza) -> tokio_xmpp::stanzastream::StanzaToken {
        self.stream.send(Box::new(stanza)).await
    }

    async fn send_iq(&mut self, to: Jid, set: bool, payload: Element, pending: PendingIq) {
        let id = format!("xb{}", self.next_id());
        let iq = if set {
            IqPayload::Set(payload)
        } else {
            IqPayload::Get(payload)
        };
        let iq = Iq::assemble(
            xmpp_parsers::iq::IqHeader {
                from: None,
                to: Some(to),
                id: id.clone(),
            },
            iq,
        );
        self.pending.insert(id, pending);
        self.send(iq.into()).await;
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Iq {
                to,
                set,
                payload,
                reply,
            } => {
                let pending = PendingIq::Caller {
                    to: to.clone(),
                    reply,
                };
                self.send_iq(to, set, payload, pending).await;
            }
            Command::Subscribe { topic, tx, reply } => {
                let id = self.next_id();
                let entry = self.topics.entry(topic.clone()).or_default();
                entry.subs.push((id, tx));
                if entry.active {
                    let _ = reply.send(Ok(id));
                } else {
                    entry.waiting.push((id, reply));
                    if entry.waiting.len() == 1 {
                        self.subscribe_on_server(topic).await;
                    }
                }
            }
            Command::Inbox { topic, tx, reply } => {
                let id = self.next_id();
                self.inboxes.entry(topic).or_default().push((id, tx));
                let _ = reply.send(id);
            }
            Command::Send { to, payload, reply } => {
                let mut message = Message::new_with_type(MessageType::Normal, Some(to));
                message.payloads.push(payload);
                let mut token = self.send(message.into()).await;
                let stage = if self.stream_management {
                    StanzaStage::Acked
                } else {
                    StanzaStage::Sent
                };
                tokio::spawn(async move {
                    let result = match token.wait_for(stage).await {
                        Some(StanzaState::Sent { .. }) | Some(StanzaState::Acked { .. }) => Ok(()),
                        Some(StanzaState::Failed { error }) => Err(SendError::NotAcknowledged(
                            error.into_io_error().to_string(),
                        )),
                        _ => Err(SendError::NotAcknowledged("the stream was closed".into())),
                    };
                    let _ = reply.send(result);
                });
            }
            Command::Close { .. } => unreachable!("handled by run()"),
        }
    }

    async fn subscribe_on_server(&mut self, topic: String) {
        let jid = self.bound().to_string();
        let to = self.pubsub.clone();
        let payload = pubsub::subscribe(&topic, &jid);
        self.send_iq(
            to.clone(),
            true,
            payload,
            PendingIq::Subscribe { to, topic },
        )
        .await;
    }

    async fn on_dropped(&mut self, dropped: Dropped) {
        match dropped {
            Dropped::Inbox { topic, id } => {
                if let Some(list) = self.inboxes.get_mut(&topic) {
                    list.retain(|(i, _)| *i != id);
                    if list.is_empty() {
                        self.inboxes.remove(&topic);
                    }
                }
            }
            Dropped::Subscription { topic, id } => {
                let Some(entry) = self.topics.get_mut(&topic) else {
                    return;
                };
                entry.subs.retain(|(i, _)| *i != id);
                if entry.subs.is_empty() && entry.waiting.is_empty() {
                    let was_active = entry.active;
                    self.topics.remove(&topic);
                    if was_active {
                        self.unsubscribe_on_server(&topic).await;
                    }
                }
            }
        }
    }

    async fn unsubscribe_on_server(&mut self, topic: &str) {
        debug!(topic, "last local subscription dropped; unsubscribing");
        let payload = pubsub::unsubscribe(topic, &self.bound().to_string());
        let to = self.pubsub.clone();
        self.send_iq(
            to.clone(),
            true,
            payload,
            PendingIq::Fire {
                to,
                what: "unsubscribe",
            },
        )
        .await;
    }

    async fn on_stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Reset {
                bound_jid,
                features,
            } => {
                warn!(jid = %bound_jid, "XMPP session was reset; restoring presence and subscriptions");
                if let Ok(full) = bound_jid.try_into_full() {
                    *self.shared.bound.write().expect("lock poisoned") = full;
                }
                self.stream_management = features.stream_management.is_some();
                self.send(Presence::new(PresenceType::None).into()).await;
                // Answers to IQs of the lost session will never come.
                self.pending
                    .retain(|_, p| matches!(p, PendingIq::Caller { .. }));
                let topics: Vec<String> = self.topics.keys().cloned().collect();
                for topic in topics {
                    self.subscribe_on_server(topic).await;
                }
            }
            StreamEvent::Suspended => warn!("XMPP connection lost; reconnecting"),
            StreamEvent::Resumed => info!("XMPP stream resumed without loss (XEP-0198)"),
        }
    }

    async fn on_stanza(&mut self, stanza: Stanza) {
        match stanza {
            Stanza::Iq(iq) => self.on_iq(iq).await,
            Stanza::Message(message) => self.on_message(message).await,
            Stanza::Presence(presence) => {
                trace!(from = ?presence.from, "presence ignored");
            }
        }
    }

    async fn on_iq(&mut self, iq: Iq) {
        let (header, payload) = iq.split();
        let answer = match payload {
            IqPayload::Result(payload) => Ok(payload),
            IqPayload::Error(error) => Err(pubsub::server_error(&error)),
            IqPayload::Get(request) | IqPayload::Set(request) => {
                let response = if request.is("ping", xmpp_parsers::ns::PING) {
                    IqPayload::Result(None)
                } else {
                    debug!(from = ?header.from, ns = %request.ns(), "unsupported IQ request");
                    IqPayload::Error(StanzaError::new(
                        ErrorType::Cancel,
                        DefinedCondition::ServiceUnavailable,
                        "en",
                        format!(
                            "xbus does not serve <{} xmlns='{}'/>",
                            request.name(),
                            request.ns()
                        ),
                    ))
                };
                let reply = Iq::assemble(
                    xmpp_parsers::iq::IqHeader {
                        from: None,
                        to: header.from,
                        id: header.id,
                    },
                    response,
                );
                self.send(reply.into()).await;
                return;
            }
        };
        let Some(pending) = self.pending.remove(&header.id) else {
            debug!(id = header.id, "answer to an unknown or expired IQ dropped");
            return;
        };
        let from_ok = match &header.from {
            Some(from) => from == pending.to(),
            None => false,
        };
        if !from_ok {
            warn!(id = header.id, from = ?header.from, expected = %pending.to(), "IQ answer from the wrong sender ignored");
            self.pending.insert(header.id, pending);
            return;
        }
        match pending {
            PendingIq::Caller { reply, .. } => {
                let _ = reply.send(answer);
            }
            PendingIq::Subscribe { topic, .. } => self.on_subscribed(topic, answer).await,
            PendingIq::Fire { what, .. } => {
                if let Err(error) = answer {
                    debug!(what, %error, "server refused");
                }
            }
        }
    }

    async fn on_subscribed(&mut self, topic: String, answer: IqOutcome) {
        let Some(entry) = self.topics.get_mut(&topic) else {
            // Every local subscription went away meanwhile.
            if answer.is_ok() {
                self.unsubscribe_on_server(&topic).await;
            }
            return;
        };
        match answer {
            Ok(_) => {
                entry.active = true;
                for (id, reply) in entry.waiting.drain(..) {
                    let _ = reply.send(Ok(id));
                }
                if entry.subs.is_empty() {
                    self.topics.remove(&topic);
                    self.unsubscribe_on_server(&topic).await;
                }
            }
            Err(error) => {
                let waiting: Vec<_> = entry.waiting.drain(..).collect();
                if waiting.is_empty() {
                    warn!(topic, %error, "re-subscription after reconnect refused");
                    return;
                }
                let ids: Vec<u64> = waiting.iter().map(|(id, _)| *id).collect();
                entry.subs.retain(|(id, _)| !ids.contains(id));
                if entry.subs.is_empty() {
                    self.topics.remove(&topic);
                }
                for (_, reply) in waiting {
                    let _ = reply.send(Err(SubscribeError::Rejected {
                        topic: topic.clone(),
                        error: error.clone(),
                    }));
                }
            }
        }
    }

    async fn on_message(&mut self, message: Message) {
        let from = message.from.clone();
        if message.type_ == MessageType::Error {
            warn!(from = ?from, "error message received (an event sent by this bus bounced?)");
            return;
        }
        let mut headers = Headers::new();
        for payload in &message.payloads {
            headers.extend_from_element(payload);
        }
        let from_pubsub = from.as_ref().is_some_and(|f| *f == self.pubsub);
        if let Some(event) = message
            .payloads
            .iter()
            .find(|p| p.is("event", NS_PUBSUB_EVENT))
        {
            if !from_pubsub {
                warn!(from = ?from, "pubsub event from an unexpected sender ignored");
                return;
            }
            for item in pubsub::notification_items(event, &headers, self.max_payload) {
                self.deliver_to_topic(item).await;
            }
            return;
        }
        let Some(element) = message.payloads.iter().find_map(find_payload_in) else {
            debug!(from = ?from, "message without an xbus payload ignored");
            return;
        };
        let payload = RawPayload::from_element(element, self.max_payload);
        let topic = match (&payload, element.attr("topic")) {
            (Ok(raw), _) => raw.topic.clone(),
            (Err(_), Some(topic)) if crate::event::validate_topic(topic).is_ok() => {
                topic.to_owned()
            }
            (Err(error), _) => {
                warn!(from = ?from, %error, "direct event without a usable topic dropped");
                return;
            }
        };
        let incoming = Incoming {
            topic,
            item_id: message.id.as_ref().map(|id| id.0.clone()),
            from: from.map(|f| f.to_string()),
            headers,
            payload: payload.map_err(|e: DecodeError| (e, String::from(element))),
        };
        self.deliver_to_inbox(incoming).await;
    }

    async fn deliver_to_topic(&mut self, item: Incoming) {
        let Some(entry) = self.topics.get_mut(&item.topic) else {
            debug!(
                topic = item.topic,
                "notification for a topic without local subscription"
            );
            return;
        };
        deliver(&mut entry.subs, item).await;
    }

    async fn deliver_to_inbox(&mut self, item: Incoming) {
        let Some(list) = self.inboxes.get_mut(&item.topic) else {
            debug!(
                topic = item.topic,
                "direct event for a topic without inbox dropped"
            );
            return;
        };
        deliver(list, item).await;
    }
}

fn find_payload_in(elem: &Element) -> Option<&Element> {
    if elem.is(crate::codec::PAYLOAD, crate::codec::NS) {
        Some(elem)
    } else {
        find_payload(elem)
    }
}

/// Hands `item` to every receiver, waiting for room (back-pressure) and
/// forgetting receivers that are gone.
async fn deliver(receivers: &mut Vec<(u64, mpsc::Sender<Incoming>)>, item: Incoming) {
    let mut gone = Vec::new();
    for (id, tx) in receivers.iter() {
        if tx.send(item.clone()).await.is_err() {
            gone.push(*id);
        }
    }
    receivers.retain(|(id, _)| !gone.contains(id));
}
