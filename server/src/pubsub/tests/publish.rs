//! publish, publish-options, items, retract.

use super::entity::{create_form, field, item_ids, xbus_create, xbus_publish};
use super::*;
use crate::pubsub::Ownership;

const A: &str = "a@localhost/r1";
const B: &str = "b@localhost/r2";

#[test]
fn publish_result_and_notification_have_the_documented_shape() {
    let mut ps = service();
    ok(&set(&mut ps, A, &xbus_create("orders.created", 1000)));
    ok(&set(
        &mut ps,
        B,
        "<subscribe jid='b@localhost/r2' node='orders.created'/>",
    ));
    let id = "9b0c393e949de981dd00b0921af84970";
    let out = set(&mut ps, A, &xbus_publish("orders.created", id, 7));
    assert_eq!(
        xml(ok(&out).unwrap()),
        format!(
            "<pubsub xmlns='{PS}'><publish node='orders.created'><item id='{id}'/></publish></pubsub>"
        )
    );
    assert_eq!(out.notifications.len(), 1);
    let message = &out.notifications[0];
    assert_eq!(message.to.as_ref().unwrap().as_str(), B);
    assert_eq!(message.type_, xmpp_parsers::message::MessageType::Headline);
    assert!(message.id.is_some());
    assert_eq!(
        xml(event_of(message).clone()),
        format!(
            "<event xmlns='{PS}#event'><items node='orders.created'>\
             <item id='{id}' publisher='a@localhost'>\
             <payload xmlns='urn:xbus:0' encoding='json' topic='orders.created' version='1'>7</payload>\
             </item></items></event>"
        )
    );
}

#[test]
fn publish_without_id_generates_one() {
    let mut ps = service();
    let out = set(
        &mut ps,
        A,
        "<publish node='n'><item><entry xmlns='urn:x'/></item></publish>",
    );
    let reply = ok(&out).unwrap();
    let id = reply
        .get_child("publish", PS)
        .unwrap()
        .get_child("item", PS)
        .unwrap()
        .attr("id")
        .unwrap()
        .to_owned();
    assert!(!id.is_empty());
    assert_eq!(item_ids(&mut ps, "n", ""), vec![id]);
}

#[test]
fn publish_autocreates_unless_disabled() {
    let mut ps = service();
    ok(&set(&mut ps, A, &xbus_publish("auto", "1", 1)));
    assert_eq!(ps.nodes["auto"].owner, "a@localhost");
    let mut strict = service_with(PubSubConfig {
        autocreate_on_publish: false,
        ..Default::default()
    });
    assert_err(
        &set(&mut strict, A, &xbus_publish("auto", "1", 1)),
        "item-not-found",
        None,
    );
}

#[test]
fn malformed_publishes_are_refused() {
    let mut ps = service();
    let cases = [
        ("<publish node='n'/>", "bad-request", Some("item-required")),
        (
            "<publish><item id='1'><p xmlns='urn:x'/></item></publish>",
            "bad-request",
            Some("nodeid-required"),
        ),
        (
            "<publish node='n'><item id='1'/></publish>",
            "bad-request",
            Some("payload-required"),
        ),
        (
            "<publish node='n'><item id='1'><p xmlns='urn:x'/><q xmlns='urn:x'/></item></publish>",
            "bad-request",
            Some("invalid-payload"),
        ),
        (
            "<publish node='n'><item id='1'><p xmlns='urn:x'/></item><item id='2'><p xmlns='urn:x'/></item></publish>",
            "bad-request",
            Some("invalid-payload"),
        ),
        (
            "<publish node='n'><other xmlns='urn:x'/></publish>",
            "bad-request",
            None,
        ),
    ];
    for (request, condition, app) in cases {
        assert_err(&set(&mut ps, A, request), condition, app);
    }
    assert!(ps.nodes.is_empty(), "a refused publish creates no node");
}

