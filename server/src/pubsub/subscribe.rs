//! Subscriptions: subscribe, unsubscribe, and the entity's list.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::config::SendLast;
use super::entity::{event_items, pubsub};
use super::errors::{Failure, Result};
use super::node::Subscription;
use super::xml::build;
use super::{Done, PubSub, Sees, node_attr, ns};

impl PubSub {
    pub(super) fn subscribe(
        &mut self,
        bare: &str,
        request: &Element,
        sees: Sees<'_>,
    ) -> Result<Done> {
        let node_name = node_attr(request)?.to_owned();
        let jid =
            own_jid(bare, request).map_err(|text| Failure::bad_request_app("invalid-jid", text))?;
        let limit = self.config.max_subscriptions_per_node;
        let node = self.node(&node_name)?;
        if !node.may_read(bare, Some(sees)) {
            return Err(node.read_refusal());
        }
        let key = jid.to_string();
        if let Some(existing) = node.subscriptions.get(&key) {
            let reply = subscription_element(&node_name, &existing.jid, &existing.subid);
            return Ok(Done::payload(pubsub(reply)));
        }
        if node.subscriptions.len() >= limit {
            return Err(Failure::too_many_subscriptions(limit));
        }
        let subid = self.next_id();
        let node = self.node_mut(&node_name)?;
        node.subscriptions.insert(
            key,
            Subscription {
                jid: jid.clone(),
                subid: subid.clone(),
            },
        );
        let (send_last, notify, with_payload, headline) = (
            node.config.send_last,
            node.config.deliver_notifications,
            node.config.deliver_payloads,
            node.config.headline,
        );
        let last = node
            .items
            .newest(1)
            .first()
            .map(|item| event_items(&node_name, item, with_payload));
        self.index_subscription(&node_name, &jid);
        let mut notifications = Vec::new();
        if let (Some(event), true, false) = (last, notify, send_last == SendLast::Never) {
            notifications.push(self.event_message(jid.clone(), headline, event));
        }
        Ok(Done {
            payload: Some(pubsub(subscription_element(&node_name, &jid, &subid))),
            notifications,
        })
    }

    pub(super) fn unsubscribe(&mut self, bare: &str, request: &Element) -> Result<Done> {
        let node_name = node_attr(request)?.to_owned();
        let jid = own_jid(bare, request).map_err(|text| {
            if request.attr("jid").is_some_and(|j| Jid::new(j).is_ok()) {
                Failure::forbidden(text)
            } else {
                Failure::bad_request_app("invalid-jid", text)
            }
        })?;
        let node = self.node_mut(&node_name)?;
        let key = jid.to_string();
        let Some(subscription) = node.subscriptions.get(&key) else {
            return Err(Failure::not_subscribed());
        };
        if let Some(subid) = request.attr("subid")
            && subid != subscription.subid
        {
            return Err(Failure::invalid_subid());
        }
        node.subscriptions.remove(&key);
        self.unindex_subscription(&node_name, &jid);
        Ok(Done::default())
    }

    pub(super) fn subscriptions(&self, bare: &str, request: &Element) -> Result<Done> {
        let filter = request.attr("node");
        if let Some(node) = filter {
            self.node(node)?;
        }
        let mut list = build("subscriptions", ns::PUBSUB, &[]);
        if let Some(node) = filter {
            list = list.attr(super::xml::attr_name("node"), node);
        }
        for (node_name, jid) in self.by_subscriber.get(bare).into_iter().flatten() {
            if filter.is_some_and(|f| f != node_name) {
                continue;
            }
            if let Some(sub) = self
                .nodes
                .get(node_name)
                .and_then(|n| n.subscriptions.get(jid))
            {
                list = list.append(subscription_element(node_name, &sub.jid, &sub.subid));
            }
        }
        Ok(Done::payload(pubsub(list.build())))
    }
}

/// The `jid` attribute of a (un)subscribe request, which must belong to
/// the requester's bare JID.
fn own_jid(bare: &str, request: &Element) -> std::result::Result<Jid, String> {
    let Some(text) = request.attr("jid") else {
        return Err("the jid attribute is required".to_owned());
    };
    let jid = Jid::new(text).map_err(|e| format!("malformed jid {text:?}: {e}"))?;
    if jid.to_bare().as_str() != bare {
        return Err(format!("{jid} is not an address of {bare}"));
    }
    Ok(jid)
}

/// `<subscription node jid subid subscription='subscribed'/>`.
fn subscription_element(node: &str, jid: &Jid, subid: &str) -> Element {
    build(
        "subscription",
        ns::PUBSUB,
        &[
            ("node", node),
            ("jid", jid.as_str()),
            ("subid", subid),
            ("subscription", "subscribed"),
        ],
    )
    .build()
}
