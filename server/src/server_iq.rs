//! IQs the server answers itself: XEP-0030 service discovery, XEP-0199
//! ping and the roster (RFC 6121 section 2). Anything else addressed to the
//! server gets `service-unavailable`.

use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::ns;
use xmpp_parsers::roster::{Roster, Subscription};
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::hub::{Hub, iq_error, iq_to};
use crate::roster::RosterItem;

use xmpp_parsers::minidom;

/// Features the server announces on its domain.
const SERVER_FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::PING,
    ns::ROSTER,
    "msgoffline",
    "urn:xmpp:sm:3",
];

/// Answers an IQ addressed to the server (or to the sender's bare JID).
pub(crate) fn handle(hub: &Hub, session: u64, from: &FullJid, iq: Iq) {
    let answered_as = iq_to(&iq)
        .cloned()
        .unwrap_or_else(|| Jid::from(from.to_bare()));
    let reply = match iq {
        Iq::Get {
            id, ref payload, ..
        } if payload.is("ping", ns::PING) => Some(result(&answered_as, from, id, None)),
        Iq::Get { ref payload, .. }
            if payload.is("query", ns::DISCO_INFO)
                && (payload.attr("node").is_some() || answered_as.to_bare() != hub.domain) =>
        {
            Some(iq_error(iq, DefinedCondition::ItemNotFound))
        }
        Iq::Get {
            id, ref payload, ..
        } if payload.is("query", ns::DISCO_INFO) => {
            let info = DiscoInfoResult {
                node: None,
                identities: vec![Identity::new("server", "im", "en", "xbus-server")],
                features: SERVER_FEATURES.iter().map(|f| f.to_string()).collect(),
                extensions: Vec::new(),
            };
            Some(result(&answered_as, from, id, Some(info.into())))
        }
        Iq::Get {
            id, ref payload, ..
        } if payload.is("query", ns::DISCO_ITEMS) => {
            let items = if answered_as.to_bare() == hub.domain {
                vec![Item {
                    jid: Jid::from(hub.pubsub_jid.clone()),
                    node: None,
                    name: Some("Publish-Subscribe".into()),
                }]
            } else {
                Vec::new()
            };
            let result_payload = DiscoItemsResult {
                node: None,
                items,
                rsm: None,
            };
            Some(result(&answered_as, from, id, Some(result_payload.into())))
        }
        Iq::Get {
            id, ref payload, ..
        } if payload.is("query", ns::ROSTER) => {
            let mut state = hub.lock();
            let node = from
                .node()
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default();
            if let Some(session) = state.session_mut(session, &node) {
                session.interested = true;
            }
            let items = state
                .user(&node)
                .roster
                .iter()
                .map(|(jid, item)| item.to_item(jid))
                .collect();
            let roster = Roster { ver: None, items };
            Some(result(&answered_as, from, id, Some(roster.into())))
        }
        // RFC 3921 session establishment: not offered, but harmless.
        Iq::Set {
            id, ref payload, ..
        } if payload.is("session", "urn:ietf:params:xml:ns:xmpp-session") => {
            Some(result(&answered_as, from, id, None))
        }
        Iq::Set { ref payload, .. } if payload.is("query", ns::ROSTER) => {
            Some(roster_set(hub, from, iq))
        }
        Iq::Get { .. } | Iq::Set { .. } => Some(iq_error(iq, DefinedCondition::ServiceUnavailable)),
        Iq::Result { .. } | Iq::Error { .. } => None,
    };
    if let Some(mut reply) = reply {
        set_from(&mut reply, answered_as);
        let state = hub.lock();
        hub.send_to(&state, from, Stanza::Iq(reply));
    }
}

fn set_from(iq: &mut Iq, jid: Jid) {
    match iq {
        Iq::Get { from, .. }
        | Iq::Set { from, .. }
        | Iq::Result { from, .. }
        | Iq::Error { from, .. } => *from = Some(jid),
    }
}

fn result(from: &Jid, to: &FullJid, id: String, payload: Option<Element>) -> Iq {
    Iq::Result {
        from: Some(from.clone()),
        to: Some(to.clone().into()),
        id,
        payload,
    }
}

fn roster_set(hub: &Hub, from: &FullJid, iq: Iq) -> Iq {
    let Iq::Set {
        ref payload,
        ref id,
        ..
    } = iq
    else {
        return iq_error(iq, DefinedCondition::BadRequest);
    };
    let Ok(roster) = Roster::try_from(payload.clone()) else {
        return iq_error(iq, DefinedCondition::BadRequest);
    };
    let [item] = roster.items.as_slice() else {
        return iq_error(iq, DefinedCondition::BadRequest);
    };
    let node = from
        .node()
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    if item.jid == from.to_bare() {
        return iq_error(iq, DefinedCondition::NotAllowed);
    }
    let mut state = hub.lock();
    if item.subscription == Subscription::Remove {
        crate::presence::remove_contact(hub, &mut state, from, &item.jid);
    } else {
        let entry: &mut RosterItem = state
            .user(&node)
            .roster
            .entry(item.jid.clone())
            .or_default();
        entry.name = item.name.clone().filter(|n| !n.is_empty());
        entry.groups = item.groups.iter().map(|g| g.0.clone()).collect();
        crate::roster::push_current(&state, &node, &item.jid);
    }
    result(&Jid::from(from.to_bare()), from, id.clone(), None)
}
