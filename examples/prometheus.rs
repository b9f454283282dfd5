//! Prometheus: xbus's metrics on a scrape endpoint, as the README shows.
//!
//! ```sh
//! cargo run --example prometheus
//! ```
//!
//! Installs `metrics-exporter-prometheus` (the README's lines, on a free
//! loopback port), publishes, delivers and calls on the embedded server,
//! then scrapes `/metrics` once and prints xbus's series.

use std::time::Duration;

use futures::StreamExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::{Deserialize, Serialize};
use xbus::{Context, Event, Request, RpcError};

/// An order was placed.
#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "orders.placed")]
struct OrderPlaced {
    id: u64,
}

/// How many of a SKU are left.
#[derive(Request, Serialize, Deserialize)]
#[request(method = "inventory.check", response = u32)]
struct CheckStock {
    sku: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    xbus_examples::init_logs();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    PrometheusBuilder::new()
        .with_http_listener(addr) // serves GET /metrics
        .set_buckets_for_metric(
            Matcher::Suffix("duration".into()), // histograms rather than summaries
            &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
        )?
        .install()?; // in the Tokio runtime, before Bus::connect

    let (server, orders) = xbus_server::start_with_bus("orders").await?;
    let billing = server.bus("billing").await?;
    let inventory = server.bus("inventory").await?;
    inventory
        .serve(|req: CheckStock, _ctx: Context| async move {
            match req.sku.as_str() {
                "A1" => Ok(3),
                other => Err(RpcError::new("unknown_sku", format!("no SKU {other}"))),
            }
        })
        .await?;
    let mut placed = billing.subscribe::<OrderPlaced>().await?;
    for id in 1..=3 {
        orders.publish(&OrderPlaced { id }).await?;
    }
    for _ in 1..=3 {
        tokio::time::timeout(Duration::from_secs(5), placed.next())
            .await?
            .expect("subscribed")?;
    }
    let to = inventory.jid().to_bare().to_string();
    billing
        .request(&to, CheckStock { sku: "A1".into() })
        .await?;
    let _ = billing.request(&to, CheckStock { sku: "Z9".into() }).await;

    let page = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?;
    for line in page.lines() {
        let shown = line.starts_with("messaging_client_") && !line.contains("_bucket")
            || line.starts_with("rpc_") && !line.contains("_bucket")
            || line.starts_with("xbus_");
        if shown {
            println!("{line}");
        }
    }
    for bus in [&orders, &billing, &inventory] {
        bus.close().await?;
    }
    Ok(())
}
