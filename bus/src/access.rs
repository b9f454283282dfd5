//! Topic access: who may publish to a topic and who may subscribe to it,
//! as the XEP-0060 node configuration (`pubsub#publish_model`,
//! `pubsub#access_model`) and affiliations that the server enforces.
//! docs/PROTOCOL.md ("Topic access") has the wire form, docs/DEPLOYMENT.md
//! ("Topic access") what each server does with it.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use crate::codec::name;
use crate::error::ServerError;

const NS_PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const NS_DATA: &str = "jabber:x:data";
const NS_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";

/// Who may subscribe to a topic and read its stored events
/// (`pubsub#access_model`, XEP-0060 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AccessModel {
    /// Any account of the server (the servers' default).
    #[default]
    Open,
    /// The topic's owner and the accounts it lists as members or
    /// publishers ([`TopicAccess::subscribers`]).
    Whitelist,
    /// Accounts subscribed to the presence of the topic's owner, and its
    /// members and publishers (ejabberd and the embedded server; Prosody
    /// 0.12 refuses it).
    Presence,
    /// Every subscription waits for the owner's approval (ejabberd only).
    Authorize,
}

impl AccessModel {
    /// The value of `pubsub#access_model`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Whitelist => "whitelist",
            AccessModel::Presence => "presence",
            AccessModel::Authorize => "authorize",
        }
    }
}

/// The access an event type asks for in its derive:
/// `#[event(publish_model = "publishers", access_model = "whitelist")]`.
///
/// Only the models: the lists (which accounts) are deployment settings,
/// given with [`BusConfigBuilder::topic_access`](crate::BusConfigBuilder::topic_access)
/// or changed with [`Bus::topic_access`](crate::Bus::topic_access). A topic
/// with both takes the config's lists and models, and the derive's where
/// the config leaves them open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventAccess {
    /// `pubsub#publish_model` = `publishers`: only the owner and the
    /// publisher list publish.
    pub publishers_only: bool,
    /// `pubsub#access_model`.
    pub model: AccessModel,
}

impl EventAccess {
    /// No restriction, the default.
    pub const OPEN: EventAccess = EventAccess {
        publishers_only: false,
        model: AccessModel::Open,
    };

    /// Whether nothing is restricted.
    pub const fn is_open(&self) -> bool {
        !self.publishers_only && matches!(self.model, AccessModel::Open)
    }

    /// `config` (or open access) with this type's models where it leaves
    /// them open.
    pub(crate) fn merged_into(self, config: Option<&TopicAccess>) -> TopicAccess {
        let mut access = config.cloned().unwrap_or_default();
        if self.publishers_only && access.publishers.is_none() {
            access.publishers = Some(Vec::new());
        }
        if access.model == AccessModel::Open {
            access.model = self.model;
        }
        access
    }
}

/// Who may publish to and subscribe to one topic, set on the topic's node
/// when this bus creates it
/// ([`BusConfigBuilder::topic_access`](crate::BusConfigBuilder::topic_access)).
///
/// The default is open: any account may publish and subscribe.
///
/// ```
/// use xbus::TopicAccess;
///
/// let access = TopicAccess::new()
///     .publishers(["orders@example.org"])
///     .subscribers(["billing@example.org", "shipping@example.org"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicAccess {
    /// `Some`: `pubsub#publish_model` = `publishers`, with these accounts.
    pub(crate) publishers: Option<Vec<String>>,
    pub(crate) model: AccessModel,
    /// Accounts given the `member` affiliation.
    pub(crate) members: Vec<String>,
}

impl TopicAccess {
    /// Open access: anyone may publish and subscribe.
    pub fn new() -> TopicAccess {
        TopicAccess::default()
    }

