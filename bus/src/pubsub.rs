//! XEP-0060 requests that xbus sends and the notifications it reads,
//! as plain elements (the pubsub parsers of xmpp-parsers reject items that
//! a tolerant bus must still report).

use std::sync::Arc;

use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::access::{self, Affiliation, TopicAccess};
use crate::codec::{RawPayload, find_payload, name};
use crate::error::{DecodeError, ServerError};
use crate::event::Persistence;
use crate::headers::Headers;

pub(crate) const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub(crate) const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_DATA: &str = "jabber:x:data";
const NS_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
const NS_PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

fn pubsub(child: Element) -> Element {
    Element::builder("pubsub", NS_PUBSUB).append(child).build()
}

fn field(var: &str, value: &str) -> Element {
    Element::builder("field", NS_DATA)
        .attr(name("var"), var)
        .append(Element::builder("value", NS_DATA).append(value).build())
        .build()
}

/// `<create node/>` with persistent items and `max_items`, or (transient)
/// with `persist_items` off, and the topic's access (docs/PROTOCOL.md,
/// "Topic access").
pub(crate) fn create(
    node: &str,
    max_items: u32,
    persistence: Persistence,
    access: Option<&TopicAccess>,
) -> Element {
    let form = Element::builder("x", NS_DATA)
        .attr(name("type"), "submit")
        .append(field("FORM_TYPE", NS_NODE_CONFIG));
    let form = match persistence {
        Persistence::Persistent => form
            .append(field("pubsub#persist_items", "1"))
            .append(field("pubsub#max_items", &max_items.to_string())),
        Persistence::Transient => form.append(field("pubsub#persist_items", "0")),
    }
    .append_all(access.map(TopicAccess::form_fields).unwrap_or_default())
    .build();
    Element::builder("pubsub", NS_PUBSUB)
        .append(
            Element::builder("create", NS_PUBSUB)
                .attr(name("node"), node)
                .build(),
        )
        .append(
            Element::builder("configure", NS_PUBSUB)
                .append(form)
                .build(),
        )
        .build()
}

/// `<publish node><item id>payload</item></publish>`.
pub(crate) fn publish(node: &str, item_id: &str, payload: Element) -> Element {
    let item = Element::builder("item", NS_PUBSUB)
        .attr(name("id"), item_id)
        .append(payload)
        .build();
    pubsub(
        Element::builder("publish", NS_PUBSUB)
            .attr(name("node"), node)
            .append(item)
            .build(),
    )
}

/// A random 128-bit item id, so that ids never repeat across publishers.
pub(crate) fn new_item_id() -> u128 {
    rand::random::<u128>()
}

/// How an item id goes on the wire: 32 lowercase hex digits (the
/// duplicate windows keep ids of this form as numbers).
pub(crate) fn item_id_text(item_id: u128) -> String {
    format!("{item_id:032x}")
}

/// A request that is safe to send twice (a `set`), in a form that is cheap
/// to keep and to share.
///
/// The connection task keeps one for every unconfirmed publish and every
/// publish confirmed in the last 2 s, to send it again after a session
/// reset (`docs/RELIABILITY.md`). It used to keep a deep copy of the
/// request element, which cost the task a copy and a tree to free per
/// publish; now it keeps the publisher's [`RawPayload`] behind an `Arc` and
/// builds the element again only for a re-send.
#[derive(Debug, Clone)]
pub(crate) enum Repeatable {
    /// A [`publish`] of one item; its node is the payload's topic.
    Publish {
        item_id: u128,
        payload: Arc<RawPayload>,
    },
    /// A [`create`] (once per topic and bus).
    Create {
        node: String,
        max_items: u32,
        persistence: Persistence,
        /// The topic's access, if the config restricts it.
        access: Option<Arc<TopicAccess>>,
    },
}

impl Repeatable {
    /// The request element, as sent the first time.
    pub(crate) fn to_element(&self) -> Element {
        match self {
            Repeatable::Publish { item_id, payload } => publish(
                &payload.topic,
                &item_id_text(*item_id),
                payload.to_element(),
            ),
            Repeatable::Create {
                node,
                max_items,
                persistence,
                access,
            } => create(node, *max_items, *persistence, access.as_deref()),
        }
    }
}

