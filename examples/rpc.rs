//! RPC and service liveness: two instances of an inventory service answer
//! typed calls; a shop watches them, spreads its calls over them, sees an
//! application error, and routes around a draining instance.
//!
//! ```sh
//! cargo run --example rpc
//! ```
//!
//! With `XBUS_JID`/`XBUS_PASSWORD` (and optionally `XBUS_SERVER`,
//! `XBUS_TLS`) set, all three buses log in as that account with the
//! resources `inv-1`, `inv-2` and `shop`. Without them, the example starts
//! the embedded server on a free loopback port.

use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use xbus::{Bus, BusConfig, Context, Handler, InstanceEvent, Request, RequestError, RpcError};

/// How many of an item are in stock?
#[derive(Request, Serialize, Deserialize, Debug)]
#[request(method = "inventory.check", response = StockLevel)]
struct CheckStock {
    sku: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct StockLevel {
    sku: String,
    available: u32,
    /// Which instance answered: to show the load spreading.
    instance: String,
}

/// Take items out of stock for an order.
#[derive(Request, Serialize, Deserialize, Debug)]
#[request(method = "inventory.reserve", response = Reservation, encoding = "json")]
struct Reserve {
    sku: String,
    quantity: u32,
}

#[derive(Serialize, Deserialize, Debug)]
struct Reservation {
    id: String,
    left: u32,
}

/// The inventory service, in trait form.
struct Inventory {
    stock: Mutex<u32>,
}

#[xbus::async_trait]
impl Handler<Reserve> for Inventory {
    async fn handle(&self, req: Reserve, ctx: Context) -> Result<Reservation, RpcError> {
        let mut stock = self.stock.lock().expect("lock");
        if req.quantity > *stock {
            return Err(RpcError::new(
                "out_of_stock",
                format!("{} of {} wanted, {} left", req.quantity, req.sku, *stock),
            ));
        }
        *stock -= req.quantity;
        Ok(Reservation {
            id: format!("{}-for-{}", req.sku, ctx.from().resource()),
            left: *stock,
        })
    }
}

/// Starts one inventory instance.
async fn inventory(config: BusConfig) -> anyhow::Result<Bus> {
    let bus = Bus::connect(config).await?;
    let me = bus.jid().resource().to_string();
    bus.serve(move |req: CheckStock, _ctx: Context| {
        let me = me.clone();
        async move {
            Ok(StockLevel {
                available: 5,
                sku: req.sku,
                instance: me,
            })
        }
    })
    .await?;
    bus.serve(Inventory {
        stock: Mutex::new(5),
    })
    .await?;
    Ok(bus)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    xbus_examples::init_logs();
    let configs = xbus_examples::configs().await?;
    let first = inventory(configs.instance("inv-1")?).await?;
    let second = inventory(configs.instance("inv-2")?).await?;
    let shop = Bus::connect(configs.client()?).await?;
    let service = first.jid().to_bare().to_string();
    println!(
        "service {service}, instances {} and {}",
        first.jid(),
        second.jid()
    );

    let mut watch = shop.watch(&service).await?;
    for _ in 0..2 {
        if let Some(InstanceEvent::Online(instance)) = next(&mut watch).await {
            println!("online     {} ({})", instance.jid, instance.status);
        }
    }

    for n in 1..=4 {
        let level = check(&shop, &service, n).await?;
        println!(
            "check A{n}   {} available, answered by {}",
            level.available, level.instance
        );
    }

    let reservation = shop
        .request(
            &service,
            Reserve {
                sku: "A1".into(),
                quantity: 2,
            },
        )
        .timeout(Duration::from_secs(2))
        .await?;
    println!("reserved   {reservation:?}");
    match shop
        .request(
            &first.jid().to_string(),
            Reserve {
                sku: "A1".into(),
                quantity: 50,
            },
        )
        .await
    {
        Err(RequestError::Remote { error, from, .. }) => {
            println!("refused    by {from}: {} ({})", error.code, error.message)
        }
        other => println!("unexpected {other:?}"),
    }

    second.set_status("draining").await?;
    if let Some(event) = next(&mut watch).await {
        println!("changed    {event:?}");
    }
    for n in 5..=6 {
        let level = check(&shop, &service, n).await?;
        println!(
            "check A{n}   answered by {} (inv-2 is draining)",
            level.instance
        );
    }

    first.close().await?;
    if let Some(event) = next(&mut watch).await {
        println!("offline    {event:?}");
    }
    match shop
        .request(&service, CheckStock { sku: "A7".into() })
        .await
    {
        Err(error @ RequestError::NoResponder { .. }) => println!("no one     {error}"),
        other => println!("unexpected {other:?}"),
    }

    second.close().await?;
    shop.close().await?;
    println!("done");
    Ok(())
}

async fn check(shop: &Bus, service: &str, n: u32) -> Result<StockLevel, RequestError> {
    let sku = format!("A{n}");
    shop.request(service, CheckStock { sku }).await
}

async fn next(watch: &mut xbus::Watch) -> Option<InstanceEvent> {
    tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .ok()
        .flatten()
}
