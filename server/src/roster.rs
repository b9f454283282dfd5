//! Roster items (RFC 6121 section 2) and roster pushes.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::roster::{Ask, Group, Item, Roster, Subscription};
use xmpp_parsers::stanza::Stanza;

use crate::hub::State;

/// One contact in a user's roster.
#[derive(Debug, Clone, Default)]
pub(crate) struct RosterItem {
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// The user receives the contact's presence.
    pub to: bool,
    /// The contact receives the user's presence.
    pub from: bool,
    /// The user asked to subscribe and the contact has not answered.
    pub ask: bool,
}

impl RosterItem {
    pub fn subscription(&self) -> Subscription {
        match (self.to, self.from) {
            (true, true) => Subscription::Both,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (false, false) => Subscription::None,
        }
    }

    /// The item as XML for `jid`.
    pub fn to_item(&self, jid: &BareJid) -> Item {
        Item {
            jid: jid.clone(),
            name: self.name.clone(),
            subscription: self.subscription(),
            ask: if self.ask { Ask::Subscribe } else { Ask::None },
            groups: self.groups.iter().cloned().map(Group).collect(),
            approved: None,
        }
    }
}

/// The item removed, as pushed.
pub(crate) fn removed_item(jid: &BareJid) -> Item {
    Item {
        jid: jid.clone(),
        name: None,
        subscription: Subscription::Remove,
        ask: Ask::None,
        groups: Vec::new(),
        approved: None,
    }
}

/// Sends a roster push of `item` to every session of `node` that fetched
/// the roster.
pub(crate) fn push(state: &State, node: &str, item: Item) {
    let Some(user) = state.users.get(node) else {
        return;
    };
    for session in user.sessions.iter().filter(|s| s.interested) {
        let roster = Roster {
            ver: None,
            items: vec![item.clone()],
        };
        let iq = Iq::Set {
            from: None,
            to: Some(session.jid.clone().into()),
            id: format!("push-{:08x}", rand::random::<u32>()),
            payload: roster.into(),
        };
        session.deliver(Stanza::Iq(iq));
    }
}

/// Pushes the current state of `contact` in `node`'s roster.
pub(crate) fn push_current(state: &State, node: &str, contact: &BareJid) {
    let item = state
        .users
        .get(node)
        .and_then(|u| u.roster.get(contact))
        .map(|i| i.to_item(contact));
    if let Some(item) = item {
        push(state, node, item);
    }
}
