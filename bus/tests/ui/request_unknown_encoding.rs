use serde::{Deserialize, Serialize};
use xbus::Request;

#[derive(Request, Serialize, Deserialize)]
#[request(response = u32, encoding = "cbor")]
struct CheckStock {
    sku: String,
}

fn main() {
    let _ = CheckStock::ENCODING;
}
