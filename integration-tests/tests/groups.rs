//! Durable consumer groups against every server of the matrix: competing
//! instances, redelivery with backoff, dead letters.
//!
//! The instances here are buses in the test process; `group_crash.rs`
//! kills instance processes, `group_faults.rs` cuts connections and
//! restarts the server.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use xbus::{Bus, ConsumeOptions, Event, dead_letter_headers};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "groups.orders")]
struct Order {
    seq: u64,
}

/// What the instances did: (instance, seq, attempt, when).
type Log = Arc<Mutex<Vec<(String, u64, u32, Instant)>>>;

/// Consumes `group` on `bus` until the stream ends; `fail` decides per
/// event: `None` acks, `Some(true)` naks, `Some(false)` terms.
async fn run_consumer(
    bus: Bus,
    options: ConsumeOptions,
    log: Log,
    fail: fn(u64) -> Option<bool>,
) -> tokio::task::JoinHandle<()> {
    let mut jobs = within("consume", bus.consume::<Order>("billing", options))
        .await
        .expect("consume");
    let name = bus.jid().resource().to_string();
    tokio::spawn(async move {
        while let Some(job) = jobs.next().await {
            let job = job.expect("decodable");
            let seq = job.event.seq;
            log.lock()
                .unwrap()
                .push((name.clone(), seq, job.attempt, Instant::now()));
            let _ = match fail(seq) {
                None => job.ack(),
                Some(true) => job.nak(None),
                Some(false) => job.term("poison"),
            };
        }
    })
}

/// `count` instances of one fresh service account, each consuming the
/// group with `options` and `fail`, logging into one log.
async fn group_of(
    server: &dyn xbus_integration_tests::XmppServer,
    count: usize,
    options: ConsumeOptions,
    fail: fn(u64) -> Option<bool>,
) -> (Vec<Bus>, Log, Vec<tokio::task::JoinHandle<()>>) {
    let (_account, buses) = instances(server, count).await;
    let log: Log = Arc::default();
    let mut tasks = Vec::new();
    for bus in &buses {
        tasks.push(run_consumer(bus.clone(), options.clone(), log.clone(), fail).await);
    }
    (buses, log, tasks)
}

/// Publishes an [`Order`] for each of `seqs`.
async fn publish_orders(publisher: &Bus, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        within("publish", publisher.publish(&Order { seq }))
            .await
            .expect("publish");
    }
}

/// How often each event was handled, and those handled more than once.
fn tally(log: &[(String, u64, u32, Instant)]) -> (HashMap<u64, usize>, Vec<u64>) {
    let mut per_seq: HashMap<u64, usize> = HashMap::new();
    for (_, seq, _, _) in log {
        *per_seq.entry(*seq).or_default() += 1;
    }
    let twice = per_seq
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    (per_seq, twice)
}

