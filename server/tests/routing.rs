//! Routing between sessions (RFC 6121 section 8), server IQs, offline
//! storage.

mod common;

use common::{
    body, chat, client, init_tracing, iq_get, iq_reply, next_message, next_presence, send,
};
use tokio_xmpp::parsers::delay::Delay;
use tokio_xmpp::parsers::disco::{
    DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult,
};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::DefinedCondition;

fn error_condition(iq: &Iq) -> Option<DefinedCondition> {
    match iq {
        Iq::Error { error, .. } => Some(error.defined_condition.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn message_to_full_and_bare_jid() {
    init_tracing();
    let server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    let mut bob = client(&server, "bob@localhost/b", "pw").await;

    // Full JID: delivered without presence.
    send(&mut alice, chat("bob@localhost/b", "full")).await;
    let got = next_message("full", &mut bob).await;
    assert_eq!(body(&got), "full");
    assert_eq!(got.from.unwrap().to_string(), "alice@localhost/a");

    // Bare JID: needs an available resource.
    send(&mut bob, Presence::available()).await;
    let own = next_presence("own presence reflected", &mut bob).await;
    assert_eq!(own.from.unwrap().to_string(), "bob@localhost/b");
    send(&mut alice, chat("bob@localhost", "bare")).await;
    let got = next_message("bare", &mut bob).await;
    assert_eq!(body(&got), "bare");
    assert!(
        got.payloads
            .iter()
            .all(|p| !p.is("delay", "urn:xmpp:delay"))
    );
}

#[tokio::test]
async fn server_stamps_from() {
    init_tracing();
    let server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    let mut bob = client(&server, "bob@localhost/b", "pw").await;
    let mut forged = chat("bob@localhost/b", "forged");
    forged.from = Some("admin@localhost/x".parse().unwrap());
    send(&mut alice, forged).await;
    let got = next_message("forged", &mut bob).await;
    assert_eq!(got.from.unwrap().to_string(), "alice@localhost/a");
}

#[tokio::test]
async fn offline_messages_arrive_with_delay_at_next_presence() {
    init_tracing();
    let server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    send(&mut alice, chat("olivia@localhost", "one")).await;
    send(&mut alice, chat("olivia@localhost", "two")).await;
    let mut headline = Message::new(Some("olivia@localhost".parse().unwrap()));
    headline.type_ = MessageType::Headline;
    headline
        .bodies
        .insert(Default::default(), "not stored".into());
    send(&mut alice, headline).await;
    // Round trip so the server has handled the messages.
    send(&mut alice, iq_get(Some("localhost"), "sync", Ping.into())).await;
    iq_reply("sync", &mut alice, "sync").await;

    let mut olivia = client(&server, "olivia@localhost/o", "pw").await;
    send(&mut olivia, Presence::available()).await;
    let first = next_message("first offline", &mut olivia).await;
    let second = next_message("second offline", &mut olivia).await;
    assert_eq!((body(&first), body(&second)), ("one", "two"));
    let delay = first
        .payloads
        .iter()
        .find(|p| p.is("delay", "urn:xmpp:delay"))
        .cloned()
        .expect("delay");
    let delay = Delay::try_from(delay).expect("valid delay");
    assert_eq!(delay.from.unwrap().to_string(), "localhost");
    // Stored once: a second login gets nothing more.
    send(&mut olivia, chat("olivia@localhost/o", "marker")).await;
    let next = next_message("marker", &mut olivia).await;
    assert_eq!(body(&next), "marker");
}

#[tokio::test]
async fn iq_to_absent_resource_or_other_bare_jid_is_service_unavailable() {
    init_tracing();
    let server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    let _bob = client(&server, "bob@localhost/b", "pw").await;
    send(
        &mut alice,
        iq_get(Some("bob@localhost/gone"), "q1", Ping.into()),
    )
    .await;
    let reply = iq_reply("absent", &mut alice, "q1").await;
    assert_eq!(
        error_condition(&reply),
        Some(DefinedCondition::ServiceUnavailable)
    );
    match &reply {
        Iq::Error { from, .. } => {
            assert_eq!(from.as_ref().unwrap().to_string(), "bob@localhost/gone")
        }
        other => panic!("{other:?}"),
    }
    send(&mut alice, iq_get(Some("bob@localhost"), "q2", Ping.into())).await;
    let reply = iq_reply("bare", &mut alice, "q2").await;
    assert_eq!(
        error_condition(&reply),
        Some(DefinedCondition::ServiceUnavailable)
    );
    // Unknown namespace to the server.
    let odd = tokio_xmpp::minidom::Element::builder("query", "urn:example:unknown").build();
    send(&mut alice, iq_get(Some("localhost"), "q3", odd)).await;
    let reply = iq_reply("unknown", &mut alice, "q3").await;
    assert_eq!(
        error_condition(&reply),
        Some(DefinedCondition::ServiceUnavailable)
    );
}

#[tokio::test]
async fn iq_between_sessions_round_trips() {
    init_tracing();
    let server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    let mut bob = client(&server, "bob@localhost/b", "pw").await;
    send(
        &mut alice,
        iq_get(Some("bob@localhost/b"), "p1", Ping.into()),
    )
    .await;
    let request = common::next_matching("request at bob", &mut bob, |s| match s {
        tokio_xmpp::Stanza::Iq(iq @ Iq::Get { .. }) => Some(iq),
        _ => None,
    })
    .await;
    let Iq::Get { from, id, .. } = request else {
        unreachable!()
    };
    assert_eq!(from.as_ref().unwrap().to_string(), "alice@localhost/a");
    send(
        &mut bob,
        Iq::Result {
            from: None,
            to: from,
            id,
            payload: None,
        },
    )
    .await;
    let reply = iq_reply("result at alice", &mut alice, "p1").await;
    assert!(matches!(reply, Iq::Result { .. }), "{reply:?}");
}

#[tokio::test]
async fn ping_and_disco() {
    init_tracing();
    let server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    send(&mut alice, iq_get(Some("localhost"), "ping", Ping.into())).await;
    assert!(matches!(
        iq_reply("ping", &mut alice, "ping").await,
        Iq::Result { .. }
    ));

    send(
        &mut alice,
        iq_get(
            Some("localhost"),
            "info",
            DiscoInfoQuery { node: None }.into(),
        ),
    )
    .await;
    let Iq::Result {
        payload: Some(payload),
        ..
    } = iq_reply("info", &mut alice, "info").await
    else {
        panic!("disco#info failed");
    };
    let info = DiscoInfoResult::try_from(payload).unwrap();
    assert!(
        info.identities
            .iter()
            .any(|i| i.category == "server" && i.type_ == "im")
    );
    for feature in [
        "urn:xmpp:ping",
        "jabber:iq:roster",
        "http://jabber.org/protocol/disco#info",
    ] {
        assert!(info.features.contains(feature), "{feature}");
    }

    send(
        &mut alice,
        iq_get(
            Some("localhost"),
            "items",
            DiscoItemsQuery {
                node: None,
                rsm: None,
            }
            .into(),
        ),
    )
    .await;
    let Iq::Result {
        payload: Some(payload),
        ..
    } = iq_reply("items", &mut alice, "items").await
    else {
        panic!("disco#items failed");
    };
    let items = DiscoItemsResult::try_from(payload).unwrap();
    assert!(
        items
            .items
            .iter()
            .any(|i| i.jid.to_string() == "pubsub.localhost")
    );

    send(
        &mut alice,
        iq_get(
            Some("pubsub.localhost"),
            "ps",
            DiscoInfoQuery { node: None }.into(),
        ),
    )
    .await;
    let Iq::Result {
        payload: Some(payload),
        ..
    } = iq_reply("pubsub info", &mut alice, "ps").await
    else {
        panic!("pubsub disco#info failed");
    };
    let info = DiscoInfoResult::try_from(payload).unwrap();
    assert!(info.features.contains("http://jabber.org/protocol/pubsub"));
}

#[tokio::test]
async fn bare_jid_message_goes_to_highest_priority() {
    init_tracing();
    let server = common::server().await;
    let mut low = client(&server, "paul@localhost/low", "pw").await;
    let mut high = client(&server, "paul@localhost/high", "pw").await;
    let mut p = Presence::available();
    p.priority = tokio_xmpp::parsers::presence::Priority(1);
    send(&mut low, p).await;
    let mut p = Presence::available();
    p.priority = tokio_xmpp::parsers::presence::Priority(5);
    send(&mut high, p).await;
    // Both see both presences (own resources).
    for _ in 0..2 {
        next_presence("high sees", &mut high).await;
    }
    let mut sender = client(&server, "sam@localhost/s", "pw").await;
    send(&mut sender, chat("paul@localhost", "to the top")).await;
    let got = next_message("top", &mut high).await;
    assert_eq!(body(&got), "to the top");
    // The low one gets the next message only after high goes unavailable.
    send(&mut high, Presence::new(PresenceType::Unavailable)).await;
    common::next_matching("low sees high leave", &mut low, |s| match s {
        tokio_xmpp::Stanza::Presence(p) if p.type_ == PresenceType::Unavailable => Some(()),
        _ => None,
    })
    .await;
    send(&mut sender, chat("paul@localhost", "now low")).await;
    let got = next_message("low", &mut low).await;
    assert_eq!(body(&got), "now low");
}

#[tokio::test]
async fn messages_to_unknown_users_and_domains_bounce() {
    init_tracing();
    let server = tokio::time::timeout(
        common::STEP,
        xbus_server::Server::builder()
            .account("alice", "pw")
            .start(),
    )
    .await
    .unwrap()
    .unwrap();
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    for (to, condition) in [
        ("nobody@localhost", "service-unavailable"),
        ("someone@elsewhere.example", "remote-server-not-found"),
    ] {
        send(&mut alice, chat(to, "hello?")).await;
        let bounce = next_message("bounce", &mut alice).await;
        assert_eq!(bounce.type_, MessageType::Error);
        assert_eq!(bounce.from.unwrap().to_string(), to);
        let error = bounce
            .payloads
            .iter()
            .find(|p| p.name() == "error")
            .expect("error element");
        assert!(error.children().any(|c| c.name() == condition), "{error:?}");
    }
}

#[tokio::test]
async fn offline_store_is_bounded_and_keeps_the_newest() {
    init_tracing();
    let server = tokio::time::timeout(
        common::STEP,
        xbus_server::Server::builder()
            .max_offline_messages(2)
            .start(),
    )
    .await
    .unwrap()
    .unwrap();
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    for n in 1..=3 {
        send(&mut alice, chat("quinn@localhost", &format!("m{n}"))).await;
    }
    send(&mut alice, iq_get(Some("localhost"), "sync", Ping.into())).await;
    iq_reply("sync", &mut alice, "sync").await;
    let mut quinn = client(&server, "quinn@localhost/q", "pw").await;
    send(&mut quinn, Presence::available()).await;
    assert_eq!(body(&next_message("m2", &mut quinn).await), "m2");
    assert_eq!(body(&next_message("m3", &mut quinn).await), "m3");
    send(&mut quinn, chat("quinn@localhost/q", "end")).await;
    assert_eq!(body(&next_message("end", &mut quinn).await), "end");
}
