//! Requests in the `pubsub#owner` namespace: configure, default, delete,
//! purge, subscriptions, affiliations.

use xmpp_parsers::data_forms::DataFormType;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;

use super::config::{self, NodeConfig};
use super::entity::event;
use super::errors::{Failure, Result};
use super::node::{Affiliation, Subscription};
use super::xml::build;
use super::{Done, PubSub, Role, node_attr, ns};

impl PubSub {
    pub(super) fn owner_request(
        &mut self,
        from: &FullJid,
        elem: &Element,
        set: bool,
    ) -> Result<Done> {
        let mut children = elem.children();
        let (Some(verb), None) = (children.next(), children.next()) else {
            return Err(Failure::bad_request("<pubsub/> holds exactly one request"));
        };
        if verb.ns() != ns::OWNER {
            return Err(Failure::bad_request(format!(
                "unexpected element {}",
                verb.name()
            )));
        }
        if (verb.name(), set) == ("default", false) {
            let form = NodeConfig::defaults(&self.config).to_form(DataFormType::Form);
            let default = Element::builder("default", ns::OWNER)
                .append(Element::from(form))
                .build();
            return Ok(Done::payload(owner(default)));
        }
        let bare = from.to_bare().to_string();
        let node_name = node_attr(verb)?.to_owned();
        let node = self.node(&node_name)?;
        if let (Role::Other, "configure" | "delete" | "purge" | "subscriptions" | "affiliations") =
            (self.role(&bare, node), verb.name())
        {
            return Err(Failure::forbidden("only the node's owner may do this"));
        }
        match (verb.name(), set) {
            ("configure", false) => {
                let form = node.config.to_form(DataFormType::Form);
                let configure = build("configure", ns::OWNER, &[("node", &node_name)])
                    .append(Element::from(form))
                    .build();
                Ok(Done::payload(owner(configure)))
            }
            ("configure", true) => self.configure(&node_name, verb),
            ("delete", true) => Ok(self.delete(&node_name)),
            ("purge", true) => Ok(self.purge(&node_name)),
            ("subscriptions", false) => {
                let subs = node.subscriptions.values().map(|s| {
                    build(
                        "subscription",
                        ns::OWNER,
                        &[
                            ("jid", s.jid.as_str()),
                            ("subscription", "subscribed"),
                            ("subid", &s.subid),
                        ],
                    )
                    .build()
                });
                let list = build("subscriptions", ns::OWNER, &[("node", &node_name)])
                    .append_all(subs)
                    .build();
                Ok(Done::payload(owner(list)))
            }
            ("subscriptions", true) => self.modify_subscriptions(&node_name, verb),
            ("affiliations", false) => {
                let affiliation = |jid: &str, affiliation: &str| {
                    build(
                        "affiliation",
                        ns::OWNER,
                        &[("jid", jid), ("affiliation", affiliation)],
                    )
                    .build()
                };
                let others = node
                    .affiliations
                    .iter()
                    .map(|(jid, a)| affiliation(jid, a.as_str()));
                let list = build("affiliations", ns::OWNER, &[("node", &node_name)])
                    .append(affiliation(&node.owner, "owner"))
                    .append_all(others)
                    .build();
                Ok(Done::payload(owner(list)))
            }
            ("affiliations", true) => self.modify_affiliations(&node_name, verb),
            ("delete" | "purge", false) | ("default", true) => Err(Failure::bad_request(format!(
                "<{}/> in the wrong IQ type",
                verb.name()
            ))),
            (other, _) => Err(Failure::bad_request(format!(
                "unknown owner request <{other}/>"
            ))),
        }
    }

    fn configure(&mut self, node_name: &str, request: &Element) -> Result<Done> {
        let Some(form) = config::form_child(request)? else {
            return Err(Failure::bad_request("<configure/> needs a data form"));
        };
        let Some(form) = config::submitted(form)? else {
            return Ok(Done::default()); // type='cancel'
        };
        let limits = self.config.clone();
        let node = self.node_mut(node_name)?;
        node.config.apply_form(&form, ns::NODE_CONFIG, &limits)?;
        let keep = node.config.kept_items();
        node.items.truncate(keep);
        Ok(Done::default())
    }

    fn delete(&mut self, node_name: &str) -> Done {
        let notify = self
            .nodes
            .get(node_name)
            .is_some_and(|n| n.config.deliver_notifications && n.config.notify_delete);
        let notifications = if notify {
            let delete = build("delete", ns::EVENT, &[("node", node_name)]).build();
            self.notify_all(node_name, &event(delete))
        } else {
            Vec::new()
        };
        if let Some(node) = self.nodes.remove(node_name) {
            for sub in node.subscriptions.values() {
                self.unindex_subscription(node_name, &sub.jid);
            }
        }
        Done {
            payload: None,
            notifications,
        }
    }

    fn purge(&mut self, node_name: &str) -> Done {
        let mut notify = false;
        if let Some(node) = self.nodes.get_mut(node_name) {
            node.items.clear();
            notify = node.config.deliver_notifications;
        }
        let notifications = if notify {
            let purge = build("purge", ns::EVENT, &[("node", node_name)]).build();
            self.notify_all(node_name, &event(purge))
        } else {
            Vec::new()
        };
        Done {
            payload: None,
            notifications,
        }
    }

