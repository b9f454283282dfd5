//! XEP-0030 disco#info and disco#items on the service and its nodes.

use std::collections::BTreeSet;

use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item as DiscoItem};
use xmpp_parsers::minidom::Element;

use super::errors::Result;
use super::{Done, PubSub, ns};

/// `pubsub#…` features the service announces.
const FEATURES: &[&str] = &[
    "access-open",
    "access-presence",
    "auto-create",
    "access-open",
    "access-whitelist",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "instant-nodes",
    "item-ids",
    "manage-subscriptions",
    "member-affiliation",
    "meta-data",
    "outcast-affiliation",
    "modify-affiliations",
    "persistent-items",
    "publish",
    "publisher-affiliation",
    "publish-options",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
];

impl PubSub {
    pub(super) fn disco_info(&self, query: &Element) -> Result<Done> {
        let node = query.attr("node");
        let mut features: BTreeSet<String> = [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PUBSUB]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let result = match node {
            None => {
                features.extend(FEATURES.iter().map(|f| format!("{}#{f}", ns::PUBSUB)));
                if !self.config.autocreate_on_publish {
                    features.remove(&format!("{}#auto-create", ns::PUBSUB));
                }
                DiscoInfoResult {
                    node: None,
                    identities: vec![Identity::new(
                        "pubsub",
                        "service",
                        "en",
                        "xbus-server pubsub",
                    )],
                    features,
                    extensions: Vec::new(),
                }
            }
            Some(name) => {
                let n = self.node(name)?;
                DiscoInfoResult {
                    node: Some(name.to_owned()),
                    identities: vec![Identity {
                        category: "pubsub".to_owned(),
                        type_: "leaf".to_owned(),
                        lang: None,
                        name: None,
                    }],
                    features,
                    extensions: vec![n.config.meta_data(&n.owner)],
                }
            }
        };
        Ok(Done::payload(result.into()))
    }

    pub(super) fn disco_items(&self, query: &Element) -> Result<Done> {
        let result = match query.attr("node") {
            None => DiscoItemsResult {
                node: None,
                items: self
                    .nodes
                    .iter()
                    .map(|(name, node)| DiscoItem {
                        jid: self.service.clone(),
                        node: Some(name.clone()),
                        name: (!node.config.title.is_empty()).then(|| node.config.title.clone()),
                    })
                    .collect(),
                rsm: None,
            },
            Some(name) => {
                let n = self.node(name)?;
                DiscoItemsResult {
                    node: Some(name.to_owned()),
                    items: n
                        .items
                        .all()
                        .map(|item| DiscoItem {
                            jid: self.service.clone(),
                            node: None,
                            name: Some(item.id.clone()),
                        })
                        .collect(),
                    rsm: None,
                }
            }
        };
        Ok(Done::payload(result.into()))
    }
}
