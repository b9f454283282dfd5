use serde::{Deserialize, Serialize};
use xbus::Request;

#[derive(Serialize, Deserialize)]
struct StockLevel {
    available: u32,
}

#[derive(Request, Serialize, Deserialize)]
#[request(response = "StockLevel")]
struct CheckStock {
    sku: String,
}

fn main() {
    let _ = StockLevel { available: 1 }.available;
    let _ = CheckStock::METHOD;
}
