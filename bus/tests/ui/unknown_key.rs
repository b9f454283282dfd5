use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "orders.created", tpoic = "orders.created")]
struct OrderCreated {
    id: u64,
}

fn publish<E: Event>(_: &E) {}

fn main() {
    // The fallback impl keeps this from adding a second error.
    publish(&OrderCreated { id: 1 });
}
