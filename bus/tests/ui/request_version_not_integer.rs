use serde::{Deserialize, Serialize};
use xbus::Request;

#[derive(Request, Serialize, Deserialize)]
#[request(response = u32, version = "2")]
struct CheckStock {
    sku: String,
}

fn main() {}
