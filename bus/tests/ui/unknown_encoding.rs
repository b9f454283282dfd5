use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
#[event(encoding = "xml")]
struct OrderCreated {
    id: u64,
}

fn main() {
    let _ = OrderCreated::ENCODING;
}
