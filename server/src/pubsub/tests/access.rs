//! Access models: a whitelist with member and publisher affiliations, the
//! publishers publish model, outcasts, and affiliations changed at runtime,
//! in the default `Ownership::Everyone` mode (which a restricted node
//! overrides: only its owner manages it).

use super::entity::{create_form, field, xbus_publish};
use super::*;

const OWNER: &str = "owner@localhost/r1";
const PUBLISHER: &str = "pub@localhost/r2";
const MEMBER: &str = "member@localhost/r3";
const OUTSIDER: &str = "outsider@localhost/r4";

fn affiliate(ps: &mut PubSub, from: &str, jid: &str, affiliation: &str) -> Outcome {
    owner(
        ps,
        from,
        "set",
        &format!(
            "<affiliations node='n'><affiliation jid='{jid}' affiliation='{affiliation}'/></affiliations>"
        ),
    )
}

fn subscribe(ps: &mut PubSub, from: &str) -> Outcome {
    set(ps, from, &format!("<subscribe node='n' jid='{from}'/>"))
}

#[test]
fn a_whitelisted_node_with_publishers_lets_only_its_lists_in() {
    let mut ps = service();
    let fields = [
        field("pubsub#access_model", "whitelist"),
        field("pubsub#publish_model", "publishers"),
    ]
    .concat();
    ok(&set(&mut ps, OWNER, &create_form(&fields)));
    ok(&affiliate(&mut ps, OWNER, "pub@localhost", "publisher"));
    ok(&affiliate(&mut ps, OWNER, "member@localhost", "member"));
    // The outsider may not edit the lists, even in Everyone mode.
    assert_err(
        &affiliate(&mut ps, OUTSIDER, "outsider@localhost", "member"),
        "forbidden",
        None,
    );

    ok(&subscribe(&mut ps, MEMBER));
    ok(&subscribe(&mut ps, PUBLISHER));
    assert_err(
        &subscribe(&mut ps, OUTSIDER),
        "not-allowed",
        Some("closed-node"),
    );
    assert_err(
        &get(&mut ps, OUTSIDER, "<items node='n'/>"),
        "not-allowed",
        Some("closed-node"),
    );

    let published = set(&mut ps, PUBLISHER, &xbus_publish("n", "1", 1));
    ok(&published);
    assert_eq!(recipients(&published).len(), 2);
    assert_err(
        &set(&mut ps, MEMBER, &xbus_publish("n", "2", 2)),
        "forbidden",
        None,
    );
    assert_err(
        &set(&mut ps, OUTSIDER, &xbus_publish("n", "3", 3)),
        "forbidden",
        None,
    );
    ok(&get(&mut ps, MEMBER, "<items node='n'/>"));

    // Changes take effect at once: the outsider joins, the member leaves
    // (and loses its subscription).
    ok(&affiliate(&mut ps, OWNER, "outsider@localhost", "member"));
    ok(&subscribe(&mut ps, OUTSIDER));
    ok(&affiliate(&mut ps, OWNER, "member@localhost", "none"));
    assert_err(
        &get(&mut ps, MEMBER, "<items node='n'/>"),
        "not-allowed",
        Some("closed-node"),
    );
    let published = set(&mut ps, OWNER, &xbus_publish("n", "4", 4));
    let mut to = recipients(&published);
    to.sort();
    assert_eq!(to, [OUTSIDER.to_owned(), PUBLISHER.to_owned()]);
    ok(&affiliate(&mut ps, OWNER, "pub@localhost", "outcast"));
    assert_err(
        &set(&mut ps, PUBLISHER, &xbus_publish("n", "5", 5)),
        "forbidden",
        None,
    );
    assert_err(
        &affiliate(&mut ps, OWNER, "owner@localhost", "none"),
        "not-acceptable",
        None,
    );
}

#[test]
fn authorize_is_not_implemented() {
    let mut ps = service();
    let out = set(
        &mut ps,
        OWNER,
        &create_form(&field("pubsub#access_model", "authorize")),
    );
    assert_err(&out, "feature-not-implemented", Some("unsupported"));
}

/// A request as a requester that receives the presence of `sees`.
fn seeing(ps: &mut PubSub, from: &str, type_: &str, inner: &str, sees: &str) -> Outcome {
    let xml = format!(
        "<iq xmlns='jabber:client' type='{type_}' id='t' to='pubsub.localhost'>\
         <pubsub xmlns='{PS}'>{inner}</pubsub></iq>"
    );
    let iq = Iq::try_from(xml.parse::<Element>().unwrap()).unwrap();
    ps.handle_iq_seeing(&jid(from), iq, &|owner| owner == sees)
}

#[test]
fn the_presence_model_admits_who_sees_the_owner() {
    let mut ps = service();
    ok(&set(
        &mut ps,
        OWNER,
        &create_form(&field("pubsub#access_model", "presence")),
    ));
    let request = format!("<subscribe node='n' jid='{MEMBER}'/>");
    // Without a presence subscription to the owner: refused.
    assert_err(
        &seeing(&mut ps, MEMBER, "set", &request, "someone@localhost"),
        "not-authorized",
        Some("presence-subscription-required"),
    );
    assert_err(
        &subscribe(&mut ps, MEMBER),
        "not-authorized",
        Some("presence-subscription-required"),
    );
    // With one: admitted, items too.
    ok(&seeing(&mut ps, MEMBER, "set", &request, "owner@localhost"));
    ok(&seeing(
        &mut ps,
        MEMBER,
        "get",
        "<items node='n'/>",
        "owner@localhost",
    ));
    // A member is admitted whatever its roster.
    ok(&affiliate(&mut ps, OWNER, "outsider@localhost", "member"));
    ok(&subscribe(&mut ps, OUTSIDER));
}
