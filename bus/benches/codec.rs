//! Micro-benchmarks of the codec: what one event costs on its way to the
//! wire and back, in nanoseconds per event.
//!
//! ```sh
//! cargo bench -p xbus --bench codec
//! ```
//!
//! For a ~200-byte order (MessagePack; its JSON twin is a little larger),
//! in each encoding:
//! - `encode`: [`RawPayload::encode`] → [`RawPayload::to_element`] → the XML
//!   text of the `<payload/>` element, as it goes into a stanza;
//! - `decode`: that text → [`Element`] → [`RawPayload::from_element`] →
//!   [`RawPayload::decode`];
//! - `deliver`: a whole pubsub notification `<message/>`, as the server
//!   pushes it → [`Message`] → the `<item/>`'s payload → the typed event.
//!   The connection task's own reader is crate-private; this follows the
//!   same steps through the public API, minus its bookkeeping (SHIM
//!   headers, item id and publisher copied into the delivery).
//!
//! Transport, TLS and the task's channels are not measured here.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use xbus::{Event, RawPayload};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;

/// The default payload limit of a bus (`BusConfigBuilder::max_payload`).
const MAX_PAYLOAD: usize = 1 << 20;
const PUBSUB: &str = "pubsub.localhost";
const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// An order, MessagePack on the wire (the default encoding).
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "orders.created")]
struct OrderCreated {
    id: u64,
    sku: String,
    customer: String,
    total_cents: u64,
    note: String,
}

/// The same order as JSON.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "orders.created", encoding = "json")]
struct OrderCreatedJson {
    id: u64,
    sku: String,
    customer: String,
    total_cents: u64,
    note: String,
}

/// Sized so that its MessagePack form is ~200 bytes.
fn order() -> OrderCreated {
    OrderCreated {
        id: 1_234_567_890,
        sku: "SKU-000123-BLUE-XL".into(),
        customer: "customer-4711@shop.example.org".into(),
        total_cents: 129_900,
        note: "Leave the parcel with the neighbour at number 12 if nobody answers; \
               gift wrap, no invoice in the box."
            .into(),
    }
}

fn order_json() -> OrderCreatedJson {
    let o = order();
    OrderCreatedJson {
        id: o.id,
        sku: o.sku,
        customer: o.customer,
        total_cents: o.total_cents,
        note: o.note,
    }
}

/// The event as the XML text of its `<payload/>` element.
fn encode<E: Event>(event: &E) -> String {
    let raw = RawPayload::encode(event).expect("the order encodes");
    String::from(&raw.to_element())
}

/// The `<payload/>` text back to the event.
fn decode<E: Event>(xml: &str) -> E {
    let elem: Element = xml.parse().expect("own XML parses");
    RawPayload::from_element(&elem, MAX_PAYLOAD)
        .expect("own payload reads")
        .decode()
        .expect("own payload decodes")
}

/// A pubsub notification carrying `payload_xml`, as the server sends it.
fn notification(topic: &str, payload_xml: &str) -> String {
    format!(
        "<message xmlns='jabber:client' from='{PUBSUB}' to='subscriber@localhost/r1' id='n-1'>\
         <event xmlns='{NS_PUBSUB_EVENT}'><items node='{topic}'>\
         <item id='7c1f3e2a-item' publisher='publisher@localhost/p1'>{payload_xml}</item>\
         </items></event></message>"
    )
}

/// A notification's text to its one typed event: the steps of the
/// connection task's reader (`read_message` in `pubsub.rs`).
fn deliver<E: Event>(xml: &str, pubsub: &Jid) -> E {
    let elem: Element = xml.parse().expect("own XML parses");
    let message = Message::try_from(elem).expect("a message");
    assert_eq!(
        message.from.as_ref(),
        Some(pubsub),
        "from the pubsub service"
    );
    let event = message
        .payloads
        .iter()
        .find(|p| p.is("event", NS_PUBSUB_EVENT))
        .expect("a notification");
    let items = event
        .get_child("items", NS_PUBSUB_EVENT)
        .expect("an <items/>");
    assert_eq!(items.attr("node"), Some(E::TOPIC));
    let item = items
        .get_child("item", NS_PUBSUB_EVENT)
        .expect("an <item/>");
    let payload = item.get_child("payload", "urn:xbus:0").expect("a payload");
    RawPayload::from_element(payload, MAX_PAYLOAD)
        .expect("own payload reads")
        .decode()
        .expect("own payload decodes")
}

/// The three benchmarks for one encoding.
fn bench_encoding<E: Event + Clone + PartialEq + std::fmt::Debug>(
    c: &mut Criterion,
    name: &str,
    event: E,
) {
    let payload_xml = encode(&event);
    let stanza = notification(E::TOPIC, &payload_xml);
    let pubsub = Jid::new(PUBSUB).expect("a valid JID");
    // Check once that the round trips give the event back.
    assert_eq!(decode::<E>(&payload_xml), event);
    assert_eq!(deliver::<E>(&stanza, &pubsub), event);
    let data = RawPayload::encode(&event).expect("encodes").data.len();
    println!(
        "{name}: {data} bytes serialized, <payload/> {} bytes of XML, notification {} bytes",
        payload_xml.len(),
        stanza.len()
    );

    let mut group = c.benchmark_group(format!("codec/{name}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| encode(black_box(&event))));
    group.bench_function("decode", |b| {
        b.iter(|| decode::<E>(black_box(&payload_xml)))
    });
    group.bench_function("deliver", |b| {
        b.iter(|| deliver::<E>(black_box(&stanza), &pubsub))
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_encoding(c, "msgpack", order());
    bench_encoding(c, "json", order_json());
}

criterion_group! {
    name = benches;
    // Quick by default; `cargo bench -- --measurement-time 10` for more.
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);
    targets = codec
}
criterion_main!(benches);
