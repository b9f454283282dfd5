//! Structured fuzzing: arbitrary events (derived with `#[derive(Event)]`,
//! as users write them) and headers must come back unchanged through the
//! payload element, a pubsub notification and a direct message.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use xbus::{Event, Headers};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary, Event)]
#[event(topic = "fuzz.orders", encoding = "msgpack", version = 3)]
struct Order {
    id: u64,
    delta: i32,
    flag: bool,
    initial: char,
    sku: String,
    blob: Vec<u8>,
    note: Option<String>,
    status: Status,
    history: Vec<Status>,
    labels: BTreeMap<String, u16>,
    pair: (u8, String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
enum Status {
    Open,
    Shipped { carrier: String, parcels: Vec<u32> },
    Cancelled(i64),
    Moved(String, Option<u16>),
    Nested(Box<Inner>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
struct Inner {
    reason: Option<String>,
    codes: Vec<i16>,
}

/// The same event as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary, Event)]
#[event(topic = "fuzz.orders_json", encoding = "json", version = 4)]
#[serde(transparent)]
struct OrderJson(Order);

#[derive(Debug, Arbitrary)]
struct Input {
    json: bool,
    order: Order,
    headers: Vec<(String, String)>,
}

fuzz_target!(|input: Input| {
    let headers: Headers = input.headers.into_iter().collect();
    if input.json {
        xbus::fuzzing::round_trip(&OrderJson(input.order), &headers);
    } else {
        xbus::fuzzing::round_trip(&input.order, &headers);
    }
});
