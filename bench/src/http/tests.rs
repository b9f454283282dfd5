//! Tests of the HTTP systems: in-process servers, real sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::timeout;

use super::*;
use crate::system::{EventSystem, Publisher};

const STEP: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, future: impl Future<Output = anyhow::Result<T>>) -> T {
    match timeout(STEP, future).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what}: {error:#}"),
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

#[test]
fn topics_are_one_path_segment() {
    assert_eq!(path_segment("bench.events"), "bench.events");
    assert_eq!(path_segment("a/b c?"), "a%2Fb%20c%3F");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_echoes_sequential_and_sixteen_concurrent() {
    let system = bounded("start", HttpRpc::start()).await;
    assert_eq!(system.name(), "http");
    let _responder = bounded("responder", system.responder()).await;
    let caller: Arc<dyn Caller> = Arc::from(bounded("caller", system.caller()).await);
    for seq in 0..100 {
        let request = BenchEvent::new(seq);
        assert_eq!(bounded("call", caller.call(&request)).await, request);
    }
    let tasks: Vec<_> = (0..16u64)
        .map(|worker| {
            let caller = Arc::clone(&caller);
            tokio::spawn(async move {
                for i in 0..20 {
                    let request = BenchEvent::new(worker * 1000 + i);
                    assert_eq!(bounded("call", caller.call(&request)).await, request);
                }
            })
        })
        .collect();
    for task in tasks {
        timeout(STEP * 3, task)
            .await
            .expect("16 concurrent callers finish")
            .expect("caller task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_refused() {
    let rpc = bounded("start", HttpRpc::start()).await;
    let polling = bounded("start", Polling::start(Duration::from_millis(100))).await;
    let client = http_client().expect("client");
    for url in [
        format!("http://{}{ECHO_PATH}", rpc.addr()),
        format!("http://{}/topics/t/events", polling.addr()),
    ] {
        let response = timeout(
            STEP,
            client
                .post(&url)
                .header("content-type", "application/json")
                .body("{not json")
                .send(),
        )
        .await
        .expect("answer in time")
        .expect("answer");
        assert!(
            response.status().is_client_error(),
            "{url}: {}",
            response.status()
        );
    }
    let url = format!("http://{}/topics/t/events?after=x", polling.addr());
    let response = timeout(STEP, client.get(&url).send())
        .await
        .expect("answer in time")
        .expect("answer");
    assert!(response.status().is_client_error(), "{}", response.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_100ms_gets_300_events_in_order_and_polls_10_times_a_second() {
    let system = bounded("start", Polling::start(Duration::from_millis(100))).await;
    assert_eq!(system.name(), "poll-100ms");
    assert_eq!(system.interval(), Duration::from_millis(100));
    let publisher = bounded("publisher", system.publisher()).await;
    // Published before the subscriber exists: not delivered.
    bounded(
        "publish",
        publisher.publish("bench.poll", &BenchEvent::new(999)),
    )
    .await;
    let mut subscriber = bounded("subscriber", system.subscriber("bench.poll")).await;
    for seq in 0..300 {
        bounded(
            "publish",
            publisher.publish("bench.poll", &BenchEvent::new(seq)),
        )
        .await;
    }
    for seq in 0..300 {
        assert_eq!(bounded("next", subscriber.next()).await.seq, seq);
    }

    // Idle: about 10 requests a second.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = system.requests();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = system.requests() - before;
    assert!((17..=23).contains(&idle), "{idle} requests in 2 s");

    // The idle client polls through the address it is given.
    let idle_client = bounded(
        "idle client",
        system.idle_client(system.addr(), "bench.poll"),
    )
    .await;
    let before = system.requests();
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let with_idle = system.requests() - before;
    assert!(
        (17..=24).contains(&with_idle),
        "{with_idle} requests in 1 s by 2 pollers"
    );
    drop(idle_client);
    drop(subscriber);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = system.requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(system.requests(), before, "dropped pollers stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_that_fell_behind_catches_up_without_waiting_per_page() {
    let system = bounded("start", Polling::start(Duration::from_secs(1))).await;
    assert_eq!(system.name(), "poll-1s");
    let mut subscriber = bounded("subscriber", system.subscriber("bench.burst")).await;
    let publisher: Arc<dyn Publisher> = Arc::from(bounded("publisher", system.publisher()).await);
    let tasks: Vec<_> = (0..4u64)
        .map(|worker| {
            let publisher = Arc::clone(&publisher);
            tokio::spawn(async move {
                for i in 0..1250 {
                    let event = BenchEvent::new(worker * 10_000 + i);
                    bounded("publish", publisher.publish("bench.burst", &event)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        timeout(STEP * 3, task)
            .await
            .expect("published")
            .expect("task");
    }
    let started = Instant::now();
    let mut next = [0u64; 4];
    for _ in 0..5000 {
        let seq = bounded("next", subscriber.next()).await.seq;
        let worker = usize::try_from(seq / 10_000).expect("worker");
        assert_eq!(seq % 10_000, next[worker], "each publisher's order kept");
        next[worker] += 1;
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
