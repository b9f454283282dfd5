use serde::{Deserialize, Serialize};
use xbus::Request;

#[derive(Request, Serialize, Deserialize)]
#[request(response = u32)]
#[request(method = "inventory.check", response = u64)]
struct CheckStock {
    sku: String,
}

fn main() {
    let _ = CheckStock::METHOD;
}
