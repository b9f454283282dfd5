//! Presence subscriptions and the roster (RFC 6121).

mod common;

use common::{client, init_tracing, iq_get, iq_reply, next_matching, next_presence, send};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::presence::{Presence, Type};
use tokio_xmpp::parsers::roster::{Ask, Item, Roster, Subscription};
use tokio_xmpp::{Client, Stanza};

/// Fetches the roster (which also subscribes the session to pushes).
async fn roster(client: &mut Client, id: &str) -> Roster {
    send(
        client,
        iq_get(
            None,
            id,
            Roster {
                ver: None,
                items: vec![],
            }
            .into(),
        ),
    )
    .await;
    match iq_reply("roster", client, id).await {
        Iq::Result {
            payload: Some(payload),
            ..
        } => Roster::try_from(payload).expect("roster"),
        other => panic!("roster get failed: {other:?}"),
    }
}

/// The next roster push, acknowledged.
async fn push(what: &str, client: &mut Client) -> Item {
    let (id, item) = next_matching(what, client, |s| match s {
        Stanza::Iq(Iq::Set { id, payload, .. }) if payload.is("query", "jabber:iq:roster") => {
            let roster = Roster::try_from(payload).ok()?;
            Some((id, roster.items.into_iter().next()?))
        }
        _ => None,
    })
    .await;
    send(
        client,
        Iq::Result {
            from: None,
            to: None,
            id,
            payload: None,
        },
    )
    .await;
    item
}

fn presence(type_: Type, to: &str) -> Presence {
    let mut p = Presence::new(type_);
    p.to = Some(to.parse().unwrap());
    p
}

async fn typed(what: &str, client: &mut Client, type_: Type) -> Presence {
    next_matching(what, client, |s| match s {
        Stanza::Presence(p) if p.type_ == type_ => Some(p),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn subscription_flow_with_roster_pushes_and_presence() {
    init_tracing();
    let server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    let mut bob = client(&server, "bob@localhost/b", "pw").await;
    assert!(roster(&mut alice, "r1").await.items.is_empty());
    assert!(roster(&mut bob, "r2").await.items.is_empty());
    send(&mut alice, Presence::available()).await;
    next_presence("alice own", &mut alice).await;
    send(&mut bob, Presence::available()).await;
    next_presence("bob own", &mut bob).await;

    send(&mut alice, presence(Type::Subscribe, "bob@localhost")).await;
    let item = push("alice push: ask", &mut alice).await;
    assert_eq!(item.jid.to_string(), "bob@localhost");
    assert_eq!(
        (item.subscription, item.ask),
        (Subscription::None, Ask::Subscribe)
    );
    let request = typed("bob gets subscribe", &mut bob, Type::Subscribe).await;
    assert_eq!(request.from.unwrap().to_string(), "alice@localhost");

    send(&mut bob, presence(Type::Subscribed, "alice@localhost")).await;
    let item = push("bob push: from", &mut bob).await;
    assert_eq!(
        (item.jid.to_string(), item.subscription),
        ("alice@localhost".into(), Subscription::From)
    );
    let item = push("alice push: to", &mut alice).await;
    assert_eq!((item.subscription, item.ask), (Subscription::To, Ask::None));
    let approved = typed("alice gets subscribed", &mut alice, Type::Subscribed).await;
    assert_eq!(approved.from.unwrap().to_string(), "bob@localhost");
    let online = typed("alice gets bob's presence", &mut alice, Type::None).await;
    assert_eq!(online.from.unwrap().to_string(), "bob@localhost/b");

    // Bob's presence changes reach alice; alice's do not reach bob.
    send(&mut bob, Presence::new(Type::Unavailable)).await;
    let gone = typed("bob unavailable", &mut alice, Type::Unavailable).await;
    assert_eq!(gone.from.unwrap().to_string(), "bob@localhost/b");
    send(&mut bob, Presence::available()).await;
    typed("bob back", &mut alice, Type::None).await;

    let listed = roster(&mut alice, "r3").await;
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].subscription, Subscription::To);

    // Disconnecting broadcasts unavailable.
    drop(bob);
    let gone = typed("bob disconnected", &mut alice, Type::Unavailable).await;
    assert_eq!(gone.from.unwrap().to_string(), "bob@localhost/b");

    // A later login of bob is probed: alice's new session sees it.
    let mut bob = client(&server, "bob@localhost/b2", "pw").await;
    send(&mut bob, Presence::available()).await;
    let back = typed("bob again", &mut alice, Type::None).await;
    assert_eq!(back.from.unwrap().to_string(), "bob@localhost/b2");

    // Unsubscribe: alice stops getting bob's presence.
    send(&mut alice, presence(Type::Unsubscribe, "bob@localhost")).await;
    let item = push("alice push: none", &mut alice).await;
    assert_eq!(item.subscription, Subscription::None);
    typed(
        "bob's unavailable after unsubscribe",
        &mut alice,
        Type::Unavailable,
    )
    .await;
}

#[tokio::test]
async fn subscription_request_to_offline_contact_is_delivered_at_login() {
    init_tracing();
    let server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    send(&mut alice, Presence::available()).await;
    next_presence("alice own", &mut alice).await;
    send(&mut alice, presence(Type::Subscribe, "carol@localhost")).await;
    // Sync: a ping round trip.
    send(
        &mut alice,
        iq_get(
            Some("localhost"),
            "sync",
            tokio_xmpp::parsers::ping::Ping.into(),
        ),
    )
    .await;
    iq_reply("sync", &mut alice, "sync").await;

    let mut carol = client(&server, "carol@localhost/c", "pw").await;
    send(&mut carol, Presence::available()).await;
    let request = typed("stored request", &mut carol, Type::Subscribe).await;
    assert_eq!(request.from.unwrap().to_string(), "alice@localhost");
    send(&mut carol, presence(Type::Subscribed, "alice@localhost")).await;
    typed("approved", &mut alice, Type::Subscribed).await;
    let p = typed("carol's presence", &mut alice, Type::None).await;
    assert_eq!(p.from.unwrap().to_string(), "carol@localhost/c");
}

#[tokio::test]
async fn roster_set_and_remove() {
    init_tracing();
    let server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    roster(&mut alice, "r0").await;
    let item = Item {
        jid: "dan@localhost".parse().unwrap(),
        name: Some("Dan".into()),
        subscription: Subscription::None,
        ask: Ask::None,
        groups: vec![],
        approved: None,
    };
    let set = Iq::Set {
        from: None,
        to: None,
        id: "set".into(),
        payload: Roster {
            ver: None,
            items: vec![item.clone()],
        }
        .into(),
    };
    send(&mut alice, set).await;
    let pushed = push("push add", &mut alice).await;
    assert_eq!(pushed.name.as_deref(), Some("Dan"));
    assert!(matches!(
        iq_reply("set", &mut alice, "set").await,
        Iq::Result { .. }
    ));
    let remove = Iq::Set {
        from: None,
        to: None,
        id: "rm".into(),
        payload: Roster {
            ver: None,
            items: vec![Item {
                subscription: Subscription::Remove,
                ..item
            }],
        }
        .into(),
    };
    send(&mut alice, remove).await;
    let pushed = push("push remove", &mut alice).await;
    assert_eq!(pushed.subscription, Subscription::Remove);
    assert!(roster(&mut alice, "r1").await.items.is_empty());
}
