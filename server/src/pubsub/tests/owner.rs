//! configure, default, delete, purge, owner subscriptions, affiliations,
//! ownership, disco.

use super::entity::{item_ids, xbus_create, xbus_publish};
use super::*;
use crate::pubsub::Ownership;

const A: &str = "a@localhost/r1";
const B: &str = "b@localhost/r2";
const OWNER_NS: &str = "http://jabber.org/protocol/pubsub#owner";

fn form_values(form: &Element) -> Vec<(String, String)> {
    form.children()
        .filter(|f| f.name() == "field")
        .map(|f| {
            let value = f
                .children()
                .find(|c| c.name() == "value")
                .map(Element::text)
                .unwrap_or_default();
            (f.attr("var").unwrap().to_owned(), value)
        })
        .collect()
}

#[test]
fn configure_get_and_set() {
    let mut ps = service();
    ok(&set(&mut ps, A, &xbus_create("n", 1000)));
    let reply = ok(&owner(&mut ps, A, "get", "<configure node='n'/>")).unwrap();
    let configure = reply.get_child("configure", OWNER_NS).unwrap();
    assert_eq!(configure.attr("node"), Some("n"));
    let form = configure.get_child("x", "jabber:x:data").unwrap();
    assert_eq!(form.attr("type"), Some("form"));
    let values = form_values(form);
    assert!(values.contains(&(
        "FORM_TYPE".into(),
        "http://jabber.org/protocol/pubsub#node_config".into()
    )));
    assert!(values.contains(&("pubsub#max_items".into(), "1000".into())));
    assert!(values.contains(&("pubsub#persist_items".into(), "1".into())));
    assert!(values.contains(&("pubsub#access_model".into(), "open".into())));
    assert!(values.contains(&("pubsub#notification_type".into(), "headline".into())));
    // The form parses as a typed data form.
    xmpp_parsers::data_forms::DataForm::try_from(form.clone()).unwrap();

    for i in 1..=5 {
        ok(&set(&mut ps, A, &xbus_publish("n", &i.to_string(), i)));
    }
    let lower = "<configure node='n'><x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
        <field var='pubsub#max_items'><value>2</value></field></x></configure>";
    assert!(ok(&owner(&mut ps, A, "set", lower)).is_none());
    assert_eq!(item_ids(&mut ps, "n", ""), ["4", "5"]);
    let bad = lower.replace("<value>2</value>", "<value>-2</value>");
    assert_err(&owner(&mut ps, A, "set", &bad), "not-acceptable", None);
    assert_eq!(
        ps.nodes["n"].config.max_items, 2,
        "a refused form changes nothing"
    );
    let cancel = "<configure node='n'><x xmlns='jabber:x:data' type='cancel'/></configure>";
    ok(&owner(&mut ps, A, "set", cancel));
    assert_err(
        &owner(&mut ps, A, "set", "<configure node='n'/>"),
        "bad-request",
        None,
    );
    assert_err(
        &owner(&mut ps, A, "get", "<configure node='zz'/>"),
        "item-not-found",
        None,
    );
    assert_err(
        &owner(&mut ps, A, "get", "<configure/>"),
        "bad-request",
        Some("nodeid-required"),
    );
}

#[test]
fn default_config() {
    let mut ps = service();
    let reply = ok(&owner(&mut ps, A, "get", "<default/>")).unwrap();
    let form = reply
        .get_child("default", OWNER_NS)
        .unwrap()
        .get_child("x", "jabber:x:data")
        .unwrap();
    assert!(form_values(form).contains(&("pubsub#max_items".into(), "1000".into())));
}

