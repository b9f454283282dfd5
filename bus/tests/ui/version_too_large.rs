use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
#[event(version = 4294967296)]
struct OrderCreated {
    id: u64,
}

fn main() {}