/// Waits until `done` holds for the log.
async fn until(what: &str, log: &Log, done: impl Fn(&[(String, u64, u32, Instant)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if done(&log.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}{what}: not within 60 s; log has {} entries",
            tag(),
            log.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_a_group_and_each_event_is_handled_once() {
    matrix(async |kind| {
        let server = start(kind);
        let (instances, log, tasks) = group_of(&*server, 3, ConsumeOptions::new(), |_| None).await;
        let publisher = bus(&*server).await;
        const EVENTS: u64 = 3_000;
        publish_orders(&publisher, 0..EVENTS).await;
        until("every event handled", &log, |l| l.len() as u64 >= EVENTS).await;
        // A little longer: nothing may come twice.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = log.lock().unwrap().clone();
        let mut per_seq: HashMap<u64, usize> = HashMap::new();
        let mut per_instance: HashMap<String, usize> = HashMap::new();
        for (instance, seq, _, _) in &log {
            *per_seq.entry(*seq).or_default() += 1;
            *per_instance.entry(instance.clone()).or_default() += 1;
        }
        eprintln!("{}handled per instance: {per_instance:?}", tag());
        assert_eq!(per_seq.len() as u64, EVENTS, "{}every event", tag());
        assert!(per_seq.values().all(|n| *n == 1), "{}each once", tag());
        assert_eq!(per_instance.len(), 3, "{}every instance got a share", tag());
        let mut acked = 0;
        for bus in &instances {
            acked += within("stats", bus.stats())
                .await
                .expect("stats")
                .group_acked;
        }
        assert_eq!(acked, EVENTS, "{}the leader counted every ack", tag());
        close_all(instances.iter().chain([&publisher]), tasks).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_events_follow_the_backoff_then_go_to_the_dead_letter_topic() {
    matrix(async |kind| {
        let server = start(kind);
        let (_account, instances) = instances(&*server, 2).await;
        let (watcher, mut dead) = watch_raw(&*server, "groups.orders.dead-letter").await;
        let options = ConsumeOptions::new()
            .backoff([Duration::from_millis(300), Duration::from_millis(600)])
            .max_deliver(3);
        let log: Log = Arc::default();
        let fail = |seq| match seq {
            7 => Some(true),
            9 => Some(false),
            _ => None,
        };
        let mut tasks = Vec::new();
        for bus in &instances {
            tasks.push(run_consumer(bus.clone(), options.clone(), log.clone(), fail).await);
        }
        let publisher = bus(&*server).await;
        publish_orders(&publisher, 0..20).await;
        let mut buried = HashMap::new();
        for _ in 0..2 {
            let delivery = next("dead letter", &mut dead).await.expect("decodable");
            let headers = delivery.payload.headers.clone();
            let mut payload = delivery.payload.clone();
            assert_eq!(
                headers.get(dead_letter_headers::TOPIC),
                Some("groups.orders")
            );
            payload.topic = "groups.orders".into();
            let seq: Order = payload.decode().expect("an order");
            buried.insert(
                seq.seq,
                (
                    headers
                        .get(dead_letter_headers::ATTEMPTS)
                        .map(str::to_owned),
                    headers.get(dead_letter_headers::ERROR).map(str::to_owned),
                ),
            );
        }
        eprintln!("{}dead letters: {buried:?}", tag());
        assert_eq!(
            buried[&7].0.as_deref(),
            Some("3"),
            "{}7 after 3 deliveries",
            tag()
        );
        assert_eq!(
            buried[&9].0.as_deref(),
            Some("1"),
            "{}9 termed at once",
            tag()
        );
        assert_eq!(buried[&9].1.as_deref(), Some("poison"));
        until("the other events", &log, |l| {
            l.iter().filter(|e| e.1 != 7 && e.1 != 9).count() >= 18
        })
        .await;
        let log = log.lock().unwrap().clone();
        let sevens: Vec<Instant> = log.iter().filter(|e| e.1 == 7).map(|e| e.3).collect();
        assert_eq!(sevens.len(), 3, "{}7 delivered 3 times", tag());
        let gaps: Vec<Duration> = sevens.windows(2).map(|w| w[1] - w[0]).collect();
        eprintln!("{}gaps between the deliveries of 7: {gaps:?}", tag());
        for (gap, backoff) in gaps.iter().zip([300u64, 600]) {
            let backoff = Duration::from_millis(backoff);
            assert!(
                *gap >= backoff && *gap < backoff + Duration::from_millis(400),
                "{}gap {gap:?} for a backoff of {backoff:?}",
                tag()
            );
        }
        let attempts: Vec<u32> = log.iter().filter(|e| e.1 == 7).map(|e| e.2).collect();
        assert_eq!(attempts, vec![1, 2, 3]);
        let mut dead_lettered = 0;
        for bus in &instances {
            dead_lettered += within("stats", bus.stats())
                .await
                .expect("stats")
                .group_dead_lettered;
        }
        assert_eq!(dead_lettered, 2);
        close_all(instances.iter().chain([&publisher, &watcher]), tasks).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_continues_where_it_stood_after_every_instance_stopped() {
    matrix(async |kind| {
        let server = start(kind);
        let account = server.account().expect("register account");
        let publisher = bus(&*server).await;
        let log: Log = Arc::default();
        // First life: one instance handles 100 events, then closes.
        let first = instance(&*server, &account, "first").await;
        let task = run_consumer(first.clone(), ConsumeOptions::new(), log.clone(), |_| None).await;
        publish_orders(&publisher, 0..100).await;
        until("the first 100", &log, |l| l.len() >= 100).await;
        within("close first", first.close()).await.expect("close");
        let _ = within("first consumer ends", task).await;
        // While the group is down: 500 more.
        publish_orders(&publisher, 100..600).await;
        // Second life, another host: exactly the 500 it missed.
        let second = instance(&*server, &account, "second").await;
        let task = run_consumer(second.clone(), ConsumeOptions::new(), log.clone(), |_| None).await;
        until("the 500 published while down", &log, |l| l.len() >= 600).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = log.lock().unwrap().clone();
        let (per_seq, twice) = tally(&log);
        eprintln!("{}handled: {}, twice: {twice:?}", tag(), log.len());
        assert_eq!(per_seq.len(), 600, "{}every event", tag());
        assert!(twice.is_empty(), "{}none twice: {twice:?}", tag());
        let second_got = log.iter().filter(|e| e.0 == "second").count();
        assert_eq!(
            second_got,
            500,
            "{}the second life got what was published while down",
            tag()
        );
        for bus in [&second, &publisher] {
            within("close", bus.close()).await.expect("close");
        }
        let _ = within("second consumer ends", task).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_closes_another_instance_takes_over() {
    matrix(async |kind| {
        let server = start(kind);
        let (instances, log, tasks) = group_of(&*server, 2, ConsumeOptions::new(), |_| None).await;
        let publisher = bus(&*server).await;
        publish_orders(&publisher, 0..100).await;
        until("the first 100", &log, |l| l.len() >= 100).await;
        // i1 (the lowest JID) leads; it closes.
        within("close the leader", instances[0].close())
            .await
            .expect("close");
        publish_orders(&publisher, 100..200).await;
        until("the next 100", &log, |l| {
            l.iter().filter(|e| e.1 >= 100).count() >= 100
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = log.lock().unwrap().clone();
        let (per_seq, twice) = tally(&log);
        eprintln!("{}handled: {}, twice: {twice:?}", tag(), log.len());
        assert_eq!(per_seq.len(), 200, "{}every event", tag());
        assert!(twice.is_empty(), "{}none twice: {twice:?}", tag());
        assert!(
            log.iter().filter(|e| e.1 >= 100).all(|e| e.0 == "i2"),
            "{}after the close, i2 handles everything",
            tag()
        );
        close_all([&instances[1], &publisher], tasks).await;
    })
    .await;
}

/// A bus of `account`/`resource` whose topics keep `max_items` events.
async fn small_bus(
    server: &dyn xbus_integration_tests::XmppServer,
    account: &xbus_integration_tests::Account,
    resource: &str,
    max_items: u32,
) -> Bus {
    let config = xbus::BusConfig::builder(
        format!("{}/{resource}", account.jid),
        account.password.clone(),
    )
    .server(server.addr().to_string())
    .allow_plaintext()
    .max_items(max_items)
    .build()
    .expect("valid config");
    within("connect", Bus::connect(config))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_behind_by_more_than_the_topic_keeps_is_told_what_it_lost() {
    matrix(async |kind| {
        let server = start(kind);
        let account = server.account().expect("register account");
        let publisher_account = server.account().expect("register account");
        // The group's first instance creates the topic, keeping 20 events.
        let first = small_bus(&*server, &account, "first", 20).await;
        let mut jobs = within(
            "consume",
            first.consume::<Order>("billing", ConsumeOptions::new()),
        )
        .await
        .expect("consume");
        let publisher = small_bus(&*server, &publisher_account, "p", 20).await;
        publish_orders(&publisher, 0..5).await;
        for _ in 0..5 {
            let job = next("job", &mut jobs).await.expect("a job");
            job.ack().expect("ack");
        }
        // Let the progress be saved, then the whole group stops.
        tokio::time::sleep(Duration::from_millis(400)).await;
        within("close first", first.close()).await.expect("close");
        drop(jobs);
        // 50 more while it is down: the topic keeps the last 20 only.
        publish_orders(&publisher, 5..55).await;
        let second = small_bus(&*server, &account, "second", 20).await;
        let mut jobs = within(
            "consume",
            second.consume::<Order>("billing", ConsumeOptions::new()),
        )
        .await
        .expect("consume");
        let mut lost = None;
        let mut handled = Vec::new();
        while handled.len() < 20 {
            match next("job or notice", &mut jobs).await {
                Ok(job) => {
                    handled.push(job.event.seq);
                    job.ack().expect("ack");
                }
                Err(xbus::GroupError::Lost {
                    last_known,
                    oldest_stored,
                    ..
                }) => lost = Some((last_known, oldest_stored)),
                other => panic!("{}unexpected {other:?}", tag()),
            }
        }
        eprintln!("{}lost: {lost:?}; then handled {handled:?}", tag());
        let (last_known, oldest_stored) = lost.expect("the loss was reported");
        assert!(!last_known.is_empty());
        assert!(oldest_stored.is_some());
        assert_eq!(
            handled,
            (35..55).collect::<Vec<u64>>(),
            "{}the 20 still stored",
            tag()
        );
        let stats = within("stats", second.stats()).await.expect("stats");
        assert_eq!(stats.group_losses, 1);
        for bus in [&second, &publisher] {
            within("close", bus.close()).await.expect("close");
        }
    })
    .await;
}

/// One delivery in the ack-wait test: (instance, seq, attempt, when), and
/// the answer its settlement got.
type Held = Arc<Mutex<Vec<(String, u64, u32, Instant, Result<(), xbus::AckError>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_past_the_ack_wait_goes_to_another_instance_unless_in_progress() {
    const ACK_WAIT: Duration = Duration::from_secs(1);
    const HOLD: Duration = Duration::from_millis(2_500);
    matrix(async |kind| {
        let server = start(kind);
        let (_account, buses) = instances(&*server, 2).await;
        let options = ConsumeOptions::new()
            .ack_wait(ACK_WAIT)
            .backoff(std::iter::empty());
        let held: Held = Arc::default();
        let mut tasks = Vec::new();
        for bus in &buses {
            let mut jobs = within("consume", bus.consume::<Order>("billing", options.clone()))
                .await
                .expect("consume");
            let name = bus.jid().resource().to_string();
            let held = held.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(job) = jobs.next().await {
                    let mut job = job.expect("decodable");
                    let (name, held) = (name.clone(), held.clone());
                    // Each job on its own task: a held job blocks nothing.
                    tokio::spawn(async move {
                        let (seq, attempt, at) = (job.event.seq, job.attempt, Instant::now());
                        // 0 is held past the ack wait on its first delivery;
                        // 1 is held as long, saying in_progress() meanwhile.
                        if seq == 0 && attempt == 1 {
                            tokio::time::sleep(HOLD).await;
                        } else if seq == 1 {
                            let until = at + HOLD;
                            while Instant::now() < until {
                                tokio::time::sleep(ACK_WAIT / 3).await;
                                job.in_progress().expect("in time");
                            }
                        }
                        let answer = job.ack();
                        held.lock().unwrap().push((name, seq, attempt, at, answer));
                    });
                }
            }));
        }
        let publisher = bus(&*server).await;
        publish_orders(&publisher, 0..10).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while held.lock().unwrap().len() < 11 {
            assert!(Instant::now() < deadline, "{}not all settled", tag());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let held = std::mem::take(&mut *held.lock().unwrap());
        for (name, seq, attempt, _, answer) in &held {
            eprintln!("{}{name} seq {seq} attempt {attempt}: {answer:?}", tag());
        }
        let of = |seq| -> Vec<_> { held.iter().filter(|h| h.1 == seq).collect() };
        let stuck = of(0);
        assert_eq!(stuck.len(), 2, "{}0 delivered twice", tag());
        let (first, second) = if stuck[0].2 == 1 {
            (stuck[0], stuck[1])
        } else {
            (stuck[1], stuck[0])
        };
        assert_ne!(first.0, second.0, "{}the second went elsewhere", tag());
        let moved_after = second.3 - first.3;
        assert!(
            moved_after >= ACK_WAIT && moved_after < ACK_WAIT + Duration::from_millis(600),
            "{}moved {moved_after:?} after the first delivery",
            tag()
        );
        assert!(
            matches!(first.4, Err(xbus::AckError::Late { .. })),
            "{}the late ack says so: {:?}",
            tag(),
            first.4
        );
        assert_eq!(second.4, Ok(()));
        let kept = of(1);
        assert_eq!(kept.len(), 1, "{}in_progress() kept 1 where it was", tag());
        assert_eq!(kept[0].4, Ok(()), "{}and its ack was in time", tag());
        for seq in 2..10 {
            assert_eq!(of(seq).len(), 1, "{}{seq} once", tag());
        }
        close_all(buses.iter().chain([&publisher]), tasks).await;
    })
    .await;
}