/// `<affiliations node/>` of the owner namespace: makes each of `jids` a
/// publisher of `node` (XEP-0060 §8.9.2).
pub(crate) fn publishers(node: &str, jids: &[String]) -> Element {
    let list: Vec<_> = jids
        .iter()
        .map(|jid| (jid.clone(), Affiliation::Publisher))
        .collect();
    access::set_affiliations(node, &list)
}

/// `<configure node/>` of the owner namespace: asks for a node's
/// configuration form (XEP-0060 §8.2), which its creator may read.
pub(crate) fn configuration(node: &str) -> Element {
    Element::builder("pubsub", NS_PUBSUB_OWNER)
        .append(
            Element::builder("configure", NS_PUBSUB_OWNER)
                .attr(name("node"), node)
                .build(),
        )
        .build()
}

/// What a node keeps, as its configuration form says:
/// `pubsub#persist_items` and `pubsub#max_items` (`max`: [`u32::MAX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Kept {
    pub persist_items: Option<bool>,
    pub max_items: Option<u32>,
}

/// Reads [`Kept`] from the answer to [`configuration`].
pub(crate) fn kept(result: &Element) -> Kept {
    let form = result
        .get_child("configure", NS_PUBSUB_OWNER)
        .and_then(|configure| configure.get_child("x", NS_DATA));
    let value = |var: &str| {
        form?
            .children()
            .find(|field| field.is("field", NS_DATA) && field.attr("var") == Some(var))?
            .get_child("value", NS_DATA)
            .map(Element::text)
    };
    Kept {
        persist_items: value("pubsub#persist_items").and_then(|v| match v.trim() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        }),
        max_items: value("pubsub#max_items").and_then(|v| match v.trim() {
            "max" => Some(u32::MAX),
            n => n.parse().ok(),
        }),
    }
}

/// Where a server's setting caps what a node keeps, for the warnings.
const RAISE_THE_CAP: &str = "raise the server's cap: on Prosody `pubsub_max_items` on the pubsub \
     component (default 256; a node asking for more is refused, and the node its autocreate \
     makes keeps 20), on ejabberd `max_items_node` in mod_pubsub, on the embedded server \
     `max_items_limit`; or ask for less with BusConfigBuilder::max_items (see docs/SERVERS.md)";

/// The warning for a persistent topic whose node keeps fewer events than
/// `asked`, or none, if it does.
pub(crate) fn shortfall(topic: &str, asked: u32, kept: Kept) -> Option<String> {
    if kept.persist_items == Some(false) {
        return Some(format!(
            "topic {topic:?} keeps none of its events (the server has pubsub#persist_items \
             off for it): replay and the gap fill after a session reset find nothing; check \
             the server's default node configuration (see docs/SERVERS.md)"
        ));
    }
    let max = kept.max_items.filter(|&max| max < asked)?;
    Some(format!(
        "topic {topic:?} keeps only {max} events, not the {asked} this bus asks for: replay \
         and the gap fill after a session reset reach back {max} events; {RAISE_THE_CAP}"
    ))
}

/// The warning for a node the server would not create with this
/// configuration (`not-acceptable`: over a limit).
pub(crate) fn refused_configuration(topic: &str, asked: u32, error: &ServerError) -> String {
    format!(
        "the server refused to create topic {topic:?} keeping {asked} events ({error}); a node \
         it creates on the first publish keeps the server's default instead; {RAISE_THE_CAP}"
    )
}

/// `<subscribe node jid/>`.
pub(crate) fn subscribe(node: &str, jid: &str) -> Element {
    pubsub(
        Element::builder("subscribe", NS_PUBSUB)
            .attr(name("node"), node)
            .attr(name("jid"), jid)
            .build(),
    )
}

/// `<unsubscribe node jid/>`.
pub(crate) fn unsubscribe(node: &str, jid: &str) -> Element {
    pubsub(
        Element::builder("unsubscribe", NS_PUBSUB)
            .attr(name("node"), node)
            .attr(name("jid"), jid)
            .build(),
    )
}

/// Whether the answer to [`subscribe`] says the subscription is pending:
/// the node's owner must approve it first (`pubsub#access_model`
/// `authorize`, XEP-0060 §6.1.2).
pub(crate) fn is_pending(result: &Element) -> bool {
    result
        .get_child("subscription", NS_PUBSUB)
        .is_some_and(|s| s.attr("subscription") == Some("pending"))
}

