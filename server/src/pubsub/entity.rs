//! Requests in the `pubsub` namespace: create, publish, retract, items,
//! subscribe, unsubscribe, subscriptions, affiliations.

use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use super::config::{self, NodeConfig, PublishModel};
use super::errors::{Failure, Result};
use super::node::{Affiliation, Item, Node};
use super::xml::{bool_attr, build};
use super::{Done, MAX_NAME_LEN, PubSub, Role, Sees, node_attr, ns};

/// Children of `<pubsub/>` that accompany a request rather than being one.
const COMPANIONS: [&str; 3] = ["configure", "publish-options", "options"];

impl PubSub {
    pub(super) fn entity_request(
        &mut self,
        from: &FullJid,
        elem: &Element,
        set: bool,
        sees: Sees<'_>,
    ) -> Result<Done> {
        let mut verb: Option<&Element> = None;
        // Children in other namespaces (e.g. an XEP-0059 result set
        // request) are ignored: all items are returned.
        for child in elem.children().filter(|c| c.ns() == ns::PUBSUB) {
            if COMPANIONS.contains(&child.name()) {
                continue;
            }
            if verb.is_some() {
                return Err(Failure::bad_request("more than one request in <pubsub/>"));
            }
            verb = Some(child);
        }
        let companion = |name: &str| elem.get_child(name, ns::PUBSUB);
        let name = verb.map(Element::name);
        if companion("configure").is_some() && name != Some("create") {
            return Err(Failure::bad_request("<configure/> without <create/>"));
        }
        if companion("publish-options").is_some() && name != Some("publish") {
            return Err(Failure::bad_request(
                "<publish-options/> without <publish/>",
            ));
        }
        let Some(verb) = verb else {
            return if companion("options").is_some() {
                Err(Failure::unsupported("subscription-options"))
            } else {
                Err(Failure::bad_request("empty <pubsub/>"))
            };
        };
        let bare = from.to_bare().to_string();
        match (verb.name(), set) {
            ("create", true) => self.create(bare, verb, companion("configure")),
            ("publish", true) => self.publish(bare, verb, companion("publish-options")),
            ("retract", true) => self.retract(&bare, verb),
            ("subscribe", true) => self.subscribe(&bare, verb, sees),
            ("unsubscribe", true) => self.unsubscribe(&bare, verb),
            ("items", false) => self.items(&bare, verb, sees),
            ("subscriptions", false) => self.subscriptions(&bare, verb),
            ("affiliations", false) => self.affiliations(&bare, verb),
            ("default", false) => Err(Failure::unsupported("subscription-options")),
            ("create" | "publish" | "retract" | "subscribe" | "unsubscribe", false)
            | ("items" | "subscriptions" | "affiliations" | "default", true) => Err(
                Failure::bad_request(format!("<{}/> in the wrong IQ type", verb.name())),
            ),
            ("subscription", _) => Err(Failure::unsupported("subscription-options")),
            (other, _) => Err(Failure::bad_request(format!(
                "unknown pubsub request <{other}/>"
            ))),
        }
    }

    fn create(
        &mut self,
        owner: String,
        create: &Element,
        configure: Option<&Element>,
    ) -> Result<Done> {
        let name = match create.attr("node") {
            None | Some("") => loop {
                let name = self.next_id();
                if !self.nodes.contains_key(&name) {
                    break name;
                }
            },
            Some(name) => node_attr(create).map(|_| name.to_owned())?,
        };
        if self.nodes.contains_key(&name) {
            return Err(Failure::conflict(format!("node {name:?} exists")));
        }
        if self.nodes.len() >= self.config.max_nodes {
            return Err(Failure::too_many_nodes(self.config.max_nodes));
        }
        let mut config = NodeConfig::defaults(&self.config);
        if let Some(configure) = configure {
            let form = config::form_child(configure)?;
            if let Some(form) = form.map(config::submitted).transpose()?.flatten() {
                config.apply_form(&form, ns::NODE_CONFIG, &self.config)?;
            }
        }
        let reply = pubsub(build("create", ns::PUBSUB, &[("node", &name)]).build());
        self.nodes.insert(name, Node::new(owner, config));
        Ok(Done::payload(reply))
    }

