//! Topic access enforced by the server: a topic restricted with
//! `BusConfigBuilder::topic_access` (a publisher list and a subscriber
//! whitelist) refuses every account outside its lists with a typed error,
//! lets none of its events out through item retrieval (replay, the request
//! the gap fill sends), and takes list changes made at runtime with
//! `Bus::topic_access`, including a revoked subscriber that gets nothing
//! more, live or after a session reset. The presence and authorize access
//! models are checked for what each server does with them. One server and
//! one set of buses per server kind: the refusals are printed (see them
//! with `--nocapture`).
//!
//! The owner is a `server.account()` (on Prosody an admin of the pubsub
//! component, the only kind of account that may create topics there); every
//! other account is a `plain_account()`, which no server setting favours:
//! Prosody's admins bypass access models.

mod common;

use std::time::Duration;

use futures::StreamExt;

use common::{Account, Server, ServerKind, config, matrix, next, raw_client, raw_iq, tag, within};
use serde::{Deserialize, Serialize};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::{IqRequest, IqResponse};
use xbus::{
    AccessModel, Bus, ConsumeOptions, Event, PublishError, Replay, SubscribeError,
    SubscribeOptions, TopicAccess,
};

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(topic = "acl.orders", encoding = "json")]
struct Order {
    id: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(topic = "acl.presence", encoding = "json")]
struct Seen {
    id: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(topic = "acl.authorize", encoding = "json")]
struct Approved {
    id: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(topic = "acl.audit", encoding = "json", access_model = "whitelist")]
struct Audit {
    id: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(topic = "acl.jobs", encoding = "json", access_model = "whitelist")]
struct Task {
    id: u64,
}

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";

/// How long a subscription must stay silent to count as getting nothing.
const QUIET: Duration = Duration::from_secs(1);

async fn connect(build: xbus::BusConfigBuilder) -> Bus {
    let config = build.build().expect("valid config");
    within("connect", Bus::connect(config))
        .await
        .unwrap_or_else(|e| panic!("{}connect: {e}", tag()))
}

/// The items of `topic` as `account` retrieves them with the request that
/// replay and the gap fill send: the error condition, or how many items.
async fn retrieve(server: &Server, account: &Account, topic: &str) -> Result<usize, String> {
    let mut client = raw_client(&**server, account).await;
    let request = Element::builder("pubsub", NS_PUBSUB)
        .append(
            Element::builder("items", NS_PUBSUB)
                .attr("node".try_into().unwrap(), topic)
                .build(),
        )
        .build();
    let answer = raw_iq(
        &mut client,
        &server.pubsub_service(),
        IqRequest::Get(request),
    )
    .await;
    let _ = client.send_end().await;
    match answer {
        IqResponse::Result(Some(result)) => Ok(result
            .get_child("items", NS_PUBSUB)
            .map_or(0, |items| items.children().count())),
        IqResponse::Result(None) => Ok(0),
        IqResponse::Error(error) => {
            let error = Element::from(error);
            let names: Vec<String> = error
                .children()
                .filter(|c| c.name() != "text")
                .map(|c| c.name().to_owned())
                .collect();
            Err(names.join("/"))
        }
    }
}

