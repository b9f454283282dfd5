//! Presence as service liveness against every server of the matrix: watching
//! instances, statuses, the subscription policy, competing consumers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{init_tracing, instance, instances, matrix, next, start, within};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use xbus::{
    Bus, Context, Event, InstanceEvent, Request, RequestError, SendError, Status,
    SubscriptionPolicy,
};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "work.item")]
struct WorkItem {
    n: u32,
}

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "who", response = String)]
struct Who;

async fn serve_who(bus: &Bus) {
    let me = bus.jid().resource().to_string();
    within(
        "serve who",
        bus.serve(move |_: Who, _: Context| {
            let me = me.clone();
            async move { Ok(me) }
        }),
    )
    .await
    .unwrap();
}

/// The next instance event within one second.
async fn event_within_a_second(watch: &mut xbus::Watch) -> (InstanceEvent, Duration) {
    let started = Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(1), watch.next())
        .await
        .expect("an instance event within 1 s")
        .expect("watch open");
    (event, started.elapsed())
}

#[tokio::test]
async fn watch_reports_online_status_and_offline_within_a_second() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let service = server.account().unwrap();
        let watcher = common::bus(&server).await;
        let mut watch = within("watch", watcher.watch(&service.jid)).await.unwrap();

        let first = instance(&server, &service, "a").await;
        let (event, took) = event_within_a_second(&mut watch).await;
        eprintln!("online after {took:?}");
        match event {
            InstanceEvent::Online(i) => {
                assert_eq!(i.jid, first.jid());
                assert_eq!(i.status, Status::Ready);
            }
            other => panic!("expected Online, got {other:?}"),
        }

        within("draining", first.set_status(Status::Draining))
            .await
            .unwrap();
        let (event, took) = event_within_a_second(&mut watch).await;
        eprintln!("status change after {took:?}");
        assert!(
            matches!(&event, InstanceEvent::StatusChanged(i) if i.status == Status::Draining),
            "{event:?}"
        );
        let listed = within("instances", watcher.instances(&service.jid))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, Status::Draining);

        // A second watch starts with the instances online now.
        let mut late = within("late watch", watcher.watch(&service.jid))
            .await
            .unwrap();
        assert!(matches!(
            next("late watch", &mut late).await,
            InstanceEvent::Online(_)
        ));

        let gone = first.jid();
        within("close", first.close()).await.unwrap();
        let (event, took) = event_within_a_second(&mut watch).await;
        eprintln!("offline after {took:?}");
        assert_eq!(event, InstanceEvent::Offline(gone));
        assert!(
            within("instances", watcher.instances(&service.jid))
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn draining_instances_get_no_calls() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (service, buses) = instances(&server, 3).await;
        for bus in &buses {
            serve_who(bus).await;
        }
        let caller = common::bus(&server).await;
        let mut watch = within("watch", caller.watch(&service.jid)).await.unwrap();
        within("draining", buses[2].set_status("draining"))
            .await
            .unwrap();
        within("status seen", async {
            loop {
                // Online if the status changed before the subscription was
                // approved, StatusChanged if after.
                match next("watch", &mut watch).await {
                    InstanceEvent::Online(i) | InstanceEvent::StatusChanged(i)
                        if i.status == Status::Draining =>
                    {
                        return;
                    }
                    _ => {}
                }
            }
        })
        .await;
        // The other two must be known too before the calls start: after a
        // subscription is approved, the server sends each resource's presence
        // in no particular order (ejabberd: each session sends its own, so the
        // draining i3 may come first and i1 some milliseconds later).
        within("all three seen", async {
            while caller.instances(&service.jid).await.unwrap().len() < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..60 {
            let who = within("call", caller.request(&service.jid, Who))
                .await
                .unwrap();
            *counts.entry(who).or_default() += 1;
        }
        assert_eq!(counts.get("i3"), None, "{counts:?}");
        assert_eq!(counts.get("i1"), Some(&30), "{counts:?}");
        assert_eq!(counts.get("i2"), Some(&30), "{counts:?}");
    })
    .await;
}

