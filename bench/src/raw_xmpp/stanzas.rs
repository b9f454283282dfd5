//! The stanzas of the raw client, built the way xbus builds them so that
//! the bytes on the wire are the same, and the echo responder's answer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use xbus::Request as _;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::minidom::rxml::NcName;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::system::BenchEvent;

/// The xbus namespace (`docs/PROTOCOL.md` §1).
pub(super) const NS_XBUS: &str = "urn:xbus:0";
pub(super) const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub(super) const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub(super) const NS_DATA: &str = "jabber:x:data";
pub(super) const NS_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub(super) const NS_PING: &str = "urn:xmpp:ping";

/// The answer to a `bench.echo` call: the request decoded and encoded
/// again, as xbus's typed handler does.
pub(super) fn echo(request: &Element) -> Result<Option<Element>, String> {
    let method = request.attr("method").ok_or("no method")?;
    if method != BenchEvent::METHOD {
        return Err(format!("no handler for method {method:?}"));
    }
    if request.attr("encoding") != Some(BenchEvent::ENCODING.as_str()) {
        return Err("wrong encoding".into());
    }
    let data = read_text(request).map_err(|e| e.to_string())?;
    let event: BenchEvent = rmp_serde::from_slice(&data).map_err(|e| e.to_string())?;
    let data = rmp_serde::to_vec_named(&event).map_err(|e| e.to_string())?;
    Ok(Some(body(
        "response",
        &[
            ("method", method),
            ("encoding", BenchEvent::ENCODING.as_str()),
            ("version", &BenchEvent::VERSION.to_string()),
        ],
        &data,
    )))
}

pub(super) fn unavailable() -> StanzaError {
    StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        "en",
        "not served by the raw bench client",
    )
}

/// A stanza error as text: its condition and text.
pub(super) fn describe(error: &StanzaError) -> String {
    let text = error.texts.values().next().cloned().unwrap_or_default();
    format!("{:?} ({:?}) {text}", error.defined_condition, error.type_)
}

/// `<name xmlns='urn:xbus:0' attrs...>BASE64</name>`, built in the order
/// xbus builds it, so the bytes on the wire are the same.
pub(super) fn body(name: &'static str, attrs: &[(&'static str, &str)], data: &[u8]) -> Element {
    let mut builder = Element::builder(name, NS_XBUS);
    for (key, value) in attrs {
        builder = builder.attr(nc(key), *value);
    }
    builder.append(BASE64.encode(data)).build()
}

/// The base64 text of a body element, decoded.
pub(super) fn read_text(elem: &Element) -> anyhow::Result<Vec<u8>> {
    let text: String = elem
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    Ok(BASE64.decode(text.as_bytes())?)
}

/// An attribute name known to be valid.
pub(super) fn nc(name: &'static str) -> NcName {
    NcName::try_from(name).expect("static attribute names are valid")
}

pub(super) fn pubsub(child: Element) -> Element {
    Element::builder("pubsub", NS_PUBSUB).append(child).build()
}

pub(super) fn field(var: &str, value: &str) -> Element {
    Element::builder("field", NS_DATA)
        .attr(nc("var"), var)
        .append(Element::builder("value", NS_DATA).append(value).build())
        .build()
}

/// xbus's node creation: `<create node/>` with persistent items and
/// `max_items`.
pub(super) fn create(node: &str, max_items: u32) -> Element {
    let form = Element::builder("x", NS_DATA)
        .attr(nc("type"), "submit")
        .append(field("FORM_TYPE", NS_NODE_CONFIG))
        .append(field("pubsub#persist_items", "1"))
        .append(field("pubsub#max_items", &max_items.to_string()))
        .build();
    Element::builder("pubsub", NS_PUBSUB)
        .append(
            Element::builder("create", NS_PUBSUB)
                .attr(nc("node"), node)
                .build(),
        )
        .append(
            Element::builder("configure", NS_PUBSUB)
                .append(form)
                .build(),
        )
        .build()
}

/// xbus's publish: `<publish node><item id>payload</item></publish>`.
pub(super) fn publish(node: &str, item_id: &str, payload: Element) -> Element {
    let item = Element::builder("item", NS_PUBSUB)
        .attr(nc("id"), item_id)
        .append(payload)
        .build();
    pubsub(
        Element::builder("publish", NS_PUBSUB)
            .attr(nc("node"), node)
            .append(item)
            .build(),
    )
}

/// xbus's subscription: `<subscribe node jid/>`.
pub(super) fn subscribe(node: &str, jid: &str) -> Element {
    pubsub(
        Element::builder("subscribe", NS_PUBSUB)
            .attr(nc("node"), node)
            .attr(nc("jid"), jid)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use xbus::RawPayload;

    use super::super::client::MAX_PAYLOAD;
    use super::*;
    use xbus::Encoding;

    /// The request element is the one xbus writes.
    #[test]
    fn request_element_matches_xbus() {
        let event = BenchEvent::new(3);
        let data = rmp_serde::to_vec_named(&event).unwrap();
        let element = body(
            "request",
            &[
                ("method", BenchEvent::METHOD),
                ("timeout", "10000"),
                ("encoding", "msgpack"),
                ("version", "1"),
            ],
            &data,
        );
        let xml = String::from(&element);
        assert!(xml.starts_with("<request xmlns='urn:xbus:0'"), "{xml}");
        assert!(xml.contains("method='bench.echo'"), "{xml}");
        assert_eq!(read_text(&element).unwrap(), data);
        let echoed = echo(&element).unwrap().unwrap();
        assert!(echoed.is("response", NS_XBUS));
        let back: BenchEvent = rmp_serde::from_slice(&read_text(&echoed).unwrap()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn payload_is_encoded_like_xbus() {
        let event = BenchEvent::new(1);
        let mut raw = RawPayload::encode(&event).unwrap();
        raw.topic = "bench.x".into();
        assert_eq!(raw.encoding, Encoding::MessagePack);
        let parsed = RawPayload::from_element(&raw.to_element(), MAX_PAYLOAD).unwrap();
        assert_eq!(parsed, raw);
    }
}
