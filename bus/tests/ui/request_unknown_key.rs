use serde::{Deserialize, Serialize};
use xbus::Request;

#[derive(Serialize, Deserialize)]
struct StockLevel {
    available: u32,
}

#[derive(Request, Serialize, Deserialize)]
#[request(methd = "inventory.check", response = StockLevel)]
struct CheckStock {
    sku: String,
}

fn call<R: Request<Response = StockLevel>>(_: &R) {}

fn main() {
    // The fallback impl still answers `StockLevel`, so this adds no error.
    call(&CheckStock { sku: "A-1".into() });
}
