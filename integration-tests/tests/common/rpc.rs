//! The requests and handlers the RPC tests share (`rpc.rs`,
//! `rpc_spread.rs`); each includes this file with `#[path]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use xbus::{Bus, Context, Request};

use super::common::within;

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "inventory.check", response = StockLevel)]
pub struct CheckStock {
    pub sku: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StockLevel {
    pub sku: String,
    pub available: u32,
    /// The resource of the instance that answered.
    pub instance: String,
}

/// Sleeps for the given milliseconds, then answers.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "test.sleep", response = String)]
pub struct Sleep {
    pub millis: u64,
}

/// Serves `inventory.check` on `bus`, answering with its resource.
pub async fn serve_check(bus: &Bus) {
    let me = bus.jid().resource().to_string();
    within(
        "serve check",
        bus.serve(move |req: CheckStock, _ctx: Context| {
            let me = me.clone();
            async move {
                Ok(StockLevel {
                    available: req.sku.len() as u32,
                    sku: req.sku,
                    instance: me,
                })
            }
        }),
    )
    .await
    .unwrap();
}

pub async fn serve_sleep(bus: &Bus) {
    within(
        "serve sleep",
        bus.serve(|req: Sleep, ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(req.millis)).await;
            Ok(ctx.from().to_string())
        }),
    )
    .await
    .unwrap();
}

pub fn check(sku: &str) -> CheckStock {
    CheckStock { sku: sku.into() }
}
