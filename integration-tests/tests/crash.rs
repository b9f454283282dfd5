//! Instances that die or freeze, as real processes: each instance is an
//! `xbus_instance serve` process, killed with `SIGKILL` or frozen with
//! `SIGSTOP`, never a closed or dropped bus.
//!
//! A killed instance's server keeps its session "available" for its
//! XEP-0198 resumption window (Prosody 600 s, ejabberd 300 s, embedded 60 s,
//! all at their defaults here); the caller's liveness pings (see
//! `xbus::Liveness`) must take it out of the rotation within 2 s anyway.
//! Each test prints its figures with `--nocapture`.

#[path = "common/calls.rs"]
mod calls;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use calls::{Outcome, call_continuously, left, spawn_calls};
use common::*;
use futures::StreamExt;
use xbus::{Bus, InstanceEvent, Watch};

/// The detection window the issue asks for.
const WINDOW: Duration = Duration::from_secs(2);

/// Starts three `serve` processes of one fresh account and a caller bus
/// that has seen all three online.
async fn three_instances(
    server: &dyn XmppServer,
) -> (Vec<InstanceProcess>, Vec<String>, String, Bus, Watch) {
    let account = server.account().expect("account");
    let mut processes = Vec::new();
    let mut jids = Vec::new();
    for name in ["i1", "i2", "i3"] {
        let (process, jid) = serving_process(server, &account, name).await;
        processes.push(process);
        jids.push(jid);
    }
    let caller = bus(server).await;
    let mut watch = within("watch", caller.watch(&account.jid))
        .await
        .expect("watch");
    let mut online = BTreeSet::new();
    while online.len() < 3 {
        if let InstanceEvent::Online(i) = next("three online", &mut watch).await {
            online.insert(i.jid.to_string());
        }
    }
    (processes, jids, account.jid, caller, watch)
}

