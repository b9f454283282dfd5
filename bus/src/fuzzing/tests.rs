//! The seed corpus and every input that once failed, replayed on stable
//! Rust by `cargo test`, plus the regression tests of the bugs fuzzing found.

use std::path::{Path, PathBuf};

use super::*;

/// Every file under `fuzz/<dir>/<target>/`.
fn files(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(dir);
    let mut out = Vec::new();
    let Ok(targets) = std::fs::read_dir(&root) else {
        return out;
    };
    for target in targets {
        let target = target.unwrap().path();
        if target.is_dir() {
            for file in std::fs::read_dir(&target).unwrap() {
                let file = file.unwrap().path();
                if file.is_file() {
                    out.push(file);
                }
            }
        }
    }
    out.sort();
    out
}

/// Runs every seed and regression input through both XML entry points.
#[test]
fn seed_corpus_and_regressions() {
    let seeds = files("seeds");
    assert!(seeds.len() >= 10, "fuzz/seeds is missing: {seeds:?}");
    for file in seeds.iter().chain(&files("regressions")) {
        let data = std::fs::read(file).unwrap();
        let result = std::panic::catch_unwind(|| {
            decode_payload(&data);
            message_to_deliveries(&data);
        });
        assert!(result.is_ok(), "{} fails", file.display());
    }
}

/// The valid seeds really are valid: they reach the decoders.
#[test]
fn valid_seeds_decode() {
    let order = FuzzOrder {
        id: 7,
        sku: "A1".into(),
        blob: vec![0, 255],
        note: Some("fragile".into()),
        status: FuzzStatus::Split(vec![
            FuzzStatus::Open,
            FuzzStatus::Shipped {
                carrier: "dhl".into(),
                parcels: vec![1, 2],
            },
            FuzzStatus::Cancelled(-3),
        ]),
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/payload_decoder");
    for (file, encoding) in [
        ("seed-order-msgpack.xml", Encoding::MessagePack),
        ("seed-order-json.xml", Encoding::Json),
    ] {
        let elem: Element = std::fs::read_to_string(dir.join(file))
            .unwrap()
            .parse()
            .unwrap();
        let raw = RawPayload::from_element(&elem, MAX_PAYLOAD).unwrap();
        match encoding {
            Encoding::Json => assert_eq!(raw.decode::<FuzzOrderJson>().unwrap().0, order),
            _ => assert_eq!(raw.decode::<FuzzOrder>().unwrap(), order),
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/stanza_to_delivery");
    for (file, encoding) in [
        ("seed-notification.xml", Encoding::MessagePack),
        ("seed-direct.xml", Encoding::MessagePack),
        ("seed-direct-json.xml", Encoding::Json),
        ("seed-notification-prefixes.xml", Encoding::Json),
    ] {
        let elem: Element = std::fs::read_to_string(dir.join(file))
            .unwrap()
            .parse()
            .unwrap();
        let mut items = incoming(&Message::try_from(elem).unwrap(), true);
        assert_eq!(items.len(), 1, "{file}");
        let raw = into_raw(items.remove(0)).unwrap();
        let event = match encoding {
            Encoding::Json => raw.decode::<FuzzOrderJson>().unwrap().event.0,
            _ => raw.decode::<FuzzOrder>().unwrap().event,
        };
        assert_eq!(event, order, "{file}");
    }
}

/// Found by `event_round_trip` (fuzz/regressions/event_round_trip/):
/// a header that `validate` accepted made the stanza unserializable.
#[test]
fn validate_refuses_noncharacters() {
    for c in ['\u{FFFE}', '\u{FFFF}'] {
        let value = Headers::from_iter([("k".to_owned(), format!("a{c}"))]);
        assert!(value.validate().is_err(), "value with {c:?} accepted");
        let name = Headers::from_iter([(format!("k{c}"), "v".to_owned())]);
        assert!(name.validate().is_err(), "name with {c:?} accepted");
    }
}

#[test]
fn events_round_trip() {
    let order = FuzzOrder {
        id: u64::MAX,
        sku: "<&'\"]]>\r\n\t".into(),
        blob: (0..=255).collect(),
        note: None,
        status: FuzzStatus::Shipped {
            carrier: " ".into(),
            parcels: vec![],
        },
    };
    let headers = Headers::from_iter([("trace-id", "abc"), ("k", "a\r\nb\tc"), ("bad\u{0}", "x")]);
    round_trip(&order, &headers);
    round_trip(&FuzzOrderJson(order), &Headers::new());
}