    fn publish(
        &mut self,
        publisher: String,
        publish: &Element,
        options: Option<&Element>,
    ) -> Result<Done> {
        let node_name = node_attr(publish)?.to_owned();
        let mut items = Vec::new();
        for child in publish.children() {
            if !child.is("item", ns::PUBSUB) {
                return Err(Failure::bad_request(format!(
                    "unexpected <{}/> in <publish/>",
                    child.name()
                )));
            }
            items.push(child);
        }
        let item = match items.as_slice() {
            [] => {
                return Err(Failure::bad_request_app(
                    "item-required",
                    "publish one <item/>",
                ));
            }
            [item] => *item,
            _ => {
                return Err(Failure::bad_request_app(
                    "invalid-payload",
                    "one <item/> per publish",
                ));
            }
        };
        let id = match item.attr("id") {
            None | Some("") => None,
            Some(id) if id.len() > MAX_NAME_LEN => {
                return Err(Failure::not_acceptable(format!(
                    "item ids are limited to {MAX_NAME_LEN} bytes"
                )));
            }
            Some(id) => Some(id.to_owned()),
        };
        let payloads: Vec<&Element> = item.children().collect();
        let payload = match payloads.as_slice() {
            [] => {
                return Err(Failure::bad_request_app(
                    "payload-required",
                    "the item has no payload",
                ));
            }
            [payload] => (*payload).clone(),
            _ => {
                return Err(Failure::bad_request_app(
                    "invalid-payload",
                    "an item holds one payload element",
                ));
            }
        };
        let size = String::from(&payload).len();
        if size > self.config.max_payload_bytes {
            return Err(Failure::payload_too_big(
                size,
                self.config.max_payload_bytes,
            ));
        }
        let options = match options {
            Some(options) => config::form_child(options)?
                .map(config::submitted)
                .transpose()?
                .flatten(),
            None => None,
        };

        match self.nodes.get(&node_name) {
            Some(node) => {
                if let Some(form) = &options {
                    node.config.check_preconditions(form, &self.config)?;
                }
                let owner = matches!(self.role(&publisher, node), Role::Owner);
                let allowed = match (node.affiliation(&publisher), node.config.publish_model) {
                    (Affiliation::Outcast, _) => false,
                    (_, PublishModel::Open) => true,
                    (Affiliation::Publisher, _) => true,
                    (_, PublishModel::Publishers) => owner,
                    (_, PublishModel::Subscribers) => owner || node.has_subscriber(&publisher),
                };
                if !allowed {
                    return Err(Failure::forbidden("the node's publish model excludes you"));
                }
            }
            None if self.config.autocreate_on_publish => {
                if self.nodes.len() >= self.config.max_nodes {
                    return Err(Failure::too_many_nodes(self.config.max_nodes));
                }
                let mut config = NodeConfig::defaults(&self.config);
                if let Some(form) = &options {
                    config.apply_form(form, ns::PUBLISH_OPTIONS, &self.config)?;
                }
                self.nodes
                    .insert(node_name.clone(), Node::new(publisher.clone(), config));
            }
            None => return Err(Failure::item_not_found(format!("no node {node_name:?}"))),
        }

        let id = match id {
            Some(id) => id,
            None => loop {
                let id = self.next_id();
                if !self.node(&node_name)?.items.contains(&id) {
                    break id;
                }
            },
        };
        let node = self.node_mut(&node_name)?;
        let keep = node.config.kept_items();
        let (notify, with_payload) = (
            node.config.deliver_notifications,
            node.config.deliver_payloads,
        );
        let item = Item {
            id: id.clone(),
            publisher,
            payload: Some(payload),
        };
        let event = event_items(&node_name, &item, with_payload);
        node.items.publish(item, keep);
        let notifications = if notify {
            self.notify_all(&node_name, &event)
        } else {
            Vec::new()
        };
        let reply = pubsub(
            build("publish", ns::PUBSUB, &[("node", &node_name)])
                .append(build("item", ns::PUBSUB, &[("id", &id)]).build())
                .build(),
        );
        Ok(Done {
            payload: Some(reply),
            notifications,
        })
    }

