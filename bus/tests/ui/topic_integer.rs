use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
#[event(topic = 42)]
struct OrderCreated {
    id: u64,
}

fn main() {}
