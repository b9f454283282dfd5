//! Interoperability with a third-party client, events (pubsub and send): slixmpp (Python), driven by
//! `integration-tests/slixmpp/xbus_peer.py`, which was written from
//! `docs/PROTOCOL.md` alone. On the other side are ordinary xbus buses.
//!
//! The peer runs in the venv that `scripts/slixmpp-venv.sh` creates
//! (`target/slixmpp-venv/bin/python`, or `XBUS_SLIXMPP_PYTHON`); without it
//! these tests fail with that command, they never skip. The peer takes a
//! JSON job on stdin and prints JSON lines, which the tests read in order.

mod common;
#[path = "common/slixmpp.rs"]
mod slixmpp;

use slixmpp::*;

/// slixmpp publishes (MessagePack and JSON, with a header, and enums) what
/// typed Rust subscribers receive; over STARTTLS with the test CA. Base64
/// may come line-wrapped or without padding (section 2); an item whose
/// payload names another topic than its node is a delivery error naming
/// both, on a raw subscription too, and the next event follows.
#[tokio::test]
async fn rust_subscribers_receive_what_slixmpp_publishes() {
    common::matrix(async |kind| {
    let server = start_server(kind);
    let subscriber = bus(&server).await;
    let mut orders = within("subscribe", subscriber.subscribe::<OrderCreated>())
        .await
        .unwrap();
    let mut stock = within("subscribe", subscriber.subscribe::<StockChanged>())
        .await
        .unwrap();
    let mut users = within("subscribe", subscriber.subscribe::<UserEvent>())
        .await
        .unwrap();
    // What `xbus sub` uses: no type to check the topic against.
    let mut raw_orders = within("subscribe", subscriber.subscribe_raw("orders.created"))
        .await
        .unwrap();

    let python = server.account().expect("account");
    let mut peer = Peer::start(
        &server,
        &python,
        Tls::StartTls,
        r#"{"scenario": "publish", "items": [
            {"topic": "orders.created", "encoding": "msgpack", "version": 1,
             "event": {"id": 7, "customer": "ada", "total_cents": 1299, "lines": ["A1", "B2"]}},
            {"topic": "orders.created", "encoding": "msgpack", "version": 1, "wrap_base64": true,
             "event": {"id": 8, "customer": "a customer with a long name, for several lines of base64",
                       "total_cents": 18446744073709551615, "lines": ["C3", "D4", "E5", "F6"]}},
            {"topic": "orders.created", "encoding": "msgpack", "version": 1,
             "payload_topic": "other.topic",
             "event": {"id": 99, "customer": "elsewhere", "total_cents": 1, "lines": []}},
            {"topic": "orders.created", "encoding": "msgpack", "version": 1, "unpadded_base64": true,
             "event": {"id": 9, "customer": "unpadded", "total_cents": 5, "lines": []}},
            {"topic": "stock.changed", "encoding": "json", "version": 3,
             "event": {"sku": "C3", "delta": -4}, "headers": {"trace-id": "abc123"}},
            {"topic": "user.event", "encoding": "msgpack", "version": 1,
             "event": {"Signup": {"name": "grace"}}},
            {"topic": "user.event", "encoding": "msgpack", "version": 1, "event": {"Deleted": 9}},
            {"topic": "user.event", "encoding": "msgpack", "version": 1, "event": "Purged"}
        ]}"#,
    )
    .await;
    let mut published = Vec::new();
    for (topic, items) in [
        ("orders.created", 4),
        ("stock.changed", 1),
        ("user.event", 3),
    ] {
        // The Rust subscriber created the node already (section 3.1).
        let node: NodeLine = peer.expect("node").await;
        assert_eq!(
            (node.topic.as_str(), node.outcome.as_deref()),
            (topic, Some("conflict"))
        );
        for _ in 0..items {
            let item: Published = peer.expect("published").await;
            assert_eq!(item.topic, topic);
            // The result IQ names the item, or nothing (section 3.2).
            assert!(
                item.acked_item_id.is_none() || item.acked_item_id == Some(item.item_id.clone())
            );
            published.push(item);
        }
    }
    let took = peer.finish().await;
    assert_eq!(
        published
            .iter()
            .map(|p| p.encoding.as_str())
            .collect::<Vec<_>>(),
        [
            "msgpack", "msgpack", "msgpack", "msgpack", "json", "msgpack", "msgpack", "msgpack"
        ]
    );

    let order = next("order", &mut orders).await.expect("order decodes");
    assert_eq!(
        order.event,
        OrderCreated {
            id: 7,
            customer: "ada".into(),
            total_cents: 1299,
            lines: vec!["A1".into(), "B2".into()],
        }
    );
    assert_eq!(order.topic, "orders.created");
    assert_eq!(
        order.item_id.as_deref(),
        Some(published[0].item_id.as_str())
    );
    assert_publisher(order.publisher.as_deref(), &python.jid);
    // Line-wrapped, indented base64 as in section 2's example; u64::MAX.
    let wrapped = next("wrapped order", &mut orders)
        .await
        .expect("wrapped base64 decodes");
    assert_eq!(
        wrapped.event,
        OrderCreated {
            id: 8,
            customer: "a customer with a long name, for several lines of base64".into(),
            total_cents: u64::MAX,
            lines: vec!["C3".into(), "D4".into(), "E5".into(), "F6".into()],
        }
    );
    assert_eq!(
        wrapped.item_id.as_deref(),
        Some(published[1].item_id.as_str())
    );
    // The payload says other.topic, the node is orders.created: an error
    // naming both, then the next event (sent without base64 padding).
    let error = next("mismatch", &mut orders).await.expect_err("topic is not the node");
    assert_topic_not_node(&error, &published[2].item_id);
    let unpadded = next("unpadded order", &mut orders)
        .await
        .expect("unpadded base64 decodes");
    assert_eq!((unpadded.event.id, unpadded.event.customer.as_str()), (9, "unpadded"));
    assert_eq!(unpadded.item_id.as_deref(), Some(published[3].item_id.as_str()));
    let mut raw_ids = Vec::new();
    for n in 0..4 {
        match next("raw order", &mut raw_orders).await {
            Ok(delivery) => {
                assert_eq!(delivery.payload.topic, "orders.created");
                raw_ids.push(delivery.item_id.expect("item id"));
            }
            Err(error) => {
                assert_eq!(n, 2, "only the third item is an error: {error}");
                assert_topic_not_node(&error, &published[2].item_id);
            }
        }
    }
    let expected: Vec<_> = [0, 1, 3].map(|i| published[i].item_id.clone()).into();
    assert_eq!(raw_ids, expected);

    let change = next("stock", &mut stock).await.expect("stock decodes");
    assert_eq!(
        change.event,
        StockChanged {
            sku: "C3".into(),
            delta: -4
        }
    );
    assert_eq!(
        change.item_id.as_deref(),
        Some(published[4].item_id.as_str())
    );
    assert_publisher(change.publisher.as_deref(), &python.jid);
    assert_eq!(change.headers.get("trace-id"), Some("abc123"));

    let mut got = Vec::new();
    for item in &published[5..] {
        let user = next("user", &mut users).await.expect("user event decodes");
        assert_eq!(user.item_id.as_deref(), Some(item.item_id.as_str()));
        got.push(user.event);
    }
    assert_eq!(
        got,
        [
            UserEvent::Signup {
                name: "grace".into()
            },
            UserEvent::Deleted(9),
            UserEvent::Purged
        ]
    );
    eprintln!("slixmpp publish scenario (8 items) took {took:?}");
    within("close", subscriber.close()).await.unwrap();
    })
    .await;
}

