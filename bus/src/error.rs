//! Error types, one per concern. Each tells the caller what went wrong and
//! keeps the underlying cause as its `source()`.

use std::fmt;
use std::time::Duration;

use crate::access::{AccessNotApplied, subscribe_fix};
use crate::event::{Encoding, TopicError};

mod connect;

pub use connect::{ConfigError, ConnectError};

/// An RFC 6120 stanza error returned by the server or a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The defined condition, e.g. `forbidden`, `item-not-found`.
    pub condition: String,
    /// The error type: `cancel`, `modify`, `auth`, `wait` or `continue`.
    pub kind: String,
    /// An application-specific condition, e.g. pubsub's `payload-too-big`.
    pub specific: Option<String>,
    /// The server's human-readable text, if any.
    pub text: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.condition)?;
        if let Some(specific) = &self.specific {
            write!(f, "/{specific}")?;
        }
        write!(f, " ({})", self.kind)?;
        if let Some(text) = &self.text {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

/// The hint for a pubsub address that no service answers at.
const NO_PUBSUB_SERVICE: &str = "; no pubsub service answers at that address: Prosody needs a \
     `Component \"pubsub.DOMAIN\" \"pubsub\"` section, ejabberd `mod_pubsub`; or name the \
     service with BusConfig's `pubsub_service` or XBUS_PUBSUB (docs/DEPLOYMENT.md, \
     \"Installing the config\")";

impl ServerError {
    /// For a pubsub refusal that a new deployment meets: what to change,
    /// and where docs/DEPLOYMENT.md says more; empty otherwise.
    pub(crate) fn pubsub_hint(&self) -> &'static str {
        if self.specific.as_deref() == Some("payload-too-big") {
            return "; raise the server's limit: ejabberd's `max_payload_size` in mod_pubsub's \
                    `default_node_config`, Prosody's `c2s_stanza_size_limit` \
                    (docs/DEPLOYMENT.md, \"Throttles\")";
        }
        // What each server answers for a pubsub address nobody serves:
        // the embedded server `remote-server-not-found`, Prosody
        // `not-allowed` ("Communication with remote domains is not
        // enabled"), ejabberd `forbidden` ("Access denied by service
        // policy": its s2s is off).
        let elsewhere = self
            .text
            .as_deref()
            .is_some_and(|t| t.contains("service policy") || t.contains("remote domains"));
        match self.condition.as_str() {
            "forbidden" | "not-allowed" if elsewhere => NO_PUBSUB_SERVICE,
            "service-unavailable" | "remote-server-not-found" | "recipient-unavailable" => {
                NO_PUBSUB_SERVICE
            }
            "forbidden" => {
                "; this account may not create or publish to the topic: on Prosody 0.12 only \
                 admins of the pubsub component may create topics (list the account in the \
                 component's `admins`, or set the topic up once with `xbus topic create \
                 --publisher`); on ejabberd a topic another account created takes only its \
                 own publishers (set `publish_model: open` in mod_pubsub's \
                 `default_node_config`, or `xbus topic create --publisher`) \
                 (docs/DEPLOYMENT.md, \"Who may create topics\")"
            }
            "item-not-found" => {
                "; the topic does not exist and the server did not create it: on Prosody set \
                 `autocreate_on_publish = true` in the pubsub component (docs/DEPLOYMENT.md, \
                 \"Who may create topics\")"
            }
            _ => "",
        }
    }
}

/// An event could not be serialized.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode as {encoding}: {reason}")]
pub struct EncodeError {
    /// The encoding that was asked for.
    pub encoding: Encoding,
    /// The serializer's message.
    pub reason: String,
}

