//! Presence (RFC 6121 sections 3 and 4): broadcast, probes and the
//! subscription state machine.

use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::presence::{Presence, Type};
use xmpp_parsers::stanza::Stanza;

use crate::hub::{Hub, State};
use crate::roster;

/// Handles a presence stanza sent by session `id` bound to `from`.
pub(crate) fn handle(hub: &Hub, id: u64, from: &FullJid, mut presence: Presence) {
    presence.from = Some(from.clone().into());
    let mut state = hub.lock();
    let Some(node) = from.node().map(|n| n.as_str().to_owned()) else {
        return;
    };
    match (presence.type_.clone(), presence.to.clone()) {
        (Type::None | Type::Unavailable, None) => {
            let available = presence.type_ == Type::None;
            let Some(session) = state.session_mut(id, &node) else {
                return;
            };
            let initial = available && session.presence.is_none();
            session.presence = available.then(|| presence.clone());
            broadcast(hub, &mut state, from, &presence);
            if initial {
                tracing::debug!(jid = %from, "initial presence");
                // The user's other available resources, then the contacts.
                let others: Vec<Presence> = state
                    .available(&node)
                    .filter(|s| s.jid != *from)
                    .filter_map(|s| s.presence.clone())
                    .collect();
                for other in others {
                    hub.send_to(&state, from, Stanza::Presence(to_session(other, from)));
                }
                probe(hub, &mut state, &node, from);
                for request in state
                    .user(&node)
                    .pending_in
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
                {
                    hub.send_to(&state, from, Stanza::Presence(to_session(request, from)));
                }
                crate::offline::flush(&mut state, &node, from);
            }
        }
        (Type::None | Type::Unavailable, Some(to)) => directed(hub, &state, presence, &to),
        (Type::Subscribe, Some(to)) => subscribe(hub, &mut state, from, &to.to_bare()),
        (Type::Subscribed, Some(to)) => subscribed(hub, &mut state, from, &to.to_bare()),
        (Type::Unsubscribe, Some(to)) => unsubscribe(hub, &mut state, from, &to.to_bare()),
        (Type::Unsubscribed, Some(to)) => unsubscribed(hub, &mut state, from, &to.to_bare()),
        (Type::Probe, Some(to)) => {
            let contact = to.to_bare();
            if let Some(cnode) = local(hub, &contact) {
                let subscribed = state
                    .users
                    .get(&cnode)
                    .and_then(|u| u.roster.get(&from.to_bare()))
                    .is_some_and(|i| i.from);
                if subscribed {
                    send_presences_of(&state, &cnode, std::slice::from_ref(from));
                }
            }
        }
        _ => tracing::debug!(jid = %from, "presence ignored"),
    }
}

fn local(hub: &Hub, jid: &BareJid) -> Option<String> {
    hub.local_node(&Jid::from(jid.clone()))
        .filter(|node| hub.accounts.exists(node))
        .map(str::to_owned)
}

fn to_session(mut presence: Presence, to: &FullJid) -> Presence {
    presence.to = Some(to.clone().into());
    presence
}

/// Sends `presence` (from `from`) to the user's own available resources,
/// the sender included, and to every available resource of the contacts
/// subscribed to the user.
pub(crate) fn broadcast(hub: &Hub, state: &mut State, from: &FullJid, presence: &Presence) {
    let Some(node) = from.node().map(|n| n.as_str().to_owned()) else {
        return;
    };
    let mut targets: Vec<FullJid> = Vec::new();
    if let Some(user) = state.users.get(&node) {
        for session in &user.sessions {
            if session.presence.is_some() || session.jid == *from {
                targets.push(session.jid.clone());
            }
        }
        for (contact, item) in &user.roster {
            if !item.from {
                continue;
            }
            if let Some(cnode) = local(hub, contact) {
                targets.extend(state.available(&cnode).map(|s| s.jid.clone()));
            }
        }
    }
    for target in targets {
        hub.send_to(
            state,
            &target,
            Stanza::Presence(to_session(presence.clone(), &target)),
        );
    }
}

/// Sends the available presence of every contact `node` is subscribed to
/// (to/both) to the session `to`.
fn probe(hub: &Hub, state: &mut State, node: &str, to: &FullJid) {
    let contacts: Vec<BareJid> = state
        .users
        .get(node)
        .map(|u| {
            u.roster
                .iter()
                .filter(|(_, i)| i.to)
                .map(|(c, _)| c.clone())
                .collect()
        })
        .unwrap_or_default();
    for contact in contacts {
        if let Some(cnode) = local(hub, &contact) {
            send_presences_of(state, &cnode, std::slice::from_ref(to));
        }
    }
}

/// Sends the current presence of every available session of `node` to
/// each of `targets`.
fn send_presences_of(state: &State, node: &str, targets: &[FullJid]) {
    let presences: Vec<Presence> = state
        .available(node)
        .filter_map(|s| s.presence.clone())
        .collect();
    for target in targets {
        if let Some(session) = state.session(target) {
            for presence in &presences {
                session.deliver(Stanza::Presence(to_session(presence.clone(), target)));
            }
        }
    }
}

/// Sends unavailable from every available session of `node` to `targets`.
fn send_unavailable_of(state: &State, node: &str, targets: &[FullJid]) {
    let sources: Vec<FullJid> = state.available(node).map(|s| s.jid.clone()).collect();
    for target in targets {
        if let Some(session) = state.session(target) {
            for source in &sources {
                let mut presence = Presence::new(Type::Unavailable);
                presence.from = Some(source.clone().into());
                session.deliver(Stanza::Presence(to_session(presence, target)));
            }
        }
    }
}