/// The delivery error of an item whose payload says `other.topic` on the
/// node `orders.created` (PROTOCOL.md section 2).
fn assert_topic_not_node(error: &DeliveryError, item_id: &str) {
    assert_eq!(
        error.reason(),
        &DecodeError::TopicNotNode {
            node: "orders.created".into(),
            topic: "other.topic".into()
        }
    );
    assert_eq!(error.topic(), "orders.created");
    assert_eq!(error.item_id(), Some(item_id));
    let text = error.to_string();
    assert!(
        text.contains("other.topic") && text.contains("orders.created"),
        "{text}"
    );
}

#[derive(Serialize, Deserialize, Debug)]
struct NodeLine {
    topic: String,
    outcome: Option<String>,
}

/// slixmpp subscribes to topics a Rust bus publishes to, and receives what
/// a Rust bus `send()`s to its bare and its full JID.
#[tokio::test]
async fn slixmpp_receives_what_rust_publishes_and_sends() {
    common::matrix(async |kind| {
        let server = start_server(kind);
        let rust = bus(&server).await;
        let python = server.account().expect("account");
        let mut peer = Peer::start(
            &server,
            &python,
            Tls::Plaintext,
            r#"{"scenario": "receive", "topics": ["orders.created", "stock.changed"], "count": 4}"#,
        )
        .await;
        let mut peer_jid = String::new();
        for topic in ["orders.created", "stock.changed"] {
            let node: NodeLine = peer.expect("node").await;
            assert_eq!(node.topic, topic);
            let subscribed: Subscribed = peer.expect("subscribed").await;
            assert_eq!(subscribed.topic, topic);
            assert_eq!(subscribed.subscription.as_deref(), Some("subscribed"));
            peer_jid = subscribed.jid;
        }
        let ready: Ready = peer.expect("ready").await;
        assert_eq!(ready.jid, peer_jid);
        assert!(
            peer_jid.starts_with(&format!("{}/", python.jid)),
            "{peer_jid}"
        );

        let order = OrderCreated {
            id: 42,
            customer: "linus".into(),
            total_cents: 4200,
            lines: vec!["X".into()],
        };
        let stock = StockChanged {
            sku: "D4".into(),
            delta: 7,
        };
        let mut headers = Headers::new();
        headers.insert("trace-id", "t-1");
        let order_receipt = within("publish", rust.publish(&order)).await.unwrap();
        let stock_receipt = within(
            "publish",
            rust.publish_with_headers(&stock, headers.clone()),
        )
        .await
        .unwrap();
        within("send bare", rust.send(&python.jid, &stock))
            .await
            .unwrap();
        within("send full", rust.send(&peer_jid, &order))
            .await
            .unwrap();

        // Four events; the two routes (pubsub, direct) may interleave.
        let mut lines = Vec::new();
        for _ in 0..4 {
            lines.push(peer.expect::<Received<EventValue>>("event").await);
        }
        for topic in ["orders.created", "stock.changed"] {
            let unsubscribed: Subscribed = peer.expect("unsubscribed").await;
            assert_eq!(unsubscribed.topic, topic);
        }
        let took = peer.finish().await;
        let rust_full = rust.jid().to_string();
        let rust_bare = rust.jid().to_bare().to_string();
        let mut seen = Vec::new();
        for line in lines {
            match (line.via.as_str(), line.topic.as_str()) {
                ("pubsub", "orders.created") => {
                    assert_eq!(line.event, EventValue::Order(order.clone()));
                    assert_eq!((line.encoding.as_str(), line.version), ("msgpack", 1));
                    assert_eq!(
                        line.item_id.as_deref(),
                        Some(order_receipt.item_id.as_str())
                    );
                    assert_publisher(line.publisher.as_deref(), &rust_bare);
                    assert_eq!(line.from, server.pubsub_service());
                    assert_eq!(line.message_type.as_deref(), Some("headline"));
                }
                ("pubsub", "stock.changed") => {
                    assert_eq!(line.event, EventValue::Stock(stock.clone()));
                    assert_eq!((line.encoding.as_str(), line.version), ("json", 3));
                    assert_eq!(
                        line.item_id.as_deref(),
                        Some(stock_receipt.item_id.as_str())
                    );
                    assert_publisher(line.publisher.as_deref(), &rust_bare);
                    assert_eq!(
                        line.headers.get("trace-id").map(String::as_str),
                        Some("t-1")
                    );
                }
                ("message", "stock.changed") => {
                    assert_eq!(line.message_type.as_deref(), Some("normal"));
                    assert_eq!(line.event, EventValue::Stock(stock.clone()));
                    assert_eq!((line.encoding.as_str(), line.version), ("json", 3));
                    assert_eq!(line.from, rust_full);
                }
                ("message", "orders.created") => {
                    assert_eq!(line.event, EventValue::Order(order.clone()));
                    assert_eq!((line.encoding.as_str(), line.version), ("msgpack", 1));
                    assert_eq!(line.from, rust_full);
                }
                other => panic!("unexpected event {other:?}: {line:?}"),
            }
            seen.push(format!("{} {}", line.via, line.topic));
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "message orders.created",
                "message stock.changed",
                "pubsub orders.created",
                "pubsub stock.changed"
            ]
        );
        eprintln!("slixmpp receive scenario (4 events) took {took:?}");
        within("close", rust.close()).await.unwrap();
    })
    .await;
}

/// What the peer decoded, as one of the Rust types.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(untagged)]
enum EventValue {
    Order(OrderCreated),
    Stock(StockChanged),
}
