//! Topics and inboxes: server subscriptions shared by local subscriptions,
//! and the fan-out of notifications and direct events.

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;

use super::{PendingIq, Task};
use crate::codec::{RawPayload, find_payload};
use crate::command::IqOutcome;
use crate::error::{DecodeError, SubscribeError};
use crate::headers::Headers;
use crate::pubsub::{self, Incoming, NS_PUBSUB_EVENT};

/// The local side of one topic.
#[derive(Default)]
pub(super) struct Topic {
    /// The server confirmed the subscription.
    active: bool,
    /// Local subscriptions: id and sender.
    subs: Vec<(u64, mpsc::Sender<Incoming>)>,
    /// Subscribers waiting for the server's answer.
    waiting: Vec<(u64, oneshot::Sender<Result<u64, SubscribeError>>)>,
}

impl Task {
    pub(super) async fn add_subscription(
        &mut self,
        topic: String,
        tx: mpsc::Sender<Incoming>,
        reply: oneshot::Sender<Result<u64, SubscribeError>>,
    ) {
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

    /// After a session reset: the server forgot our subscriptions.
    pub(super) async fn resubscribe_all(&mut self) {
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        for topic in topics {
            self.subscribe_on_server(topic).await;
        }
    }

    pub(super) async fn remove_subscription(&mut self, topic: String, id: u64) {
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

    pub(super) async fn on_subscribed(&mut self, topic: String, answer: IqOutcome) {
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

    pub(super) async fn on_message(&mut self, message: Message) {
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
pub(super) async fn deliver<T: Clone>(receivers: &mut Vec<(u64, mpsc::Sender<T>)>, item: T) {
    let mut gone = Vec::new();
    for (id, tx) in receivers.iter() {
        if tx.send(item.clone()).await.is_err() {
            gone.push(*id);
        }
    }
    receivers.retain(|(id, _)| !gone.contains(id));
}