/// [`Bus::publish`](crate::Bus::publish) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event could not be serialized; nothing was sent.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A header cannot be carried in XML; nothing was sent.
    #[error(transparent)]
    InvalidHeader(#[from] crate::headers::InvalidHeader),
    /// The topic is not a valid node name; nothing was sent.
    #[error(transparent)]
    InvalidTopic(#[from] TopicError),
    /// The encoded payload is larger than the configured maximum; nothing
    /// was sent.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The pubsub service refused the item (forbidden, payload-too-big, ...).
    #[error("the server refused to publish to {topic:?}: {error}{}", error.pubsub_hint())]
    Rejected {
        /// The topic.
        topic: String,
        /// The server's error.
        #[source]
        error: ServerError,
    },
    /// The topic's access excludes this account: the topic publishes only
    /// its owner's and its publishers' events (`pubsub#publish_model`
    /// `publishers`), or the server lets this account create no topics.
    #[error(
        "this account may not publish to {topic:?} ({error}): ask the topic's owner to add it \
         to the publishers (`bus.topic_access(topic).allow_publisher(jid)`, docs/DEPLOYMENT.md, \
         \"Topic access\"){}",
        error.pubsub_hint()
    )]
    Forbidden {
        /// The topic.
        topic: String,
        /// The server's error (`forbidden` on every server).
        #[source]
        error: ServerError,
    },
    /// The server would not create the topic with its access restrictions;
    /// nothing was sent.
    #[error(transparent)]
    AccessNotApplied(#[from] AccessNotApplied),
    /// The outbox stayed full (too many unconfirmed publishes, e.g. while
    /// the connection is down) until the publish timeout. Nothing was sent.
    #[error(
        "the outbox stayed full for {after:?} (too many unconfirmed publishes); nothing was sent to {topic:?}"
    )]
    OutboxFull {
        /// The topic.
        topic: String,
        /// The publish timeout.
        after: Duration,
    },
    /// No confirmation arrived before the publish timeout. The outcome is
    /// unknown: the server may or may not have stored the item.
    #[error(
        "no confirmation for the publish to {topic:?} within {after:?}; the outcome is unknown"
    )]
    TimedOut {
        /// The topic.
        topic: String,
        /// The publish timeout.
        after: Duration,
    },
    /// The bus was closed before the publish was confirmed. The outcome is
    /// unknown if the item had already been sent.
    #[error("the bus is closed")]
    Closed,
}

/// [`Bus::create_topic`](crate::Bus::create_topic) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicSetupError {
    /// The topic is not a valid node name.
    #[error(transparent)]
    InvalidTopic(#[from] TopicError),
    /// A publisher is not a bare JID.
    #[error("invalid publisher {jid:?}: give an account's bare JID, e.g. orders@example.org")]
    InvalidPublisher {
        /// What was given.
        jid: String,
    },
    /// The pubsub service refused to create the topic, or to make the
    /// accounts its publishers.
    #[error("the server refused to {step} {topic:?}: {error}{}", error.pubsub_hint())]
    Rejected {
        /// The topic.
        topic: String,
        /// `create` or `set the publishers of`.
        step: &'static str,
        /// The server's error.
        #[source]
        error: ServerError,
    },
    /// The server did not answer in time.
    #[error("no answer about topic {topic:?} within {after:?}")]
    TimedOut {
        /// The topic.
        topic: String,
        /// How long the bus waited.
        after: Duration,
    },
    /// The bus is closed.
    #[error("the bus is closed")]
    Closed,
}

