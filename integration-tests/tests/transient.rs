//! Transient topics (`#[event(transient)]`) on every server of the matrix:
//! live delivery, nothing stored, no replay, no consumer group, and a
//! subscription that goes on after a session reset.

mod common;

use common::{config, matrix, next, raw_client, raw_iq, start, two_buses, within};
use serde::{Deserialize, Serialize};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::{IqRequest, IqResponse};
use xbus::{
    Bus, ConsumeError, ConsumeOptions, Event, Persistence, Replay, SubscribeError, SubscribeOptions,
};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "telemetry.cpu", transient)]
struct CpuLoad {
    n: u32,
}

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";

/// How many items a raw client gets back for `<items node/>`: `None` if
/// the server answers with an error instead.
async fn stored_items(raw: &mut tokio_xmpp::Client, service: &str, node: &str) -> Option<usize> {
    let items = Element::builder("pubsub", NS_PUBSUB)
        .append(
            Element::builder("items", NS_PUBSUB)
                .attr("node".try_into().unwrap(), node)
                .build(),
        )
        .build();
    match raw_iq(raw, service, IqRequest::Get(items)).await {
        IqResponse::Result(Some(answer)) => Some(
            answer
                .get_child("items", NS_PUBSUB)
                .map_or(0, |items| items.children().count()),
        ),
        IqResponse::Result(None) => Some(0),
        IqResponse::Error(_) => None,
    }
}

/// The node's `pubsub#persist_items`, as its owner reads it.
async fn persist_items(raw: &mut tokio_xmpp::Client, service: &str, node: &str) -> String {
    let configure = Element::builder("pubsub", NS_OWNER)
        .append(
            Element::builder("configure", NS_OWNER)
                .attr("node".try_into().unwrap(), node)
                .build(),
        )
        .build();
    let answer = match raw_iq(raw, service, IqRequest::Get(configure)).await {
        IqResponse::Result(Some(answer)) => answer,
        other => panic!("{}node configuration: {other:?}", common::tag()),
    };
    let form = answer
        .get_child("configure", NS_OWNER)
        .and_then(|c| c.get_child("x", "jabber:x:data"))
        .expect("a configuration form");
    let field = form
        .children()
        .find(|f| f.attr("var") == Some("pubsub#persist_items"))
        .expect("a persist_items field");
    field
        .children()
        .find(|c| c.name() == "value")
        .map(Element::text)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_transient_topic_delivers_live_events_and_keeps_none() {
    matrix(async |kind| {
        let (server, publisher, subscriber) = two_buses(kind).await;
        let mut cpu = within("subscribe", subscriber.subscribe::<CpuLoad>())
            .await
            .unwrap();
        for n in 0..200 {
            within("publish", publisher.publish(&CpuLoad { n }))
                .await
                .unwrap();
        }
        for n in 0..200 {
            assert_eq!(next("live event", &mut cpu).await.unwrap().event.n, n);
        }

        // The server keeps none of the 200 events.
        let reader = server.account().unwrap();
        let mut raw = raw_client(&server, &reader).await;
        let service = server.pubsub_service();
        let stored = stored_items(&mut raw, &service, CpuLoad::TOPIC).await;
        assert!(
            matches!(stored, None | Some(0)),
            "{}the server kept {stored:?} items of a transient topic",
            common::tag()
        );
        eprintln!("{}items of a transient topic: {stored:?}", common::tag());
    })
    .await;
}

#[tokio::test]
async fn the_node_is_created_with_persist_items_off() {
    matrix(async |kind| {
        let server = start(kind);
        let account = server.account().unwrap();
        let owner = within(
            "connect",
            Bus::connect(config(&server, &account).build().unwrap()),
        )
        .await
        .unwrap();
        within("publish", owner.publish(&CpuLoad { n: 1 }))
            .await
            .unwrap();
        within("close", owner.close()).await.unwrap();
        // The creator owns the node and may read its configuration.
        let mut raw = raw_client(&server, &account).await;
        let value = persist_items(&mut raw, &server.pubsub_service(), CpuLoad::TOPIC).await;
        assert!(
            value == "0" || value == "false",
            "{}persist_items is {value:?}",
            common::tag()
        );
    })
    .await;
}

#[tokio::test]
async fn replays_and_groups_of_a_transient_topic_are_refused() {
    matrix(async |kind| {
        let (_server, bus, _other) = two_buses(kind).await;
        let error = within(
            "subscribe with replay",
            bus.subscribe_with::<CpuLoad>(Replay::Last(10)),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&error, SubscribeError::TransientTopic { topic } if topic == "telemetry.cpu"),
            "{error}"
        );
        assert!(
            error.to_string().contains("subscribe without `Replay`"),
            "{error}"
        );
        // The raw form says so too, when told the topic is transient.
        let options = SubscribeOptions::new()
            .replay(Replay::Last(1))
            .persistence(Persistence::Transient);
        let error = within("raw", bus.subscribe_raw_with("telemetry.cpu", options))
            .await
            .unwrap_err();
        assert!(
            matches!(error, SubscribeError::TransientTopic { .. }),
            "{error}"
        );
        let error = within(
            "consume",
            bus.consume::<CpuLoad>("dashboards", ConsumeOptions::default()),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&error, ConsumeError::TransientTopic { topic } if topic == "telemetry.cpu"),
            "{error}"
        );
        // The bus goes on: a plain subscription works.
        within("subscribe", bus.subscribe::<CpuLoad>())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_transient_subscription_goes_on_after_a_session_reset() {
    matrix(async |kind| {
        let server = start(kind);
        let publisher = common::bus(&server).await;
        let account = server.account().unwrap();
        let (subscriber, mut status) = common::bus_with_status(&server, &account).await;
        let mut cpu = within("subscribe", subscriber.subscribe::<CpuLoad>())
            .await
            .unwrap();
        within("publish", publisher.publish(&CpuLoad { n: 0 }))
            .await
            .unwrap();
        assert_eq!(next("before", &mut cpu).await.unwrap().event.n, 0);

        common::steal_session(&server, &account, &subscriber, &mut status).await;

        // Subscribed again, with nothing to fetch: the next events arrive.
        // (The resubscription may take a moment: publish until one does.)
        let first = within("live again", async {
            let mut n = 1;
            loop {
                publisher.publish(&CpuLoad { n }).await.unwrap();
                if let Ok(Some(delivery)) = tokio::time::timeout(
                    std::time::Duration::from_millis(200),
                    futures::StreamExt::next(&mut cpu),
                )
                .await
                {
                    return delivery.unwrap().event.n;
                }
                n += 1;
            }
        })
        .await;
        for n in first + 1..first + 50 {
            within("publish", publisher.publish(&CpuLoad { n }))
                .await
                .unwrap();
        }
        for n in first + 1..first + 50 {
            assert_eq!(next("after", &mut cpu).await.unwrap().event.n, n);
        }
        let stats = within("stats", subscriber.stats()).await.unwrap();
        assert!(stats.session_resets >= 1, "{stats:?}");
    })
    .await;
}
