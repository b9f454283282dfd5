//! A publishing run for the fault tests (`faults.rs`, `cluster.rs`):
//! 10,000 numbered events published at full speed, what the subscriber
//! got, and the tally of lost and duplicated events.
// Not every test that includes this file uses every item.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use xbus::{Bus, Event, PublishError, Subscription};

/// Events per run.
pub const EVENTS: u32 = 10_000;
/// Publishes in flight at once: "at full speed" within the outbox.
pub const IN_FLIGHT: usize = 512;

/// One event of a run.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "faults.seq")]
pub struct Numbered {
    /// The event's number in the run.
    pub n: u32,
    /// Some text, so that events have a realistic size.
    pub note: String,
}

/// What a publishing run ended with.
pub struct Published {
    /// The events whose publish returned `Ok`.
    pub ok: Vec<u32>,
    /// The failed publishes, counted by error variant.
    pub errors: HashMap<String, usize>,
}

/// Publishes `0..EVENTS` with `IN_FLIGHT` at once, counting confirmations
/// in `confirmed` as they come.
pub fn publish_all(bus: &Bus, confirmed: Arc<AtomicUsize>) -> tokio::task::JoinHandle<Published> {
    let bus = bus.clone();
    tokio::spawn(async move {
        let results: Vec<(u32, Result<(), PublishError>)> = futures::stream::iter(0..EVENTS)
            .map(|n| {
                let bus = bus.clone();
                let confirmed = confirmed.clone();
                async move {
                    let event = Numbered {
                        n,
                        note: format!("event number {n} of the fault run"),
                    };
                    let result = bus.publish(&event).await.map(|_| ());
                    if result.is_ok() {
                        confirmed.fetch_add(1, Ordering::SeqCst);
                    }
                    (n, result)
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut published = Published {
            ok: Vec::new(),
            errors: HashMap::new(),
        };
        for (n, result) in results {
            match result {
                Ok(()) => published.ok.push(n),
                Err(error) => {
                    let kind = format!("{error:?}");
                    let kind = kind.split([' ', '{', '(']).next().unwrap_or("?").to_owned();
                    *published.errors.entry(kind).or_default() += 1;
                }
            }
        }
        published
    })
}

/// Everything the subscription delivered, as it comes.
pub fn collect(mut subscription: Subscription<Numbered>) -> Arc<std::sync::Mutex<Vec<u32>>> {
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Some(delivery) = subscription.next().await {
            let n = delivery.expect("only good events are published").event.n;
            sink.lock().unwrap().push(n);
        }
    });
    got
}

/// The outcome compared: lost (confirmed, never delivered) and duplicated.
pub struct Tally {
    /// Confirmed, never delivered.
    pub lost: Vec<u32>,
    /// Delivered more than once.
    pub duplicated: Vec<u32>,
    /// How many distinct events were delivered.
    pub delivered: usize,
}

pub fn tally(ok: &[u32], got: &[u32]) -> Tally {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for n in got {
        *counts.entry(*n).or_default() += 1;
    }
    let mut lost: Vec<u32> = ok
        .iter()
        .copied()
        .filter(|n| !counts.contains_key(n))
        .collect();
    lost.sort_unstable();
    let mut duplicated: Vec<u32> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    duplicated.sort_unstable();
    Tally {
        lost,
        duplicated,
        delivered: counts.len(),
    }
}

/// Waits until every id in `ok` was delivered, or `deadline`.
pub async fn wait_for_all(
    ok: &[u32],
    got: &std::sync::Mutex<Vec<u32>>,
    deadline: Instant,
) -> Instant {
    loop {
        if tally(ok, &got.lock().unwrap()).lost.is_empty() || Instant::now() >= deadline {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `subscriber`'s subscription to the run's topic, collected as it comes
/// (see [`collect`]).
pub async fn subscribe_all(subscriber: &Bus) -> Arc<std::sync::Mutex<Vec<u32>>> {
    let subscription =
        tokio::time::timeout(Duration::from_secs(10), subscriber.subscribe::<Numbered>())
            .await
            .expect("subscribe within 10 s")
            .expect("subscribe");
    collect(subscription)
}

/// A run under way: its publishing task, how many are confirmed so far,
/// and when it started.
pub struct Run {
    /// The publishing task ([`publish_all`]).
    pub publishing: tokio::task::JoinHandle<Published>,
    /// Confirmed publishes so far.
    pub confirmed: Arc<AtomicUsize>,
    /// When publishing started.
    pub started: Instant,
}

/// Starts a run from `publisher` and returns once a quarter of it is
/// confirmed (at most 120 s): the moment the fault tests strike.
pub async fn run_to_a_quarter(publisher: &Bus) -> Run {
    let confirmed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let publishing = publish_all(publisher, confirmed.clone());
    let quarter = async {
        while confirmed.load(Ordering::SeqCst) < EVENTS as usize / 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(120), quarter)
        .await
        .is_err()
    {
        panic!(
            "only {} confirmed after 120 s",
            confirmed.load(Ordering::SeqCst)
        );
    }
    Run {
        publishing,
        confirmed,
        started,
    }
}

/// How a run ended (see [`end_run`]).
pub struct Ended {
    /// What the publisher was told.
    pub published: Published,
    /// When the last publish returned.
    pub published_at: Instant,
    /// When the subscriber had every confirmed event, or gave up waiting.
    pub complete: Instant,
    /// Until when it was waited for.
    pub deadline: Instant,
    /// Lost and duplicated events.
    pub tally: Tally,
}

/// Waits for `publishing` to end (at most 300 s), then up to 30 s more for
/// `got` to hold every confirmed event.
pub async fn end_run(
    publishing: tokio::task::JoinHandle<Published>,
    got: &std::sync::Mutex<Vec<u32>>,
) -> Ended {
    let published = tokio::time::timeout(Duration::from_secs(300), publishing)
        .await
        .expect("publishing ends")
        .unwrap();
    let published_at = Instant::now();
    let deadline = published_at + Duration::from_secs(30);
    let complete = wait_for_all(&published.ok, got, deadline).await;
    let tally = tally(&published.ok, &got.lock().unwrap());
    Ended {
        published,
        published_at,
        complete,
        deadline,
        tally,
    }
}