    fn retract(&mut self, bare: &str, retract: &Element) -> Result<Done> {
        let node_name = node_attr(retract)?.to_owned();
        let notify = bool_attr(retract, "notify")
            .map_err(|()| Failure::bad_request("notify must be a boolean"))?;
        let ids: Vec<String> = item_ids(retract, "retract")?
            .into_iter()
            .map(str::to_owned)
            .collect();
        if ids.is_empty() {
            return Err(Failure::bad_request_app(
                "item-required",
                "name the items to retract",
            ));
        }
        let node = self.node(&node_name)?;
        let owner = matches!(self.role(bare, node), Role::Owner);
        for id in &ids {
            match node.items.get(id) {
                None => return Err(Failure::item_not_found(format!("no item {id:?}"))),
                Some(item) if !owner && item.publisher != bare => {
                    return Err(Failure::forbidden(
                        "only the publisher or an owner may retract",
                    ));
                }
                Some(_) => {}
            }
        }
        let send =
            node.config.deliver_notifications && notify.unwrap_or(node.config.notify_retract);
        let node = self.node_mut(&node_name)?;
        for id in &ids {
            node.items.remove(id);
        }
        let mut notifications = Vec::new();
        if send {
            let items = build("items", ns::EVENT, &[("node", &node_name)])
                .append_all(
                    ids.iter()
                        .map(|id| build("retract", ns::EVENT, &[("id", id)]).build()),
                )
                .build();
            notifications = self.notify_all(&node_name, &event(items));
        }
        Ok(Done {
            payload: None,
            notifications,
        })
    }

    fn items(&self, bare: &str, request: &Element, sees: Sees<'_>) -> Result<Done> {
        let node_name = node_attr(request)?;
        let node = self.node(node_name)?;
        if !node.may_read(bare, Some(sees)) {
            return Err(node.read_refusal());
        }
        let max = match request.attr("max_items") {
            None => None,
            Some(n) => Some(n.trim().parse::<usize>().map_err(|_| {
                Failure::bad_request(format!("max_items must be a number, not {n:?}"))
            })?),
        };
        let ids = item_ids(request, "items")?;
        let node = self.node(node_name)?;
        let items: Vec<&Item> = if ids.is_empty() {
            node.items.newest(max.unwrap_or(usize::MAX))
        } else {
            ids.iter().filter_map(|id| node.items.get(id)).collect()
        };
        let list = build("items", ns::PUBSUB, &[("node", node_name)])
            .append_all(
                items
                    .into_iter()
                    .map(|item| item_element(ns::PUBSUB, item, true)),
            )
            .build();
        Ok(Done::payload(pubsub(list)))
    }

    fn affiliations(&self, bare: &str, request: &Element) -> Result<Done> {
        let filter = request.attr("node");
        if let Some(node) = filter {
            self.node(node)?;
        }
        let owned = self
            .nodes
            .iter()
            .filter(|(name, _)| filter.is_none_or(|f| f == name.as_str()))
            .map(|(name, node)| (name, node.affiliation(bare)))
            .filter(|(_, affiliation)| *affiliation != Affiliation::None)
            .map(|(name, affiliation)| {
                build(
                    "affiliation",
                    ns::PUBSUB,
                    &[("node", name), ("affiliation", affiliation.as_str())],
                )
                .build()
            });
        let list = build("affiliations", ns::PUBSUB, &[])
            .append_all(owned)
            .build();
        Ok(Done::payload(pubsub(list)))
    }
}

/// `<pubsub xmlns='…pubsub'>child</pubsub>`.
pub(super) fn pubsub(child: Element) -> Element {
    Element::builder("pubsub", ns::PUBSUB).append(child).build()
}

/// `<event xmlns='…pubsub#event'>child</event>`.
pub(super) fn event(child: Element) -> Element {
    Element::builder("event", ns::EVENT).append(child).build()
}

/// `<item id publisher>payload</item>` in namespace `ns`.
fn item_element(ns: &str, item: &Item, with_payload: bool) -> Element {
    let mut elem = build(
        "item",
        ns,
        &[("id", &item.id), ("publisher", &item.publisher)],
    );
    if let (true, Some(payload)) = (with_payload, &item.payload) {
        elem = elem.append(payload.clone());
    }
    elem.build()
}

/// The notification event of one published item.
pub(super) fn event_items(node: &str, item: &Item, with_payload: bool) -> Element {
    event(
        build("items", ns::EVENT, &[("node", node)])
            .append(item_element(ns::EVENT, item, with_payload))
            .build(),
    )
}

/// The ids of the `<item id='...'/>` children of `parent` (`<retract/>` or
/// `<items/>`): an item without an id, or any other child, is refused.
fn item_ids<'a>(parent: &'a Element, what: &str) -> Result<Vec<&'a str>> {
    let mut ids = Vec::new();
    for child in parent.children() {
        match (child.is("item", ns::PUBSUB), child.attr("id")) {
            (true, Some(id)) if !id.is_empty() => ids.push(id),
            (true, _) => {
                return Err(Failure::bad_request_app(
                    "item-required",
                    "an item id is required",
                ));
            }
            (false, _) => {
                return Err(Failure::bad_request(format!(
                    "unexpected <{}/> in <{what}/>",
                    child.name()
                )));
            }
        }
    }
    Ok(ids)
}
