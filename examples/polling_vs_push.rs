//! Polling versus push: one order feed, two consumers.
//!
//! ```sh
//! cargo run --example polling_vs_push                          # 200 orders, poll every 1000 ms
//! cargo run --example polling_vs_push -- --interval-ms 250 --orders 100
//! ```
//!
//! A shop places orders (~20 a second, at irregular gaps). Each order is
//! both stored behind a REST API (`GET /orders?after=N`, served in-process
//! by axum) and published on the bus. Two consumers follow the feed:
//!
//! 1. a REST client that polls `GET /orders?after=<last seen>` on a timer;
//! 2. an xbus subscription, to which the server pushes each order.
//!
//! Each order carries the time it was placed, so each consumer measures
//! how late it learned of it. The table at the end shows the trade-off:
//! a poller is on average half an interval late and pays a request per
//! interval whether or not anything happened; a subscriber is told within
//! milliseconds and sends nothing after subscribing.
//!
//! With `XBUS_JID`/`XBUS_PASSWORD` (and optionally `XBUS_SERVER`,
//! `XBUS_TLS`) set, the bus side logs in to that server. Without them, the
//! example starts the embedded server on a free loopback port.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use axum::extract::{Query, State};
use axum::{Json, Router, routing::get};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use xbus::{Bus, BusConfig, Event};

/// An order was placed. `placed_at_us` is the time stamp latencies are
/// measured from (microseconds since the Unix epoch).
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(topic = "orders.placed")]
struct OrderPlaced {
    seq: u64,
    sku: String,
    total_cents: u64,
    placed_at_us: u64,
}

/// Orders come in bursts: gaps of 1 to 25 ms, and now and then (1 gap in
/// 40) a lull of 1.5 s, as when traffic dies down. On average, ~20 orders
/// a second.
const BURST_GAP_MS: u64 = 25;
const LULL: Duration = Duration::from_millis(1500);
const ONE_LULL_IN: u64 = 40;
/// How long the consumers may take, besides one polling interval, to
/// catch up after the last order.
const GRACE: Duration = Duration::from_secs(2);

/// What the REST service stores: every order, in order.
type Store = Arc<Mutex<Vec<OrderPlaced>>>;

#[derive(Deserialize)]
struct After {
    after: u64,
}

/// `GET /orders?after=N`: the orders with a sequence number above N.
async fn orders_after(
    State(store): State<Store>,
    Query(q): Query<After>,
) -> Json<Vec<OrderPlaced>> {
    let store = store.lock().expect("store lock");
    // Sequence numbers start at 1, so the order `seq` sits at index `seq - 1`.
    let start = (q.after as usize).min(store.len());
    Json(store[start..].to_vec())
}

/// What one consumer saw.
struct Report {
    name: String,
    /// Delivery latency of each order received.
    latencies: Vec<Duration>,
    /// What it asked the server for, after setting up.
    requests: String,
    /// Requests that returned nothing.
    empty: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    xbus_examples::init_logs();
    let (interval, orders) = args()?;

    // The bus: a publisher (the shop) and a subscriber, which subscribes
    // before the first order so it misses none.
    let (_server, publisher_config, subscriber_config) = configs().await?;
    let publisher = Bus::connect(publisher_config).await?;
    let subscriber = Bus::connect(subscriber_config).await?;
    let subscription = subscriber.subscribe::<OrderPlaced>().await?;

    // The REST service, on a free loopback port.
    let store = Store::default();
    let app = Router::new()
        .route("/orders", get(orders_after))
        .with_state(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/orders", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    println!(
        "{orders} orders in bursts, ~20 a second; REST polled every {} ms",
        interval.as_millis()
    );
    // Each consumer stops when it has every order, or at the deadline set
    // once the last order is out.
    let (deadline, stop) = watch::channel(None);
    let polling = tokio::spawn(poll(url, interval, orders, stop.clone()));
    let push = tokio::spawn(push(subscription, orders, stop));

    // The shop: each order goes to the REST store and onto the bus.
    let mut gaps = Gaps(42);
    for seq in 1..=orders {
        let order = OrderPlaced {
            seq,
            sku: format!("SKU-{:03}", seq % 17),
            total_cents: 500 + seq * 37 % 10_000,
            placed_at_us: now_us(),
        };
        store.lock().expect("store lock").push(order.clone());
        publisher.publish(&order).await?;
        tokio::time::sleep(gaps.next()).await;
    }
    deadline.send_replace(Some(Instant::now() + interval + GRACE));

    let reports = [polling.await??, push.await??];
    publisher.close().await?;
    subscriber.close().await?;
    print_table(&reports, orders);
    Ok(())
}

