//! Entry points for cargo-fuzz (the `fuzz/` crate at the workspace root)
//! and for the seed-corpus regression test at the bottom of this file.
//!
//! **Not public API.** Compiled only with the `fuzzing` feature (and for this
//! crate's own unit tests), hidden from the docs, and free to change at any
//! time.
//!
//! Every entry point takes what a fuzzer produces, runs the code a bus runs
//! on received stanzas, and **panics when a property is violated**: that is
//! how a fuzzer reports a finding. Inputs that are not UTF-8 or not XML are
//! ignored quietly (parsing them is the XML library's job, not xbus's).
//!
//! - [`decode_payload`]: `<payload xmlns='urn:xbus:0'/>` →
//!   [`RawPayload::from_element`] at several size limits →
//!   [`RawPayload::decode`] into [`FuzzOrder`] (MessagePack) and
//!   [`FuzzOrderJson`] (JSON).
//! - [`message_to_deliveries`]: a `<message/>` stanza → pubsub notification
//!   items or a direct xbus payload → `Incoming` → [`RawDelivery`] →
//!   [`Delivery`](crate::Delivery), mirroring `on_message` in
//!   `task/pubsub.rs` with the same crate-internal functions.
//! - [`round_trip`]: a typed event → payload element → XML text → element →
//!   payload → event, alone and inside a notification and a direct message
//!   (for structured fuzzing with `arbitrary`).
//!
//! Properties checked:
//! - nothing panics; every item ends as a value or a typed error;
//! - a payload over the limit is always an error ([`DecodeError::TooLarge`],
//!   decided from the base64 length *before* decoding), never data;
//! - a limit only turns results into `TooLarge`; it changes nothing else;
//! - errors carry XML that parses back to the element they came from
//!   (dead letters can be replayed);
//! - a decoded event, encoded again, decodes to the same event.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::{Element, Node};

use crate::codec::{NS, PAYLOAD, RawPayload, find_payload};
use crate::error::DecodeError;
use crate::event::{Encoding, Event, validate_topic};
use crate::headers::{Headers, NS_SHIM};
use crate::pubsub::{Incoming, NS_PUBSUB_EVENT, Received, find_payload_in, read_message};
use crate::subscription::{RawDelivery, into_raw};

/// The payload limit of the simulated bus: small, so that fuzzers reach it.
pub const MAX_PAYLOAD: usize = 1024;

/// The pubsub service of the simulated bus.
pub const PUBSUB_JID: &str = "pubsub.localhost";

/// Limits every payload is parsed with, besides "none" (`usize::MAX`).
const LIMITS: [usize; 5] = [0, 1, 5, 64, MAX_PAYLOAD];

/// The event type fuzzed inputs are decoded into (MessagePack).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FuzzOrder {
    /// A number.
    pub id: u64,
    /// A string.
    pub sku: String,
    /// Bytes (a sequence of numbers in both encodings).
    pub blob: Vec<u8>,
    /// An optional string.
    pub note: Option<String>,
    /// A nested enum with every kind of variant.
    pub status: FuzzStatus,
}

/// A nested, recursive enum: unit, struct, newtype and sequence variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FuzzStatus {
    /// A unit variant.
    Open,
    /// A struct variant.
    Shipped {
        /// A string.
        carrier: String,
        /// Numbers.
        parcels: Vec<u32>,
    },
    /// A newtype variant.
    Cancelled(i64),
    /// A recursive variant.
    Split(Vec<FuzzStatus>),
}

impl Event for FuzzOrder {
    const TOPIC: &'static str = "orders";
    const ENCODING: Encoding = Encoding::MessagePack;
    const VERSION: u32 = 1;
}

/// [`FuzzOrder`] as JSON, on the same topic and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FuzzOrderJson(pub FuzzOrder);

impl Event for FuzzOrderJson {
    const TOPIC: &'static str = "orders";
    const ENCODING: Encoding = Encoding::Json;
    const VERSION: u32 = 1;
}

/// Parses fuzzer bytes as one XML element; `None` if they are not.
fn parse(data: &[u8]) -> Option<Element> {
    std::str::from_utf8(data).ok()?.parse().ok()
}