/// [`Bus::subscribe`](crate::Bus::subscribe) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The topic is not a valid node name.
    #[error(transparent)]
    InvalidTopic(#[from] TopicError),
    /// The pubsub service refused the subscription.
    #[error("the server refused the subscription to {topic:?}: {error}{}", error.pubsub_hint())]
    Rejected {
        /// The topic.
        topic: String,
        /// The server's error.
        #[source]
        error: ServerError,
    },
    /// The topic's access excludes this account (`pubsub#access_model`:
    /// not on the whitelist, no presence subscription to the owner, ...).
    #[error(
        "this account may not subscribe to {topic:?} or read its events ({error}): {} \
         (docs/DEPLOYMENT.md, \"Topic access\")",
        subscribe_fix(error)
    )]
    Forbidden {
        /// The topic.
        topic: String,
        /// The server's error (`forbidden`, or ejabberd's `not-allowed` +
        /// `closed-node`).
        #[source]
        error: ServerError,
    },
    /// The server would not create the topic with its access restrictions;
    /// nothing was sent.
    #[error(transparent)]
    AccessNotApplied(#[from] AccessNotApplied),
    /// The topic's access model is `authorize` and its owner has not
    /// approved this account's subscription yet (ejabberd sends the owner
    /// an approval form). Subscribe again once it is approved.
    #[error(
        "the subscription to {topic:?} awaits the approval of the topic's owner (access model \
         `authorize`); subscribe again once it is approved (docs/DEPLOYMENT.md, \"Topic access\")"
    )]
    AwaitingApproval {
        /// The topic.
        topic: String,
    },
    /// The server did not answer in time.
    #[error("no answer to the subscription to {topic:?} within {after:?}")]
    TimedOut {
        /// The topic.
        topic: String,
        /// How long the bus waited.
        after: Duration,
    },
    /// The bus is closed.
    #[error("the bus is closed")]
    Closed,
    /// A replay was asked of a transient topic, whose events the server
    /// does not keep.
    #[error(
        "topic {topic:?} is transient (`#[event(transient)]`): the server keeps none of its \
         events, so there is nothing to replay; subscribe without `Replay`, or make the \
         event type persistent"
    )]
    TransientTopic {
        /// The topic.
        topic: String,
    },
}

/// [`Bus::consume`](crate::Bus::consume) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The topic (or the dead-letter topic) is not a valid node name.
    #[error(transparent)]
    Topic(TopicError),
    /// The group name is not valid.
    #[error("invalid group name {0:?}: use 1 to 64 ASCII letters, digits, '_' or '-'")]
    InvalidGroup(String),
    /// This bus already consumes the group.
    #[error(
        "this bus already consumes group {group:?} on {topic:?}; one consumer per group and bus"
    )]
    AlreadyConsuming {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
    },
    /// The bus is closed.
    #[error("the bus is closed")]
    Closed,
    /// The server would not create the restricted topic with its access
    /// restrictions; the group did not start.
    #[error(transparent)]
    AccessNotApplied(#[from] AccessNotApplied),
    /// The restricted topic could not be created in time (the group
    /// creates it, restricted, before it starts, so that it is not created
    /// open).
    #[error("no answer to the creation of the restricted topic {topic:?} within {after:?}")]
    TimedOut {
        /// The topic.
        topic: String,
        /// How long the bus waited (the publish timeout).
        after: Duration,
    },
    /// A consumer group was asked of a transient topic: a group hands out
    /// events the server stores, and this topic's are not stored.
    #[error(
        "topic {topic:?} is transient (`#[event(transient)]`): a consumer group needs the \
         server to keep the topic's events until they are handled; use `subscribe`, or make \
         the event type persistent"
    )]
    TransientTopic {
        /// The topic.
        topic: String,
    },
}

/// [`Bus::send`](crate::Bus::send) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The event could not be serialized; nothing was sent.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A header cannot be carried in XML; nothing was sent.
    #[error(transparent)]
    InvalidHeader(#[from] crate::headers::InvalidHeader),
    /// The recipient is not a valid JID.
    #[error("invalid recipient {jid:?}: {reason}")]
    InvalidRecipient {
        /// The rejected address.
        jid: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The encoded payload is larger than the configured maximum.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// [`send_to_any`](crate::Bus::send_to_any) found no online instance
    /// that takes work.
    #[error("no instance of {service} to send to: {reason}")]
    NoInstance {
        /// The service.
        service: String,
        /// Why none was found.
        reason: String,
    },
    /// The connection failed before the server acknowledged the message.
    #[error("the connection failed before the message was acknowledged: {0}")]
    NotAcknowledged(String),
    /// The bus is closed.
    #[error("the bus is closed")]
    Closed,
}

/// [`Bus::close`](crate::Bus::close) could not confirm everything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// Some publishes were still unconfirmed when the close timeout ran out.
    #[error("{pending} publishes were still unconfirmed after {after:?}")]
    Unconfirmed {
        /// How many.
        pending: usize,
        /// The close timeout.
        after: Duration,
    },
    /// Handlers were still running when the close timeout ran out: their
    /// callers get no answer and time out. Raise
    /// [`close_timeout`](crate::BusConfigBuilder::close_timeout) above the
    /// longest call, or set the status to `draining` earlier.
    #[error("{running} handlers were still running after {after:?}; their callers get no answer")]
    HandlersAbandoned {
        /// How many.
        running: usize,
        /// The close timeout.
        after: Duration,
    },
    /// The bus was already closed.
    #[error("the bus is already closed")]
    AlreadyClosed,
}

