//! A new user's first steps against a server left on its distribution's
//! own config (only where it lives and listens adapted): what works, and
//! what fails with an error that names the setting to change and the
//! section of docs/DEPLOYMENT.md.
//!
//! Debian's Prosody config has no pubsub component, requires TLS and
//! throttles clients to 10 kB/s (`mod_limits`): publish and subscribe fail
//! naming the missing component, a call between two services works.

mod common;

use std::time::Duration;

use common::within;
use serde::{Deserialize, Serialize};
use xbus::{Bus, BusConfig, Context, Event, PublishError, Request};
use xbus_integration_tests::{Account, Prosody, XmppServer};

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

    within(
        "serve",
        callee.serve(|req: Price, _: Context| async move { Ok(req.sku.len() as u64 * 100) }),
    )
    .await
    .expect("serve");
    let price = within(
        "call",
        caller
            .request(&pricing.jid, Price { sku: "A12".into() })
            .timeout(Duration::from_secs(10)),
    )
    .await
    .expect("a call works on Debian's config");
    assert_eq!(price, 300);
    for bus in [caller, callee] {
        within("close", bus.close()).await.expect("close");
    }
}
