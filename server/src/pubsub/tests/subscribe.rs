//! subscribe, unsubscribe, subscriptions, session_ended, notifications.

use super::entity::{xbus_create, xbus_publish};
use super::*;

const A: &str = "a@localhost/r1";
const B: &str = "b@localhost/r2";
const B2: &str = "b@localhost/other";

fn node(ps: &mut PubSub, name: &str) {
    ok(&set(ps, A, &xbus_create(name, 1000)));
}

/// Counts subscriptions as integration-tests/tests/pubsub.rs does (owner
/// `subscriptions` of a node, by anyone: every user administers nodes).
fn server_subscriptions(ps: &mut PubSub, from: &str, node: &str) -> usize {
    let out = owner(ps, from, "get", &format!("<subscriptions node='{node}'/>"));
    let payload = ok(&out).unwrap();
    payload
        .get_child("subscriptions", "http://jabber.org/protocol/pubsub#owner")
        .unwrap()
        .children()
        .filter(|c| c.attr("subscription") == Some("subscribed"))
        .count()
}

#[test]
fn xbus_subscribe_result_shape() {
    let mut ps = service();
    node(&mut ps, "orders.created");
    let out = set(
        &mut ps,
        B,
        "<subscribe jid='b@localhost/r2' node='orders.created'/>",
    );
    let reply = ok(&out).unwrap();
    let sub = reply.get_child("subscription", PS).unwrap();
    assert_eq!(sub.attr("node"), Some("orders.created"));
    assert_eq!(sub.attr("jid"), Some(B));
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    assert!(sub.attr("subid").is_some_and(|s| !s.is_empty()));
    assert!(out.notifications.is_empty());
}

#[test]
fn subscribing_twice_keeps_one_subscription() {
    let mut ps = service();
    node(&mut ps, "orders.created");
    let first = ok(&set(
        &mut ps,
        B,
        "<subscribe jid='b@localhost/r2' node='orders.created'/>",
    ))
    .unwrap();
    let second = ok(&set(
        &mut ps,
        B,
        "<subscribe jid='b@localhost/r2' node='orders.created'/>",
    ))
    .unwrap();
    assert_eq!(xml(first), xml(second));
    let someone = "c@localhost/x";
    assert_eq!(server_subscriptions(&mut ps, someone, "orders.created"), 1);
    ok(&set(
        &mut ps,
        B,
        "<unsubscribe jid='b@localhost/r2' node='orders.created'/>",
    ));
    assert_eq!(server_subscriptions(&mut ps, someone, "orders.created"), 0);
}

#[test]
fn subscribe_errors() {
    let mut ps = service();
    node(&mut ps, "n");
    let cases = [
        (
            "<subscribe node='n' jid='c@localhost/r'/>",
            "bad-request",
            Some("invalid-jid"),
        ),
        (
            "<subscribe node='n' jid='b@otherhost'/>",
            "bad-request",
            Some("invalid-jid"),
        ),
        ("<subscribe node='n'/>", "bad-request", Some("invalid-jid")),
        (
            "<subscribe node='n' jid='@@@'/>",
            "bad-request",
            Some("invalid-jid"),
        ),
        (
            "<subscribe node='missing' jid='b@localhost'/>",
            "item-not-found",
            None,
        ),
        (
            "<subscribe jid='b@localhost'/>",
            "bad-request",
            Some("nodeid-required"),
        ),
        (
            "<options jid='b@localhost' node='n'/>",
            "feature-not-implemented",
            Some("unsupported"),
        ),
    ];
    for (request, condition, app) in cases {
        assert_err(&set(&mut ps, B, request), condition, app);
    }
    assert!(ps.nodes["n"].subscriptions.is_empty());
    assert!(ps.by_subscriber.is_empty());
}

#[test]
fn subscriptions_per_node_are_capped() {
    let mut ps = service_with(PubSubConfig {
        max_subscriptions_per_node: 2,
        ..Default::default()
    });
    node(&mut ps, "n");
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ));
    ok(&set(
        &mut ps,
        B2,
        "<subscribe node='n' jid='b@localhost/other'/>",
    ));
    let out = set(&mut ps, A, "<subscribe node='n' jid='a@localhost/r1'/>");
    assert_err(&out, "policy-violation", Some("too-many-subscriptions"));
    // Re-subscribing an existing JID still answers.
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ));
}

#[test]
fn notifications_go_to_each_subscribed_jid_as_given() {
    let mut ps = service();
    node(&mut ps, "n");
    // slixmpp subscribes the bare JID by default.
    ok(&set(&mut ps, B, "<subscribe node='n' jid='b@localhost'/>"));
    ok(&set(
        &mut ps,
        B2,
        "<subscribe node='n' jid='b@localhost/other'/>",
    ));
    ok(&set(
        &mut ps,
        A,
        "<subscribe node='n' jid='a@localhost/r1'/>",
    ));
    let out = set(&mut ps, A, &xbus_publish("n", "1", 1));
    assert_eq!(recipients(&out), [A, "b@localhost", B2]);
    for m in &out.notifications {
        assert!(
            event_of(m)
                .get_child("items", "http://jabber.org/protocol/pubsub#event")
                .is_some()
        );
    }
}

