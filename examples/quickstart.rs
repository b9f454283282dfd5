//! Quickstart: a publisher and a subscriber exchange typed events.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! With `XBUS_JID`/`XBUS_PASSWORD` (and optionally `XBUS_SERVER`,
//! `XBUS_TLS`) set, both sides log in to that server as that account.
//! Without them, the example starts the embedded server (`xbus-server`) on
//! a free loopback port: nothing needs to be installed.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use xbus::{Bus, BusConfig, Event};

/// An order was placed.
#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "orders.created")]
struct OrderCreated {
    id: u64,
    customer: String,
    total_cents: u64,
}

/// Stock went down: JSON on the wire, readable by any client.
#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "stock.changed", encoding = "json")]
struct StockChanged {
    sku: String,
    delta: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    xbus_examples::init_logs();

    // Keep the server alive until the end of main.
    let (_server, publisher_config, subscriber_config) = configs().await?;
    let publisher = Bus::connect(publisher_config).await?;
    let subscriber = Bus::connect(subscriber_config).await?;
    println!("publisher  {}", publisher.jid());
    println!("subscriber {}", subscriber.jid());

    let mut orders = subscriber.subscribe::<OrderCreated>().await?;
    let mut stock = subscriber.subscribe::<StockChanged>().await?;

    for id in 1..=3 {
        let order = OrderCreated {
            id,
            customer: format!("customer-{id}"),
            total_cents: 1299 * id,
        };
        let receipt = publisher.publish(&order).await?;
        println!("published  order {id} as item {}", receipt.item_id);
        publisher
            .publish(&StockChanged {
                sku: "A1".into(),
                delta: -(id as i64),
            })
            .await?;
    }

    for _ in 0..3 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), orders.next()).await?;
        let delivery = delivery.expect("subscription open")?;
        println!(
            "received   {:?} on {} from {}",
            delivery.event,
            delivery.topic,
            delivery.publisher.as_deref().unwrap_or("?")
        );
        let change = tokio::time::timeout(Duration::from_secs(5), stock.next()).await?;
        println!("received   {:?}", change.expect("subscription open")?.event);
    }

    publisher.close().await?;
    subscriber.close().await?;
    println!("done");
    Ok(())
}

type Configs = (Option<xbus_server::Server>, BusConfig, BusConfig);

/// From the environment if `XBUS_JID` is set, else an embedded server.
async fn configs() -> anyhow::Result<Configs> {
    if std::env::var_os("XBUS_JID").is_some() {
        return Ok((None, BusConfig::from_env()?, BusConfig::from_env()?));
    }
    println!("XBUS_JID is not set: starting an embedded XMPP server on loopback");
    let server = xbus_server::Server::start_local().await?;
    let publisher = server.bus_config("publisher")?.build()?;
    let subscriber = server.bus_config("subscriber")?.build()?;
    Ok((Some(server), publisher, subscriber))
}
