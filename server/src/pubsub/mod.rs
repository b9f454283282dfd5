//! The XEP-0060 publish-subscribe service at `pubsub.<domain>`: a pure
//! state machine. The server hands it every IQ addressed to the service and
//! routes the notifications it returns; it does no I/O of its own.
//!
//! # What it implements
//! Leaf nodes only, in an open development mode: any user may create nodes
//! (named, or instant with a generated name), publish, subscribe and
//! retrieve items. Node creation takes the `pubsub#node_config` options
//! `persist_items`, `max_items` (a number or `max`), `notification_type`,
//! `access_model` (`open`, `whitelist` or `presence`), `publish_model`, `deliver_payloads`,
//! `deliver_notifications`, `notify_delete`, `notify_retract`, `title` and
//! `send_last_published_item`; other options are accepted and ignored.
//! Publishing creates a missing node (`auto-create`, configurable),
//! honours publish-options as preconditions (XEP-0060 §7.1.5) and evicts the
//! oldest items beyond `max_items`. Owners configure, purge and delete
//! nodes, list or change their subscriptions, and list or set
//! affiliations (`owner`, `publisher`, `member`, `outcast`, `none`).
//! Access is enforced: the `publishers` publish model lets owners and
//! publishers publish; the `whitelist` access model lets owners,
//! publishers and members subscribe and retrieve items (others get
//! `not-allowed` + `<closed-node/>`); the `presence` access model admits
//! those and the accounts that receive the owner's presence (others get
//! `not-authorized` + `<presence-subscription-required/>`; the server
//! passes the requester's roster in, [`PubSub::handle_iq_seeing`]);
//! outcasts may do neither. An account
//! that loses access loses its subscriptions. disco#info and
//! disco#items describe the service, the nodes and their items.
//!
//! # Choices, and where it differs from Prosody or ejabberd
//! - `pubsub#max_items` above [`PubSubConfig::max_items_limit`] is refused
//!   with `not-acceptable` (Prosody refuses too; ejabberd clamps). `max`
//!   means the limit.
//! - The `roster` and `authorize` access models are refused with
//!   `feature-not-implemented` + `<unsupported feature='access-…'/>`
//!   (Prosody 0.12 refuses them, and `presence`, with `not-acceptable`;
//!   ejabberd implements them).
//! - No item is sent on subscribe unless the node asks for it with
//!   `send_last_published_item` (ejabberd's default is `on_sub_and_presence`).
//! - Subscribing again with the same JID returns the existing subscription
//!   (one subscription per JID and node; no multi-subscribe).
//! - Subscription options (`<options/>`) are not supported; options sent
//!   along with a subscribe are ignored.
//! - Items are returned oldest first (in publish order).
//! - Retract notifications are sent when the request says `notify='true'`,
//!   or, without the attribute, when `pubsub#notify_retract` is on (off by
//!   default, as Prosody behaves).
//! - Requests for specific item ids return the ones that exist (no error
//!   for the others).
//! - See [`PubSub::session_ended`] for full-JID subscriptions.
//! - In the default [`Ownership::Everyone`] mode every user may configure,
//!   purge and delete any open node and list its subscribers (like the
//!   test harness's Prosody, where every account is a component admin). A
//!   node with a publisher list or a whitelist is administered by its
//!   owners alone in either mode: anyone could otherwise edit its lists.
//!
//! # Implementation
//! Requests are read as minidom elements: the typed pubsub parsers of
//! xmpp-parsers 0.23 reject requests that real clients send (e.g. an
//! `<unsubscribe/>` without `subid`, as xbus sends it) and would turn them
//! into parse errors instead of the XEP's error conditions. Data forms,
//! disco results, stanza errors, IQs and messages use the typed ones.
//! Ids (instant node names, generated item ids, subids, message ids) come
//! from a counter through a bijective mix: unique and deterministic.

mod config;
mod disco;
mod entity;
mod errors;
mod node;
mod owner;
mod subscribe;
mod xml;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xmpp_parsers::iq::{Iq, IqHeader, IqPayload};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Id, Message, MessageType};
use xmpp_parsers::minidom::Element;

use errors::{Failure, Result};
use node::{Affiliation, Node};

/// Namespaces.
pub(crate) mod ns {
    pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
    pub const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
    pub const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
    pub const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
    pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
    pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
    pub const META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";
    pub const DATA_FORMS: &str = "jabber:x:data";
    pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
}

/// Longest node name or item id accepted, in bytes.
const MAX_NAME_LEN: usize = 1024;

/// Who may administer (configure, purge, delete, list subscribers of) a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    /// Every user owns every open node: the development mode, like the
    /// test harness's Prosody, where every account is a component admin.
    /// A node with a publisher list or a whitelist has its creator (and
    /// the owners it names) as its only owners.
    #[default]
    Everyone,
    /// Only the user (bare JID) that created the node.
    Creator,
}

/// Whether the requester receives the presence of an account (a bare
/// JID): what the `presence` access model asks of a subscriber, about the
/// node's owner.
pub type Sees<'a> = &'a dyn Fn(&str) -> bool;

