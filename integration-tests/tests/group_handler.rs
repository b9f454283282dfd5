//! The handler form of a consumer group (`Consumer::handle`): `Ok` acks,
//! `Err` and panics nak, on every server of the matrix.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde::{Deserialize, Serialize};
use xbus::{ConsumeOptions, Event, dead_letter_headers};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "handler.orders")]
struct Order {
    seq: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_acks_on_ok_and_naks_on_err_or_panic() {
    matrix(async |kind| {
        let server = start(kind);
        let (_account, instances) = instances(&*server, 2).await;
        let (watcher, mut dead) = watch_raw(&*server, "handler.orders.dead-letter").await;
        let options = ConsumeOptions::new()
            .backoff([Duration::from_millis(100)])
            .max_deliver(2);
        let calls: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
        let mut tasks = Vec::new();
        for bus in &instances {
            let consumer = within("consume", bus.consume::<Order>("billing", options.clone()))
                .await
                .expect("consume");
            let calls = calls.clone();
            tasks.push(tokio::spawn(consumer.handle(move |order, meta| {
                *calls.lock().unwrap().entry(order.seq).or_default() += 1;
                assert!(meta.attempt >= 1);
                async move {
                    match order.seq {
                        3 => Err(format!("order {} is broken", order.seq)),
                        5 => panic!("handler bug on order 5"),
                        _ => Ok(()),
                    }
                }
            })));
        }
        let publisher = bus(&*server).await;
        for seq in 0..10 {
            within("publish", publisher.publish(&Order { seq }))
                .await
                .expect("publish");
        }
        let mut errors = HashMap::new();
        for _ in 0..2 {
            let delivery = next("dead letter", &mut dead).await.expect("decodable");
            let headers = &delivery.payload.headers;
            let error = headers.get(dead_letter_headers::ERROR).unwrap_or_default();
            let attempts = headers
                .get(dead_letter_headers::ATTEMPTS)
                .unwrap_or_default();
            errors.insert(error.to_owned(), attempts.to_owned());
        }
        eprintln!("{}dead letters: {errors:?}", tag());
        assert_eq!(
            errors.get("order 3 is broken").map(String::as_str),
            Some("2"),
            "{}the Err's text, after 2 deliveries",
            tag()
        );
        assert_eq!(
            errors
                .get("the handler panicked: handler bug on order 5")
                .map(String::as_str),
            Some("2"),
            "{}the panic's text",
            tag()
        );
        within("every other order once", async {
            while (0..10)
                .filter(|s| *s != 3 && *s != 5)
                .any(|s| calls.lock().unwrap().get(&s) != Some(&1))
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        for bus in instances.iter().chain([&publisher, &watcher]) {
            within("close", bus.close()).await.expect("close");
        }
        for task in tasks {
            within("handler ends", task).await.expect("handle returns");
        }
    })
    .await;
}
