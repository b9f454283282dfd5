//! Publish/subscribe against every server of the matrix.

mod common;

use std::time::Duration;

use common::{
    bus, config, init_tracing, matrix, next, raw_client, raw_iq, start, two_buses, within,
};
use serde::{Deserialize, Serialize};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::{IqRequest, IqResponse};
use xbus::{Bus, DecodeError, Encoding, Event, Headers, PublishError, RawPayload};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "orders.created")]
struct OrderCreated {
    id: u64,
    total_cents: u64,
    lines: Vec<String>,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "stock.changed", encoding = "json", version = 3)]
struct StockChanged {
    sku: String,
    delta: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
enum UserEvent {
    Signup { name: String },
    Deleted(u64),
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "seq")]
struct Seq(u32);

fn order(id: u64) -> OrderCreated {
    OrderCreated {
        id,
        total_cents: id * 100,
        lines: vec![format!("sku-{id}")],
    }
}

#[tokio::test]
async fn typed_round_trip_for_several_event_types() {
    matrix(async |kind| {
        let (_server, publisher, subscriber) = two_buses(kind).await;
        let mut orders = within("subscribe", subscriber.subscribe::<OrderCreated>())
            .await
            .unwrap();
        let mut stock = within("subscribe", subscriber.subscribe::<StockChanged>())
            .await
            .unwrap();
        let mut users = within("subscribe", subscriber.subscribe::<UserEvent>())
            .await
            .unwrap();
        assert_eq!(users.topic(), "user_event");

        let receipt = within("publish", publisher.publish(&order(1)))
            .await
            .unwrap();
        assert_eq!(receipt.topic, "orders.created");
        let stock_event = StockChanged {
            sku: "A1".into(),
            delta: -2,
        };
        within("publish", publisher.publish(&stock_event))
            .await
            .unwrap();
        let signup = UserEvent::Signup { name: "ada".into() };
        within("publish", publisher.publish(&signup)).await.unwrap();
        within("publish", publisher.publish(&UserEvent::Deleted(9)))
            .await
            .unwrap();

        let delivery = next("order", &mut orders).await.unwrap();
        assert_eq!(delivery.event, order(1));
        assert_eq!(delivery.topic, "orders.created");
        assert_eq!(delivery.item_id.as_deref(), Some(receipt.item_id.as_str()));
        let publisher_jid = delivery.publisher.expect("publisher is exposed");
        assert!(
            publisher_jid.starts_with(&publisher.jid().to_bare().to_string()),
            "{publisher_jid}"
        );
        assert_eq!(next("stock", &mut stock).await.unwrap().event, stock_event);
        assert_eq!(next("signup", &mut users).await.unwrap().event, signup);
        assert_eq!(
            next("deleted", &mut users).await.unwrap().event,
            UserEvent::Deleted(9)
        );
        within("close", publisher.close()).await.unwrap();
        within("close", subscriber.close()).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn two_subscribers_on_two_connections_each_get_every_event() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let publisher = bus(&server).await;
        let (a, b) = (bus(&server).await, bus(&server).await);
        let mut sub_a = within("subscribe a", a.subscribe::<OrderCreated>())
            .await
            .unwrap();
        let mut sub_b = within("subscribe b", b.subscribe::<OrderCreated>())
            .await
            .unwrap();
        for id in 0..20 {
            within("publish", publisher.publish(&order(id)))
                .await
                .unwrap();
        }
        for id in 0..20 {
            assert_eq!(next("a", &mut sub_a).await.unwrap().event.id, id);
            assert_eq!(next("b", &mut sub_b).await.unwrap().event.id, id);
        }
    })
    .await;
}

