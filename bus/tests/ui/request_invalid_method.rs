use serde::{Deserialize, Serialize};
use xbus::Request;

#[derive(Request, Serialize, Deserialize)]
#[request(method = "inventory check", response = u32)]
struct CheckStock {
    sku: String,
}

fn main() {
    let _ = CheckStock::METHOD;
}