/// Limits of the pubsub service.
#[derive(Debug, Clone)]
pub struct PubSubConfig {
    /// Largest `pubsub#max_items` a node may ask for (larger: `not-acceptable`).
    pub max_items_limit: u32,
    /// `pubsub#max_items` of a node created without one.
    pub default_max_items: u32,
    /// Most nodes the service holds (more: `resource-constraint`).
    pub max_nodes: usize,
    /// Most subscriptions one node holds (more: `policy-violation` +
    /// `<too-many-subscriptions/>`).
    pub max_subscriptions_per_node: usize,
    /// Largest item payload, serialized, in bytes (larger: `not-acceptable`
    /// + `<payload-too-big/>`).
    pub max_payload_bytes: usize,
    /// Whether publishing to a missing node creates it (with the
    /// publish-options as its configuration), as Prosody's
    /// `autocreate_on_publish`.
    pub autocreate_on_publish: bool,
    /// Who administers nodes.
    pub ownership: Ownership,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            max_items_limit: 10_000,
            default_max_items: 1000,
            max_nodes: 10_000,
            max_subscriptions_per_node: 10_000,
            max_payload_bytes: 2 * 1024 * 1024,
            autocreate_on_publish: true,
            ownership: Ownership::Everyone,
        }
    }
}

/// What handling one IQ produced.
#[derive(Debug)]
pub struct Outcome {
    /// The answer to the IQ (a result or an error), addressed to its sender.
    pub reply: Iq,
    /// Event notifications to route, each addressed (`to`) to a subscriber
    /// and sent `from` the service. `to` is the subscribed JID as given: a
    /// full JID, or a bare JID (route it as RFC 6121 routes a message of
    /// its type, `headline` by default, to a bare JID).
    pub notifications: Vec<Message>,
}

/// What a successful request produced: the result's payload and the
/// notifications.
#[derive(Debug, Default)]
pub(crate) struct Done {
    payload: Option<Element>,
    notifications: Vec<Message>,
}

impl Done {
    fn payload(payload: Element) -> Done {
        Done {
            payload: Some(payload),
            notifications: Vec::new(),
        }
    }
}

/// The pubsub service.
#[derive(Debug)]
pub struct PubSub {
    service: Jid,
    config: PubSubConfig,
    /// Node name → node, sorted for disco#items.
    nodes: BTreeMap<String, Node>,
    /// Bare JID of a subscriber → (node, subscribed JID) of each of its
    /// subscriptions, for entity queries and [`PubSub::session_ended`].
    by_subscriber: HashMap<String, BTreeSet<(String, String)>>,
    /// Source of generated ids (instant nodes, items, subids, messages).
    counter: u64,
}

/// Whether the sender of a request administers nodes.
enum Role {
    Owner,
    Other,
}

impl PubSub {
    /// A service answering as `service` (e.g. `pubsub.localhost`).
    pub fn new(service: Jid, config: PubSubConfig) -> PubSub {
        PubSub {
            service,
            config,
            nodes: BTreeMap::new(),
            by_subscriber: HashMap::new(),
            counter: 0,
        }
    }

    /// The service's JID.
    pub fn jid(&self) -> &Jid {
        &self.service
    }

    /// Handles one IQ (get or set) sent to the service by `from`; `from`
    /// is trusted (the server stamps it), the IQ's own `from` is ignored.
    ///
    /// Only `get` and `set` IQs are requests: the caller must not pass
    /// `result` or `error` IQs (RFC 6120 §8.2.3 forbids answering them);
    /// if it does, the reply is an error that it should drop.
    pub fn handle_iq(&mut self, from: &FullJid, iq: Iq) -> Outcome {
        self.handle_iq_seeing(from, iq, &|_| false)
    }

    /// [`handle_iq`](Self::handle_iq) for a requester that receives the
    /// presence of the accounts (bare JIDs) for which `sees` is true: the
    /// `presence` access model admits it to the nodes they own.
    pub fn handle_iq_seeing(&mut self, from: &FullJid, iq: Iq, sees: Sees<'_>) -> Outcome {
        let (header, payload) = iq.split();
        let result = match payload {
            IqPayload::Get(elem) => self.dispatch(from, &elem, false, sees),
            IqPayload::Set(elem) => self.dispatch(from, &elem, true, sees),
            IqPayload::Result(_) | IqPayload::Error(_) => {
                Err(Failure::bad_request("not a request"))
            }
        };
        let header = IqHeader {
            from: Some(self.service.clone()),
            to: Some(Jid::from(from.clone())),
            id: header.id,
        };
        match result {
            Ok(done) => Outcome {
                reply: Iq::assemble(header, IqPayload::Result(done.payload)),
                notifications: done.notifications,
            },
            Err(failure) => Outcome {
                reply: Iq::assemble(header, IqPayload::Error(failure.into_stanza_error())),
                notifications: Vec::new(),
            },
        }
    }