#[test]
fn payload_size_is_limited() {
    let mut ps = service_with(PubSubConfig {
        max_payload_bytes: 100,
        ..Default::default()
    });
    let big = "x".repeat(100);
    let request =
        format!("<publish node='n'><item id='1'><p xmlns='urn:x'>{big}</p></item></publish>");
    let out = set(&mut ps, A, &request);
    assert_err(&out, "not-acceptable", Some("payload-too-big"));
    let Iq::Error { error, .. } = &out.reply else {
        unreachable!()
    };
    assert_eq!(error.type_, xmpp_parsers::stanza_error::ErrorType::Modify);
    ok(&set(
        &mut ps,
        A,
        "<publish node='n'><item id='1'><p xmlns='urn:x'>small</p></item></publish>",
    ));
}

#[test]
fn max_items_evicts_the_oldest_and_republish_moves_to_newest() {
    let mut ps = service();
    ok(&set(&mut ps, A, &xbus_create("n", 3)));
    for id in ["a", "b", "c"] {
        ok(&set(&mut ps, A, &xbus_publish("n", id, 1)));
    }
    assert_eq!(item_ids(&mut ps, "n", ""), ["a", "b", "c"]);
    ok(&set(&mut ps, A, &xbus_publish("n", "a", 2)));
    assert_eq!(item_ids(&mut ps, "n", ""), ["b", "c", "a"]);
    ok(&set(&mut ps, A, &xbus_publish("n", "d", 3)));
    assert_eq!(item_ids(&mut ps, "n", ""), ["c", "a", "d"]);
    // The replaced item carries the new payload.
    let out = get(&mut ps, A, "<items node='n'><item id='a'/></items>");
    let payload = ok(&out).unwrap();
    let text = payload
        .get_child("items", PS)
        .unwrap()
        .get_child("item", PS)
        .unwrap()
        .children()
        .next()
        .unwrap()
        .text();
    assert_eq!(text, "2");
}

#[test]
fn non_persistent_nodes_keep_no_items_but_notify() {
    let mut ps = service();
    ok(&set(
        &mut ps,
        A,
        &create_form(&field("pubsub#persist_items", "0")),
    ));
    ok(&set(
        &mut ps,
        A,
        "<subscribe node='n' jid='a@localhost/r1'/>",
    ));
    let out = set(&mut ps, A, &xbus_publish("n", "1", 1));
    assert_eq!(out.notifications.len(), 1);
    assert!(item_ids(&mut ps, "n", "").is_empty());
}

#[test]
fn items_retrieval_all_newest_and_by_id() {
    let mut ps = service();
    for i in 1..=5 {
        ok(&set(&mut ps, A, &xbus_publish("n", &i.to_string(), i)));
    }
    assert_eq!(item_ids(&mut ps, "n", ""), ["1", "2", "3", "4", "5"]);
    assert_eq!(item_ids(&mut ps, "n", "max_items='2'"), ["4", "5"]);
    assert_eq!(
        item_ids(&mut ps, "n", "max_items='0'"),
        Vec::<String>::new()
    );
    assert_eq!(item_ids(&mut ps, "n", "max_items='99'").len(), 5);
    let out = get(
        &mut ps,
        B,
        "<items node='n'><item id='4'/><item id='nope'/><item id='2'/></items>",
    );
    let payload = ok(&out).unwrap();
    let items = payload.get_child("items", PS).unwrap();
    let ids: Vec<_> = items.children().map(|i| i.attr("id").unwrap()).collect();
    assert_eq!(ids, ["4", "2"]);
    let first = items.children().next().unwrap();
    assert_eq!(first.attr("publisher"), Some("a@localhost"));
    assert!(first.get_child("payload", "urn:xbus:0").is_some());
    assert_err(
        &get(&mut ps, A, "<items node='n' max_items='x'/>"),
        "bad-request",
        None,
    );
    assert_err(
        &get(&mut ps, A, "<items node='missing'/>"),
        "item-not-found",
        None,
    );
    assert_err(
        &get(&mut ps, A, "<items/>"),
        "bad-request",
        Some("nodeid-required"),
    );
}

