//! Metrics through the `metrics` facade (feature `metrics`), against every
//! server of the matrix: after a real publish and delivery, send, calls
//! (answered, failed, refused, in flight), a buffer overflow, a session
//! reset and a consumer group's redelivery and dead letter, a
//! `DebuggingRecorder` reads what xbus reported, with the names and labels
//! of `docs/OBSERVABILITY.md`.
//!
//! The recorder is local to the test thread: the test runs on a
//! current-thread runtime, so the buses' tasks record on this thread too,
//! and no other test can add to it.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bus, bus_with_status, matrix, next, start, steal_session, within};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde::{Deserialize, Serialize};
use xbus::{
    BufferPolicy, ConsumeOptions, Context, Event, Request, RequestError, RpcError, SubscribeOptions,
};

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "metrics.ping")]
struct Ping {
    n: u32,
}

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "metrics.burst")]
struct Burst {
    n: u32,
}

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "metrics.work")]
struct Work {
    n: u32,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "metrics.echo", response = u32)]
struct Echo {
    n: u32,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "metrics.absent", response = ())]
struct Absent;

/// Everything recorded so far, summed over snapshots (a snapshot resets
/// counters and gauges, and drains histograms).
#[derive(Default)]
struct Seen {
    /// `name{label=value,...}` (labels sorted) → counter or gauge sum.
    sums: HashMap<String, f64>,
    /// Same keys → histogram values.
    values: HashMap<String, Vec<f64>>,
}