/// `<items node max_items/>`: the last `max` items of a node, oldest first
/// (so the embedded server, Prosody 0.12 and ejabberd 23.01 answer).
pub(crate) fn items(node: &str, max: usize) -> Element {
    pubsub(
        Element::builder("items", NS_PUBSUB)
            .attr(name("node"), node)
            .attr(name("max_items"), max.to_string())
            .build(),
    )
}

/// One item of a notification, or one xbus event sent directly, before it
/// is decoded into a user type.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    /// The topic: the pubsub node, or the payload's topic attribute.
    pub topic: String,
    /// Pubsub item id, or message id.
    pub item_id: Option<String>,
    /// Publisher (pubsub) or sender (message), as stamped by the server.
    pub from: Option<String>,
    /// Headers of the stanza (e.g. from the pubsub service).
    pub headers: Headers,
    /// The parsed payload, or why it does not parse plus the raw XML.
    pub payload: Result<RawPayload, (DecodeError, String)>,
}

/// Reads the items of a pubsub `<event/>` notification. Retractions,
/// purges and deletions carry no event and are skipped.
pub(crate) fn notification_items(
    event: &Element,
    stanza_headers: &Headers,
    max_payload: usize,
) -> Vec<Incoming> {
    items_in(event, NS_PUBSUB_EVENT, stanza_headers, max_payload)
}

/// Reads the items of the answer to [`items`], in the server's order.
pub(crate) fn fetched_items(result: &Element, max_payload: usize) -> Vec<Incoming> {
    items_in(result, NS_PUBSUB, &Headers::new(), max_payload)
}

/// The `<item/>`s in the `<items/>` children of `parent`, in namespace `ns`.
fn items_in(
    parent: &Element,
    ns: &str,
    stanza_headers: &Headers,
    max_payload: usize,
) -> Vec<Incoming> {
    let mut out = Vec::new();
    for items in parent.children().filter(|c| c.is("items", ns)) {
        let Some(node) = items.attr("node") else {
            continue;
        };
        for item in items.children().filter(|c| c.is("item", ns)) {
            let payload = match find_payload(item) {
                Some(elem) => RawPayload::from_element(elem, max_payload)
                    .and_then(|raw| raw.published_on(node))
                    .map_err(|e| (e, String::from(elem))),
                None => Err((DecodeError::MissingPayload, String::from(item))),
            };
            out.push(Incoming {
                topic: node.to_owned(),
                item_id: item.attr("id").map(str::to_owned),
                from: item.attr("publisher").map(str::to_owned),
                headers: stanza_headers.clone(),
                payload,
            });
        }
    }
    out
}