#[tokio::test]
async fn topic_access_is_enforced_by_the_server() {
    matrix(async |kind| {
        let server = common::start(kind);
        let (publisher, reader, outsider) = (
            server.plain_account().expect("account"),
            server.plain_account().expect("account"),
            server.plain_account().expect("account"),
        );
        let owner_account = server.account().expect("account");
        let access = TopicAccess::new()
            .publishers([publisher.jid.as_str()])
            .subscribers([reader.jid.as_str()]);
        let owner = connect(
            config(&*server, &owner_account)
                .topic_access("acl.orders", access)
                .topic_access(
                    "acl.presence",
                    TopicAccess::new().access_model(AccessModel::Presence),
                )
                .topic_access(
                    "acl.authorize",
                    TopicAccess::new().access_model(AccessModel::Authorize),
                ),
        )
        .await;
        // The owner sets the topic up with its access (create_topic), and
        // its first publish finds it there (and, as owner, configures it
        // again).
        within("create topic", owner.create_topic("acl.orders", &[]))
            .await
            .unwrap_or_else(|e| panic!("{}create_topic: {e}", tag()));
        within("owner publishes", owner.publish(&Order { id: 1 }))
            .await
            .unwrap_or_else(|e| panic!("{}the owner publishes: {e}", tag()));

        let publishing = connect(config(&*server, &publisher)).await;
        let reading = connect(config(&*server, &reader)).await;
        let outside = connect(config(&*server, &outsider)).await;

        // A subscriber on the whitelist gets the stored event and the next.
        let mut orders = within(
            "reader subscribes",
            reading.subscribe_with::<Order>(SubscribeOptions::from(Replay::Last(10))),
        )
        .await
        .unwrap_or_else(|e| panic!("{}a listed subscriber subscribes: {e}", tag()));
        assert_eq!(next("replayed", &mut orders).await.unwrap().event.id, 1);
        within("publisher publishes", publishing.publish(&Order { id: 2 }))
            .await
            .unwrap_or_else(|e| panic!("{}a listed publisher publishes: {e}", tag()));
        assert_eq!(next("live", &mut orders).await.unwrap().event.id, 2);
        // A publisher may subscribe to a whitelisted topic too.
        let own = within("publisher subscribes", publishing.subscribe::<Order>())
            .await
            .unwrap_or_else(|e| panic!("{}a publisher subscribes: {e}", tag()));
        drop(own);

        // An account outside the lists is refused, with typed errors.
        let refused = within("outsider publishes", outside.publish(&Order { id: 3 }))
            .await
            .expect_err("not a publisher");
        eprintln!("{}publish refused: {refused}", tag());
        assert!(
            matches!(refused, PublishError::Forbidden { ref topic, .. } if topic == "acl.orders"),
            "{}{refused:?}",
            tag()
        );
        assert!(refused.to_string().contains("allow_publisher"), "{refused}");
        let refused = within(
            "outsider subscribes",
            outside.subscribe_with::<Order>(SubscribeOptions::from(Replay::Last(10))),
        )
        .await
        .expect_err("not on the whitelist");
        eprintln!("{}subscribe (with replay) refused: {refused}", tag());
        assert!(
            matches!(refused, SubscribeError::Forbidden { ref topic, .. } if topic == "acl.orders"),
            "{}{refused:?}",
            tag()
        );
        assert!(
            refused.to_string().contains("allow_subscriber"),
            "{refused}"
        );
        // Item retrieval, as replay and the gap fill ask for it, gives the
        // outsider nothing.
        let items = retrieve(&server, &outsider, "acl.orders").await;
        eprintln!("{}items retrieval by an outsider: {items:?}", tag());
        assert!(items.is_err(), "{}{items:?}", tag());
        assert_eq!(retrieve(&server, &reader, "acl.orders").await, Ok(2));

        // Changed at runtime: the outsider may subscribe, then publish; the
        // publisher is revoked. The refused bus kept running.
        let lists = owner.topic_access("acl.orders");
        within("allow subscriber", lists.allow_subscriber(&outsider.jid))
            .await
            .unwrap_or_else(|e| panic!("{}allow_subscriber: {e}", tag()));
        let mut late = within(
            "outsider subscribes again",
            outside.subscribe_with::<Order>(SubscribeOptions::from(Replay::Last(10))),
        )
        .await
        .unwrap_or_else(|e| panic!("{}an allowed subscriber subscribes: {e}", tag()));
        assert_eq!(next("replay 1", &mut late).await.unwrap().event.id, 1);
        assert_eq!(next("replay 2", &mut late).await.unwrap().event.id, 2);
        within("allow publisher", lists.allow_publisher(&outsider.jid))
            .await
            .unwrap_or_else(|e| panic!("{}allow_publisher: {e}", tag()));
        within("outsider publishes", outside.publish(&Order { id: 4 }))
            .await
            .unwrap_or_else(|e| panic!("{}an allowed publisher publishes: {e}", tag()));
        assert_eq!(next("live 4", &mut orders).await.unwrap().event.id, 4);
        assert_eq!(next("live 4", &mut late).await.unwrap().event.id, 4);
        within("revoke", lists.revoke(&publisher.jid))
            .await
            .unwrap_or_else(|e| panic!("{}revoke: {e}", tag()));
        let refused = within("revoked publishes", publishing.publish(&Order { id: 5 }))
            .await
            .expect_err("revoked");
        eprintln!("{}publish after revoke: {refused}", tag());
        assert!(
            matches!(refused, PublishError::Forbidden { .. }),
            "{refused:?}"
        );
        // Only the owner changes the lists.
        let error = within(
            "outsider edits",
            outside
                .topic_access("acl.orders")
                .allow_publisher(&publisher.jid),
        )
        .await
        .expect_err("not the owner");
        eprintln!("{}list change by a non-owner: {error}", tag());
        assert!(
            matches!(error, xbus::AccessError::NotOwner { .. }),
            "{error:?}"
        );

        // A topic restricted by its event type's derive (and created by
        // the owner's subscribe, before any publish): whitelisted too.
        let audit = within("owner subscribes first", owner.subscribe::<Audit>())
            .await
            .unwrap_or_else(|e| panic!("{}the owner subscribes: {e}", tag()));
        let refused = within("outsider subscribes", outside.subscribe::<Audit>())
            .await
            .expect_err("not on the whitelist");
        assert!(
            matches!(refused, SubscribeError::Forbidden { .. }),
            "{refused:?}"
        );
        // A listed account's bus, whose type asks for the same access,
        // finds the topic there (on Prosody its create is `forbidden`) and
        // subscribes.
        within(
            "allow reader on audit",
            owner
                .topic_access("acl.audit")
                .allow_subscriber(&reader.jid),
        )
        .await
        .unwrap_or_else(|e| panic!("{}allow_subscriber: {e}", tag()));
        let listed = within("listed subscribes", reading.subscribe::<Audit>())
            .await
            .unwrap_or_else(|e| panic!("{}a listed subscriber of a derived topic: {e}", tag()));
        drop((audit, listed));
        // A consumer group that touches a restricted topic first creates
        // it restricted too.
        let group = within(
            "owner's group",
            owner.consume::<Task>("workers", ConsumeOptions::new()),
        )
        .await
        .unwrap_or_else(|e| panic!("{}the owner's group: {e}", tag()));
        let refused = within("outsider subscribes", outside.subscribe::<Task>())
            .await
            .expect_err("not on the whitelist");
        assert!(
            matches!(refused, SubscribeError::Forbidden { .. }),
            "{}{refused:?}",
            tag()
        );
        drop(group);

        // Presence: on the embedded server and ejabberd, an account
        // without a presence subscription to the owner is refused, and
        // admitted once it has one. Prosody 0.12 lacks the model.
        let presence = within("presence topic", owner.publish(&Seen { id: 1 })).await;
        if kind == ServerKind::Prosody {
            let error = presence.expect_err("no presence model on Prosody");
            eprintln!("{}presence model refused at creation: {error}", tag());
            assert!(
                matches!(error, PublishError::AccessNotApplied(_)),
                "{error:?}"
            );
        } else {
            presence.unwrap_or_else(|e| panic!("{}the presence model: {e}", tag()));
            let refused = within("presence subscribe", outside.subscribe::<Seen>())
                .await
                .expect_err("no presence subscription to the owner");
            eprintln!("{}presence model, subscribe refused: {refused}", tag());
            assert!(
                matches!(refused, SubscribeError::Forbidden { .. }),
                "{refused:?}"
            );
            assert!(retrieve(&server, &outsider, "acl.presence").await.is_err());
            // A presence subscription to the owner (discovery asks for it,
            // the owner's bus approves it): admitted.
            let owner_jid = owner_account.jid.as_str();
            within("see the owner", outside.instances(owner_jid))
                .await
                .unwrap_or_else(|e| panic!("{}instances: {e}", tag()));
            let mut seen = within(
                "presence subscribe",
                outside.subscribe_with::<Seen>(SubscribeOptions::from(Replay::Last(1))),
            )
            .await
            .unwrap_or_else(|e| panic!("{}a subscriber that sees the owner: {e}", tag()));
            assert_eq!(
                next("presence replay", &mut seen).await.unwrap().event.id,
                1
            );
        }
        // Authorize: on ejabberd the subscription waits for the owner; the
        // embedded server and Prosody lack the model.
        let authorize = within("authorize topic", owner.publish(&Approved { id: 1 })).await;
        if kind.is_ejabberd() {
            authorize.unwrap_or_else(|e| panic!("{}ejabberd has the authorize model: {e}", tag()));
            let pending = within("authorize subscribe", outside.subscribe::<Approved>())
                .await
                .expect_err("pending approval");
            eprintln!("{}authorize model, subscribe: {pending}", tag());
            assert!(
                matches!(pending, SubscribeError::AwaitingApproval { .. }),
                "{pending:?}"
            );
            assert!(retrieve(&server, &outsider, "acl.authorize").await.is_err());
        } else {
            let error = authorize.expect_err("no authorize model here");
            eprintln!("{}authorize model refused at creation: {error}", tag());
            assert!(
                matches!(error, PublishError::AccessNotApplied(_)),
                "{error:?}"
            );
        }

        // The refused buses still work.
        within(
            "the once refused bus publishes",
            outside.publish(&Order { id: 6 }),
        )
        .await
        .unwrap_or_else(|e| panic!("{}after the refusals: {e}", tag()));
        assert_eq!(next("live 6", &mut orders).await.unwrap().event.id, 6);

        // A subscriber revoked while subscribed gets nothing more: revoke
        // ends its subscription on the server, and after a session reset
        // its re-subscription and gap fill are refused (its stream ends).
        let mut status = reading.status();
        within("revoke reader", lists.revoke(&reader.jid))
            .await
            .unwrap_or_else(|e| panic!("{}revoke: {e}", tag()));
        within("publish 7", owner.publish(&Order { id: 7 }))
            .await
            .expect("owner publishes");
        let live = tokio::time::timeout(QUIET, orders.next()).await;
        eprintln!("{}live, after the revoke: {live:?}", tag());
        assert!(live.is_err(), "{}a revoked subscriber got {live:?}", tag());
        common::steal_session(&*server, &reader, &reading, &mut status).await;
        within("publish 8", owner.publish(&Order { id: 8 }))
            .await
            .expect("owner publishes");
        let after = tokio::time::timeout(QUIET, orders.next()).await;
        eprintln!("{}after the reset: {after:?}", tag());
        assert!(
            matches!(after, Err(_) | Ok(None)),
            "{}a revoked subscriber got {after:?}",
            tag()
        );
        drop((orders, late));
        for bus in [owner, publishing, reading, outside] {
            within("close", bus.close()).await.expect("close");
        }
    })
    .await;
}
