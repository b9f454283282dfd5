use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
#[event(version = "2")]
struct OrderCreated {
    id: u64,
}

fn main() {}