#[tokio::test]
async fn a_thousand_events_arrive_complete_and_in_publish_order() {
    matrix(async |kind| {
        let (_server, publisher, subscriber) = two_buses(kind).await;
        let mut seq = within("subscribe", subscriber.subscribe::<Seq>())
            .await
            .unwrap();
        let receiver = tokio::spawn(async move {
            let mut got = Vec::with_capacity(1000);
            while got.len() < 1000 {
                got.push(next("seq", &mut seq).await.unwrap().event.0);
            }
            got
        });
        for i in 0..1000 {
            within("publish", publisher.publish(&Seq(i))).await.unwrap();
        }
        let got = within("receive 1000", receiver).await.unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test]
async fn json_and_messagepack_payloads_are_what_the_protocol_says() {
    matrix(async |kind| {
        let (_server, publisher, subscriber) = two_buses(kind).await;
        let mut stock = within("subscribe", subscriber.subscribe_raw("stock.changed"))
            .await
            .unwrap();
        let mut orders = within("subscribe", subscriber.subscribe_raw("orders.created"))
            .await
            .unwrap();
        let event = StockChanged {
            sku: "B2".into(),
            delta: 5,
        };
        within("publish", publisher.publish(&event)).await.unwrap();
        within("publish", publisher.publish(&order(3)))
            .await
            .unwrap();

        let raw = next("json", &mut stock).await.unwrap();
        assert_eq!(raw.payload.encoding, Encoding::Json);
        assert_eq!(raw.payload.version, 3);
        assert_eq!(raw.payload.data, br#"{"sku":"B2","delta":5}"#);
        assert_eq!(raw.decode::<StockChanged>().unwrap().event, event);

        let raw = next("msgpack", &mut orders).await.unwrap();
        assert_eq!(raw.payload.encoding, Encoding::MessagePack);
        assert_eq!(
            raw.payload.data[0], 0x83,
            "a MessagePack map of three named fields"
        );
        assert_eq!(raw.decode::<OrderCreated>().unwrap().event, order(3));
    })
    .await;
}

#[tokio::test]
async fn untyped_publish_with_headers_reaches_typed_subscribers() {
    matrix(async |kind| {
        let (_server, publisher, subscriber) = two_buses(kind).await;
        let mut stock = within("subscribe", subscriber.subscribe::<StockChanged>())
            .await
            .unwrap();
        let mut payload = RawPayload {
            topic: "stock.changed".into(),
            encoding: Encoding::Json,
            version: 3,
            data: br#"{"sku":"C3","delta":1}"#.to_vec(),
            headers: Headers::new(),
        };
        payload.headers.insert("trace-id", "abc123");
        within("publish raw", publisher.publish_raw(payload))
            .await
            .unwrap();
        let delivery = next("stock", &mut stock).await.unwrap();
        assert_eq!(
            delivery.event,
            StockChanged {
                sku: "C3".into(),
                delta: 1
            }
        );
        assert_eq!(delivery.headers.get("trace-id"), Some("abc123"));
    })
    .await;
}

#[tokio::test]
async fn malformed_payloads_are_delivery_errors_and_the_stream_goes_on() {
    matrix(async |kind| {
    let (server, publisher, subscriber) = two_buses(kind).await;
    let mut orders = within("subscribe", subscriber.subscribe::<OrderCreated>())
        .await
        .unwrap();
    // Make sure the node exists with xbus's configuration.
    within("publish", publisher.publish(&order(1)))
        .await
        .unwrap();
    assert_eq!(next("first", &mut orders).await.unwrap().event, order(1));

    let account = server.account().unwrap();
    let mut raw = raw_client(&server, &account).await;
    let bad = [
        (
            "bad base64",
            "<payload xmlns='urn:xbus:0' topic='orders.created' encoding='msgpack' version='1'>%%%not base64</payload>",
        ),
        (
            "wrong schema",
            "<payload xmlns='urn:xbus:0' topic='orders.created' encoding='json' version='1'>eyJ4IjoxfQ==</payload>",
        ),
        (
            "unknown version",
            "<payload xmlns='urn:xbus:0' topic='orders.created' encoding='msgpack' version='9'>gA==</payload>",
        ),
        (
            "unknown encoding",
            "<payload xmlns='urn:xbus:0' topic='orders.created' encoding='cbor' version='1'>gA==</payload>",
        ),
        ("no payload", "<note xmlns='urn:example'>hello</note>"),
    ];
    for (i, (_, xml)) in bad.iter().enumerate() {
        let item: Element =
            format!("<item xmlns='http://jabber.org/protocol/pubsub' id='bad{i}'>{xml}</item>")
                .parse()
                .unwrap();
        let publish = Element::builder("pubsub", "http://jabber.org/protocol/pubsub")
            .append(
                Element::builder("publish", "http://jabber.org/protocol/pubsub")
                    .attr("node".try_into().unwrap(), "orders.created")
                    .append(item)
                    .build(),
            )
            .build();
        // Wait for each answer so that the good event below comes last.
        let answer = raw_iq(&mut raw, &server.pubsub_service(), IqRequest::Set(publish)).await;
        assert!(matches!(answer, IqResponse::Result(_)), "{answer:?}");
    }
    within("publish good", publisher.publish(&order(2)))
        .await
        .unwrap();

    let expected: [fn(&DecodeError) -> bool; 5] = [
        |e| matches!(e, DecodeError::Base64(_)),
        |e| matches!(e, DecodeError::WrongEncoding { .. }),
        |e| {
            matches!(
                e,
                DecodeError::WrongVersion {
                    expected: 1,
                    found: 9
                }
            )
        },
        |e| {
            matches!(
                e,
                DecodeError::BadAttribute {
                    name: "encoding",
                    ..
                }
            )
        },
        |e| matches!(e, DecodeError::MissingPayload),
    ];
    for (i, check) in expected.iter().enumerate() {
        let error = next("bad delivery", &mut orders).await.expect_err(bad[i].0);
        assert!(
            check(error.reason()),
            "{}: got {:?}",
            bad[i].0,
            error.reason()
        );
        assert_eq!(error.item_id(), Some(format!("bad{i}").as_str()));
        assert_eq!(error.topic(), "orders.created");
        assert!(!error.raw_xml().is_empty());
    }
    assert_eq!(
        next("good after bad", &mut orders).await.unwrap().event,
        order(2)
    );
    })
    .await;
}

#[tokio::test]
async fn subscriptions_to_one_topic_share_one_server_subscription() {
    matrix(async |kind| {
        let server = start(kind);
        let publisher = bus(&server).await;
        // The subscriber creates the node, so it owns it: only an owner may
        // list a node's subscriptions on ejabberd (on Prosody every harness
        // account administers the service). A raw client of the same account
        // asks.
        let owner = server.account().unwrap();
        let subscriber = within(
            "connect",
            Bus::connect(config(&server, &owner).build().unwrap()),
        )
        .await
        .unwrap();
        let mut first = within("subscribe", subscriber.subscribe::<OrderCreated>())
            .await
            .unwrap();
        let mut second = within("subscribe", subscriber.subscribe::<OrderCreated>())
            .await
            .unwrap();
        let mut raw = raw_client(&server, &owner).await;
        assert_eq!(
            server_subscriptions(&mut raw, &server, "orders.created").await,
            1
        );

        within("publish", publisher.publish(&order(1)))
            .await
            .unwrap();
        assert_eq!(next("first", &mut first).await.unwrap().event, order(1));
        assert_eq!(next("second", &mut second).await.unwrap().event, order(1));

        drop(first);
        within("publish", publisher.publish(&order(2)))
            .await
            .unwrap();
        assert_eq!(next("second", &mut second).await.unwrap().event, order(2));
        assert_eq!(
            server_subscriptions(&mut raw, &server, "orders.created").await,
            1
        );

        drop(second);
        within("unsubscribed", async {
            while server_subscriptions(&mut raw, &server, "orders.created").await != 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    })
    .await;
}

/// Counts subscriptions to `node` with an owner request (`raw` must be
/// logged in as the node's owner).
async fn server_subscriptions(
    raw: &mut tokio_xmpp::Client,
    server: &dyn common::XmppServer,
    node: &str,
) -> usize {
    let ns = "http://jabber.org/protocol/pubsub#owner";
    let request = Element::builder("pubsub", ns)
        .append(
            Element::builder("subscriptions", ns)
                .attr("node".try_into().unwrap(), node)
                .build(),
        )
        .build();
    let response = raw_iq(raw, &server.pubsub_service(), IqRequest::Get(request)).await;
    let tokio_xmpp::IqResponse::Result(Some(payload)) = response else {
        panic!("unexpected answer {response:?}");
    };
    let subs = payload
        .get_child("subscriptions", ns)
        .expect("subscriptions");
    subs.children()
        .filter(|c| c.attr("subscription") == Some("subscribed"))
        .count()
}

#[tokio::test]
async fn close_confirms_pending_publishes() {
    matrix(async |kind| {
        let (_server, publisher, subscriber) = two_buses(kind).await;
        let mut seq = within("subscribe", subscriber.subscribe::<Seq>())
            .await
            .unwrap();
        // The node exists; then 200 publishes are started without awaiting
        // them, and close() comes at once.
        within("first", publisher.publish(&Seq(0))).await.unwrap();
        next("first", &mut seq).await.unwrap();
        // join! polls the 200 publishes first, so each has started (and is
        // counted) before close() runs.
        let events: Vec<Seq> = (1..=200).map(Seq).collect();
        let publishes = futures::future::join_all(events.iter().map(|e| publisher.publish(e)));
        let closer = async {
            tokio::task::yield_now().await;
            publisher.close().await
        };
        let (results, closed) = within("publish and close", async {
            tokio::join!(publishes, closer)
        })
        .await;
        closed.expect("close confirmed everything");
        let mut confirmed = 0;
        for result in results {
            match result {
                Ok(_) => confirmed += 1,
                Err(other) => panic!("a publish started before close() failed: {other}"),
            }
        }
        assert_eq!(confirmed, 200);
        // Every confirmed publish is delivered.
        let mut seen = 0;
        while seen < confirmed {
            next("confirmed delivery", &mut seq).await.unwrap();
            seen += 1;
        }
        let after = within("publish after close", publisher.publish(&Seq(0))).await;
        assert!(matches!(after, Err(PublishError::Closed)), "{after:?}");
    })
    .await;
}

#[tokio::test]
async fn publish_errors_carry_the_servers_reason() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let account = server.account().unwrap();
        let publisher = within(
            "connect",
            Bus::connect(config(&server, &account).max_payload(64).build().unwrap()),
        )
        .await
        .unwrap();
        let big = OrderCreated {
            id: 1,
            total_cents: 1,
            lines: vec!["x".repeat(100)],
        };
        let error = within("too big", publisher.publish(&big))
            .await
            .unwrap_err();
        assert!(
            matches!(error, PublishError::PayloadTooLarge { max: 64, .. }),
            "{error}"
        );
        // A pubsub service that does not exist: the server answers with an error.
        let account = server.account().unwrap();
        let lost = within(
            "connect",
            Bus::connect(
                config(&server, &account)
                    .pubsub_service("nowhere.localhost")
                    .publish_timeout(Duration::from_secs(5))
                    .build()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
        let error = within("no service", lost.publish(&order(1)))
            .await
            .unwrap_err();
        match error {
            PublishError::Rejected { error, .. } => {
                assert!(!error.condition.is_empty());
            }
            other => panic!("expected a rejection, got {other}"),
        }
    })
    .await;
}
