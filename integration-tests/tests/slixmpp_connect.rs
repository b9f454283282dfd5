//! What a foreign client meets when it connects and first subscribes
//! (docs/PROTOCOL.md sections 1.1, 3.3 and 9), seen by the `probe` scenario of
//! `integration-tests/slixmpp/xbus_peer.py`: the `<stream:features/>` each
//! server offers in plaintext on loopback and over STARTTLS, and its
//! answer to subscribing to a node that does not exist yet. The document's
//! tables of these facts were filled from these runs (`--nocapture` prints
//! the features).
//!
//! The peer runs in the venv that `scripts/slixmpp-venv.sh` creates; without
//! it these tests fail with that command, they never skip.

mod common;
#[path = "common/slixmpp.rs"]
mod slixmpp;

use slixmpp::*;
use xbus_integration_tests::{Ejabberd, Prosody};

/// A `features` line: one `<stream:features/>`, as XML.
#[derive(Serialize, Deserialize, Debug)]
struct Features {
    xml: String,
}

/// A `missing_node` line: the answer to subscribing before creating.
#[derive(Serialize, Deserialize, Debug)]
struct MissingNode {
    topic: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    condition: Option<String>,
    text: Option<String>,
}

/// A `node` line: what creating the node answered.
#[derive(Serialize, Deserialize, Debug)]
struct NodeLine {
    outcome: Option<String>,
}

/// What one probe saw.
struct Probe {
    /// Each `<stream:features/>`, in order.
    features: Vec<String>,
    /// The answer to subscribing to the missing node, with a topic.
    missing: Option<MissingNode>,
}

impl Probe {
    /// The SASL mechanisms of the last features that offer any (after
    /// STARTTLS when it was used: the ones the client chose from).
    fn mechanisms(&self) -> Vec<String> {
        // ElementTree writes prefixes: `<ns2:mechanism>PLAIN</ns2:mechanism>`.
        let listed = |xml: &String| -> Vec<String> {
            xml.split('<')
                .filter_map(|part| {
                    let (tag, text) = part.split_once('>')?;
                    let opening = !tag.starts_with('/');
                    (opening && tag.rsplit(':').next() == Some("mechanism"))
                        .then(|| text.to_owned())
                })
                .collect()
        };
        self.features
            .iter()
            .map(listed)
            .rfind(|m| !m.is_empty())
            .unwrap_or_default()
    }

    /// Whether the first features offer STARTTLS, and require it (its
    /// only possible child is `<required/>`).
    fn starttls(&self) -> (bool, bool) {
        let first = self.features.first().map(String::as_str).unwrap_or("");
        (first.contains(":starttls"), first.contains(":starttls><"))
    }
}

/// Runs the probe as a fresh account of `server`, over `tls`; with
/// `topic`, the §9 steps on that (missing) node too.
async fn probe(server: &dyn XmppServer, tls: Tls, topic: Option<&str>) -> Probe {
    let account = server.account().expect("account");
    let scenario = match topic {
        Some(topic) => format!(r#"{{"scenario": "probe", "topic": "{topic}"}}"#),
        None => r#"{"scenario": "probe"}"#.to_owned(),
    };
    let mut peer = Peer::start(server, &account, tls, &scenario).await;
    let mut features = Vec::new();
    let missing = loop {
        let line = within("a peer line", peer.lines.next_line())
            .await
            .expect("read the peer's output")
            .expect("the peer's output ended early");
        match from_json::<Kind>(&line).kind.as_str() {
            "features" => features.push(from_json::<Features>(&line).xml),
            "missing_node" => break Some(from_json::<MissingNode>(&line)),
            "done" if topic.is_none() => break None,
            other => panic!("unexpected {other:?} line: {line}\n{}", peer.stderr().await),
        }
    };
    if topic.is_some() {
        // Then section 9's order works: create (conflict is fine), subscribe.
        let node: NodeLine = peer.expect("node").await;
        assert!(
            matches!(node.outcome.as_deref(), Some("created" | "conflict")),
            "{node:?}"
        );
        let subscribed: Subscribed = peer.expect("subscribed").await;
        assert_eq!(subscribed.subscription.as_deref(), Some("subscribed"));
        let _: Subscribed = peer.expect("unsubscribed").await;
        peer.finish().await;
    }
    for xml in &features {
        eprintln!("features: {xml}");
    }
    Probe { features, missing }
}

/// Each server of the matrix (the deployed configs, adapted for tests):
/// its features, plaintext and STARTTLS, and its answer to subscribing to
/// a node nobody created.
#[tokio::test]
async fn what_a_foreign_client_meets_when_it_connects_and_subscribes() {
    common::matrix(async |kind| {
        let server = start_server(kind);
        let plain = probe(&server, Tls::Plaintext, Some("probe.missing.plain")).await;
        let tls = probe(&server, Tls::StartTls, Some("probe.missing.tls")).await;
        eprintln!(
            "[{kind}] plaintext: mechanisms {:?}, starttls (offered, required) {:?}; \
             STARTTLS: mechanisms {:?}, starttls {:?}",
            plain.mechanisms(),
            plain.starttls(),
            tls.mechanisms(),
            tls.starttls()
        );
        assert!(tls.starttls().0, "[{kind}] STARTTLS is offered");
        assert!(
            !tls.mechanisms().is_empty(),
            "[{kind}] mechanisms after TLS"
        );
        for probe in [&plain, &tls] {
            let missing = probe.missing.as_ref().expect("a missing-node answer");
            eprintln!("[{kind}] subscribe to a missing node: {missing:?}");
            // Every server refuses it; only publishing may create a node.
            assert_eq!(
                missing.condition.as_deref(),
                Some("item-not-found"),
                "[{kind}] {missing:?}"
            );
        }
    })
    .await;
}

/// Prosody and ejabberd on Debian's own configs: STARTTLS required, and
/// the mechanisms offered after it.
#[tokio::test]
async fn what_debians_configs_offer_a_foreign_client() {
    let prosody = Prosody::start_on_debian_config().expect("start prosody on Debian's config");
    debian_offer("prosody", &prosody).await;
    drop(prosody);
    let ejabberd = Ejabberd::start_on_debian_config().expect("start ejabberd on Debian's config");
    debian_offer("ejabberd", &ejabberd).await;
}

/// What `server`, on Debian's config, offers over STARTTLS.
async fn debian_offer(name: &str, server: &dyn XmppServer) {
    let seen = probe(server, Tls::StartTls, None).await;
    eprintln!(
        "[{name}, Debian] starttls {:?}, mechanisms {:?}",
        seen.starttls(),
        seen.mechanisms()
    );
    assert_eq!(seen.starttls(), (true, true), "[{name}] STARTTLS required");
    assert!(seen.mechanisms().contains(&"SCRAM-SHA-1".to_owned()));
}
