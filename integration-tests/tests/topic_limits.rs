//! A topic the server keeps shorter than the bus asks for is reported:
//! Prosody refuses a node asking for more than `pubsub_max_items`
//! (`bad-request`) and its autocreate then makes the node on the first
//! publish keeping 20 events, which it logs only at DEBUG; the embedded
//! server refuses the configuration (`not-acceptable`). The bus warns with
//! the setting to change. This test binary reads the warnings through a
//! subscriber of its own.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{config, matrix, within};
use serde::{Deserialize, Serialize};
use xbus::{Bus, Event};

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "limits.orders")]
struct Order {
    id: u64,
}

/// Above the harness's caps on the embedded server and Prosody (10,000),
/// under ejabberd's (`max_items_node` 100,000).
const ASKED: u32 = 20_000;

/// Every WARN line the bus logs in this test binary.
fn warnings() -> &'static Arc<Mutex<Vec<u8>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        lines
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_topic_kept_shorter_than_asked_is_reported_with_the_setting() {
    let lines = warnings();
    matrix(async |kind| {
        lines.lock().unwrap().clear();
        let server = common::start(kind);
        let account = server.account().unwrap();
        let config = config(&server, &account).max_items(ASKED).build().unwrap();
        let bus = within("connect", Bus::connect(config)).await.unwrap();
        within("publish", bus.publish(&Order { id: 1 }))
            .await
            .unwrap();
        within("close", bus.close()).await.unwrap();
        let text = String::from_utf8_lossy(&lines.lock().unwrap()).into_owned();
        let about: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("\"limits.orders\""))
            .collect();
        eprintln!("{}{about:#?}", common::tag());
        match kind {
            kind if kind.is_ejabberd() => assert!(about.is_empty(), "{about:?}"),
            _ => {
                let expected = "refused to create topic";
                let line = about
                    .iter()
                    .find(|l| l.contains(expected))
                    .unwrap_or_else(|| panic!("no {expected:?} warning in {text}"));
                assert!(line.contains(&ASKED.to_string()), "{line}");
                assert!(line.contains("`pubsub_max_items`"), "{line}");
                assert!(line.contains("docs/SERVERS.md"), "{line}");
            }
        }
    })
    .await;
}
