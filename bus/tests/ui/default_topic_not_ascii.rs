use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
struct CaféOpened {
    id: u64,
}

fn main() {}