    /// Only the topic's owner and `jids` (bare JIDs of service accounts)
    /// may publish: `pubsub#publish_model` = `publishers`, and each account
    /// gets the `publisher` affiliation. A publisher may also subscribe
    /// under [`AccessModel::Whitelist`].
    pub fn publishers<I, S>(mut self, jids: I) -> TopicAccess
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.publishers = Some(jids.into_iter().map(Into::into).collect());
        self
    }

    /// Only the topic's owner, its publishers and `jids` may subscribe and
    /// read stored events: [`AccessModel::Whitelist`], and each account
    /// gets the `member` affiliation.
    pub fn subscribers<I, S>(mut self, jids: I) -> TopicAccess
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.model = AccessModel::Whitelist;
        self.members = jids.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the access model without a member list (e.g.
    /// [`AccessModel::Presence`]); [`subscribers`](Self::subscribers) sets
    /// [`AccessModel::Whitelist`] with one.
    pub fn access_model(mut self, model: AccessModel) -> TopicAccess {
        self.model = model;
        self
    }

    /// The access model.
    pub fn model(&self) -> AccessModel {
        self.model
    }

    /// Whether anything is restricted.
    pub fn is_open(&self) -> bool {
        self.publishers.is_none() && self.model == AccessModel::Open
    }

    /// Checks that every listed account is a bare JID; returns the first
    /// that is not.
    pub(crate) fn normalized(mut self) -> Result<TopicAccess, String> {
        for list in self.publishers.iter_mut().chain([&mut self.members]) {
            for jid in list.iter_mut() {
                *jid = bare_account(jid).ok_or_else(|| jid.clone())?;
            }
        }
        Ok(self)
    }

    /// The node configuration fields: nothing for open access.
    pub(crate) fn form_fields(&self) -> Vec<Element> {
        let mut fields = Vec::new();
        if self.publishers.is_some() {
            fields.push(field("pubsub#publish_model", "publishers"));
        }
        if self.model != AccessModel::Open {
            fields.push(field("pubsub#access_model", self.model.as_str()));
        }
        fields
    }

    /// The affiliations to set after creating the node: publishers, then
    /// members (an account in both lists stays a publisher).
    pub(crate) fn affiliations(&self) -> Vec<(String, Affiliation)> {
        let publishers = self.publishers.iter().flatten();
        let mut out: Vec<(String, Affiliation)> = publishers
            .map(|jid| (jid.clone(), Affiliation::Publisher))
            .collect();
        for jid in &self.members {
            if !out.iter().any(|(j, _)| j == jid) {
                out.push((jid.clone(), Affiliation::Member));
            }
        }
        out
    }
}

/// The account (`user@domain`) of `jid`, a bare or full JID, if it names
/// one.
pub(crate) fn bare_account(jid: &str) -> Option<String> {
    match jid.parse::<Jid>() {
        Ok(jid) if jid.node().is_some() => Some(jid.to_bare().to_string()),
        _ => None,
    }
}

/// An XEP-0060 affiliation that xbus sets (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affiliation {
    Publisher,
    Member,
    None,
}

impl Affiliation {
    fn as_str(self) -> &'static str {
        match self {
            Affiliation::Publisher => "publisher",
            Affiliation::Member => "member",
            Affiliation::None => "none",
        }
    }
}

fn field(var: &str, value: &str) -> Element {
    Element::builder("field", NS_DATA)
        .attr(name("var"), var)
        .append(Element::builder("value", NS_DATA).append(value).build())
        .build()
}

/// `<affiliations node/>` of the owner namespace: sets each account's
/// affiliation with `node` (XEP-0060 §8.9.2).
pub(crate) fn set_affiliations(node: &str, list: &[(String, Affiliation)]) -> Element {
    let list = list.iter().map(|(jid, a)| (jid.as_str(), a.as_str()));
    owner_list("affiliations", "affiliation", node, list)
}

/// `<subscriptions node/>` of the owner namespace: with no `jids`, asks
/// for the node's subscriptions (XEP-0060 §8.8.1); with some, ends each
/// of their subscriptions (`subscription='none'`, §8.8.2).
pub(crate) fn subscriptions(node: &str, jids: &[String]) -> Element {
    let list = jids.iter().map(|jid| (jid.as_str(), "none"));
    owner_list("subscriptions", "subscription", node, list)
}

