//! The payload element: how an event travels inside a stanza.
//!
//! ```xml
//! <payload xmlns='urn:xbus:0' topic='orders.created' encoding='msgpack' version='1'>
//!   BASE64<headers xmlns='http://jabber.org/protocol/shim'><header name='k'>v</header></headers>
//! </payload>
//! ```
//! The text before any child element is the base64 of the serialized event;
//! optional XEP-0131 headers follow it. See `docs/PROTOCOL.md`.

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use xmpp_parsers::minidom::rxml::NcName;
use xmpp_parsers::minidom::{Element, Node};

use crate::error::{DecodeError, EncodeError};
use crate::event::{Encoding, Event};
use crate::headers::Headers;

/// Namespace of the xbus payload element.
pub const NS: &str = "urn:xbus:0";
/// Name of the xbus payload element.
pub const PAYLOAD: &str = "payload";

/// Standard base64 (RFC 4648 §4, not URL-safe): written with padding,
/// read with or without it (docs/PROTOCOL.md §2).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An event as bytes, with what is needed to decode it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPayload {
    /// The topic the event belongs to.
    pub topic: String,
    /// How `data` is serialized.
    pub encoding: Encoding,
    /// The schema version of `data`.
    pub version: u32,
    /// The serialized event.
    pub data: Vec<u8>,
    /// XEP-0131 headers carried with the event.
    pub headers: Headers,
}

impl RawPayload {
    /// Serializes `event` with its type's encoding.
    pub fn encode<E: Event>(event: &E) -> Result<RawPayload, EncodeError> {
        Ok(RawPayload {
            topic: E::TOPIC.to_owned(),
            encoding: E::ENCODING,
            version: E::VERSION,
            data: serialize(event, E::ENCODING)?,
            headers: Headers::new(),
        })
    }

    /// Deserializes into `E`, checking encoding, version and topic first.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if self.topic != E::TOPIC {
            return Err(DecodeError::WrongTopic {
                expected: E::TOPIC.to_owned(),
                found: self.topic.clone(),
            });
        }
        if self.encoding != E::ENCODING {
            return Err(DecodeError::WrongEncoding {
                expected: E::ENCODING,
                found: self.encoding,
            });
        }
        if self.version != E::VERSION {
            return Err(DecodeError::WrongVersion {
                expected: E::VERSION,
                found: self.version,
            });
        }
        deserialize(&self.data, self.encoding)
    }

    /// Itself if its `topic` is `node`, the pubsub node it was published
    /// on; else it is no event of that node (docs/PROTOCOL.md §2).
    pub(crate) fn published_on(self, node: &str) -> Result<RawPayload, DecodeError> {
        if self.topic == node {
            return Ok(self);
        }
        Err(DecodeError::TopicNotNode {
            node: node.to_owned(),
            topic: self.topic,
        })
    }

    /// Builds the `<payload/>` element.
    pub fn to_element(&self) -> Element {
        body_element(
            PAYLOAD,
            &[("topic", self.topic.clone())],
            self.encoding,
            self.version,
            &self.data,
            &self.headers,
        )
    }

    /// Parses a `<payload/>` element, refusing payloads over `max_payload`
    /// bytes before decoding them.
    pub fn from_element(elem: &Element, max_payload: usize) -> Result<RawPayload, DecodeError> {
        if !elem.is(PAYLOAD, NS) {
            return Err(DecodeError::MissingPayload);
        }
        let topic = attr(elem, "topic")?.to_owned();
        crate::event::validate_topic(&topic).map_err(|e| DecodeError::BadAttribute {
            name: "topic",
            reason: e.to_string(),
        })?;
        let (encoding, version) = read_format(elem)?;
        let (data, headers) = read_body(elem, max_payload)?;
        Ok(RawPayload {
            topic,
            encoding,
            version,
            data,
            headers,
        })
    }
}