/// Consumer 1: polls `GET /orders?after=<last seen>` every `interval`.
async fn poll(
    url: String,
    interval: Duration,
    orders: u64,
    stop: watch::Receiver<Option<Instant>>,
) -> anyhow::Result<Report> {
    let client = reqwest::Client::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop = deadline(stop);
    tokio::pin!(stop);
    let (mut last_seen, mut requests, mut empty) = (0, 0, 0);
    let mut latencies = Vec::new();
    while last_seen < orders {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {}
        }
        requests += 1;
        let batch: Vec<OrderPlaced> = client
            .get(format!("{url}?after={last_seen}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if batch.is_empty() {
            empty += 1;
        }
        for order in batch {
            latencies.push(latency(&order));
            last_seen = order.seq;
        }
    }
    Ok(Report {
        name: format!("REST polling every {} ms", interval.as_millis()),
        latencies,
        requests: format!("{requests} GETs"),
        empty: Some(empty),
    })
}

/// Consumer 2: the server pushes each order to the subscription.
async fn push(
    mut subscription: xbus::Subscription<OrderPlaced>,
    orders: u64,
    stop: watch::Receiver<Option<Instant>>,
) -> anyhow::Result<Report> {
    let stop = deadline(stop);
    tokio::pin!(stop);
    let mut latencies = Vec::new();
    while (latencies.len() as u64) < orders {
        let next = tokio::select! {
            _ = &mut stop => break,
            next = subscription.next() => next,
        };
        let delivery = next.context("subscription ended")??;
        latencies.push(latency(&delivery.event));
    }
    Ok(Report {
        name: "xbus subscription (push)".into(),
        latencies,
        // Nothing is asked for after the one <subscribe/>: the server pushes.
        requests: "1 subscribe".into(),
        empty: None,
    })
}

/// Resolves at the deadline, once the publisher has set one.
async fn deadline(mut stop: watch::Receiver<Option<Instant>>) {
    let Ok(at) = stop.wait_for(Option::is_some).await.map(|at| *at) else {
        return; // the publisher is gone
    };
    tokio::time::sleep_until(at.unwrap_or_else(Instant::now)).await;
}

/// Time from the order's placement to now.
fn latency(order: &OrderPlaced) -> Duration {
    Duration::from_micros(now_us().saturating_sub(order.placed_at_us))
}

fn now_us() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_micros() as u64
}

fn print_table(reports: &[Report], orders: u64) {
    println!(
        "\n{:<26} {:>9} {:>9} {:>9} {:>9} {:>12} {:>6}",
        "consumer", "received", "p50 ms", "p99 ms", "max ms", "requests", "empty"
    );
    for r in reports {
        let mut sorted = r.latencies.clone();
        sorted.sort();
        let ms = |p: f64| match percentile(&sorted, p) {
            Some(d) => format!("{:.1}", d.as_secs_f64() * 1e3),
            None => "-".into(),
        };
        let empty = r.empty.map_or("-".into(), |n| n.to_string());
        println!(
            "{:<26} {:>9} {:>9} {:>9} {:>9} {:>12} {:>6}",
            r.name,
            format!("{}/{orders}", sorted.len()),
            ms(50.0),
            ms(99.0),
            ms(100.0),
            r.requests,
            empty
        );
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// The gaps between orders (see [`BURST_GAP_MS`]), from a fixed-seed
/// xorshift generator: the same feed on every run.
struct Gaps(u64);

impl Gaps {
    fn next(&mut self) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        match self.0 % ONE_LULL_IN {
            0 => LULL,
            _ => Duration::from_millis(1 + self.0 / ONE_LULL_IN % BURST_GAP_MS),
        }
    }
}

/// `--interval-ms N` (default 1000) and `--orders N` (default 200).
fn args() -> anyhow::Result<(Duration, u64)> {
    let (mut interval_ms, mut orders) = (1000, 200);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = |v: Option<String>| -> anyhow::Result<u64> {
            let v = v.with_context(|| format!("{arg} needs a value"))?;
            v.parse()
                .with_context(|| format!("{arg} {v}: not a number"))
        };
        match arg.as_str() {
            "--interval-ms" => interval_ms = value(args.next())?.max(1),
            "--orders" => orders = value(args.next())?,
            other => bail!("unknown argument {other} (expected --interval-ms N, --orders N)"),
        }
    }
    Ok((Duration::from_millis(interval_ms), orders))
}

type Configs = (Option<xbus_server::Server>, BusConfig, BusConfig);

/// From the environment if `XBUS_JID` is set, else an embedded server.
async fn configs() -> anyhow::Result<Configs> {
    if std::env::var_os("XBUS_JID").is_some() {
        return Ok((None, BusConfig::from_env()?, BusConfig::from_env()?));
    }
    println!("XBUS_JID is not set: starting an embedded XMPP server on loopback");
    let server = xbus_server::Server::start_local().await?;
    let publisher = server.bus_config("shop")?.build()?;
    let subscriber = server.bus_config("subscriber")?.build()?;
    Ok((Some(server), publisher, subscriber))
}