impl Seen {
    fn absorb(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.sums.entry(name).or_default() += n as f64,
                DebugValue::Gauge(g) => *self.sums.entry(name).or_default() += g.into_inner(),
                DebugValue::Histogram(xs) => self
                    .values
                    .entry(name)
                    .or_default()
                    .extend(xs.into_iter().map(|x| x.into_inner())),
            }
        }
    }

    fn matching<'a, T>(
        map: &'a HashMap<String, T>,
        name: &'a str,
        labels: &'a [&str],
    ) -> impl Iterator<Item = (&'a String, &'a T)> {
        map.iter().filter(move |(key, _)| {
            key.starts_with(&format!("{name}{{"))
                && labels.iter().all(|l| {
                    key[name.len() + 1..key.len() - 1]
                        .split(',')
                        .any(|have| have == *l)
                })
        })
    }

    /// The sum of counter or gauge `name` over the series with `labels`.
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        Self::matching(&self.sums, name, labels)
            .map(|(_, v)| v)
            .sum()
    }

    /// The values of histogram `name` over the series with `labels`.
    fn values(&self, name: &str, labels: &[&str]) -> Vec<f64> {
        Self::matching(&self.values, name, labels)
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    }

    /// Absorbs snapshots until `done` holds, within a step.
    async fn until(&mut self, snapshotter: &Snapshotter, what: &str, done: impl Fn(&Seen) -> bool) {
        within(what, async {
            loop {
                self.absorb(snapshotter);
                if done(self) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}

const PUBLISH: [&str; 3] = [
    "messaging.system=xmpp",
    "messaging.operation.name=publish",
    "messaging.destination.name=metrics.ping",
];
const ECHO: &str = "rpc.method=metrics.echo";

#[tokio::test]
async fn metrics_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = Arc::new(recorder.snapshotter());
    let _local = metrics::set_default_local_recorder(&recorder);
    matrix(async |kind| {
        let server = start(kind);
        let mut seen = Seen::default();
        seen.absorb(&snapshotter); // forget the previous server's
        seen = Seen::default();
        let publisher = bus(&*server).await;
        let subscriber = bus(&*server).await;
        let instance = bus(&*server).await;
        // The handler reads the in-flight gauges while it runs.
        let during: Arc<Mutex<Seen>> = Arc::default();
        let (probe, inside) = (snapshotter.clone(), during.clone());
        within(
            "serve",
            instance.serve(move |req: Echo, _ctx: Context| {
                let (probe, inside) = (probe.clone(), inside.clone());
                async move {
                    match req.n {
                        0 => Err(RpcError::new("zero", "no zeros")),
                        99 => {
                            inside.lock().unwrap().absorb(&probe);
                            Ok(99)
                        }
                        n => Ok(n),
                    }
                }
            }),
        )
        .await
        .expect("serve");

        // Publish, delivery, send.
        let mut pings = within("subscribe", subscriber.subscribe::<Ping>())
            .await
            .expect("subscribe");
        within("publish", publisher.publish(&Ping { n: 1 }))
            .await
            .expect("publish");
        next("delivery", &mut pings).await.expect("decodes");
        let mut inbox = within("inbox", subscriber.inbox::<Ping>())
            .await
            .expect("inbox");
        within("send", publisher.send(&subscriber.jid().to_string(), &Ping { n: 2 }))
            .await
            .expect("send");
        next("inbox delivery", &mut inbox).await.expect("decodes");

        // Calls: answered, failed by the handler, refused by the bus.
        let to = instance.jid().to_string();
        assert_eq!(within("call", publisher.request(&to, Echo { n: 5 })).await.unwrap(), 5);
        let failed = within("failing call", publisher.request(&to, Echo { n: 0 })).await;
        assert!(matches!(failed, Err(RequestError::Remote { .. })), "{failed:?}");
        let refused = within("refused call", publisher.request(&to, Absent)).await;
        assert!(matches!(refused, Err(RequestError::UnknownMethod { .. })), "{refused:?}");

        // A DropOldest buffer of one, three events: drops.
        let burst = within(
            "subscribe burst",
            subscriber.subscribe_with::<Burst>(
                SubscribeOptions::new()
                    .capacity(1)
                    .buffer_policy(BufferPolicy::DropOldest),
            ),
        )
        .await
        .expect("subscribe");
        for n in 0..3 {
            within("publish burst", publisher.publish(&Burst { n }))
                .await
                .expect("publish");
        }
        within("a drop", async {
            while burst.dropped() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;

        // A group event nak'ed twice: one redelivery, one dead letter.
        let mut jobs = within(
            "consume",
            subscriber.consume::<Work>(
                "workers",
                ConsumeOptions::new()
                    .max_deliver(2)
                    .backoff([Duration::from_millis(50)]),
            ),
        )
        .await
        .expect("consume");
        within("publish work", publisher.publish(&Work { n: 1 }))
            .await
            .expect("publish");
        for _ in 0..2 {
            let job = next("job", &mut jobs).await.expect("decodes");
            job.nak(None).expect("nak");
        }

        // A session reset.
        let account = server.account().expect("account");
        let (victim, mut status) = bus_with_status(&*server, &account).await;
        steal_session(&*server, &account, &victim, &mut status).await;

        seen.until(&snapshotter, "the dead letter and the reset", |s| {
            s.sum("xbus.group.dead_letters", &["messaging.consumer.group.name=workers"]) >= 1.0
                && s.sum("xbus.connection.session_resets", &[]) >= 1.0
        })
        .await;
        let tag = common::tag();
        let check = |what: &str, ok: bool| assert!(ok, "{tag}{what}");
        check(
            "the reconnect attempt before the reset",
            seen.sum("xbus.connection.reconnect_attempts", &[]) >= 1.0,
        );
        check(
            "one publish sent",
            seen.sum("messaging.client.sent.messages", &PUBLISH) == 1.0,
        );
        let confirms = seen.values("messaging.client.operation.duration", &PUBLISH);
        check("one publish-confirm latency", confirms.len() == 1);
        check(
            "one send sent",
            seen.sum(
                "messaging.client.sent.messages",
                &["messaging.operation.name=send", "messaging.destination.name=metrics.ping"],
            ) == 1.0,
        );
        check(
            "two events consumed on metrics.ping (subscription and inbox)",
            seen.sum(
                "messaging.client.consumed.messages",
                &["messaging.operation.name=receive", "messaging.destination.name=metrics.ping"],
            ) == 2.0,
        );
        let calls = seen.values("rpc.client.call.duration", &["rpc.system.name=xmpp", ECHO]);
        check("two calls of metrics.echo timed", calls.len() == 2);
        check(
            "the failed call's error.type",
            seen.values("rpc.client.call.duration", &[ECHO, "error.type=remote"]).len() == 1,
        );
        check(
            "the handler's outcomes",
            seen.values("rpc.server.call.duration", &[ECHO]).len() == 2
                && seen.values("rpc.server.call.duration", &[ECHO, "error.type=app_error"]).len() == 1,
        );
        check(
            "the refused call",
            seen.sum("xbus.rpc.server.refused", &["reason=unknown_method"]) == 1.0
                && seen
                    .values("rpc.client.call.duration", &["error.type=unknown_method"])
                    .len()
                    == 1,
        );
        check(
            "no call in flight",
            seen.sum("xbus.rpc.client.active_calls", &[]) == 0.0
                && seen.sum("xbus.rpc.server.active_calls", &[]) == 0.0,
        );
        let dropped = seen.sum(
            "xbus.buffer.dropped",
            &["messaging.destination.name=metrics.burst"],
        );
        check("buffer drops", dropped >= 1.0 && dropped == burst.dropped() as f64);
        check(
            "one redelivery",
            seen.sum(
                "xbus.group.redeliveries",
                &["messaging.destination.name=metrics.work", "messaging.consumer.group.name=workers"],
            ) == 1.0,
        );
        check(
            "group deliveries consumed",
            seen.sum(
                "messaging.client.consumed.messages",
                &["messaging.consumer.group.name=workers"],
            ) == 2.0,
        );

        // A call in flight, seen from inside its handler.
        assert_eq!(within("call 99", publisher.request(&to, Echo { n: 99 })).await.unwrap(), 99);
        let during = std::mem::take(&mut *during.lock().unwrap());
        check(
            "one call in flight on each side while the handler runs",
            during.sum("xbus.rpc.client.active_calls", &[ECHO]) == 1.0
                && during.sum("xbus.rpc.server.active_calls", &[ECHO]) == 1.0,
        );
        seen.absorb(&snapshotter);
        check(
            "none after it",
            seen.sum("xbus.rpc.client.active_calls", &[ECHO])
                + during.sum("xbus.rpc.client.active_calls", &[ECHO])
                == 0.0,
        );
        eprintln!(
            "{tag}publish-confirm {:.1} ms, calls {:?} ms, dropped {dropped}, resets {}, reconnect attempts {}",
            confirms[0] * 1e3,
            calls.iter().map(|s| (s * 1e4).round() / 10.0).collect::<Vec<_>>(),
            seen.sum("xbus.connection.session_resets", &[]),
            seen.sum("xbus.connection.reconnect_attempts", &[]),
        );

        drop((pings, inbox, burst, jobs));
        for bus in [&publisher, &subscriber, &instance, &victim] {
            within("close", bus.close()).await.expect("close");
        }
    })
    .await;
}
