//! A work queue: an orders publisher and two billing instances in one
//! consumer group. One instance stops mid-run and comes back; every order
//! is billed once.
//!
//! ```sh
//! cargo run --example work_queue
//! ```
//!
//! It starts the embedded server (`xbus-server`) on a free loopback port.
//! The billing instances are two buses of the account `billing`
//! (resources `b1` and `b2`) consuming the group `billing` on
//! `orders.created`; see `docs/RELIABILITY.md`, "Consumer groups".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use xbus::{Bus, ConsumeOptions, Event};

/// An order was placed.
#[derive(Event, Serialize, Deserialize, Debug, Clone)]
#[event(topic = "orders.created")]
struct OrderCreated {
    id: u64,
    total_cents: u64,
}

const ORDERS: u64 = 60;

/// Who billed which order, how often.
type Ledger = Arc<Mutex<HashMap<u64, Vec<String>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    xbus_examples::init_logs();
    println!("starting an embedded XMPP server on loopback");
    let server = xbus_server::Server::start_local().await?;
    let orders = Bus::connect(server.bus_config("orders")?.build()?).await?;
    let billed: Ledger = Arc::default();

    let b1 = Bus::connect(server.bus_config("billing/b1")?.build()?).await?;
    let b2 = Bus::connect(server.bus_config("billing/b2")?.build()?).await?;
    let t1 = billing(&b1, billed.clone()).await?;
    let mut t2 = Some(billing(&b2, billed.clone()).await?);
    println!("billing instances b1 and b2 joined group \"billing\"");

    let mut restarted = None;
    for id in 1..=ORDERS {
        if id == 21 {
            println!("order {id}: b2 stops (close) mid-run; b1 takes every order");
            b2.close().await?;
            if let Some(t2) = t2.take() {
                t2.await?;
            }
        }
        if id == 41 {
            // Restarted: a new bus for the same instance.
            let b2 = Bus::connect(server.bus_config("billing/b2")?.build()?).await?;
            let t2 = billing(&b2, billed.clone()).await?;
            println!("order {id}: b2 is back");
            restarted = Some((b2, t2));
        }
        let order = OrderCreated {
            id,
            total_cents: 1000 + id,
        };
        orders.publish(&order).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Wait until every order is billed (or give up after 10 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while billed.lock().expect("lock").len() < ORDERS as usize
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let billed = billed.lock().expect("lock").clone();
    let mut per_instance: HashMap<&str, usize> = HashMap::new();
    for who in billed.values() {
        for w in who {
            *per_instance.entry(w.as_str()).or_default() += 1;
        }
    }
    let twice = billed.values().filter(|w| w.len() > 1).count();
    let missing: Vec<u64> = (1..=ORDERS).filter(|id| !billed.contains_key(id)).collect();
    let mut shares: Vec<_> = per_instance.into_iter().collect();
    shares.sort();
    println!("billed per instance: {shares:?}");
    println!(
        "{} of {ORDERS} orders billed, {twice} billed twice, missing: {missing:?}",
        billed.len()
    );
    b1.close().await?;
    let _ = t1.await;
    if let Some((b2, t2)) = restarted {
        b2.close().await?;
        let _ = t2.await;
    }
    orders.close().await?;
    if billed.len() as u64 == ORDERS && twice == 0 {
        println!("done: every order was billed once");
        Ok(())
    } else {
        anyhow::bail!("not every order was billed exactly once")
    }
}

/// Joins the group on `bus` and bills each order it gets (then acks it).
async fn billing(bus: &Bus, billed: Ledger) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let name = bus.jid().resource().to_string();
    let mut jobs = bus
        .consume::<OrderCreated>("billing", ConsumeOptions::new())
        .await?;
    Ok(tokio::spawn(async move {
        while let Some(job) = jobs.next().await {
            let Ok(job) = job else {
                continue;
            };
            billed
                .lock()
                .expect("lock")
                .entry(job.event.id)
                .or_default()
                .push(name.clone());
            let _ = job.ack();
        }
    }))
}
