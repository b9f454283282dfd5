//! `#[derive(Event)]`: the constants it generates for each attribute key,
//! the defaults, and every kind of type it accepts.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use xbus::{Encoding, Event, validate_topic};

/// The three constants of `E`, for one-line assertions.
fn consts<E: Event>() -> (&'static str, Encoding, u32) {
    (E::TOPIC, E::ENCODING, E::VERSION)
}

#[derive(Event, Serialize, Deserialize)]
struct OrderCreated {
    id: u64,
    total_cents: u64,
}

#[test]
fn defaults_are_snake_case_msgpack_version_1() {
    assert_eq!(
        consts::<OrderCreated>(),
        ("order_created", Encoding::MessagePack, 1)
    );
}

#[derive(Event, Serialize, Deserialize)]
struct HTTPRequestSent;

#[derive(Event, Serialize, Deserialize)]
struct V2Thing;

#[derive(Event, Serialize, Deserialize)]
struct IOError;

#[derive(Event, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
struct already_snake;

#[derive(Event, Serialize, Deserialize)]
struct r#Match;

#[test]
fn default_topics_from_type_names() {
    assert_eq!(HTTPRequestSent::TOPIC, "http_request_sent");
    assert_eq!(V2Thing::TOPIC, "v2_thing");
    assert_eq!(IOError::TOPIC, "io_error");
    assert_eq!(already_snake::TOPIC, "already_snake");
    assert_eq!(Match::TOPIC, "match");
}

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "orders.created")]
struct WithTopic {
    id: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(encoding = "json")]
struct WithJson {
    id: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(encoding = "msgpack")]
struct WithMsgpack {
    id: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 3)]
struct WithVersion {
    id: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 4_294_967_295u32)]
struct MaxVersion;

#[derive(Event, Serialize, Deserialize)]
#[event(version = 0)]
struct ZeroVersion;

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "billing-v2.invoice_paid", encoding = "json", version = 12)]
struct AllKeys {
    invoice: String,
}

#[test]
fn each_key() {
    assert_eq!(
        consts::<WithTopic>(),
        ("orders.created", Encoding::MessagePack, 1)
    );
    assert_eq!(consts::<WithJson>(), ("with_json", Encoding::Json, 1));
    assert_eq!(
        consts::<WithMsgpack>(),
        ("with_msgpack", Encoding::MessagePack, 1)
    );
    assert_eq!(
        consts::<WithVersion>(),
        ("with_version", Encoding::MessagePack, 3)
    );
    assert_eq!(MaxVersion::VERSION, u32::MAX);
    assert_eq!(ZeroVersion::VERSION, 0);
    assert_eq!(
        consts::<AllKeys>(),
        ("billing-v2.invoice_paid", Encoding::Json, 12)
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "merged.topic")]
#[derive(Debug)]
#[event(version = 5)]
#[event(encoding = "json")]
struct Merged;

#[test]
fn several_attributes_are_merged() {
    assert_eq!(consts::<Merged>(), ("merged.topic", Encoding::Json, 5));
}

#[derive(Event, Serialize, Deserialize)]
struct TupleEvent(u64, String);

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "ticks")]
struct UnitEvent;

#[derive(Event, Serialize, Deserialize)]
#[event(encoding = "json", version = 2)]
enum PaymentEvent {
    Authorized { id: u64 },
    Captured(u64),
    Refunded,
}

#[test]
fn tuple_unit_and_enum_types() {
    assert_eq!(
        consts::<TupleEvent>(),
        ("tuple_event", Encoding::MessagePack, 1)
    );
    assert_eq!(consts::<UnitEvent>(), ("ticks", Encoding::MessagePack, 1));
    assert_eq!(
        consts::<PaymentEvent>(),
        ("payment_event", Encoding::Json, 2)
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "wrapped")]
struct Wrapper<T> {
    inner: T,
}

#[derive(Event, Serialize, Deserialize)]
struct Pair<A, B: Clone>(A, B)
where
    A: Default;