/// Builds `<name xmlns='urn:xbus:0' attrs... encoding=.. version=..>BASE64</name>`
/// with the headers, if any, after the text.
pub(crate) fn body_element(
    element: &'static str,
    attrs: &[(&'static str, String)],
    encoding: Encoding,
    version: u32,
    data: &[u8],
    headers: &Headers,
) -> Element {
    let mut builder = Element::builder(element, NS);
    for (key, value) in attrs {
        builder = builder.attr(name(key), value.as_str());
    }
    builder = builder
        .attr(name("encoding"), encoding.as_str())
        .attr(name("version"), version.to_string())
        .append(BASE64.encode(data));
    if !headers.is_empty() {
        builder = builder.append(headers.to_element());
    }
    builder.build()
}

/// Reads the `encoding` and `version` attributes.
pub(crate) fn read_format(elem: &Element) -> Result<(Encoding, u32), DecodeError> {
    let encoding =
        attr(elem, "encoding")?
            .parse::<Encoding>()
            .map_err(|e| DecodeError::BadAttribute {
                name: "encoding",
                reason: e.to_string(),
            })?;
    let version = attr(elem, "version")?
        .parse::<u32>()
        .map_err(|e| DecodeError::BadAttribute {
            name: "version",
            reason: e.to_string(),
        })?;
    Ok((encoding, version))
}

/// Reads the base64 text (refusing more than `max_payload` bytes before
/// decoding it) and the headers of a body element.
pub(crate) fn read_body(
    elem: &Element,
    max_payload: usize,
) -> Result<(Vec<u8>, Headers), DecodeError> {
    let text = body_text(elem);
    let estimated = text.len() / 4 * 3;
    if estimated > max_payload.saturating_add(2) {
        return Err(DecodeError::TooLarge {
            size: estimated,
            max: max_payload,
        });
    }
    let data = BASE64
        .decode(&text)
        .map_err(|e| DecodeError::Base64(e.to_string()))?;
    if data.len() > max_payload {
        return Err(DecodeError::TooLarge {
            size: data.len(),
            max: max_payload,
        });
    }
    Ok((data, Headers::from_parent(elem)))
}

/// The base64 text of a body element without whitespace. It is the text
/// before the first child element (PROTOCOL.md §2); text after
/// `<headers/>` is not part of it.
fn body_text(elem: &Element) -> Cow<'_, [u8]> {
    let mut texts = elem.nodes().map_while(Node::as_text);
    let first = texts.next().unwrap_or_default();
    let second = texts.next();
    // The common case, one unwrapped text node, is borrowed as it is: this
    // runs for every event received, and copying it cost more than the
    // base64 decoding.
    if second.is_none() && !first.bytes().any(|b| b.is_ascii_whitespace()) {
        return Cow::Borrowed(first.as_bytes());
    }
    // Dropping ASCII bytes from UTF-8 leaves the other characters whole.
    let mut text = Vec::with_capacity(first.len());
    for part in [first].into_iter().chain(second).chain(texts) {
        text.extend(part.bytes().filter(|b| !b.is_ascii_whitespace()));
    }
    Cow::Owned(text)
}

/// Finds the xbus payload among `parent`'s children.
pub fn find_payload(parent: &Element) -> Option<&Element> {
    parent.get_child(PAYLOAD, NS)
}

/// Serializes a value with `encoding`. MessagePack uses named fields so
/// that clients in other languages see maps, not arrays.
pub fn serialize<T: serde::Serialize + ?Sized>(
    value: &T,
    encoding: Encoding,
) -> Result<Vec<u8>, EncodeError> {
    let result = match encoding {
        Encoding::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
    };
    result.map_err(|reason| EncodeError { encoding, reason })
}

/// Deserializes bytes produced by [`serialize`] (or by any client that
/// follows `docs/PROTOCOL.md`).
pub fn deserialize<T: serde::de::DeserializeOwned>(
    data: &[u8],
    encoding: Encoding,
) -> Result<T, DecodeError> {
    match encoding {
        Encoding::MessagePack => rmp_serde::from_slice(data).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice(data).map_err(|e| e.to_string()),
    }
    .map_err(DecodeError::Schema)
}

pub(crate) fn attr<'a>(elem: &'a Element, attr_name: &'static str) -> Result<&'a str, DecodeError> {
    elem.attr(attr_name).ok_or(DecodeError::BadAttribute {
        name: attr_name,
        reason: "missing".into(),
    })
}

/// An XML attribute name known to be valid.
pub(crate) fn name(s: &'static str) -> NcName {
    NcName::try_from(s).expect("static attribute names are valid NCNames")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    #[test]
    fn the_payload_is_the_text_before_the_first_child() {
        // Found by fuzzing: text after <headers/> used to be decoded too.
        let xml = "<payload xmlns='urn:xbus:0' topic='t' encoding='json' version='1'>e30=\
            <headers xmlns='http://jabber.org/protocol/shim'><header name='k'>v</header></headers>\
            e30=</payload>";
        let elem: Element = xml.parse().unwrap();
        let (data, headers) = read_body(&elem, 1024).unwrap();
        assert_eq!(data, b"{}");
        assert_eq!(headers.get("k"), Some("v"));
    }

    #[test]
    fn the_payload_text_may_come_in_pieces() {
        let mut elem = Element::builder(PAYLOAD, NS).build();
        elem.append_text_node("e3");
        elem.append_text_node(" 0=\n");
        assert_eq!(&*body_text(&elem), b"e30=");
        let elem = Element::builder(PAYLOAD, NS).append("e30=").build();
        assert!(matches!(body_text(&elem), Cow::Borrowed(b"e30=")));
        let empty = Element::builder(PAYLOAD, NS).build();
        assert!(body_text(&empty).is_empty());
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u64,
        sku: String,
        tags: Vec<String>,
        note: Option<String>,
    }
    impl Event for Order {
        const TOPIC: &'static str = "orders.created";
        const ENCODING: Encoding = Encoding::MessagePack;
        const VERSION: u32 = 2;
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct JsonOrder {
        id: u64,
    }
    impl Event for JsonOrder {
        const TOPIC: &'static str = "orders.created";
        const ENCODING: Encoding = Encoding::Json;
        const VERSION: u32 = 2;
    }

    fn through_xml(raw: &RawPayload) -> RawPayload {
        let xml = String::from(&raw.to_element());
        let elem: Element = xml.parse().unwrap();
        RawPayload::from_element(&elem, 1 << 20).unwrap()
    }

    proptest! {
        #[test]
        fn round_trips_through_xml(id: u64, sku in ".*", tags in proptest::collection::vec(".*", 0..4), note: Option<String>,
                                   headers in proptest::collection::vec(("[a-z]{1,8}", "[^\\p{Cc}]*"), 0..3)) {
            let order = Order { id, sku, tags, note };
            let mut raw = RawPayload::encode(&order).unwrap();
            for (k, v) in headers { raw.headers.insert(k, v); }
            let back = through_xml(&raw);
            prop_assert_eq!(&back, &raw);
            prop_assert_eq!(back.decode::<Order>().unwrap(), order);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".*", encoding in prop_oneof![Just("msgpack"), Just("json"), Just("x")]) {
            let elem = Element::builder(PAYLOAD, NS)
                .attr(name("topic"), "orders.created")
                .attr(name("encoding"), encoding)
                .attr(name("version"), "2")
                .append(text)
                .build();
            if let Ok(raw) = RawPayload::from_element(&elem, 1 << 20) {
                let _ = raw.decode::<Order>();
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data: Vec<u8>) {
            let raw = RawPayload { topic: "orders.created".into(), encoding: Encoding::MessagePack, version: 2, data, headers: Headers::new() };
            let _ = through_xml(&raw).decode::<Order>();
        }
    }

    #[test]
    fn json_payload_is_plain_json() {
        let raw = RawPayload::encode(&JsonOrder { id: 7 }).unwrap();
        assert_eq!(raw.data, br#"{"id":7}"#);
        assert_eq!(
            through_xml(&raw).decode::<JsonOrder>().unwrap(),
            JsonOrder { id: 7 }
        );
    }

    #[test]
    fn msgpack_uses_named_fields() {
        let order = Order {
            id: 1,
            sku: "A".into(),
            tags: vec![],
            note: None,
        };
        let raw = RawPayload::encode(&order).unwrap();
        // A map with 4 entries (0x84), not an array (0x94).
        assert_eq!(raw.data[0], 0x84);
    }

    #[test]
    fn rejects_mismatches_with_reasons() {
        let raw = RawPayload::encode(&JsonOrder { id: 1 }).unwrap();
        assert_eq!(
            raw.decode::<Order>(),
            Err(DecodeError::WrongEncoding {
                expected: Encoding::MessagePack,
                found: Encoding::Json
            })
        );
        let mut raw = RawPayload::encode(&Order {
            id: 1,
            sku: "a".into(),
            tags: vec![],
            note: None,
        })
        .unwrap();
        raw.version = 3;
        assert!(matches!(
            raw.decode::<Order>(),
            Err(DecodeError::WrongVersion {
                expected: 2,
                found: 3
            })
        ));
        raw.version = 2;
        raw.data = vec![0xc1];
        assert!(matches!(raw.decode::<Order>(), Err(DecodeError::Schema(_))));
        raw.topic = "other".into();
        assert!(matches!(
            raw.decode::<Order>(),
            Err(DecodeError::WrongTopic { .. })
        ));
    }

    #[test]
    fn rejects_bad_elements() {
        let parse = |xml: &str| RawPayload::from_element(&xml.parse::<Element>().unwrap(), 16);
        let ok = "<payload xmlns='urn:xbus:0' topic='t' encoding='json' version='1'>e30=</payload>";
        assert_eq!(parse(ok).unwrap().data, b"{}");
        assert!(matches!(
            parse("<payload xmlns='urn:other' topic='t'/>"),
            Err(DecodeError::MissingPayload)
        ));
        assert!(matches!(
            parse("<payload xmlns='urn:xbus:0' encoding='json' version='1'>e30=</payload>"),
            Err(DecodeError::BadAttribute { name: "topic", .. })
        ));
        assert!(matches!(
            parse(
                "<payload xmlns='urn:xbus:0' topic='t' encoding='xml' version='1'>e30=</payload>"
            ),
            Err(DecodeError::BadAttribute {
                name: "encoding",
                ..
            })
        ));
        assert!(matches!(
            parse(
                "<payload xmlns='urn:xbus:0' topic='t' encoding='json' version='-1'>e30=</payload>"
            ),
            Err(DecodeError::BadAttribute {
                name: "version",
                ..
            })
        ));
        assert!(matches!(
            parse(
                "<payload xmlns='urn:xbus:0' topic='t' encoding='json' version='1'>!!!</payload>"
            ),
            Err(DecodeError::Base64(_))
        ));
        let big = format!(
            "<payload xmlns='urn:xbus:0' topic='t' encoding='json' version='1'>{}</payload>",
            "A".repeat(64)
        );
        assert!(matches!(
            parse(&big),
            Err(DecodeError::TooLarge { max: 16, .. })
        ));
        // Line-wrapped base64, as some clients write it, is accepted.
        let wrapped = "<payload xmlns='urn:xbus:0' topic='t' encoding='json' version='1'>\n e3\n0=\n</payload>";
        assert_eq!(parse(wrapped).unwrap().data, b"{}");
    }

    #[test]
    fn base64_is_written_padded_and_read_with_or_without_padding() {
        let raw = RawPayload::encode(&JsonOrder { id: 1 }).unwrap();
        let xml = String::from(&raw.to_element());
        assert!(xml.contains(">eyJpZCI6MX0=<"), "{xml}");
        let parse = |text: &str| {
            let xml = format!(
                "<payload xmlns='urn:xbus:0' topic='t' encoding='json' version='1'>{text}</payload>"
            );
            RawPayload::from_element(&xml.parse().unwrap(), 1024).map(|r| r.data)
        };
        for text in [
            "ImFiIg==",
            "ImFiIg=",
            "ImFiIg",
            " ImF\niIg\t",
            "e30=",
            "e30",
        ] {
            assert!(parse(text).is_ok(), "{text}");
        }
        assert_eq!(parse("ImFiIg").unwrap(), b"\"ab\"");
        // Only the standard alphabet; padding only at the end, and no
        // non-zero trailing bits.
        for text in ["-_8", "e31=", "e3=0"] {
            assert!(matches!(parse(text), Err(DecodeError::Base64(_))), "{text}");
        }
    }
}