#[test]
fn delete_notifies_and_forgets_subscriptions() {
    let mut ps = service();
    ok(&set(&mut ps, A, "<create node='n'/>"));
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ));
    ok(&set(&mut ps, A, &xbus_publish("n", "1", 1)));
    let out = owner(&mut ps, A, "set", "<delete node='n'/>");
    assert!(ok(&out).is_none());
    assert_eq!(recipients(&out), [B]);
    assert_eq!(
        xml(event_of(&out.notifications[0]).clone()),
        "<event xmlns='http://jabber.org/protocol/pubsub#event'><delete node='n'/></event>"
    );
    assert!(ps.nodes.is_empty());
    assert!(ps.by_subscriber.is_empty());
    assert_err(
        &owner(&mut ps, A, "set", "<delete node='n'/>"),
        "item-not-found",
        None,
    );
    // The name can be used again, with no items.
    ok(&set(&mut ps, A, "<create node='n'/>"));
    assert!(item_ids(&mut ps, "n", "").is_empty());
}

#[test]
fn purge_notifies_and_empties() {
    let mut ps = service();
    ok(&set(&mut ps, B, &xbus_publish("n", "1", 1)));
    ok(&set(&mut ps, B, "<subscribe node='n' jid='b@localhost'/>"));
    let out = owner(&mut ps, A, "set", "<purge node='n'/>");
    ok(&out);
    assert_eq!(recipients(&out), ["b@localhost"]);
    assert_eq!(
        xml(event_of(&out.notifications[0]).clone()),
        "<event xmlns='http://jabber.org/protocol/pubsub#event'><purge node='n'/></event>"
    );
    assert!(item_ids(&mut ps, "n", "").is_empty());
    assert_err(
        &owner(&mut ps, A, "get", "<purge node='n'/>"),
        "bad-request",
        None,
    );
}

#[test]
fn owner_subscriptions_get_and_modify() {
    let mut ps = service();
    ok(&set(&mut ps, A, "<create node='n'/>"));
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ));
    let reply = ok(&owner(
        &mut ps,
        "c@localhost/x",
        "get",
        "<subscriptions node='n'/>",
    ))
    .unwrap();
    let subs = reply.get_child("subscriptions", OWNER_NS).unwrap();
    assert_eq!(subs.attr("node"), Some("n"));
    let sub = subs.children().next().unwrap();
    assert_eq!(
        (sub.attr("jid"), sub.attr("subscription")),
        (Some(B), Some("subscribed"))
    );
    let modify = "<subscriptions node='n'><subscription jid='b@localhost/r2' subscription='none'/>\
        <subscription jid='d@localhost' subscription='subscribed'/></subscriptions>";
    ok(&owner(&mut ps, A, "set", modify));
    assert_eq!(
        recipients(&set(&mut ps, A, &xbus_publish("n", "1", 1))),
        ["d@localhost"]
    );
    let bad = "<subscriptions node='n'><subscription jid='d@localhost' subscription='pending'/></subscriptions>";
    assert_err(&owner(&mut ps, A, "set", bad), "not-acceptable", None);
    assert_eq!(ps.by_subscriber.len(), 1);
}

#[test]
fn affiliations() {
    let mut ps = service();
    ok(&set(&mut ps, A, "<create node='n'/>"));
    ok(&set(&mut ps, B, "<create node='m'/>"));
    let reply = ok(&get(&mut ps, A, "<affiliations/>")).unwrap();
    let list: Vec<_> = reply
        .get_child("affiliations", PS)
        .unwrap()
        .children()
        .map(|a| (a.attr("node").unwrap(), a.attr("affiliation").unwrap()))
        .collect();
    assert_eq!(list, [("n", "owner")]);
    let reply = ok(&owner(&mut ps, B, "get", "<affiliations node='n'/>")).unwrap();
    let aff = reply
        .get_child("affiliations", OWNER_NS)
        .unwrap()
        .children()
        .next()
        .unwrap()
        .clone();
    assert_eq!(aff.attr("jid"), Some("a@localhost"));
    // Publishers set by an owner are kept and listed; others are refused.
    ok(&owner(
        &mut ps,
        A,
        "set",
        "<affiliations node='n'><affiliation jid='b@localhost/r2' affiliation='publisher'/></affiliations>",
    ));
    let reply = ok(&owner(&mut ps, A, "get", "<affiliations node='n'/>")).unwrap();
    let list: Vec<_> = reply
        .get_child("affiliations", OWNER_NS)
        .unwrap()
        .children()
        .map(|a| (a.attr("jid").unwrap(), a.attr("affiliation").unwrap()))
        .collect();
    assert_eq!(
        list,
        [("a@localhost", "owner"), ("b@localhost", "publisher")]
    );
    assert_err(
        &owner(
            &mut ps,
            A,
            "set",
            "<affiliations node='n'><affiliation jid='b@localhost' affiliation='boss'/></affiliations>",
        ),
        "not-acceptable",
        None,
    );
    ok(&owner(
        &mut ps,
        A,
        "set",
        "<affiliations node='n'><affiliation jid='b@localhost' affiliation='none'/></affiliations>",
    ));
    assert!(ps.nodes["n"].affiliations.is_empty());
}

