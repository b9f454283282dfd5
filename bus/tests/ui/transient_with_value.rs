use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "telemetry.cpu", transient = true)]
struct CpuLoad {
    percent: u8,
}

fn main() {
    let _ = CpuLoad::PERSISTENCE;
}
