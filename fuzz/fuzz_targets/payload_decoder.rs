//! A `<payload xmlns='urn:xbus:0'/>` element as XML text: parsed at several
//! size limits and decoded into a MessagePack and a JSON event type. See
//! `bus/src/fuzzing.rs` for the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xbus::fuzzing::decode_payload(data);
});
