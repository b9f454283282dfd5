//! create, and the request shapes shared by the other tests.

use super::*;

const A: &str = "a@localhost/r1";
const B: &str = "b@localhost/r2";

/// The create request xbus sends (bus/src/pubsub.rs, docs/PROTOCOL.md §3.1).
pub(in crate::pubsub) fn xbus_create(node: &str, max_items: u32) -> String {
    format!(
        "<create node='{node}'/><configure><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
         <field var='pubsub#persist_items'><value>1</value></field>\
         <field var='pubsub#max_items'><value>{max_items}</value></field></x></configure>"
    )
}

/// The publish request xbus sends (§3.2).
pub(in crate::pubsub) fn xbus_publish(node: &str, id: &str, n: u32) -> String {
    format!(
        "<publish node='{node}'><item id='{id}'>\
         <payload xmlns='urn:xbus:0' encoding='json' topic='{node}' version='1'>{n}</payload>\
         </item></publish>"
    )
}

pub(in crate::pubsub) fn create_form(fields: &str) -> String {
    format!(
        "<create node='n'/><configure><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
         {fields}</x></configure>"
    )
}

pub(in crate::pubsub) fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

/// Ids of the items of node `n`, in the order returned.
pub(in crate::pubsub) fn item_ids(ps: &mut PubSub, node: &str, extra: &str) -> Vec<String> {
    let out = get(ps, A, &format!("<items node='{node}' {extra}/>"));
    let payload = ok(&out).unwrap();
    let items = payload.get_child("items", PS).unwrap();
    assert_eq!(items.attr("node"), Some(node));
    items
        .children()
        .map(|i| i.attr("id").unwrap().to_owned())
        .collect()
}

#[test]
fn create_then_conflict() {
    let mut ps = service();
    let out = set(&mut ps, A, &xbus_create("orders.created", 1000));
    let reply = ok(&out).unwrap();
    assert_eq!(
        reply.get_child("create", PS).unwrap().attr("node"),
        Some("orders.created")
    );
    assert!(out.notifications.is_empty());
    let out = set(&mut ps, B, &xbus_create("orders.created", 1000));
    assert_err(&out, "conflict", None);
    let Iq::Error { error, .. } = &out.reply else {
        unreachable!()
    };
    assert_eq!(error.type_, xmpp_parsers::stanza_error::ErrorType::Cancel);
}

#[test]
fn instant_nodes_get_distinct_generated_names() {
    let mut ps = service();
    let mut names = Vec::new();
    for _ in 0..3 {
        let out = set(&mut ps, A, "<create/>");
        let name = ok(&out)
            .unwrap()
            .get_child("create", PS)
            .unwrap()
            .attr("node")
            .unwrap()
            .to_owned();
        assert_eq!(name.len(), 16);
        names.push(name);
    }
    names.dedup();
    assert_eq!(names.len(), 3);
    // The node exists: publish to it without auto-create.
    let mut strict = service_with(PubSubConfig {
        autocreate_on_publish: false,
        ..Default::default()
    });
    let out = set(&mut strict, A, "<create/>");
    let name = ok(&out)
        .unwrap()
        .get_child("create", PS)
        .unwrap()
        .attr("node")
        .unwrap()
        .to_owned();
    ok(&set(&mut strict, A, &xbus_publish(&name, "i", 1)));
}

#[test]
fn slixmpp_create_with_empty_configure() {
    // slixmpp's create_node without a config still sends <configure/>.
    let mut ps = service();
    ok(&set(
        &mut ps,
        A,
        "<create node='princely_musings'/><configure/>",
    ));
    assert!(ps.nodes.contains_key("princely_musings"));
}

#[test]
fn create_options_are_validated() {
    let cases = [
        (field("pubsub#max_items", "10001"), "not-acceptable", None),
        (field("pubsub#max_items", "ten"), "not-acceptable", None),
        (field("pubsub#persist_items", "yes"), "not-acceptable", None),
        (
            field("pubsub#notification_type", "chat"),
            "not-acceptable",
            None,
        ),
        (
            field("pubsub#access_model", "authorize"),
            "feature-not-implemented",
            Some("unsupported"),
        ),
        (
            field("pubsub#access_model", "roster"),
            "feature-not-implemented",
            Some("unsupported"),
        ),
        (
            field("pubsub#access_model", "bogus"),
            "not-acceptable",
            None,
        ),
        (
            field("pubsub#publish_model", "anyone"),
            "not-acceptable",
            None,
        ),
        (
            field("pubsub#node_type", "collection"),
            "feature-not-implemented",
            Some("unsupported"),
        ),
    ];
    for (fields, condition, app) in cases {
        let mut ps = service();
        let out = set(&mut ps, A, &create_form(&fields));
        assert_err(&out, condition, app);
        assert!(ps.nodes.is_empty(), "{fields}");
    }
    let mut ps = service();
    let out = set(
        &mut ps,
        A,
        &create_form(&field("pubsub#access_model", "roster")),
    );
    let Iq::Error { error, .. } = &out.reply else {
        unreachable!()
    };
    assert_eq!(
        error.other.as_ref().unwrap().attr("feature"),
        Some("access-roster")
    );
    // Wrong FORM_TYPE.
    let wrong = "<create node='n'/><configure><x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE' type='hidden'><value>urn:other</value></field></x></configure>";
    assert_err(&set(&mut ps, A, wrong), "not-acceptable", None);
    // A form of type 'form' is not a submission.
    let form = "<create node='n'/><configure><x xmlns='jabber:x:data' type='form'/></configure>";
    assert_err(&set(&mut ps, A, form), "bad-request", None);
}

#[test]
fn create_options_are_applied() {
    let mut ps = service();
    let fields = [
        field("pubsub#max_items", "max"),
        field("pubsub#persist_items", "true"),
        field("pubsub#notification_type", "normal"),
        field("pubsub#access_model", "open"),
        field("pubsub#publish_model", "publishers"),
        field("pubsub#title", "Orders"),
        field("pubsub#some_unknown_option", "whatever"),
    ]
    .concat();
    ok(&set(&mut ps, A, &create_form(&fields)));
    let config = &ps.nodes["n"].config;
    assert_eq!(config.max_items, 10_000);
    assert!(!config.headline);
    assert_eq!(
        config.publish_model,
        crate::pubsub::config::PublishModel::Publishers
    );
    assert_eq!(config.title, "Orders");
    ok(&set(
        &mut ps,
        B,
        "<subscribe node='n' jid='b@localhost/r2'/>",
    ));
    let out = set(&mut ps, A, &xbus_publish("n", "1", 1));
    assert_eq!(
        out.notifications[0].type_,
        xmpp_parsers::message::MessageType::Normal
    );
}

#[test]
fn max_nodes_is_enforced() {
    let mut ps = service_with(PubSubConfig {
        max_nodes: 2,
        ..Default::default()
    });
    ok(&set(&mut ps, A, "<create node='1'/>"));
    ok(&set(&mut ps, A, "<create/>"));
    assert_err(
        &set(&mut ps, A, "<create node='3'/>"),
        "resource-constraint",
        None,
    );
    assert_err(
        &set(&mut ps, A, &xbus_publish("3", "i", 1)),
        "resource-constraint",
        None,
    );
    assert_eq!(ps.nodes.len(), 2);
}