#[tokio::test]
async fn send_to_any_hands_each_event_to_exactly_one_instance() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (service, buses) = instances(&server, 3).await;
        let mut inboxes = Vec::new();
        for bus in &buses {
            inboxes.push(within("inbox", bus.inbox::<WorkItem>()).await.unwrap());
        }
        let producer = common::bus(&server).await;
        let mut targets: HashMap<String, usize> = HashMap::new();
        // The first event starts the discovery and goes to the first instance
        // seen; the others' presences follow in no particular order and at no
        // particular time (ejabberd: each session sends its own), so wait until
        // all three are known before judging the spread.
        let first = within(
            "send_to_any",
            producer.send_to_any(&service.jid, &WorkItem { n: 0 }),
        )
        .await
        .unwrap();
        *targets.entry(first.resource().to_string()).or_default() += 1;
        within("all three seen", async {
            while producer.instances(&service.jid).await.unwrap().len() < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        for n in 1..90 {
            let to = within(
                "send_to_any",
                producer.send_to_any(&service.jid, &WorkItem { n }),
            )
            .await
            .unwrap();
            *targets.entry(to.resource().to_string()).or_default() += 1;
        }
        eprintln!("events per instance: {targets:?}");
        // Collect what each instance got.
        let mut seen: HashMap<u32, usize> = HashMap::new();
        let mut per_instance = Vec::new();
        for (inbox, bus) in inboxes.iter_mut().zip(&buses) {
            let expected = targets
                .get(&bus.jid().resource().to_string())
                .copied()
                .unwrap_or(0);
            for _ in 0..expected {
                let delivery = next("work item", inbox).await.unwrap();
                *seen.entry(delivery.event.n).or_default() += 1;
            }
            per_instance.push(expected);
        }
        // Nothing more arrives anywhere.
        for inbox in &mut inboxes {
            let extra = tokio::time::timeout(Duration::from_millis(300), inbox.next()).await;
            assert!(extra.is_err(), "an extra delivery: {extra:?}");
        }
        assert_eq!(seen.len(), 90);
        assert!(seen.values().all(|&count| count == 1), "{seen:?}");
        // Spread in turn: 89 events over three known instances, plus the first.
        assert_eq!(per_instance.iter().sum::<usize>(), 90);
        assert!(
            per_instance.iter().all(|n| (29..=31).contains(n)),
            "{per_instance:?}"
        );

        // With no instance online: a typed error at once.
        for bus in &buses {
            within("close", bus.close()).await.unwrap();
        }
        within("all offline", async {
            while !producer.instances(&service.jid).await.unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let error = within(
            "send to nobody",
            producer.send_to_any(&service.jid, &WorkItem { n: 0 }),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, SendError::NoInstance { .. }), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn the_subscription_policy_decides_who_sees_a_service() {
    matrix(async |kind| {
    init_tracing();
    let server = start(kind);
    let service = server.account().unwrap();
    let config = common::config(&server, &service)
        .subscription_policy(SubscriptionPolicy::RejectAll)
        .build()
        .unwrap();
    let private = within("connect", Bus::connect(config)).await.unwrap();
    serve_who(&private).await;
    let caller = common::bus(&server).await;
    let started = Instant::now();
    let error = within("call refused service", caller.request(&service.jid, Who))
        .await
        .unwrap_err();
    eprintln!("refused after {:?}: {error}", started.elapsed());
    assert!(
        matches!(&error, RequestError::NoResponder { reason, .. } if reason.contains("refused")),
        "{error:?}"
    );
    // Its instance can still be called directly by full JID.
    let who = within(
        "call instance",
        caller.request(&private.jid().to_string(), Who),
    )
    .await
    .unwrap();
    assert_eq!(who, private.jid().resource().to_string());
    })
    .await;
}