/// The base64 text `read_body` looks at: every text node, without ASCII
/// whitespace.
fn base64_len(elem: &Element) -> usize {
    // The payload text is the text before the first child (PROTOCOL.md §2).
    elem.nodes()
        .map_while(|node| match node {
            Node::Text(text) => Some(text.as_str()),
            Node::Element(_) => None,
        })
        .flat_map(str::chars)
        .filter(|c| !c.is_ascii_whitespace())
        .map(char::len_utf8)
        .sum()
}

/// Fuzz entry point: `data` as a `<payload/>` element, parsed with several
/// limits and decoded into [`FuzzOrder`] and [`FuzzOrderJson`].
pub fn decode_payload(data: &[u8]) {
    let Some(elem) = parse(data) else {
        return;
    };
    let _ = check_payload_element(&elem);
}

/// Parses `elem` with and without limits and checks that the results agree.
/// Returns the result under [`MAX_PAYLOAD`].
fn check_payload_element(elem: &Element) -> Result<RawPayload, DecodeError> {
    let unlimited = RawPayload::from_element(elem, usize::MAX);
    match &unlimited {
        Ok(raw) => check_raw_payload(elem, raw),
        Err(error) => {
            assert!(
                !matches!(error, DecodeError::TooLarge { .. }),
                "TooLarge without a limit: {error:?}"
            );
            check_parse_error(error);
        }
    }
    let text_len = base64_len(elem);
    let mut at_max = None;
    for max in LIMITS {
        let limited = RawPayload::from_element(elem, max);
        match &limited {
            Ok(raw) => {
                assert!(
                    raw.data.len() <= max,
                    "{} bytes accepted with a limit of {max}",
                    raw.data.len()
                );
                assert_eq!(Ok(raw), unlimited.as_ref(), "the limit changed the payload");
            }
            Err(DecodeError::TooLarge {
                size,
                max: reported,
            }) => {
                assert_eq!(*reported, max, "TooLarge reports the wrong limit");
                assert!(
                    *size > max,
                    "TooLarge for {size} bytes under a limit of {max}"
                );
                match &unlimited {
                    Ok(raw) => assert!(
                        raw.data.len() > max,
                        "TooLarge at {max} for a payload of {} bytes",
                        raw.data.len()
                    ),
                    // Too long to be worth decoding, and not base64 either.
                    Err(DecodeError::Base64(_)) => {}
                    Err(other) => panic!("TooLarge at {max}, but {other:?} without a limit"),
                }
            }
            Err(error) => assert_eq!(
                Err(error),
                unlimited.as_ref(),
                "the limit changed the error"
            ),
        }
        // The size is refused from the base64 length, before decoding: text
        // whose decoded form cannot fit is never decoded (no Base64 error,
        // no data), whatever it holds.
        if text_len / 4 * 3 > max.saturating_add(2) {
            assert!(
                !matches!(limited, Ok(_) | Err(DecodeError::Base64(_))),
                "{text_len} base64 characters were decoded under a limit of {max}: {limited:?}"
            );
        }
        if max == MAX_PAYLOAD {
            at_max = Some(limited);
        }
    }
    at_max.expect("MAX_PAYLOAD is one of LIMITS")
}

/// A successfully parsed payload: consistent with its element, decodable
/// into typed errors or events that round-trip.
fn check_raw_payload(elem: &Element, raw: &RawPayload) {
    assert!(elem.is(PAYLOAD, NS));
    assert_eq!(elem.attr("topic"), Some(raw.topic.as_str()));
    assert!(validate_topic(&raw.topic).is_ok(), "invalid topic accepted");
    assert_eq!(elem.attr("encoding"), Some(raw.encoding.as_str()));
    // `u32::from_str` also takes "+1" and "007": lenient, but the same number.
    assert_eq!(
        elem.attr("version").map(str::parse::<u32>),
        Some(Ok(raw.version))
    );
    decode_typed::<FuzzOrder>(raw);
    decode_typed::<FuzzOrderJson>(raw);
}

/// Errors that `from_element` (parsing, no type involved) may return.
fn check_parse_error(error: &DecodeError) {
    assert!(
        matches!(
            error,
            DecodeError::MissingPayload
                | DecodeError::BadAttribute { .. }
                | DecodeError::Base64(_)
                | DecodeError::TooLarge { .. }
        ),
        "from_element returned a decode-stage error: {error:?}"
    );
    let _ = error.to_string();
}

