//! Arbitrary requests never panic, always get a reply to the right
//! address, and leave the service's invariants intact.

use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use super::*;
use crate::pubsub::xml::attr_name;

const NAMES: &[&str] = &[
    "pubsub",
    "create",
    "configure",
    "publish",
    "publish-options",
    "item",
    "items",
    "retract",
    "subscribe",
    "unsubscribe",
    "subscriptions",
    "subscription",
    "affiliations",
    "affiliation",
    "options",
    "default",
    "delete",
    "purge",
    "redirect",
    "x",
    "field",
    "value",
    "query",
    "payload",
];
const NAMESPACES: &[&str] = &[
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#owner",
    "http://jabber.org/protocol/pubsub#event",
    "jabber:x:data",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "urn:example",
];
const ATTRS: &[&str] = &[
    "node",
    "jid",
    "id",
    "subid",
    "max_items",
    "notify",
    "type",
    "var",
    "subscription",
    "affiliation",
    "publisher",
];
const VALUES: &[&str] = &[
    "n",
    "m",
    "",
    "a@localhost",
    "a@localhost/r1",
    "b@localhost/r2",
    "@@",
    "max",
    "0",
    "1",
    "-1",
    "99999999999999999999",
    "true",
    "false",
    "submit",
    "form",
    "cancel",
    "result",
    "subscribed",
    "none",
    "FORM_TYPE",
    "pubsub#max_items",
    "pubsub#persist_items",
    "pubsub#access_model",
    "http://jabber.org/protocol/pubsub#node_config",
    "http://jabber.org/protocol/pubsub#publish-options",
    "owner",
];

/// xorshift64*: a deterministic source of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn tree(rng: &mut Rng, depth: usize) -> Element {
    let mut builder = Element::builder(rng.pick(NAMES), rng.pick(NAMESPACES));
    for _ in 0..rng.below(4) {
        let value = if rng.below(20) == 0 {
            "v".repeat(1500)
        } else {
            rng.pick(VALUES).to_owned()
        };
        builder = builder.attr(attr_name(ATTRS[rng.below(ATTRS.len())]), value);
    }
    if depth > 0 {
        for _ in 0..rng.below(4) {
            if rng.below(5) == 0 {
                builder = builder.append(rng.pick(VALUES).to_owned());
            } else {
                builder = builder.append(tree(rng, depth - 1));
            }
        }
    }
    builder.build()
}

fn check_invariants(ps: &PubSub) {
    assert!(ps.nodes.len() <= ps.config.max_nodes);
    let mut indexed = 0;
    for (name, node) in &ps.nodes {
        assert!(node.items.all().count() <= node.config.max_items as usize);
        assert!(node.subscriptions.len() <= ps.config.max_subscriptions_per_node);
        for (key, sub) in &node.subscriptions {
            let bare = sub.jid.to_bare().to_string();
            assert!(ps.by_subscriber[&bare].contains(&(name.clone(), key.clone())));
            indexed += 1;
        }
    }
    assert_eq!(
        indexed,
        ps.by_subscriber.values().map(|s| s.len()).sum::<usize>()
    );
}

#[test]
fn random_requests_never_panic() {
    let config = PubSubConfig {
        max_nodes: 5,
        max_items_limit: 4,
        default_max_items: 2,
        max_subscriptions_per_node: 3,
        max_payload_bytes: 2000,
        ..Default::default()
    };
    let mut ps = service_with(config);
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let senders = ["a@localhost/r1", "b@localhost/r2", "a@localhost/r9"];
    let mut errors = 0;
    for round in 0..20_000 {
        let from = jid(rng.pick(&senders));
        let mut payload = tree(&mut rng, 4);
        // Bias towards well-formed envelopes so that deep paths are reached.
        if rng.below(3) > 0 {
            let ns = rng.pick(&NAMESPACES[..2]).to_owned();
            payload = Element::builder("pubsub", ns)
                .append(tree(&mut rng, 3))
                .build();
        }
        let id = format!("f{round}");
        let request = if rng.below(2) == 0 {
            Iq::Get {
                from: None,
                to: None,
                id: id.clone(),
                payload,
            }
        } else {
            Iq::Set {
                from: None,
                to: None,
                id: id.clone(),
                payload,
            }
        };
        let out = ps.handle_iq(&from, request);
        assert_eq!(out.reply.id(), id);
        assert_eq!(
            out.reply.to().map(|j| j.to_string()),
            Some(from.to_string())
        );
        if let Iq::Error { error, .. } = &out.reply {
            errors += 1;
            // The error serializes and parses back.
            let elem = Element::from(error.clone());
            StanzaError::try_from(elem).unwrap();
        }
        for m in &out.notifications {
            event_of(m);
        }
        if rng.below(50) == 0 {
            ps.session_ended(&jid(rng.pick(&senders)));
        }
        check_invariants(&ps);
    }
    assert!(errors > 1000, "most random requests are errors ({errors})");
}

#[test]
fn non_requests_and_unknown_namespaces() {
    let mut ps = service();
    let out = iq(
        &mut ps,
        "a@localhost/r",
        "get",
        "<query xmlns='urn:example:unknown'/>",
    );
    assert_err(&out, "service-unavailable", None);
    let out = iq(
        &mut ps,
        "a@localhost/r",
        "get",
        "<ping xmlns='urn:xmpp:ping'/>",
    );
    assert_err(&out, "service-unavailable", None);
    let out = ps.handle_iq(
        &jid("a@localhost/r"),
        Iq::Result {
            from: None,
            to: None,
            id: "r".into(),
            payload: None,
        },
    );
    assert!(matches!(out.reply, Iq::Error { .. }));
    assert_err(
        &iq(
            &mut ps,
            "a@localhost/r",
            "set",
            &format!("<pubsub xmlns='{PS}'/>"),
        ),
        "bad-request",
        None,
    );
    assert_err(
        &get(&mut ps, "a@localhost/r", "<create node='n'/>"),
        "bad-request",
        None,
    );
    assert_err(
        &set(&mut ps, "a@localhost/r", "<items node='n'/>"),
        "bad-request",
        None,
    );
    assert_err(
        &set(
            &mut ps,
            "a@localhost/r",
            "<create node='n'/><publish node='n'/>",
        ),
        "bad-request",
        None,
    );
    assert_err(
        &set(&mut ps, "a@localhost/r", "<configure/>"),
        "bad-request",
        None,
    );
    // Foreign children (e.g. RSM) are ignored.
    let rsm = "<create node='rsm'/><set xmlns='http://jabber.org/protocol/rsm'/>";
    ok(&set(&mut ps, "a@localhost/r", rsm));
    let long = "n".repeat(2000);
    assert_err(
        &set(
            &mut ps,
            "a@localhost/r",
            &format!("<create node='{long}'/>"),
        ),
        "not-acceptable",
        None,
    );
    assert_eq!(ps.nodes.len(), 1);
}