#[tokio::test]
async fn a_killed_instance_leaves_the_rotation_within_two_seconds() {
    matrix(async |kind| {
        let server = start(kind);
        let (mut processes, jids, service, caller, mut watch) = three_instances(&*server).await;
        // Warm up: the caller uses all three.
        let warm = call_continuously(
            &caller,
            &service,
            Instant::now(),
            Duration::from_millis(500),
            Duration::from_secs(1),
        )
        .await;
        assert!(
            warm.iter().all(|o| o.result.is_ok()),
            "{}warm-up failed: {warm:?}",
            tag()
        );

        let killed = jids[1].clone();
        let kill = Instant::now();
        let calls = spawn_calls(&caller, &service, kill, Duration::from_secs(10), Duration::from_secs(1));
        processes[1].kill();
        let reported = left(&mut watch, &killed, kill, Duration::from_secs(5)).await;
        let listed_two = within("instances() lists 2", async {
            loop {
                let listed = caller.instances(&service).await.expect("instances");
                if listed.len() == 2 {
                    return kill.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let outcomes = within("the calls", calls).await.expect("calls");
        let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
        let last_failure = failed.iter().map(|o| o.started).max();
        eprintln!(
            "{}SIGKILL of {killed}: {} calls, {} failed, last failed call started {:?} after the kill; \
             watch reported it after {reported:?}; instances() listed 2 after {listed_two:?}",
            tag(),
            outcomes.len(),
            failed.len(),
            last_failure,
        );
        for o in &failed {
            // Only calls started before the end of the window may fail,
            // and only by timing out at the dead instance.
            assert!(
                o.started < WINDOW,
                "{}a call started {:?} after the kill failed: {:?}",
                tag(),
                o.started,
                o.result
            );
            let error = o.result.as_ref().unwrap_err();
            assert!(
                error.contains(&killed),
                "{}a failed call does not name the dead instance {killed}: {error}",
                tag()
            );
        }
        assert!(
            reported.is_some_and(|t| t <= WINDOW),
            "{}watch() reported {killed} after {reported:?}",
            tag()
        );
        assert!(
            listed_two <= WINDOW,
            "{}instances() listed 2 only after {listed_two:?}",
            tag()
        );
        let answered: BTreeSet<&str> = outcomes
            .iter()
            .filter(|o| o.started > WINDOW)
            .filter_map(|o| o.result.as_deref().ok())
            .collect();
        assert_eq!(
            answered,
            BTreeSet::from(["i1", "i3"]),
            "{}after the window the two live instances share the calls",
            tag()
        );
        within("close caller", caller.close()).await.ok();
    })
    .await;
}

#[tokio::test]
async fn a_frozen_instance_leaves_the_rotation_and_comes_back() {
    matrix(async |kind| {
        let server = start(kind);
        let (processes, jids, service, caller, mut watch) = three_instances(&*server).await;
        let frozen = jids[1].clone();
        let stop = Instant::now();
        // A timeout longer than the freeze: every call the frozen instance
        // had received is answered after SIGCONT, and must come back Ok.
        let calls = spawn_calls(
            &caller,
            &service,
            stop,
            Duration::from_secs(6),
            Duration::from_secs(5),
        );
        processes[1].stop();
        let reported = left(&mut watch, &frozen, stop, Duration::from_secs(3)).await;
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(stop.elapsed())).await;
        processes[1].resume();
        let resumed = stop.elapsed();
        let back = within("the frozen instance is back", async {
            loop {
                if let InstanceEvent::Responsive(i) = next("watch", &mut watch).await
                    && i.jid.to_string() == frozen
                {
                    return stop.elapsed();
                }
            }
        })
        .await;
        let outcomes = within("the calls", calls).await.expect("calls");
        let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
        let by_frozen = |from: Duration, to: Duration| {
            outcomes
                .iter()
                .filter(|o| o.started >= from && o.started < to)
                .filter(|o| o.result.as_deref() == Ok("i2"))
                .count()
        };
        let sent_while_out = by_frozen(WINDOW, resumed);
        let after_back = by_frozen(back + Duration::from_millis(200), Duration::MAX);
        let slowest = outcomes
            .iter()
            .map(|o| o.ended - o.started)
            .max()
            .unwrap_or_default();
        eprintln!(
            "{}SIGSTOP of {frozen} for 3 s: {} calls, {} failed; reported after {reported:?}, \
             back {back:?} after the stop ({:?} after SIGCONT); calls it answered that were \
             started while it was out: {sent_while_out}; after it came back: {after_back}; \
             slowest call {slowest:?}",
            tag(),
            outcomes.len(),
            failed.len(),
            back.saturating_sub(resumed),
        );
        assert!(failed.is_empty(), "{}failed calls: {failed:?}", tag());
        assert!(
            reported.is_some_and(|t| t <= WINDOW),
            "{}watch() reported {frozen} after {reported:?}",
            tag()
        );
        assert_eq!(
            sent_while_out,
            0,
            "{}calls went to the frozen instance after the window",
            tag()
        );
        assert!(
            after_back > 0,
            "{}the instance never got calls again after it came back",
            tag()
        );
        within("close caller", caller.close()).await.ok();
    })
    .await;
}

#[tokio::test]
async fn send_to_any_skips_a_killed_instance_after_the_window() {
    matrix(async |kind| {
        let server = start(kind);
        let (mut processes, jids, service, sender, mut watch) = three_instances(&*server).await;
        // The sender uses the service before the kill, as a live one would.
        for seq in 0..6 {
            within("send_to_any", sender.send_to_any(&service, &Job { seq }))
                .await
                .expect("send_to_any");
        }
        let kill = Instant::now();
        processes[1].kill();
        let reported = left(&mut watch, &jids[1], kill, Duration::from_secs(5)).await;
        tokio::time::sleep(WINDOW.saturating_sub(kill.elapsed())).await;
        let mut picked = BTreeSet::new();
        for seq in 100..130 {
            let to = within("send_to_any", sender.send_to_any(&service, &Job { seq }))
                .await
                .expect("send_to_any");
            picked.insert(to.resource().to_string());
        }
        // Every one of the 30 reaches a live instance.
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + STEP;
        while seen.len() < 30 && Instant::now() < deadline {
            for index in [0, 2] {
                let process = &mut processes[index];
                while let Some(line) = process.next_line(Duration::from_millis(20)).await {
                    if let Some(seq) = line.strip_prefix("job ") {
                        let seq: u64 = seq.parse().expect("job seq");
                        if seq >= 100 {
                            assert!(seen.insert(seq), "{}job {seq} twice", tag());
                        }
                    }
                }
            }
        }
        eprintln!(
            "{}send_to_any after SIGKILL of {}: reported after {reported:?}; 30 jobs went to {picked:?}, {} arrived",
            tag(),
            jids[1],
            seen.len()
        );
        assert!(
            reported.is_some_and(|t| t <= WINDOW),
            "{}watch() reported the killed instance after {reported:?}",
            tag()
        );
        assert_eq!(
            picked,
            BTreeSet::from(["i1".to_owned(), "i3".to_owned()]),
            "{}",
            tag()
        );
        assert_eq!(seen.len(), 30, "{}jobs lost: {seen:?}", tag());
        within("close sender", sender.close()).await.ok();
    })
    .await;
}

#[tokio::test]
async fn slow_calls_do_not_make_healthy_instances_unresponsive() {
    matrix(async |kind| {
        let server = start(kind);
        let (_processes, _jids, service, caller, mut watch) = three_instances(&*server).await;
        // 30 calls that each take 2 s: every instance owes answers for far
        // longer than the ping timeout, and answers every ping meanwhile.
        let calls: Vec<_> = (0..30)
            .map(|seq| {
                let caller = caller.clone();
                let service = service.clone();
                tokio::spawn(async move {
                    caller
                        .request(&service, Echo { seq, sleep_ms: 2000 })
                        .timeout(Duration::from_secs(6))
                        .await
                })
            })
            .collect();
        let mut answered = BTreeSet::new();
        for call in calls {
            let answer = within("slow call", call)
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("{}slow call failed: {e}", tag()));
            answered.insert(answer.resource);
        }
        let listed = within("instances", caller.instances(&service))
            .await
            .expect("instances");
        let mut events = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(50), watch.next()).await
        {
            events.push(event);
        }
        eprintln!(
            "{}30 calls of 2 s: answered by {answered:?}; instances() lists {}; watch events {events:?}",
            tag(),
            listed.len()
        );
        assert_eq!(listed.len(), 3, "{}", tag());
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, InstanceEvent::Unresponsive(_))),
            "{}a healthy instance was reported unresponsive: {events:?}",
            tag()
        );
        within("close caller", caller.close()).await.ok();
    })
    .await;
}
