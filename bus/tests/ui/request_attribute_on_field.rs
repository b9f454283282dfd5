use serde::{Deserialize, Serialize};
use xbus::Request;

#[derive(Request, Serialize, Deserialize)]
#[request(response = u32)]
enum Inventory {
    Check {
        #[request(method = "inventory.check")]
        sku: String,
    },
}

fn answer<R: Request<Response = u32>>(_: &R) {}

fn main() {
    answer(&Inventory::Check { sku: "A-1".into() });
}