    /// XEP-0060 §8.9.2: sets `owner`, `publisher`, `member`, `outcast` or
    /// `none` affiliations (all checked before any is made). The creator's
    /// own stays `owner`. An account that may no longer read the node
    /// loses its subscriptions to it.
    fn modify_affiliations(&mut self, node_name: &str, request: &Element) -> Result<Done> {
        let changes = affiliation_changes(request)?;
        let limit = self.config.max_subscriptions_per_node;
        let node = self.node_mut(node_name)?;
        if changes.iter().any(|(jid, _)| *jid == node.owner) {
            return Err(Failure::not_acceptable(
                "the node's creator stays its owner",
            ));
        }
        for (jid, affiliation) in changes {
            if affiliation == Affiliation::None {
                node.affiliations.remove(&jid);
            } else if node.affiliations.len() < limit || node.affiliations.contains_key(&jid) {
                node.affiliations.insert(jid, affiliation);
            } else {
                return Err(Failure::not_acceptable(format!(
                    "more than {limit} affiliations"
                )));
            }
        }
        let gone: Vec<Jid> = node
            .subscriptions
            .values()
            .filter(|s| !node.may_read(s.jid.to_bare().as_str(), None))
            .map(|s| s.jid.clone())
            .collect();
        for jid in gone {
            self.node_mut(node_name)?.subscriptions.remove(jid.as_str());
            self.unindex_subscription(node_name, &jid);
        }
        Ok(Done::default())
    }

    /// XEP-0060 §8.8.2: `subscription='none'` removes, `'subscribed'` adds.
    /// All changes are checked before any is made.
    fn modify_subscriptions(&mut self, node_name: &str, request: &Element) -> Result<Done> {
        let changes = jid_changes(request, "subscription", "subscribed")?;
        let limit = self.config.max_subscriptions_per_node;
        let node = self.node(node_name)?;
        let adds = changes
            .iter()
            .filter(|(jid, add)| *add && !node.subscriptions.contains_key(jid.as_str()))
            .count();
        if node.subscriptions.len() + adds > limit {
            return Err(Failure::too_many_subscriptions(limit));
        }
        for (jid, add) in changes {
            let exists = self
                .node(node_name)?
                .subscriptions
                .contains_key(jid.as_str());
            if add && !exists {
                let subid = self.next_id();
                let sub = Subscription {
                    jid: jid.clone(),
                    subid,
                };
                self.node_mut(node_name)?
                    .subscriptions
                    .insert(jid.to_string(), sub);
                self.index_subscription(node_name, &jid);
            } else if !add && exists {
                self.node_mut(node_name)?.subscriptions.remove(jid.as_str());
                self.unindex_subscription(node_name, &jid);
            }
        }
        Ok(Done::default())
    }
}

/// `<pubsub xmlns='…pubsub#owner'>child</pubsub>`.
fn owner(child: Element) -> Element {
    Element::builder("pubsub", ns::OWNER).append(child).build()
}

/// The `<affiliation jid='…' affiliation='…'/>` children of an owner
/// request, with bare JIDs.
fn affiliation_changes(request: &Element) -> Result<Vec<(String, Affiliation)>> {
    let changes = changes(request, "affiliation", |value| {
        let value = value.unwrap_or_default();
        Affiliation::parse(value).ok_or_else(|| {
            Failure::not_acceptable(format!(
                "unknown affiliation {value:?}: owner, publisher, member, outcast or none"
            ))
        })
    })?;
    Ok(changes
        .into_iter()
        .map(|(jid, affiliation)| (jid.to_bare().to_string(), affiliation))
        .collect())
}

/// The `<NAME jid='…' NAME='STATE'/>` children of an owner request: `add`
/// for STATE `adding`, removal for `none`; anything else is refused.
fn jid_changes(request: &Element, name: &str, adding: &str) -> Result<Vec<(Jid, bool)>> {
    changes(request, name, |state| match state {
        Some(state) if state == adding => Ok(true),
        Some("none") => Ok(false),
        other => Err(Failure::not_acceptable(format!(
            "unsupported {name} {other:?} (this server keeps {adding} and none)"
        ))),
    })
}

/// The `<NAME jid='…' NAME='STATE'/>` children of an owner request, each
/// with its JID and its STATE as `state` reads it.
fn changes<T>(
    request: &Element,
    name: &str,
    state: impl Fn(Option<&str>) -> Result<T>,
) -> Result<Vec<(Jid, T)>> {
    let mut changes = Vec::new();
    for child in request.children() {
        if !child.is(name, ns::OWNER) {
            return Err(Failure::bad_request(format!(
                "unexpected <{}/>",
                child.name()
            )));
        }
        let jid = child
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .ok_or_else(|| Failure::bad_request_app("invalid-jid", "a valid jid is required"))?;
        changes.push((jid, state(child.attr(name))?));
    }
    Ok(changes)
}