/// Why a received payload could not be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The stanza holds no xbus payload element.
    #[error("no <payload xmlns='{}'/> element", crate::codec::NS)]
    MissingPayload,
    /// A required attribute is missing or malformed.
    #[error("attribute {name:?}: {reason}")]
    BadAttribute {
        /// The attribute.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The text is not valid base64.
    #[error("payload is not valid base64: {0}")]
    Base64(String),
    /// The payload is larger than the configured maximum.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Size in bytes (decoded, or estimated from the base64 length).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The payload was encoded differently from what the event type declares.
    #[error("payload is {found}, the event type expects {expected}")]
    WrongEncoding {
        /// What the event type declares.
        expected: Encoding,
        /// What the payload says.
        found: Encoding,
    },
    /// The payload's schema version is not the event type's.
    #[error("payload has schema version {found}, the event type has version {expected}")]
    WrongVersion {
        /// The event type's version.
        expected: u32,
        /// The payload's version.
        found: u32,
    },
    /// The payload belongs to another topic.
    #[error("payload is for topic {found:?}, expected {expected:?}")]
    WrongTopic {
        /// The topic that was expected.
        expected: String,
        /// The topic in the payload.
        found: String,
    },
    /// The bytes do not deserialize into the event type.
    #[error("payload does not match the event type: {0}")]
    Schema(String),
    /// A pubsub item whose payload names another topic than the node it
    /// was published on (docs/PROTOCOL.md §2): not delivered as an event.
    #[error("payload says topic {topic:?} but was published on node {node:?}")]
    TopicNotNode {
        /// The pubsub node the item came from.
        node: String,
        /// The `topic` attribute of its payload.
        topic: String,
    },
}

/// A delivery that could not be decoded. The subscription stays open: the
/// next event is delivered as usual.
#[derive(Debug, Clone, thiserror::Error)]
#[error("undecodable delivery on {:?} (item {:?}): {}", .0.topic, .0.item_id, .0.reason)]
pub struct DeliveryError(Box<DeliveryErrorInner>);

#[derive(Debug, Clone)]
struct DeliveryErrorInner {
    reason: DecodeError,
    topic: String,
    item_id: Option<String>,
    from: Option<String>,
    raw_xml: String,
}

impl DeliveryError {
    pub(crate) fn new(
        reason: DecodeError,
        topic: String,
        item_id: Option<String>,
        from: Option<String>,
        raw_xml: String,
    ) -> DeliveryError {
        DeliveryError(Box::new(DeliveryErrorInner {
            reason,
            topic,
            item_id,
            from,
            raw_xml,
        }))
    }

    /// Why decoding failed.
    pub fn reason(&self) -> &DecodeError {
        &self.0.reason
    }

    /// The topic it arrived on.
    pub fn topic(&self) -> &str {
        &self.0.topic
    }

    /// The pubsub item id or message id, when there is one.
    pub fn item_id(&self) -> Option<&str> {
        self.0.item_id.as_deref()
    }

    /// The publisher or sender as stamped by the server, when known.
    pub fn from(&self) -> Option<&str> {
        self.0.from.as_deref()
    }

    /// The XML of the offending payload (or item), for logs and dead letters.
    pub fn raw_xml(&self) -> &str {
        &self.0.raw_xml
    }
}