/// `<LIST node><ITEM jid ITEM='state'/>…</LIST>` in the owner namespace,
/// the shape of both lists an owner manages.
fn owner_list<'a>(
    list: &str,
    item: &'static str,
    node: &str,
    entries: impl Iterator<Item = (&'a str, &'a str)>,
) -> Element {
    let children = entries.map(|(jid, state)| {
        Element::builder(item, NS_PUBSUB_OWNER)
            .attr(name("jid"), jid)
            .attr(name(item), state)
            .build()
    });
    Element::builder("pubsub", NS_PUBSUB_OWNER)
        .append(
            Element::builder(list, NS_PUBSUB_OWNER)
                .attr(name("node"), node)
                .append_all(children)
                .build(),
        )
        .build()
}

/// The subscribed JIDs in the answer to [`subscriptions`].
pub(crate) fn subscribed_jids(answer: &Element) -> Vec<String> {
    answer
        .get_child("subscriptions", NS_PUBSUB_OWNER)
        .into_iter()
        .flat_map(Element::children)
        .filter(|s| s.is("subscription", NS_PUBSUB_OWNER))
        .filter_map(|s| s.attr("jid").map(str::to_owned))
        .collect()
}

/// `<configure node/>` with a submitted form of `fields` (XEP-0060 §8.2.4):
/// sets the access of a node that exists already.
pub(crate) fn configure(node: &str, fields: Vec<Element>) -> Element {
    let form = Element::builder("x", NS_DATA)
        .attr(name("type"), "submit")
        .append(field("FORM_TYPE", NS_NODE_CONFIG))
        .append_all(fields)
        .build();
    Element::builder("pubsub", NS_PUBSUB_OWNER)
        .append(
            Element::builder("configure", NS_PUBSUB_OWNER)
                .attr(name("node"), node)
                .append(form)
                .build(),
        )
        .build()
}

impl ServerError {
    /// Whether the server refused because of the topic's access: the
    /// account is not on its lists (`forbidden`; ejabberd's whitelist
    /// `not-allowed` with `closed-node`; its presence model
    /// `not-authorized` with `presence-subscription-required`). A
    /// `forbidden` that says the pubsub service is out of reach is not one.
    pub(crate) fn is_access_refusal(&self) -> bool {
        let elsewhere = self
            .text
            .as_deref()
            .is_some_and(|t| t.contains("service policy") || t.contains("remote domains"));
        match self.condition.as_str() {
            "forbidden" | "not-authorized" => !elsewhere,
            "not-allowed" => matches!(
                self.specific.as_deref(),
                Some("closed-node" | "presence-subscription-required" | "not-in-roster-group")
            ),
            _ => false,
        }
    }
}

/// How an account refused a subscription gets access.
pub(crate) fn subscribe_fix(error: &ServerError) -> &'static str {
    match error.specific.as_deref() {
        Some("presence-subscription-required") => {
            "the topic's access model is presence: the account needs a presence subscription \
             to the topic's owner (the owner approves it, or an operator adds it to the owner's \
             roster)"
        }
        _ => {
            "ask the topic's owner to add it to the subscribers \
             (`bus.topic_access(topic).allow_subscriber(jid)`)"
        }
    }
}

/// The server would not create a topic with the access restrictions this
/// bus's [`topic_access`](crate::BusConfigBuilder::topic_access) gives it
/// (e.g. an access model it does not implement). Nothing was sent, so that
/// the server does not create the topic open instead.
#[derive(Debug, thiserror::Error)]
#[error("{}", access_not_applied(topic, error))]
pub struct AccessNotApplied {
    /// The topic.
    pub topic: String,
    /// The server's error.
    #[source]
    pub error: ServerError,
}