    /// A session ended: its full JID's subscriptions are removed; bare-JID
    /// subscriptions stay.
    ///
    /// Prosody keeps full-JID subscriptions until unsubscribed, but a full
    /// JID never comes back once its session has ended (xbus binds random
    /// resources, and a resumed XEP-0198 session is not an ended one), so
    /// notifications to it would only be bounced forever and the
    /// subscriptions would pile up: removing them keeps memory bounded by
    /// the live sessions.
    pub fn session_ended(&mut self, jid: &FullJid) {
        let bare = jid.to_bare().to_string();
        let full = jid.to_string();
        let Some(subs) = self.by_subscriber.get_mut(&bare) else {
            return;
        };
        let ended: Vec<(String, String)> =
            subs.iter().filter(|(_, j)| *j == full).cloned().collect();
        for key in &ended {
            subs.remove(key);
        }
        if subs.is_empty() {
            self.by_subscriber.remove(&bare);
        }
        for (node, jid) in ended {
            if let Some(node) = self.nodes.get_mut(&node) {
                node.subscriptions.remove(&jid);
            }
        }
    }

    fn dispatch(
        &mut self,
        from: &FullJid,
        elem: &Element,
        set: bool,
        sees: Sees<'_>,
    ) -> Result<Done> {
        let ns = elem.ns();
        match (elem.name(), ns.as_str(), set) {
            ("pubsub", ns::PUBSUB, _) => self.entity_request(from, elem, set, sees),
            ("pubsub", ns::OWNER, _) => self.owner_request(from, elem, set),
            ("query", ns::DISCO_INFO, false) => self.disco_info(elem),
            ("query", ns::DISCO_ITEMS, false) => self.disco_items(elem),
            ("query", ns::DISCO_INFO | ns::DISCO_ITEMS, true) => {
                Err(Failure::bad_request("disco queries are get requests"))
            }
            _ => Err(Failure::service_unavailable()),
        }
    }

    /// Whether `bare` administers `node`: its owners do; in
    /// [`Ownership::Everyone`] mode everyone does, unless the node
    /// restricts access (a whitelist or a publisher list would mean
    /// nothing if anyone could edit them).
    fn role(&self, bare: &str, node: &Node) -> Role {
        if node.affiliation(bare) == Affiliation::Owner {
            return Role::Owner;
        }
        match self.config.ownership {
            Ownership::Everyone if !node.config.restricted() => Role::Owner,
            Ownership::Everyone | Ownership::Creator => Role::Other,
        }
    }

    /// A fresh id: 16 hex digits, unique for the life of the service
    /// (splitmix64 of a counter, a bijection).
    fn next_id(&mut self) -> String {
        self.counter += 1;
        let mut z = self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("{:016x}", z ^ (z >> 31))
    }

    fn node(&self, name: &str) -> Result<&Node> {
        self.nodes
            .get(name)
            .ok_or_else(|| Failure::item_not_found(format!("no node {name:?}")))
    }

    fn node_mut(&mut self, name: &str) -> Result<&mut Node> {
        self.nodes
            .get_mut(name)
            .ok_or_else(|| Failure::item_not_found(format!("no node {name:?}")))
    }

    /// An event message from the service to `to`, of the node's type.
    fn event_message(&mut self, to: Jid, headline: bool, event: Element) -> Message {
        let type_ = if headline {
            MessageType::Headline
        } else {
            MessageType::Normal
        };
        let mut message = Message::new_with_type(type_, Some(to));
        message.from = Some(self.service.clone());
        message.id = Some(Id(self.next_id()));
        message.payloads.push(event);
        message
    }

    /// One event message per subscription of `node`, all carrying `event`.
    fn notify_all(&mut self, node: &str, event: &Element) -> Vec<Message> {
        let Some(n) = self.nodes.get(node) else {
            return Vec::new();
        };
        let headline = n.config.headline;
        let targets: Vec<Jid> = n.subscriptions.values().map(|s| s.jid.clone()).collect();
        targets
            .into_iter()
            .map(|to| self.event_message(to, headline, event.clone()))
            .collect()
    }

    fn index_subscription(&mut self, node: &str, jid: &Jid) {
        self.by_subscriber
            .entry(jid.to_bare().to_string())
            .or_default()
            .insert((node.to_owned(), jid.to_string()));
    }

    fn unindex_subscription(&mut self, node: &str, jid: &Jid) {
        let bare = jid.to_bare().to_string();
        if let Some(set) = self.by_subscriber.get_mut(&bare) {
            set.remove(&(node.to_owned(), jid.to_string()));
            if set.is_empty() {
                self.by_subscriber.remove(&bare);
            }
        }
    }
}

/// The `node` attribute of `elem`, required and of bounded length.
fn node_attr(elem: &Element) -> Result<&str> {
    match elem.attr("node") {
        None | Some("") => Err(Failure::bad_request_app(
            "nodeid-required",
            "the node attribute is required",
        )),
        Some(node) if node.len() > MAX_NAME_LEN => Err(Failure::not_acceptable(format!(
            "node names are limited to {MAX_NAME_LEN} bytes"
        ))),
        Some(node) => Ok(node),
    }
}