fn available_jids(state: &State, node: &str) -> Vec<FullJid> {
    state.available(node).map(|s| s.jid.clone()).collect()
}

/// Delivers a subscription stanza of `type_` from bare `from` to every
/// available resource of `to_node`.
fn notify(state: &State, type_: Type, from: &BareJid, to_node: &str) {
    for target in available_jids(state, to_node) {
        let mut presence = Presence::new(type_.clone());
        presence.from = Some(from.clone().into());
        presence.to = Some(target.clone().into());
        if let Some(session) = state.session(&target) {
            session.deliver(Stanza::Presence(presence));
        }
    }
}

fn directed(hub: &Hub, state: &State, presence: Presence, to: &Jid) {
    let Some(cnode) = hub.local_node(to).map(str::to_owned) else {
        return;
    };
    let targets = match to.clone().try_into_full() {
        Ok(full) => vec![full],
        Err(_) => available_jids(state, &cnode),
    };
    for target in targets {
        hub.send_to(
            state,
            &target,
            Stanza::Presence(to_session(presence.clone(), &target)),
        );
    }
}

fn subscribe(hub: &Hub, state: &mut State, from: &FullJid, contact: &BareJid) {
    let user = from.to_bare();
    let Some(node) = from.node().map(|n| n.as_str().to_owned()) else {
        return;
    };
    if *contact == user {
        return;
    }
    let item = state.user(&node).roster.entry(contact.clone()).or_default();
    if !item.to {
        item.ask = true;
    }
    roster::push_current(state, &node, contact);
    let Some(cnode) = local(hub, contact) else {
        return;
    };
    let already = state
        .users
        .get(&cnode)
        .and_then(|u| u.roster.get(&user))
        .is_some_and(|i| i.from);
    if already {
        // RFC 6121 3.1.3: auto-reply on the contact's behalf.
        let item = state.user(&node).roster.entry(contact.clone()).or_default();
        item.ask = false;
        item.to = true;
        roster::push_current(state, &node, contact);
        notify(state, Type::Subscribed, contact, &node);
        let mine = available_jids(state, &node);
        send_presences_of(state, &cnode, &mine);
        return;
    }
    let mut request = Presence::new(Type::Subscribe);
    request.from = Some(user.clone().into());
    state.user(&cnode).pending_in.insert(user.clone(), request);
    notify(state, Type::Subscribe, &user, &cnode);
}

fn subscribed(hub: &Hub, state: &mut State, from: &FullJid, subscriber: &BareJid) {
    let contact = from.to_bare();
    let Some(node) = from.node().map(|n| n.as_str().to_owned()) else {
        return;
    };
    if state.user(&node).pending_in.remove(subscriber).is_none() {
        tracing::debug!(%from, %subscriber, "subscribed without a pending request: ignored");
        return;
    }
    state
        .user(&node)
        .roster
        .entry(subscriber.clone())
        .or_default()
        .from = true;
    roster::push_current(state, &node, subscriber);
    let Some(snode) = local(hub, subscriber) else {
        return;
    };
    let item = state
        .user(&snode)
        .roster
        .entry(contact.clone())
        .or_default();
    item.to = true;
    item.ask = false;
    roster::push_current(state, &snode, &contact);
    notify(state, Type::Subscribed, &contact, &snode);
    let theirs = available_jids(state, &snode);
    send_presences_of(state, &node, &theirs);
}

fn unsubscribe(hub: &Hub, state: &mut State, from: &FullJid, contact: &BareJid) {
    let user = from.to_bare();
    let Some(node) = from.node().map(|n| n.as_str().to_owned()) else {
        return;
    };
    if let Some(item) = state.user(&node).roster.get_mut(contact) {
        item.to = false;
        item.ask = false;
        roster::push_current(state, &node, contact);
    }
    let Some(cnode) = local(hub, contact) else {
        return;
    };
    state.user(&cnode).pending_in.remove(&user);
    if let Some(item) = state.user(&cnode).roster.get_mut(&user) {
        item.from = false;
        roster::push_current(state, &cnode, &user);
    }
    notify(state, Type::Unsubscribe, &user, &cnode);
    let mine = available_jids(state, &node);
    send_unavailable_of(state, &cnode, &mine);
}

fn unsubscribed(hub: &Hub, state: &mut State, from: &FullJid, subscriber: &BareJid) {
    let contact = from.to_bare();
    let Some(node) = from.node().map(|n| n.as_str().to_owned()) else {
        return;
    };
    state.user(&node).pending_in.remove(subscriber);
    if let Some(item) = state.user(&node).roster.get_mut(subscriber) {
        item.from = false;
        roster::push_current(state, &node, subscriber);
    }
    let Some(snode) = local(hub, subscriber) else {
        return;
    };
    if let Some(item) = state.user(&snode).roster.get_mut(&contact) {
        item.to = false;
        item.ask = false;
        roster::push_current(state, &snode, &contact);
    }
    notify(state, Type::Unsubscribed, &contact, &snode);
    let theirs = available_jids(state, &snode);
    send_unavailable_of(state, &node, &theirs);
}

/// Roster removal of `contact` by `from`: cancels both directions.
pub(crate) fn remove_contact(hub: &Hub, state: &mut State, from: &FullJid, contact: &BareJid) {
    let Some(node) = from.node().map(|n| n.as_str().to_owned()) else {
        return;
    };
    let Some(item) = state.user(&node).roster.get(contact).cloned() else {
        return;
    };
    if item.to || item.ask {
        unsubscribe(hub, state, from, contact);
    }
    if item.from {
        unsubscribed(hub, state, from, contact);
    }
    state.user(&node).roster.remove(contact);
    roster::push(state, &node, roster::removed_item(contact));
}
