//! Unit tests of the pubsub service: requests as XML, replies and
//! notifications as XML.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;

use super::{Outcome, PubSub, PubSubConfig};

mod access;
mod entity;
mod fuzz;
mod owner;
mod publish;
mod slixmpp;
mod subscribe;

pub(super) const PS: &str = "http://jabber.org/protocol/pubsub";

pub(super) fn service() -> PubSub {
    service_with(PubSubConfig::default())
}

pub(super) fn service_with(config: PubSubConfig) -> PubSub {
    PubSub::new(Jid::new("pubsub.localhost").unwrap(), config)
}

pub(super) fn jid(s: &str) -> FullJid {
    FullJid::new(s).unwrap()
}

/// Sends `<iq type=… id='t'>BODY</iq>` (the body carries its namespaces).
pub(super) fn iq(ps: &mut PubSub, from: &str, type_: &str, body: &str) -> Outcome {
    let xml = format!(
        "<iq xmlns='jabber:client' type='{type_}' id='t' to='pubsub.localhost' from='{from}'>{body}</iq>"
    );
    let elem: Element = xml.parse().unwrap();
    let iq = Iq::try_from(elem).unwrap();
    ps.handle_iq(&jid(from), iq)
}

/// `set` with a `<pubsub xmlns='…pubsub'>` wrapper.
pub(super) fn set(ps: &mut PubSub, from: &str, inner: &str) -> Outcome {
    iq(
        ps,
        from,
        "set",
        &format!("<pubsub xmlns='{PS}'>{inner}</pubsub>"),
    )
}

/// `get` with a `<pubsub xmlns='…pubsub'>` wrapper.
pub(super) fn get(ps: &mut PubSub, from: &str, inner: &str) -> Outcome {
    iq(
        ps,
        from,
        "get",
        &format!("<pubsub xmlns='{PS}'>{inner}</pubsub>"),
    )
}

/// `set`/`get` with a `<pubsub xmlns='…pubsub#owner'>` wrapper.
pub(super) fn owner(ps: &mut PubSub, from: &str, type_: &str, inner: &str) -> Outcome {
    iq(
        ps,
        from,
        type_,
        &format!("<pubsub xmlns='{PS}#owner'>{inner}</pubsub>"),
    )
}

pub(super) fn xml(elem: impl Into<Element>) -> String {
    String::from(&elem.into())
}

/// The result payload; panics (with the error) on an error reply.
pub(super) fn ok(outcome: &Outcome) -> Option<Element> {
    match &outcome.reply {
        Iq::Result {
            payload,
            from,
            to,
            id,
        } => {
            assert_eq!(from.as_ref().map(Jid::as_str), Some("pubsub.localhost"));
            assert!(to.is_some());
            assert_eq!(id, "t");
            payload.clone()
        }
        other => panic!("expected a result, got {}", xml(other.clone())),
    }
}

/// The error condition and the application condition (names) of an error
/// reply; panics on a result.
pub(super) fn err(outcome: &Outcome) -> (String, Option<String>) {
    match &outcome.reply {
        Iq::Error { error, .. } => {
            let elem = Element::from(error.clone());
            let condition = elem
                .children()
                .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
                .map(|c| c.name().to_owned())
                .unwrap();
            let app = error.other.as_ref().map(|o| {
                assert_eq!(o.ns(), format!("{PS}#errors"));
                o.name().to_owned()
            });
            assert!(outcome.notifications.is_empty());
            (condition, app)
        }
        other => panic!("expected an error, got {}", xml(other.clone())),
    }
}

/// Shorthand: condition and app condition as `&str`s.
pub(super) fn assert_err(outcome: &Outcome, condition: &str, app: Option<&str>) {
    let (c, a) = err(outcome);
    assert_eq!(
        (c.as_str(), a.as_deref()),
        (condition, app),
        "{}",
        xml(outcome.reply.clone())
    );
}

/// The event element of a notification, checking its envelope.
pub(super) fn event_of(message: &Message) -> &Element {
    assert_eq!(
        message.from.as_ref().map(Jid::as_str),
        Some("pubsub.localhost")
    );
    message
        .payloads
        .iter()
        .find(|p| p.is("event", "http://jabber.org/protocol/pubsub#event"))
        .unwrap()
}

/// Recipients of the notifications, sorted.
pub(super) fn recipients(outcome: &Outcome) -> Vec<String> {
    let mut to: Vec<String> = outcome
        .notifications
        .iter()
        .map(|m| m.to.as_ref().unwrap().to_string())
        .collect();
    to.sort();
    to
}
