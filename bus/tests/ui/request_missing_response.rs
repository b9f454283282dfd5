use serde::{Deserialize, Serialize};
use xbus::Request;

#[derive(Request, Serialize, Deserialize)]
#[request(method = "inventory.check", version = 2)]
struct CheckStock {
    sku: String,
}

fn call<R: Request>(_: &R) {}

fn main() {
    // The fallback impl (answering `()`) keeps this from adding a second error.
    call(&CheckStock { sku: "A-1".into() });
}
