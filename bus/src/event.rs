//! The [`Event`] trait, payload [`Encoding`]s and topic names.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::access::EventAccess;
use serde::de::DeserializeOwned;

/// A typed event that can be published to a topic or sent to one service.
///
/// Implement it with `#[derive(Event)]`; see the [crate docs](crate) for the
/// attribute keys. The three constants are what goes on the wire:
/// [`TOPIC`](Event::TOPIC) names the pubsub node, [`ENCODING`](Event::ENCODING)
/// picks MessagePack or JSON and [`VERSION`](Event::VERSION) is the schema
/// version that subscribers check before decoding.
pub trait Event: Serialize + DeserializeOwned + Send + 'static {
    /// The topic (pubsub node name). Always a valid [topic](validate_topic).
    const TOPIC: &'static str;
    /// How the payload is serialized.
    const ENCODING: Encoding;
    /// Schema version of this event type; a delivery with another version
    /// is reported as a [`DeliveryError`](crate::DeliveryError).
    const VERSION: u32;
    /// Whether the server keeps the topic's events:
    /// [`Persistent`](Persistence::Persistent) unless the type says
    /// `#[event(transient)]`.
    const PERSISTENCE: Persistence = Persistence::Persistent;
    /// Who may publish to and subscribe to the topic: open unless the type
    /// says `#[event(publish_model = "publishers")]` or
    /// `#[event(access_model = "whitelist")]` (or `presence`, `authorize`).
    /// Set on the topic's node when this bus creates it (docs/DEPLOYMENT.md,
    /// "Topic access").
    const ACCESS: EventAccess = EventAccess::OPEN;
}

/// Whether the server stores a topic's events (`pubsub#persist_items`).
///
/// A **transient** topic (`#[event(transient)]`) is for events that lose
/// their worth within seconds: telemetry, cache invalidation, state that
/// the next event replaces. The server stores none of them, so a publish
/// costs no storage write. Live sessions still get every event, and XEP-0198
/// resumption still redelivers what a session missed while its connection
/// was down; what goes is replay ([`Replay`](crate::Replay) is refused with
/// [`SubscribeError::TransientTopic`](crate::SubscribeError::TransientTopic))
/// and the gap fill after a session reset. docs/RELIABILITY.md has the
/// whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Persistence {
    /// The server keeps the last `max_items` events (the default).
    #[default]
    Persistent,
    /// The server keeps none.
    Transient,
}

/// How an event's fields are serialized before base64 encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Encoding {
    /// MessagePack with named fields (rmp-serde); compact, the default.
    #[default]
    MessagePack,
    /// UTF-8 JSON (serde_json); readable by any client.
    Json,
}

impl Encoding {
    /// The value of the `encoding` attribute on the wire: `msgpack` or `json`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encoding::MessagePack => "msgpack",
            Encoding::Json => "json",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `encoding` attribute named an encoding this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown encoding {0:?} (expected \"msgpack\" or \"json\")")]
pub struct UnknownEncoding(pub String);

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "msgpack" => Ok(Encoding::MessagePack),
            "json" => Ok(Encoding::Json),
            other => Err(UnknownEncoding(other.to_owned())),
        }
    }
}

/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// Why a string is not a valid topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is empty.
    #[error("topic is empty")]
    Empty,
    /// The topic is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic is {0} bytes long, at most {MAX_TOPIC_LEN} are allowed")]
    TooLong(usize),
    /// The topic holds a character outside `[A-Za-z0-9._-]`.
    #[error(
        "topic {topic:?} contains {ch:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
    )]
    InvalidChar {
        /// The rejected topic.
        topic: String,
        /// The first offending character.
        ch: char,
    },
    /// The topic starts or ends with '.', or has two dots in a row.
    #[error("topic {0:?} has an empty segment (leading, trailing or doubled '.')")]
    EmptySegment(String),
}

/// Checks that `topic` is a valid topic and so a valid pubsub node name.
///
/// A topic is 1 to 255 bytes of ASCII letters, digits, `.`, `_` and `-`,
/// with no empty dot-separated segment: `orders.created`, `billing_v2`.
/// The derive macro applies the same rule at compile time.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(topic.len()));
    }
    if let Some(ch) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicError::InvalidChar {
            topic: topic.to_owned(),
            ch,
        });
    }
    if topic.split('.').any(str::is_empty) {
        return Err(TopicError::EmptySegment(topic.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert_eq!(validate_topic("orders.created"), Ok(()));
        assert_eq!(validate_topic("a-b_c.D9"), Ok(()));
        assert_eq!(validate_topic(""), Err(TopicError::Empty));
        assert!(matches!(
            validate_topic("a b"),
            Err(TopicError::InvalidChar { ch: ' ', .. })
        ));
        assert!(matches!(
            validate_topic("a..b"),
            Err(TopicError::EmptySegment(_))
        ));
        assert!(matches!(
            validate_topic(".a"),
            Err(TopicError::EmptySegment(_))
        ));
        assert!(matches!(
            validate_topic(&"a".repeat(256)),
            Err(TopicError::TooLong(256))
        ));
    }

    #[test]
    fn encodings_round_trip() {
        for e in [Encoding::MessagePack, Encoding::Json] {
            assert_eq!(e.as_str().parse::<Encoding>(), Ok(e));
        }
        assert!("xml".parse::<Encoding>().is_err());
    }
}
