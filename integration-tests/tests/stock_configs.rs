//! A new user's first steps against a server left on its distribution's
//! own config (only where it lives and listens adapted): what works, and
//! what fails with an error that names the setting to change and the
//! section of docs/DEPLOYMENT.md.
//!
//! Debian's Prosody config has no pubsub component, requires TLS and
//! throttles clients to 10 kB/s (`mod_limits`): publish and subscribe fail
//! naming the missing component, a call between two services works.
//! Debian's ejabberd config has `mod_pubsub`, requires TLS and holds each
//! client to 3,000 B/s (`c2s_shaper`); its nodes take publishes from their
//! creator only (`publish_model` `publishers`): subscribe, the creator's
//! publishes and calls work, another account's publish fails naming
//! `publish_model`.

mod common;

use std::time::{Duration, Instant};

use common::within;
use serde::{Deserialize, Serialize};
use xbus::{Bus, BusConfig, Context, Event, PublishError, Request};
use xbus_integration_tests::{Account, Ejabberd, Prosody, XmppServer};

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "stock.orders")]
struct OrderPlaced {
    id: u64,
}

#[derive(Request, Serialize, Deserialize, Debug)]
#[request(method = "stock.price", response = u64)]
struct Price {
    sku: String,
}

/// A bus of `account` over TLS, trusting the test CA, as a user would
/// connect to a server with a certificate.
async fn tls_bus(server: &dyn XmppServer, account: &Account, resource: &str) -> Bus {
    let config = BusConfig::builder(
        format!("{}/{resource}", account.jid),
        account.password.clone(),
    )
    .server(server.addr().to_string())
    .ca_file(server.ca_file())
    .build()
    .expect("valid config");
    within("connect", Bus::connect(config))
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {e}"))
}

#[tokio::test]
async fn on_debians_prosody_config_publishing_names_the_missing_component_and_calls_work() {
    let server = Prosody::start_on_debian_config().expect("start prosody on Debian's config");
    let (shop, pricing) = (
        server.account().expect("account"),
        server.account().expect("account"),
    );
    let caller = tls_bus(&server, &shop, "web-1").await;
    let callee = tls_bus(&server, &pricing, "pricing-1").await;

    let error = within("publish", caller.publish(&OrderPlaced { id: 1 }))
        .await
        .expect_err("Debian's config has no pubsub component");
    let text = error.to_string();
    eprintln!("[prosody, Debian's config] publish: {text}");
    assert!(matches!(error, PublishError::Rejected { .. }), "{error:?}");
    for needle in ["no pubsub service", "Component", "docs/DEPLOYMENT.md"] {
        assert!(text.contains(needle), "{needle:?} in: {text}");
    }
    let error = within("subscribe", caller.subscribe::<OrderPlaced>())
        .await
        .expect_err("Debian's config has no pubsub component");
    eprintln!("[prosody, Debian's config] subscribe: {error}");
    assert!(error.to_string().contains("no pubsub service"), "{error}");

    a_call_works(&caller, &callee, &pricing.jid).await;
    for bus in [caller, callee] {
        within("close", bus.close()).await.expect("close");
    }
}

/// Serves `stock.price` on `callee` and calls it from `caller`.
async fn a_call_works(caller: &Bus, callee: &Bus, target: &str) {
    within(
        "serve",
        callee.serve(|req: Price, _: Context| async move { Ok(req.sku.len() as u64 * 100) }),
    )
    .await
    .expect("serve");
    let price = within(
        "call",
        caller
            .request(target, Price { sku: "A12".into() })
            .timeout(Duration::from_secs(10)),
    )
    .await
    .expect("a call works on Debian's config");
    assert_eq!(price, 300);
}

#[tokio::test]
async fn on_debians_ejabberd_config_a_topic_takes_its_creators_events_and_names_publish_model() {
    let server = Ejabberd::start_on_debian_config().expect("start ejabberd on Debian's config");
    let (shop, orders) = (
        server.account().expect("account"),
        server.account().expect("account"),
    );
    let started = Instant::now();
    let subscriber = tls_bus(&server, &shop, "web-1").await;
    let publisher = tls_bus(&server, &orders, "orders-1").await;
    let mut placed = within("subscribe", subscriber.subscribe::<OrderPlaced>())
        .await
        .expect("subscribe on Debian's ejabberd config");
    // The subscriber created the topic: another account may not publish.
    let error = within("publish", publisher.publish(&OrderPlaced { id: 0 }))
        .await
        .expect_err("Debian's ejabberd takes publishes from a node's publishers only");
    let text = error.to_string();
    eprintln!("[ejabberd, Debian's config] publish: {text}");
    for needle in ["forbidden", "publish_model: open", "docs/DEPLOYMENT.md"] {
        assert!(text.contains(needle), "{needle:?} in: {text}");
    }
    for id in 1..=3 {
        within("publish", subscriber.publish(&OrderPlaced { id }))
            .await
            .expect("the topic's creator publishes on Debian's ejabberd config");
    }
    for id in 1..=3 {
        let delivery = common::next("an order", &mut placed)
            .await
            .expect("stream open");
        assert_eq!(delivery.event.id, id);
    }
    a_call_works(&subscriber, &publisher, &orders.jid).await;
    eprintln!(
        "[ejabberd, Debian's config] connect, subscribe, 4 publishes and a call: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for bus in [subscriber, publisher] {
        within("close", bus.close()).await.expect("close");
    }
}
