use serde::{Deserialize, Serialize};
use xbus::Request;

#[derive(Request, Serialize, Deserialize)]
#[request(response = bool)]
struct CaféOpen {
    id: u64,
}

fn main() {
    let _ = CaféOpen::METHOD;
}