/// Decodes into `E`: a typed error, or an event that round-trips.
fn decode_typed<E: Event + PartialEq + Debug>(raw: &RawPayload) {
    match raw.decode::<E>() {
        Ok(event) => {
            assert_eq!(raw.topic, E::TOPIC);
            assert_eq!(raw.encoding, E::ENCODING);
            assert_eq!(raw.version, E::VERSION);
            round_trip(&event, &raw.headers);
        }
        Err(error) => {
            match &error {
                DecodeError::WrongTopic { expected, found } => {
                    assert_eq!(expected, E::TOPIC);
                    assert_eq!(found, &raw.topic);
                    assert_ne!(found, E::TOPIC);
                }
                DecodeError::WrongEncoding { expected, found } => {
                    assert_eq!(*expected, E::ENCODING);
                    assert_eq!(*found, raw.encoding);
                    assert_ne!(*found, E::ENCODING);
                }
                DecodeError::WrongVersion { expected, found } => {
                    assert_eq!(*expected, E::VERSION);
                    assert_eq!(*found, raw.version);
                    assert_ne!(*found, E::VERSION);
                }
                DecodeError::Schema(_) => {}
                other => panic!("decode returned a parse-stage error: {other:?}"),
            }
            let _ = error.to_string();
        }
    }
}

/// Parses `xml` (text that xbus produced) back into an element.
fn reparse(xml: &str) -> Element {
    xml.parse()
        .unwrap_or_else(|e| panic!("xbus produced XML that does not parse ({e}): {xml:?}"))
}

/// Fuzz and regression entry point: a typed event must survive the trip
/// through XML, alone, in a pubsub notification and in a direct message.
///
/// Headers that [`Headers::validate`] refuses are dropped first (publish
/// and send refuse them), as are events whose payload exceeds
/// [`MAX_PAYLOAD`] inside the stanzas (publish and send refuse them too).
pub fn round_trip<E: Event + PartialEq + Debug>(event: &E, headers: &Headers) {
    let mut raw =
        RawPayload::encode(event).unwrap_or_else(|e| panic!("cannot encode {event:?}: {e}"));
    raw.headers = headers
        .iter()
        .filter(|(name, value)| Headers::from_iter([(*name, *value)]).validate().is_ok())
        .collect();
    let xml = String::from(&raw.to_element());
    let elem = reparse(&xml);
    let len = raw.data.len();
    let back = RawPayload::from_element(&elem, len)
        .unwrap_or_else(|e| panic!("own payload refused at its own size ({e:?}): {xml}"));
    assert_eq!(back, raw, "payload changed through XML: {xml}");
    if let Some(less) = len.checked_sub(1) {
        assert!(
            matches!(
                RawPayload::from_element(&elem, less),
                Err(DecodeError::TooLarge { .. })
            ),
            "a payload of {len} bytes passed a limit of {less}"
        );
    }
    let decoded = back
        .decode::<E>()
        .unwrap_or_else(|e| panic!("own payload does not decode ({e}): {xml}"));
    assert_eq!(&decoded, event, "event changed through XML: {xml}");
    if len > MAX_PAYLOAD {
        return;
    }

    // In a pubsub notification, with a server header.
    let item = Element::builder("item", NS_PUBSUB_EVENT)
        .attr(crate::codec::name("id"), "item-1")
        .attr(crate::codec::name("publisher"), "pub@localhost/a")
        .append(raw.to_element())
        .build();
    let server_headers = Headers::from_iter([("server", "pubsub")]);
    let notification = Element::builder("message", "jabber:client")
        .attr(crate::codec::name("from"), PUBSUB_JID)
        .append(
            Element::builder("event", NS_PUBSUB_EVENT)
                .append(
                    Element::builder("items", NS_PUBSUB_EVENT)
                        .attr(crate::codec::name("node"), E::TOPIC)
                        .append(item)
                        .build(),
                )
                .build(),
        )
        .append(server_headers.to_element())
        .build();
    let mut all_headers = raw.headers.clone();
    all_headers.insert("server", "pubsub");
    expect_one_delivery(
        &notification,
        event,
        Some("item-1"),
        Some("pub@localhost/a"),
        &all_headers,
    );

    // Sent directly.
    let direct = Element::builder("message", "jabber:client")
        .attr(crate::codec::name("from"), "svc@localhost/b")
        .attr(crate::codec::name("id"), "m-1")
        .append(raw.to_element())
        .build();
    expect_one_delivery(
        &direct,
        event,
        Some("m-1"),
        Some("svc@localhost/b"),
        &raw.headers,
    );
}