#[test]
fn retract_with_and_without_notify() {
    let mut ps = service();
    assert_err(
        &set(&mut ps, B, "<subscribe node='n' jid='b@localhost/r2'/>"),
        "item-not-found",
        None,
    );
    ok(&set(&mut ps, A, "<create node='n'/>"));
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ));
    for id in ["1", "2", "3"] {
        ok(&set(&mut ps, A, &xbus_publish("n", id, 1)));
    }
    let out = set(&mut ps, A, "<retract node='n'><item id='1'/></retract>");
    assert!(ok(&out).is_none());
    assert!(out.notifications.is_empty());
    let out = set(
        &mut ps,
        A,
        "<retract node='n' notify='true'><item id='2'/></retract>",
    );
    ok(&out);
    assert_eq!(recipients(&out), [B]);
    assert_eq!(
        xml(event_of(&out.notifications[0]).clone()),
        format!("<event xmlns='{PS}#event'><items node='n'><retract id='2'/></items></event>")
    );
    assert_eq!(item_ids(&mut ps, "n", ""), ["3"]);
    assert_err(
        &set(&mut ps, A, "<retract node='n'><item id='1'/></retract>"),
        "item-not-found",
        None,
    );
    assert_err(
        &set(&mut ps, A, "<retract node='n'/>"),
        "bad-request",
        Some("item-required"),
    );
    assert_err(
        &set(
            &mut ps,
            A,
            "<retract node='n' notify='maybe'><item id='3'/></retract>",
        ),
        "bad-request",
        None,
    );
    assert_err(
        &set(&mut ps, A, "<retract node='x'><item id='3'/></retract>"),
        "item-not-found",
        None,
    );
}

#[test]
fn creator_ownership_limits_retract_and_publishers_model() {
    let mut ps = service_with(PubSubConfig {
        ownership: Ownership::Creator,
        ..Default::default()
    });
    ok(&set(
        &mut ps,
        A,
        &create_form(&field("pubsub#publish_model", "publishers")),
    ));
    assert_err(
        &set(&mut ps, B, &xbus_publish("n", "1", 1)),
        "forbidden",
        None,
    );
    ok(&set(&mut ps, A, &xbus_publish("n", "1", 1)));
    assert_err(
        &set(&mut ps, B, "<retract node='n'><item id='1'/></retract>"),
        "forbidden",
        None,
    );
    ok(&set(
        &mut ps,
        A,
        "<retract node='n'><item id='1'/></retract>",
    ));
    // publish_model subscribers: a subscriber may publish.
    ok(&set(
        &mut ps,
        A,
        &create_form(&field("pubsub#publish_model", "subscribers")).replace("'n'", "'s'"),
    ));
    assert_err(
        &set(&mut ps, B, &xbus_publish("s", "1", 1)),
        "forbidden",
        None,
    );
    ok(&set(&mut ps, B, "<subscribe node='s' jid='b@localhost'/>"));
    ok(&set(&mut ps, B, &xbus_publish("s", "1", 1)));
}

#[test]
fn publish_options_are_preconditions() {
    let mut ps = service();
    ok(&set(&mut ps, A, &xbus_create("n", 1000)));
    let with_options = |fields: &str| {
        format!(
            "{}<publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             {fields}</x></publish-options>",
            xbus_publish("n", "1", 1)
        )
    };
    ok(&set(
        &mut ps,
        A,
        &with_options(&field("pubsub#persist_items", "true")),
    ));
    ok(&set(
        &mut ps,
        A,
        &with_options(&field("pubsub#max_items", "1000")),
    ));
    ok(&set(
        &mut ps,
        A,
        &with_options(&field("pubsub#access_model", "open")),
    ));
    ok(&set(
        &mut ps,
        A,
        &with_options(&field("pubsub#unknown", "x")),
    ));
    assert_err(
        &set(&mut ps, A, &with_options(&field("pubsub#max_items", "5"))),
        "conflict",
        Some("precondition-not-met"),
    );
    // Auto-create takes the publish-options as the configuration.
    let request = with_options(&field("pubsub#max_items", "2")).replace("node='n'", "node='m'");
    ok(&set(&mut ps, A, &request));
    assert_eq!(ps.nodes["m"].config.max_items, 2);
    // <publish-options/> alone is not a request.
    assert_err(&set(&mut ps, A, "<publish-options/>"), "bad-request", None);
}
