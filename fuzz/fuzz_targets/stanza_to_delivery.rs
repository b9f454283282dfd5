//! A `<message/>` stanza as XML text: pubsub notification items or a direct
//! xbus payload, as the connection task reads them, to typed deliveries.
//! See `bus/src/fuzzing.rs` for the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xbus::fuzzing::message_to_deliveries(data);
});