/// Serializes `stanza`, reads it back as the task does and checks that it
/// yields exactly `event`.
fn expect_one_delivery<E: Event + PartialEq + Debug>(
    stanza: &Element,
    event: &E,
    item_id: Option<&str>,
    publisher: Option<&str>,
    headers: &Headers,
) {
    let xml = String::from(stanza);
    let message = Message::try_from(reparse(&xml))
        .unwrap_or_else(|e| panic!("own stanza is not a message ({e}): {xml}"));
    let mut incoming = incoming(&message, false);
    assert_eq!(
        incoming.len(),
        1,
        "one event, {} items: {xml}",
        incoming.len()
    );
    let raw = into_raw(incoming.remove(0))
        .unwrap_or_else(|e| panic!("own stanza is not a delivery ({e}): {xml}"));
    let delivery = raw
        .decode::<E>()
        .unwrap_or_else(|e| panic!("own stanza does not decode ({e}): {xml}"));
    assert_eq!(&delivery.event, event, "event changed in a stanza: {xml}");
    assert_eq!(delivery.topic, E::TOPIC);
    assert_eq!(delivery.item_id.as_deref(), item_id);
    assert_eq!(delivery.publisher.as_deref(), publisher);
    assert_eq!(
        &delivery.headers, headers,
        "headers changed in a stanza: {xml}"
    );
}

/// What the connection task hands to subscriptions and inboxes for
/// `message` ([`read_message`], the function `on_message` in task/pubsub.rs
/// calls), with [`PUBSUB_JID`] as the pubsub service and [`MAX_PAYLOAD`]
/// as the limit. With `check`, also checks the properties of every payload
/// and item on the way (without: for [`round_trip`], which is called by
/// those checks).
fn incoming(message: &Message, check: bool) -> Vec<Incoming> {
    let pubsub = Jid::new(PUBSUB_JID).expect("valid JID");
    match read_message(message, &pubsub, MAX_PAYLOAD) {
        Received::Notification(items) => {
            if check {
                let event = message
                    .payloads
                    .iter()
                    .find(|p| p.is("event", NS_PUBSUB_EVENT))
                    .expect("a notification has an event");
                let mut headers = Headers::new();
                for payload in &message.payloads {
                    headers.extend_from_element(payload);
                }
                check_notification(event, &headers, &items);
            }
            items
        }
        Received::Direct(item) => {
            if check {
                let element = message
                    .payloads
                    .iter()
                    .find_map(find_payload_in)
                    .expect("a direct event has a payload");
                let checked = check_payload_element(element);
                assert_eq!(
                    checked.map_err(|e| e.to_string()),
                    item.payload.clone().map_err(|(e, _)| e.to_string()),
                    "the task reads the payload as the checks do"
                );
            }
            vec![item]
        }
        Received::Ignored { .. } => Vec::new(),
    }
}

/// The items of a notification: one per `<item/>` of every `<items node/>`,
/// in order, each parsed like a payload on its own.
fn check_notification(event: &Element, headers: &Headers, items: &[Incoming]) {
    let expected: Vec<(&str, &Element)> = event
        .children()
        .filter(|c| c.is("items", NS_PUBSUB_EVENT))
        .filter_map(|items| Some((items.attr("node")?, items)))
        .flat_map(|(node, items)| {
            items
                .children()
                .filter(|c| c.is("item", NS_PUBSUB_EVENT))
                .map(move |item| (node, item))
        })
        .collect();
    assert_eq!(expected.len(), items.len(), "items lost or invented");
    for ((node, item), incoming) in expected.into_iter().zip(items) {
        assert_eq!(incoming.topic, node);
        assert_eq!(incoming.item_id.as_deref(), item.attr("id"));
        assert_eq!(incoming.from.as_deref(), item.attr("publisher"));
        assert_eq!(&incoming.headers, headers);
        match (find_payload(item), &incoming.payload) {
            (Some(elem), payload) => {
                // A payload naming another topic than its node is an error.
                let direct = check_payload_element(elem).and_then(|raw| match raw.topic == node {
                    true => Ok(raw),
                    false => Err(DecodeError::TopicNotNode {
                        node: node.to_owned(),
                        topic: raw.topic,
                    }),
                });
                assert_eq!(
                    direct.as_ref(),
                    payload.as_ref().map_err(|(e, _)| e),
                    "an item parsed differently from its payload"
                );
            }
            (None, Err((DecodeError::MissingPayload, _))) => {}
            (None, other) => panic!("item without payload gave {other:?}"),
        }
    }
}

