use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "orders.created", access_model = "everyone")]
struct OrderCreated {
    id: u64,
}

fn main() {
    let _ = OrderCreated::TOPIC;
}
