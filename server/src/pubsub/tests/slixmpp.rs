//! The requests slixmpp 1.17's xep_0060 plugin sends, as captured from a
//! session against the embedded server (create with a config form, create
//! again, instant node, subscribe with the bare JID, publish with and
//! without id and with publish-options, items, configure, subscriptions,
//! retract with notify, disco, unsubscribe, delete).

use super::*;

const SLIX: &str = "slix@localhost/probe";

/// (IQ type, payload), in the order sent.
const CAPTURED: &[(&str, &str)] = &[
    (
        "set",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><create node="slix" /><configure><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE" type="hidden"><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var="pubsub#max_items"><value>5</value></field><field var="pubsub#persist_items"><value>1</value></field></x></configure></pubsub>"#,
    ),
    (
        "set",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><create node="slix" /></pubsub>"#,
    ),
    (
        "set",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><create /></pubsub>"#,
    ),
    (
        "set",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><subscribe node="slix" jid="slix@localhost" /></pubsub>"#,
    ),
    (
        "set",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="slix"><item id="i1"><payload xmlns="urn:xbus:0" topic="slix" encoding="json" version="1">e30=</payload></item></publish></pubsub>"#,
    ),
    (
        "set",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="slix"><item><x xmlns="urn:y">2</x></item></publish><publish-options><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE" type="hidden"><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var="pubsub#persist_items"><value>1</value></field></x></publish-options></pubsub>"#,
    ),
    (
        "get",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="slix" max_items="1" /></pubsub>"#,
    ),
    (
        "get",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="slix"><item id="i1" /></items></pubsub>"#,
    ),
    (
        "get",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub#owner"><configure node="slix" /></pubsub>"#,
    ),
    (
        "get",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><subscriptions node="slix" /></pubsub>"#,
    ),
    (
        "get",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub#owner"><subscriptions node="slix" /></pubsub>"#,
    ),
    (
        "set",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><retract node="slix" notify="true"><item id="i1" /></retract></pubsub>"#,
    ),
    (
        "get",
        r#"<query xmlns="http://jabber.org/protocol/disco#items" />"#,
    ),
    (
        "get",
        r#"<query xmlns="http://jabber.org/protocol/disco#info" />"#,
    ),
    (
        "set",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><unsubscribe node="slix" jid="slix@localhost" /></pubsub>"#,
    ),
    (
        "set",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub#owner"><delete node="slix" /></pubsub>"#,
    ),
    (
        "get",
        r#"<pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="slix" /></pubsub>"#,
    ),
];

#[test]
fn slixmpp_session_as_captured() {
    let mut ps = service();
    let mut outcomes = Vec::new();
    for (type_, body) in CAPTURED {
        outcomes.push(iq(&mut ps, SLIX, type_, body));
    }
    let [
        create,
        create_again,
        instant,
        subscribe,
        publish,
        publish_opts,
        items_max,
        item,
        configure,
        subs,
        owner_subs,
        retract,
        disco_items,
        disco_info,
        unsubscribe,
        delete,
        after_delete,
    ] = outcomes.as_slice()
    else {
        panic!("{} requests", outcomes.len());
    };
    ok(create);
    assert_err(create_again, "conflict", None);
    let name = ok(instant)
        .unwrap()
        .get_child("create", PS)
        .unwrap()
        .attr("node")
        .unwrap()
        .to_owned();
    let sub = ok(subscribe).unwrap();
    assert_eq!(
        sub.get_child("subscription", PS).unwrap().attr("jid"),
        Some("slix@localhost")
    );
    ok(publish);
    // The bare-JID subscription is the notification target.
    assert_eq!(recipients(publish), ["slix@localhost"]);
    let generated = ok(publish_opts).unwrap();
    let generated = generated
        .get_child("publish", PS)
        .unwrap()
        .get_child("item", PS)
        .unwrap()
        .attr("id")
        .unwrap()
        .to_owned();
    let ids = |o: &Outcome| -> Vec<String> {
        let p = ok(o).unwrap();
        p.get_child("items", PS)
            .unwrap()
            .children()
            .map(|i| i.attr("id").unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(items_max), [generated]);
    assert_eq!(ids(item), ["i1"]);
    assert!(ok(configure).is_some());
    assert_eq!(
        ok(subs)
            .unwrap()
            .get_child("subscriptions", PS)
            .unwrap()
            .children()
            .count(),
        1
    );
    assert_eq!(
        ok(owner_subs)
            .unwrap()
            .get_child("subscriptions", "http://jabber.org/protocol/pubsub#owner")
            .unwrap()
            .children()
            .count(),
        1
    );
    ok(retract);
    assert_eq!(recipients(retract), ["slix@localhost"]);
    let nodes: Vec<String> = ok(disco_items)
        .unwrap()
        .children()
        .map(|i| i.attr("node").unwrap().to_owned())
        .collect();
    assert_eq!(nodes, [name, "slix".to_owned()]);
    ok(disco_info);
    ok(unsubscribe);
    assert!(ok(delete).is_none());
    assert!(delete.notifications.is_empty(), "no subscriber left");
    assert_err(after_delete, "item-not-found", None);
}