/// Fuzz entry point: `data` as a `<message/>` stanza, through what the
/// connection task does with it, to typed deliveries.
pub fn message_to_deliveries(data: &[u8]) {
    let Some(elem) = parse(data) else {
        return;
    };
    let Ok(message) = Message::try_from(elem) else {
        return;
    };
    let mut stanza_headers = Headers::new();
    for payload in &message.payloads {
        stanza_headers.extend_from_element(payload);
    }
    for item in incoming(&message, true) {
        check_incoming(item);
    }
    // Headers are read from every SHIM child and nothing else.
    let shim: usize = message
        .payloads
        .iter()
        .filter(|p| p.is("headers", NS_SHIM))
        .map(|p| {
            p.children()
                .filter(|h| h.is("header", NS_SHIM) && h.attr("name").is_some())
                .count()
        })
        .sum();
    assert_eq!(stanza_headers.len(), shim);
}

/// One item: a delivery that decodes into a typed event or a typed error,
/// and an error whose XML is the element it came from.
fn check_incoming(item: Incoming) {
    if let Err((error, raw_xml)) = &item.payload {
        check_parse_error(error);
        let back = reparse(raw_xml);
        // The dead letter is the element (payload or item) as received.
        let again = RawPayload::from_element(
            if back.is(PAYLOAD, NS) {
                &back
            } else {
                find_payload(&back).unwrap_or(&back)
            },
            MAX_PAYLOAD,
        );
        if !matches!(error, DecodeError::MissingPayload) {
            assert_eq!(
                again.as_ref(),
                Err(error),
                "the dead letter parses differently: {raw_xml}"
            );
        }
    }
    let topic = item.topic.clone();
    let item_id = item.item_id.clone();
    let server_headers = item.headers.clone();
    let raw = match into_raw(item) {
        Ok(raw) => raw,
        Err(error) => {
            assert_eq!(error.topic(), topic);
            assert_eq!(error.item_id(), item_id.as_deref());
            let _ = error.to_string();
            return;
        }
    };
    assert!(raw.payload.data.len() <= MAX_PAYLOAD);
    assert!(validate_topic(&raw.payload.topic).is_ok());
    deliver::<FuzzOrder>(raw.clone(), &server_headers);
    deliver::<FuzzOrderJson>(raw, &server_headers);
}

fn deliver<E: Event + PartialEq + Debug>(raw: RawDelivery, server_headers: &Headers) {
    let payload = raw.payload.clone();
    let item_id = raw.item_id.clone();
    match raw.decode::<E>() {
        Ok(delivery) => {
            assert_eq!(delivery.topic, E::TOPIC);
            assert_eq!(delivery.item_id, item_id);
            let mut headers = payload.headers.clone();
            for (name, value) in server_headers.iter() {
                headers.insert(name, value);
            }
            assert_eq!(delivery.headers, headers);
        }
        Err(error) => {
            assert!(
                matches!(
                    error.reason(),
                    DecodeError::WrongTopic { .. }
                        | DecodeError::WrongEncoding { .. }
                        | DecodeError::WrongVersion { .. }
                        | DecodeError::Schema(_)
                ),
                "RawDelivery::decode gave a parse-stage error: {error:?}"
            );
            assert_eq!(error.topic(), payload.topic);
            // The dead letter of a parsed payload gives the same payload back.
            let back = RawPayload::from_element(&reparse(error.raw_xml()), MAX_PAYLOAD);
            assert_eq!(
                back.as_ref(),
                Ok(&payload),
                "the dead letter parses differently: {}",
                error.raw_xml()
            );
            let _ = error.to_string();
        }
    }
}

#[cfg(test)]
mod tests;