#[derive(Event, Serialize, Deserialize)]
struct Batch<const N: usize> {
    #[serde(with = "serde_arrays_as_vec")]
    items: [u8; N],
}

/// `[u8; N]` for any `N` as a sequence (serde's own impls stop at 32).
mod serde_arrays_as_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(a: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(a)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let v = Vec::<u8>::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom(format!("expected {N} bytes")))
    }
}

/// A type parameter that is not serialized: serde puts no bound on it, and
/// neither does the derive (the impl requires `Self: Serialize + ...`).
#[derive(Event, Serialize, Deserialize)]
struct Tagged<M: Send + 'static> {
    id: u64,
    #[serde(skip)]
    marker: PhantomData<fn() -> M>,
}

struct NotSerializable;

#[derive(Event, Serialize, Deserialize)]
#[serde(bound = "")]
#[event(encoding = "json")]
enum Custom<T> {
    Empty(#[serde(skip)] PhantomData<fn() -> T>),
}

fn is_event<E: Event>() {}

#[test]
fn generic_types() {
    assert_eq!(Wrapper::<u64>::TOPIC, "wrapped");
    assert_eq!(Wrapper::<String>::TOPIC, "wrapped");
    assert_eq!(
        consts::<Pair<u8, String>>(),
        ("pair", Encoding::MessagePack, 1)
    );
    assert_eq!(consts::<Batch<40>>(), ("batch", Encoding::MessagePack, 1));
    assert_eq!(
        consts::<Tagged<NotSerializable>>(),
        ("tagged", Encoding::MessagePack, 1)
    );
    assert_eq!(
        consts::<Custom<NotSerializable>>(),
        ("custom", Encoding::Json, 1)
    );
    is_event::<Wrapper<Vec<u8>>>();
}

#[test]
fn every_generated_topic_passes_the_runtime_check() {
    for topic in [
        OrderCreated::TOPIC,
        HTTPRequestSent::TOPIC,
        V2Thing::TOPIC,
        Match::TOPIC,
        AllKeys::TOPIC,
        Merged::TOPIC,
        TupleEvent::TOPIC,
        PaymentEvent::TOPIC,
        Wrapper::<u8>::TOPIC,
        Pair::<u8, u8>::TOPIC,
    ] {
        assert_eq!(validate_topic(topic), Ok(()), "{topic:?}");
    }
}

#[test]
fn derived_events_round_trip_through_serde() {
    let event = AllKeys {
        invoice: "INV-1".into(),
    };
    let json = serde_json::to_string(&event).unwrap();
    let back: AllKeys = serde_json::from_str(&json).unwrap();
    assert_eq!(back.invoice, "INV-1");
    let _ = (OrderCreated {
        id: 1,
        total_cents: 2,
    })
    .id;
    let _ = WithTopic { id: 1 }.id;
    let _ = (
        TupleEvent(1, String::new()),
        UnitEvent,
        PaymentEvent::Refunded,
    );
    let _ = PaymentEvent::Authorized { id: 1 };
    let _ = PaymentEvent::Captured(1);
    let _ = Wrapper { inner: 1u8 }.inner;
    let _ = Pair(1u8, 2u8);
    let _ = Batch::<1> { items: [0] }.items;
    let _ = Tagged::<NotSerializable> {
        id: 1,
        marker: PhantomData,
    }
    .id;
    let _ = (
        WithJson { id: 1 }.id,
        WithMsgpack { id: 1 }.id,
        WithVersion { id: 1 }.id,
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(topic = "telemetry.cpu", transient, version = 2)]
struct CpuLoad {
    percent: u8,
}

#[test]
fn transient_is_a_flag_and_persistent_the_default() {
    assert_eq!(CpuLoad::PERSISTENCE, xbus::Persistence::Transient);
    assert_eq!(
        consts::<CpuLoad>(),
        ("telemetry.cpu", Encoding::MessagePack, 2)
    );
    assert_eq!(OrderCreated::PERSISTENCE, xbus::Persistence::Persistent);
}
