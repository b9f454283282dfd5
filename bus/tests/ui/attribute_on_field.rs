use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
struct OrderCreated {
    #[event(topic = "orders.created")]
    id: u64,
}

fn main() {}