/// The message of [`AccessNotApplied`].
fn access_not_applied(topic: &str, error: &ServerError) -> String {
    format!(
        "the server refused to create topic {topic:?} with the access restrictions of this \
         bus's topic_access ({error}); nothing was sent, so that the topic is not created \
         open instead: Prosody 0.12 implements the whitelist access model only, the embedded \
         server whitelist and presence, ejabberd all of them (authorize too); and on Prosody \
         only admins of the pubsub component create topics (docs/DEPLOYMENT.md, \"Topic \
         access\")"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_bare_accounts_and_publishers_win() {
        let access = TopicAccess::new()
            .publishers(["orders@example.org/x"])
            .subscribers(["billing@example.org", "orders@example.org"])
            .normalized()
            .unwrap();
        assert_eq!(
            access.affiliations(),
            [
                ("orders@example.org".to_owned(), Affiliation::Publisher),
                ("billing@example.org".to_owned(), Affiliation::Member),
            ]
        );
        let error = TopicAccess::new().subscribers(["example.org"]).normalized();
        assert_eq!(error, Err("example.org".to_owned()));
        assert!(TopicAccess::new().is_open());
        assert!(TopicAccess::new().form_fields().is_empty());
        let fields: Vec<_> = access
            .form_fields()
            .iter()
            .map(|f| (f.attr("var").unwrap().to_owned(), f.text()))
            .collect();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].0, "pubsub#publish_model");
        assert_eq!(fields[1].0, "pubsub#access_model");
    }

    #[test]
    fn a_derive_fills_in_what_the_config_leaves_open() {
        let derive = EventAccess {
            publishers_only: true,
            model: AccessModel::Whitelist,
        };
        assert!(EventAccess::OPEN.is_open() && !derive.is_open());
        let alone = derive.merged_into(None);
        assert_eq!(alone.publishers, Some(Vec::new()));
        assert_eq!(alone.model, AccessModel::Whitelist);
        let config = TopicAccess::new()
            .publishers(["a@example.org"])
            .access_model(AccessModel::Presence);
        assert_eq!(derive.merged_into(Some(&config)), config);
    }

    #[test]
    fn owner_lists_have_the_xep_shape() {
        let set = set_affiliations("t", &[("a@x".to_owned(), Affiliation::Member)]);
        let list = set.get_child("affiliations", NS_PUBSUB_OWNER).unwrap();
        assert_eq!(list.attr("node"), Some("t"));
        let one = list.get_child("affiliation", NS_PUBSUB_OWNER).unwrap();
        assert_eq!(one.attr("jid"), Some("a@x"));
        assert_eq!(one.attr("affiliation"), Some("member"));
        let end = subscriptions("t", &["a@x/r".to_owned()]);
        let sub = end
            .get_child("subscriptions", NS_PUBSUB_OWNER)
            .and_then(|l| l.get_child("subscription", NS_PUBSUB_OWNER))
            .unwrap();
        assert_eq!(sub.attr("jid"), Some("a@x/r"));
        assert_eq!(sub.attr("subscription"), Some("none"));
        let answer: Element = "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>\
            <subscriptions node='t'>\
            <subscription jid='a@x/r1' subscription='subscribed'/>\
            <subscription jid='b@x' subscription='subscribed'/>\
            </subscriptions></pubsub>"
            .parse()
            .unwrap();
        assert_eq!(subscribed_jids(&answer), ["a@x/r1", "b@x"]);
    }

    #[test]
    fn refusals_by_access_are_told_apart() {
        let error = |condition: &str, specific: Option<&str>, text: Option<&str>| ServerError {
            condition: condition.into(),
            kind: "cancel".into(),
            specific: specific.map(Into::into),
            text: text.map(Into::into),
        };
        assert!(error("forbidden", None, None).is_access_refusal());
        assert!(error("not-allowed", Some("closed-node"), None).is_access_refusal());
        assert!(
            error(
                "not-authorized",
                Some("presence-subscription-required"),
                None
            )
            .is_access_refusal()
        );
        assert!(
            !error("forbidden", None, Some("Access denied by service policy")).is_access_refusal()
        );
        assert!(!error("not-allowed", None, None).is_access_refusal());
        assert!(!error("item-not-found", None, None).is_access_refusal());
    }
}