#[test]
fn creator_ownership_restricts_owner_requests() {
    let mut ps = service_with(PubSubConfig {
        ownership: Ownership::Creator,
        ..Default::default()
    });
    ok(&set(&mut ps, A, "<create node='n'/>"));
    for request in ["<configure node='n'/>", "<subscriptions node='n'/>"] {
        assert_err(&owner(&mut ps, B, "get", request), "forbidden", None);
        ok(&owner(&mut ps, A, "get", request));
    }
    for request in ["<purge node='n'/>", "<delete node='n'/>"] {
        assert_err(&owner(&mut ps, B, "set", request), "forbidden", None);
    }
    ok(&owner(&mut ps, A, "set", "<delete node='n'/>"));
}

#[test]
fn disco_on_service_and_nodes() {
    let mut ps = service();
    ok(&set(&mut ps, A, "<create node='b'/>"));
    ok(&set(&mut ps, A, &xbus_publish("a", "i1", 1)));
    ok(&set(&mut ps, A, &xbus_publish("a", "i2", 1)));
    let info = "http://jabber.org/protocol/disco#info";
    let items = "http://jabber.org/protocol/disco#items";
    let reply = ok(&iq(&mut ps, A, "get", &format!("<query xmlns='{info}'/>"))).unwrap();
    let identity = reply.get_child("identity", info).unwrap();
    assert_eq!(
        (identity.attr("category"), identity.attr("type")),
        (Some("pubsub"), Some("service"))
    );
    let features: Vec<&str> = reply.children().filter_map(|c| c.attr("var")).collect();
    for f in [
        "http://jabber.org/protocol/pubsub",
        "http://jabber.org/protocol/pubsub#publish",
        "http://jabber.org/protocol/pubsub#create-nodes",
        "http://jabber.org/protocol/pubsub#auto-create",
        "http://jabber.org/protocol/pubsub#persistent-items",
        info,
        items,
    ] {
        assert!(features.contains(&f), "{f}");
    }
    let reply = ok(&iq(
        &mut ps,
        A,
        "get",
        &format!("<query xmlns='{info}' node='a'/>"),
    ))
    .unwrap();
    assert_eq!(reply.attr("node"), Some("a"));
    assert_eq!(
        reply.get_child("identity", info).unwrap().attr("type"),
        Some("leaf")
    );
    assert!(reply.get_child("x", "jabber:x:data").is_some());
    assert_err(
        &iq(
            &mut ps,
            A,
            "get",
            &format!("<query xmlns='{info}' node='zz'/>"),
        ),
        "item-not-found",
        None,
    );

    let reply = ok(&iq(&mut ps, A, "get", &format!("<query xmlns='{items}'/>"))).unwrap();
    let nodes: Vec<_> = reply
        .children()
        .map(|i| (i.attr("jid").unwrap(), i.attr("node").unwrap()))
        .collect();
    assert_eq!(
        nodes,
        [("pubsub.localhost", "a"), ("pubsub.localhost", "b")]
    );
    let reply = ok(&iq(
        &mut ps,
        A,
        "get",
        &format!("<query xmlns='{items}' node='a'/>"),
    ))
    .unwrap();
    let names: Vec<_> = reply.children().map(|i| i.attr("name").unwrap()).collect();
    assert_eq!(names, ["i1", "i2"]);
    assert_err(
        &iq(&mut ps, A, "set", &format!("<query xmlns='{items}'/>")),
        "bad-request",
        None,
    );
}
