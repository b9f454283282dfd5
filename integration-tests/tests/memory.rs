//! A subscriber that never reads costs a bounded amount of memory, under
//! both buffer policies: 100,000 events are published while two
//! subscriptions (drop-oldest and back-pressure) read nothing, and the
//! process's resident memory must not grow with the number of events.
//!
//! The embedded server runs inside the test process, where the events it
//! holds for the stalled subscriber would count too, and 100,000 publishes
//! take minutes: the test runs on the first external server of the matrix
//! (Prosody by default) and says so for the others.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{ServerKind, config, init_tracing, matrix, start, within};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use xbus::{BufferPolicy, Bus, Event, SubscribeOptions};

const EVENTS: usize = 100_000;
const CAPACITY: usize = 1024;
/// 100,000 events of this size held in memory would be about 50 MiB of
/// payload alone, well over the bound below.
const PAYLOAD: usize = 512;
/// Allowed growth of resident memory over the run.
const BOUND_MIB: f64 = 40.0;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "memory.blob")]
struct Blob {
    n: u32,
    /// Small numbers: one byte each in MessagePack.
    data: Vec<u8>,
}

/// This process's resident set size, in MiB (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib / 1024.0
}

async fn subscriber(
    server: &dyn common::XmppServer,
    policy: BufferPolicy,
) -> (Bus, xbus::Subscription<Blob>) {
    let account = server.account().unwrap();
    let bus = within(
        "connect",
        Bus::connect(config(server, &account).build().unwrap()),
    )
    .await
    .unwrap();
    let options = SubscribeOptions::new()
        .buffer_policy(policy)
        .capacity(CAPACITY);
    let subscription = within("subscribe", bus.subscribe_with::<Blob>(options))
        .await
        .unwrap();
    (bus, subscription)
}

#[tokio::test]
async fn subscribers_that_never_read_stay_bounded_over_100_000_events() {
    matrix(async |kind| {
        init_tracing();
        // The embedded server runs in this process, where what it holds for
        // the stalled subscriber would count too; and one external server is
        // enough (100,000 publishes take minutes): the first in the list.
        let external = common::servers()
            .into_iter()
            .find(|k| *k != ServerKind::Embedded);
        if Some(kind) != external {
            eprintln!("[{kind}] the memory test runs on {external:?} only (the first external server of the matrix)");
            return;
        }        let server = start(kind);
        let publisher = common::bus(&server).await;
        let (_dropping_bus, dropping) = subscriber(&server, BufferPolicy::DropOldest).await;
        let (_stalled_bus, stalled) = subscriber(&server, BufferPolicy::BackPressure).await;
        let data = vec![7u8; PAYLOAD];
        // Warm up: buffers, pools and the allocator reach their working size.
        for n in 0..(2 * CAPACITY) as u32 {
            within("publish", publisher.publish(&Blob { n, data: data.clone() }))
                .await
                .unwrap();
        }
        let before = rss_mib();
        let started = Instant::now();
        let confirmed = Arc::new(AtomicUsize::new(0));
        futures::stream::iter(0..EVENTS as u32)
            .map(|n| {
                let publisher = publisher.clone();
                let data = data.clone();
                let confirmed = confirmed.clone();
                async move {
                    within("publish", publisher.publish(&Blob { n, data }))
                        .await
                        .unwrap();
                    confirmed.fetch_add(1, Ordering::Relaxed);
                }
            })
            .buffer_unordered(256)
            .collect::<Vec<()>>()
            .await;
        let published = started.elapsed();
        let total = (EVENTS + 2 * CAPACITY) as u64;
        let arrived = async {
            while dropping.dropped() + (dropping.queued() as u64) < total {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(120), arrived)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "[{kind}] the drop-oldest subscriber saw {} of {total}",
                    dropping.dropped() + dropping.queued() as u64
                )
            });
        let after = rss_mib();
        eprintln!(
            "[{kind}] memory: {EVENTS} events of {PAYLOAD} B published in {:.1} s; \
             drop-oldest: {} queued, {} dropped; back-pressure: {} queued, {} dropped; \
             resident memory {before:.1} MiB -> {after:.1} MiB (+{:.1} MiB, bound {BOUND_MIB} MiB)",
            published.as_secs_f64(),
            dropping.queued(),
            dropping.dropped(),
            stalled.queued(),
            stalled.dropped(),
            after - before,
        );
        assert_eq!(dropping.queued(), CAPACITY);
        assert_eq!(dropping.dropped(), total - CAPACITY as u64);
        assert_eq!(stalled.queued(), CAPACITY, "back-pressure holds a full buffer");
        assert_eq!(stalled.dropped(), 0, "back-pressure drops nothing");
        assert!(
            after - before < BOUND_MIB,
            "[{kind}] resident memory grew by {:.1} MiB",
            after - before
        );
        // The newest events are the ones kept (publishes overlap by up to
        // 256, so their order on the server is nearly that of `n`).
        let mut dropping = dropping;
        let first_kept = within("first kept", dropping.next()).await.unwrap().unwrap();
        assert!(first_kept.event.n as usize >= EVENTS - CAPACITY - 256, "{}", first_kept.event.n);
    })
    .await;
}