#[test]
fn unsubscribe_variants() {
    let mut ps = service();
    node(&mut ps, "n");
    let reply = ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ))
    .unwrap();
    let subid = reply
        .get_child("subscription", PS)
        .unwrap()
        .attr("subid")
        .unwrap()
        .to_owned();
    assert_err(
        &set(
            &mut ps,
            B,
            "<unsubscribe node='n' jid='b@localhost/r2' subid='wrong'/>",
        ),
        "not-acceptable",
        Some("invalid-subid"),
    );
    assert_err(
        &set(&mut ps, A, "<unsubscribe node='n' jid='b@localhost/r2'/>"),
        "forbidden",
        None,
    );
    assert_err(
        &set(&mut ps, B, "<unsubscribe node='n'/>"),
        "bad-request",
        Some("invalid-jid"),
    );
    assert_err(
        &set(&mut ps, B, "<unsubscribe node='x' jid='b@localhost/r2'/>"),
        "item-not-found",
        None,
    );
    let out = set(
        &mut ps,
        B,
        &format!("<unsubscribe node='n' jid='b@localhost/r2' subid='{subid}'/>"),
    );
    assert!(ok(&out).is_none());
    assert_err(
        &set(&mut ps, B, "<unsubscribe node='n' jid='b@localhost/r2'/>"),
        "unexpected-request",
        Some("not-subscribed"),
    );
    assert!(ps.by_subscriber.is_empty());
    assert!(
        set(&mut ps, A, &xbus_publish("n", "1", 1))
            .notifications
            .is_empty()
    );
}

#[test]
fn entity_subscriptions_list_own_subscriptions() {
    let mut ps = service();
    node(&mut ps, "n");
    node(&mut ps, "m");
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ));
    ok(&set(&mut ps, B, "<subscribe node='m' jid='b@localhost'/>"));
    ok(&set(
        &mut ps,
        A,
        "<subscribe node='m' jid='a@localhost/r1'/>",
    ));
    let list = |ps: &mut PubSub, inner: &str| {
        let reply = ok(&get(ps, B2, inner)).unwrap();
        let subs = reply.get_child("subscriptions", PS).unwrap().clone();
        let mut found: Vec<String> = subs
            .children()
            .map(|s| format!("{} {}", s.attr("node").unwrap(), s.attr("jid").unwrap()))
            .collect();
        found.sort();
        found
    };
    assert_eq!(
        list(&mut ps, "<subscriptions/>"),
        ["m b@localhost", "n b@localhost/r2"]
    );
    assert_eq!(
        list(&mut ps, "<subscriptions node='n'/>"),
        ["n b@localhost/r2"]
    );
    assert_err(
        &get(&mut ps, B, "<subscriptions node='zz'/>"),
        "item-not-found",
        None,
    );
}

#[test]
fn session_end_drops_that_full_jid_only() {
    let mut ps = service();
    node(&mut ps, "n");
    node(&mut ps, "m");
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ));
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='m' jid='b@localhost/r2'/>",
    ));
    ok(&set(&mut ps, B, "<subscribe node='n' jid='b@localhost'/>"));
    ok(&set(
        &mut ps,
        B2,
        "<subscribe node='n' jid='b@localhost/other'/>",
    ));
    ps.session_ended(&jid(B));
    ps.session_ended(&jid("nobody@localhost/x"));
    assert_eq!(
        recipients(&set(&mut ps, A, &xbus_publish("n", "1", 1))),
        ["b@localhost", B2]
    );
    assert!(
        set(&mut ps, A, &xbus_publish("m", "1", 1))
            .notifications
            .is_empty()
    );
    assert_eq!(server_subscriptions(&mut ps, A, "m"), 0);
    ps.session_ended(&jid(B2));
    assert_eq!(
        recipients(&set(&mut ps, A, &xbus_publish("n", "2", 1))),
        ["b@localhost"]
    );
    assert_eq!(ps.by_subscriber["b@localhost"].len(), 1);
}

#[test]
fn no_item_on_subscribe_by_default_but_on_sub_sends_the_last() {
    let mut ps = service();
    node(&mut ps, "n");
    ok(&set(&mut ps, A, &xbus_publish("n", "1", 1)));
    ok(&set(&mut ps, A, &xbus_publish("n", "2", 2)));
    let out = set(&mut ps, B, "<subscribe node='n' jid='b@localhost/r2'/>");
    assert!(out.notifications.is_empty());
    let configure = "<configure node='n'><x xmlns='jabber:x:data' type='submit'>\
        <field var='pubsub#send_last_published_item'><value>on_sub</value></field></x></configure>";
    ok(&owner(&mut ps, A, "set", configure));
    let out = set(&mut ps, B2, "<subscribe node='n' jid='b@localhost/other'/>");
    assert_eq!(recipients(&out), [B2]);
    let items = event_of(&out.notifications[0])
        .get_child("items", "http://jabber.org/protocol/pubsub#event")
        .unwrap();
    let ids: Vec<_> = items.children().map(|i| i.attr("id").unwrap()).collect();
    assert_eq!(ids, ["2"]);
}

#[test]
fn deliver_payloads_and_notifications_options() {
    let mut ps = service();
    node(&mut ps, "n");
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ));
    let configure = |field: &str, value: &str| {
        format!(
            "<configure node='n'><x xmlns='jabber:x:data' type='submit'>\
             <field var='{field}'><value>{value}</value></field></x></configure>"
        )
    };
    ok(&owner(
        &mut ps,
        A,
        "set",
        &configure("pubsub#deliver_payloads", "0"),
    ));
    let out = set(&mut ps, A, &xbus_publish("n", "1", 1));
    let items = event_of(&out.notifications[0])
        .get_child("items", "http://jabber.org/protocol/pubsub#event")
        .unwrap();
    assert_eq!(items.children().next().unwrap().children().count(), 0);
    ok(&owner(
        &mut ps,
        A,
        "set",
        &configure("pubsub#deliver_notifications", "false"),
    ));
    assert!(
        set(&mut ps, A, &xbus_publish("n", "2", 1))
            .notifications
            .is_empty()
    );
}
