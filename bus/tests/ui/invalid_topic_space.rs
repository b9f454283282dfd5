use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "orders created")]
struct OrderCreated {
    id: u64,
}

fn main() {
    let _ = OrderCreated::TOPIC;
}