/// What a received `<message/>` means to the bus.
#[derive(Debug)]
pub(crate) enum Received {
    /// The items of a notification from the pubsub service.
    Notification(Vec<Incoming>),
    /// An xbus event sent to this bus directly.
    Direct(Incoming),
    /// Nothing for the bus: why, and whether that deserves a warning.
    Ignored { reason: &'static str, warn: bool },
}

/// Reads a `<message/>`: notifications count only from `pubsub`, the
/// configured service; payloads over `max_payload` are errors.
pub(crate) fn read_message(message: &Message, pubsub: &Jid, max_payload: usize) -> Received {
    let ignored = |reason, warn| Received::Ignored { reason, warn };
    if message.type_ == MessageType::Error {
        return ignored("error message (an event sent by this bus bounced?)", true);
    }
    let mut headers = Headers::new();
    for payload in &message.payloads {
        headers.extend_from_element(payload);
    }
    if let Some(event) = message
        .payloads
        .iter()
        .find(|p| p.is("event", NS_PUBSUB_EVENT))
    {
        if message.from.as_ref() != Some(pubsub) {
            return ignored("pubsub event from an unexpected sender", true);
        }
        return Received::Notification(notification_items(event, &headers, max_payload));
    }
    let Some(element) = message.payloads.iter().find_map(find_payload_in) else {
        return ignored("message without an xbus payload", false);
    };
    let payload = RawPayload::from_element(element, max_payload);
    let topic = match (&payload, element.attr("topic")) {
        (Ok(raw), _) => raw.topic.clone(),
        (Err(_), Some(topic)) if crate::event::validate_topic(topic).is_ok() => topic.to_owned(),
        (Err(_), _) => return ignored("direct event without a usable topic", true),
    };
    Received::Direct(Incoming {
        topic,
        item_id: message.id.as_ref().map(|id| id.0.clone()),
        from: message.from.as_ref().map(Jid::to_string),
        headers,
        payload: payload.map_err(|e| (e, String::from(element))),
    })
}

/// `elem` if it is an xbus payload, else the payload it contains.
pub(crate) fn find_payload_in(elem: &Element) -> Option<&Element> {
    if elem.is(crate::codec::PAYLOAD, crate::codec::NS) {
        Some(elem)
    } else {
        find_payload(elem)
    }
}

/// Turns an RFC 6120 stanza error into a [`ServerError`].
pub(crate) fn server_error(error: &StanzaError) -> ServerError {
    let elem = Element::from(error.clone());
    let condition = elem
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".to_owned());
    let specific = elem
        .children()
        .find(|c| c.ns() != NS_STANZAS)
        .map(|c| c.name().to_owned());
    ServerError {
        condition,
        kind: elem.attr("type").unwrap_or("cancel").to_owned(),
        specific,
        text: error.texts.values().next().cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_items_and_reports_bad_ones() {
        let xml = "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='orders'>\
            <item id='1' publisher='a@localhost/x'><payload xmlns='urn:xbus:0' topic='orders' encoding='json' version='1'>e30=</payload></item>\
            <item id='2'><payload xmlns='urn:xbus:0' topic='orders' encoding='json' version='1'>%%%</payload></item>\
            <item id='3'><other xmlns='urn:x'/></item>\
            <item id='4'><payload xmlns='urn:xbus:0' topic='other.topic' encoding='json' version='1'>e30=</payload></item>\
            <retract id='0'/></items></event>";
        let event: Element = xml.parse().unwrap();
        let items = notification_items(&event, &Headers::new(), 1024);
        assert_eq!(items.len(), 4);
        // A payload naming another topic than its node is not an event.
        let (node, topic) = ("orders".to_owned(), "other.topic".to_owned());
        assert_eq!(
            items[3].payload.as_ref().unwrap_err().0,
            DecodeError::TopicNotNode { node, topic }
        );
        assert_eq!(items[0].item_id.as_deref(), Some("1"));
        assert_eq!(items[0].from.as_deref(), Some("a@localhost/x"));
        assert_eq!(items[0].payload.as_ref().unwrap().data, b"{}");
        assert!(matches!(items[1].payload, Err((DecodeError::Base64(_), _))));
        let (reason, raw) = items[2].payload.as_ref().unwrap_err();
        assert_eq!(reason, &DecodeError::MissingPayload);
        assert!(raw.contains("urn:x"));
    }

    #[test]
    fn reads_fetched_items_and_skips_rsm() {
        let xml = "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
            <set xmlns='http://jabber.org/protocol/rsm'><count>2</count></set>\
            <items node='orders'>\
            <item id='a'><payload xmlns='urn:xbus:0' topic='orders' encoding='json' version='1'>e30=</payload></item>\
            <item id='b'><payload xmlns='urn:xbus:0' topic='orders' encoding='json' version='1'>e30=</payload></item>\
            <item id='c'><payload xmlns='urn:xbus:0' topic='orders.x' encoding='json' version='1'>e30=</payload></item>\
            </items></pubsub>";
        let result: Element = xml.parse().unwrap();
        let items = fetched_items(&result, 1024);
        let ids: Vec<_> = items
            .iter()
            .map(|i| i.item_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(items[..2].iter().all(|i| i.payload.is_ok()));
        // Replay and gap fill check the topic as notifications do.
        let bad = items[2].payload.as_ref().unwrap_err();
        assert!(matches!(bad, (DecodeError::TopicNotNode { .. }, _)));
    }

    #[test]
    fn a_repeated_publish_is_the_same_request() {
        // After a session reset the task rebuilds the request: it must carry
        // the same item id and payload, so that the server overwrites its
        // item and the subscribers' windows drop the second notification.
        let mut raw = RawPayload {
            topic: "orders".into(),
            encoding: crate::event::Encoding::Json,
            version: 1,
            data: b"{}".to_vec(),
            headers: Headers::new(),
        };
        raw.headers.insert("trace", "t1");
        let item_id = 0xabc_u128 << 116 | 7;
        let request = Repeatable::Publish {
            item_id,
            payload: Arc::new(raw.clone()),
        };
        let first = request.to_element();
        assert_eq!(first, request.clone().to_element());
        assert_eq!(
            first,
            publish("orders", &item_id_text(item_id), raw.to_element())
        );
        let item = first
            .get_child("publish", NS_PUBSUB)
            .and_then(|p| p.get_child("item", NS_PUBSUB))
            .unwrap();
        assert_eq!(item.attr("id"), Some("abc00000000000000000000000000007"));
        let create = Repeatable::Create {
            node: "orders".into(),
            max_items: 9,
            persistence: Persistence::Persistent,
            access: None,
        };
        assert_eq!(
            create.to_element(),
            super::create("orders", 9, Persistence::Persistent, None)
        );
    }

    #[test]
    fn a_node_that_keeps_less_than_asked_is_named() {
        let answer = |persist: &str, max: &str| -> Element {
            format!(
                "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='t'>\
                 <x xmlns='jabber:x:data' type='form'>\
                 <field var='FORM_TYPE' type='hidden'><value>{NS_NODE_CONFIG}</value></field>\
                 <field var='pubsub#persist_items' type='boolean'><value>{persist}</value></field>\
                 <field var='pubsub#max_items' type='text-single'><value>{max}</value></field>\
                 </x></configure></pubsub>"
            )
            .parse()
            .unwrap()
        };
        let prosody = kept(&answer("true", "20"));
        assert_eq!(
            prosody,
            Kept {
                persist_items: Some(true),
                max_items: Some(20)
            }
        );
        let warning = shortfall("orders", 1000, prosody).unwrap();
        assert!(
            warning.contains("keeps only 20 events, not the 1000"),
            "{warning}"
        );
        assert!(warning.contains("`pubsub_max_items`"), "{warning}");
        assert_eq!(shortfall("orders", 1000, kept(&answer("1", "1000"))), None);
        assert_eq!(shortfall("orders", 1000, kept(&answer("1", "max"))), None);
        let off = shortfall("orders", 1000, kept(&answer("0", "1000"))).unwrap();
        assert!(off.contains("keeps none of its events"), "{off}");
        // An answer without a form says nothing.
        let bare: Element = "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'/>"
            .parse()
            .unwrap();
        assert_eq!(kept(&bare), Kept::default());
        assert_eq!(shortfall("orders", 1000, Kept::default()), None);
    }

    #[test]
    fn transient_nodes_persist_nothing() {
        let fields = |persistence| {
            let create = super::create("t", 9, persistence, None);
            let form = create
                .get_child("configure", NS_PUBSUB)
                .and_then(|c| c.get_child("x", NS_DATA))
                .unwrap();
            form.children()
                .map(|f| {
                    let value = f.get_child("value", NS_DATA).map(Element::text);
                    (f.attr("var").unwrap().to_owned(), value.unwrap_or_default())
                })
                .collect::<Vec<_>>()
        };
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            fields(Persistence::Persistent),
            [
                pair("FORM_TYPE", NS_NODE_CONFIG),
                pair("pubsub#persist_items", "1"),
                pair("pubsub#max_items", "9"),
            ]
        );
        assert_eq!(
            fields(Persistence::Transient),
            [
                pair("FORM_TYPE", NS_NODE_CONFIG),
                pair("pubsub#persist_items", "0"),
            ]
        );
    }

    #[test]
    fn maps_stanza_errors() {
        let xml = "<error xmlns='jabber:client' type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
            <payload-too-big xmlns='http://jabber.org/protocol/pubsub#errors'/>\
            <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>too big</text></error>";
        let error = StanzaError::try_from(xml.parse::<Element>().unwrap()).unwrap();
        let e = server_error(&error);
        assert_eq!(e.condition, "not-acceptable");
        assert_eq!(e.specific.as_deref(), Some("payload-too-big"));
        assert_eq!(e.kind, "modify");
        assert_eq!(e.text.as_deref(), Some("too big"));
        assert_eq!(
            e.to_string(),
            "not-acceptable/payload-too-big (modify): too big"
        );
    }
}
