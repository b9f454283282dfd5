//! A node: its configuration, owner, items and subscriptions.

use std::collections::{BTreeMap, HashMap};

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::Sees;
use super::config::{AccessModel, NodeConfig};
use super::errors::Failure;

/// One published item.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub id: String,
    /// Bare JID of the publisher.
    pub publisher: String,
    pub payload: Option<Element>,
}

/// Items in publish order, bounded; ids are unique.
#[derive(Debug, Default)]
pub(crate) struct ItemStore {
    /// Publish sequence number → item; the oldest first.
    by_seq: BTreeMap<u64, Item>,
    /// Item id → sequence number.
    by_id: HashMap<String, u64>,
    next_seq: u64,
}

impl ItemStore {
    /// Stores `item` as the newest (replacing one of the same id), then
    /// evicts the oldest beyond `keep`.
    pub(crate) fn publish(&mut self, item: Item, keep: usize) {
        self.remove(&item.id);
        if keep == 0 {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(item.id.clone(), seq);
        self.by_seq.insert(seq, item);
        self.truncate(keep);
    }

    /// Drops the oldest items until at most `keep` remain.
    pub(crate) fn truncate(&mut self, keep: usize) {
        while self.by_seq.len() > keep {
            if let Some((_, old)) = self.by_seq.pop_first() {
                self.by_id.remove(&old.id);
            }
        }
    }

    /// Removes an item; whether it existed.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        match self.by_id.remove(id) {
            Some(seq) => {
                self.by_seq.remove(&seq);
                true
            }
            None => false,
        }
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Item> {
        self.by_id.get(id).and_then(|seq| self.by_seq.get(seq))
    }

    pub(crate) fn clear(&mut self) {
        self.by_seq.clear();
        self.by_id.clear();
    }

    /// The newest `n` items, oldest first.
    pub(crate) fn newest(&self, n: usize) -> Vec<&Item> {
        let mut items: Vec<&Item> = self.by_seq.values().rev().take(n).collect();
        items.reverse();
        items
    }

    /// All items, oldest first.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Item> {
        self.by_seq.values()
    }
}

/// One subscription: the subscribed JID (full or bare, as given) and its id.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub jid: Jid,
    pub subid: String,
}

/// A leaf node.
#[derive(Debug)]
pub(crate) struct Node {
    /// Bare JID of the creator.
    pub owner: String,
    pub config: NodeConfig,
    pub items: ItemStore,
    /// Subscribed JID (as a string) → subscription; one per JID.
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Bare JID → the affiliation an owner gave it (XEP-0060 §8.9.2);
    /// the creator is not in it (see [`Node::affiliation`]).
    pub affiliations: BTreeMap<String, Affiliation>,
}

/// An account's affiliation with a node (XEP-0060 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affiliation {
    Owner,
    Publisher,
    Member,
    None,
    Outcast,
}

impl Affiliation {
    /// The affiliation as the protocol names it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Publisher => "publisher",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }

    /// Reads an affiliation attribute.
    pub(crate) fn parse(value: &str) -> Option<Affiliation> {
        Some(match value {
            "owner" => Affiliation::Owner,
            "publisher" => Affiliation::Publisher,
            "member" => Affiliation::Member,
            "none" => Affiliation::None,
            "outcast" => Affiliation::Outcast,
            _ => return None,
        })
    }
}

impl Node {
    pub(crate) fn new(owner: String, config: NodeConfig) -> Node {
        Node {
            owner,
            config,
            items: ItemStore::default(),
            subscriptions: BTreeMap::new(),
            affiliations: BTreeMap::new(),
        }
    }

    /// The affiliation of the bare JID `bare`: `owner` for the creator.
    pub(crate) fn affiliation(&self, bare: &str) -> Affiliation {
        if self.owner == bare {
            return Affiliation::Owner;
        }
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    /// Why [`may_read`](Self::may_read) said no, as the XEP's error.
    pub(crate) fn read_refusal(&self) -> Failure {
        match self.config.access_model {
            AccessModel::Presence => Failure::presence_required(),
            AccessModel::Open | AccessModel::Whitelist => Failure::closed_node(),
        }
    }

    /// Whether `bare` may subscribe and retrieve items under the node's
    /// access model: whitelist, owners, publishers and members; presence,
    /// those and the accounts that receive the owner's presence (`sees`;
    /// `None`: not known, taken as yes).
    pub(crate) fn may_read(&self, bare: &str, sees: Option<Sees<'_>>) -> bool {
        let affiliation = self.affiliation(bare);
        let listed = matches!(
            affiliation,
            Affiliation::Owner | Affiliation::Publisher | Affiliation::Member
        );
        match (affiliation, self.config.access_model) {
            (Affiliation::Outcast, _) => false,
            (_, AccessModel::Open) => true,
            (_, AccessModel::Whitelist) => listed,
            (_, AccessModel::Presence) => listed || sees.is_none_or(|sees| sees(&self.owner)),
        }
    }

    /// Whether a subscription of the bare JID `bare` (or of one of its full
    /// JIDs) exists.
    pub(crate) fn has_subscriber(&self, bare: &str) -> bool {
        self.subscriptions
            .values()
            .any(|s| s.jid.to_bare().as_str() == bare)
    }
}
