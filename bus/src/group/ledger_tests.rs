use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn rules() -> Rules {
    Rules {
        ack_wait: Duration::from_secs(30),
        backoff: vec![Duration::from_secs(1), Duration::from_secs(5)],
        max_deliver: 3,
        max_in_flight: 2,
    }
}

fn ledger() -> Ledger<&'static str> {
    Ledger::new(rules(), Vec::new())
}

fn items(deliveries: &[Delivery<&'static str>]) -> Vec<(String, &'static str, u32)> {
    deliveries
        .iter()
        .map(|d| (d.item.clone(), d.worker, d.attempt))
        .collect()
}

#[test]
fn events_go_out_in_order_to_the_least_loaded_up_to_the_cap() {
    let now = Instant::now();
    let mut l = ledger();
    for i in ["a", "b", "c", "d", "e"] {
        assert!(l.offer(i, 0, now));
    }
    assert!(!l.offer("a", 0, now), "known ids are not queued twice");
    let out = l.dispatch(&["w1", "w2"], now);
    assert_eq!(
        items(&out),
        vec![
            ("a".into(), "w1", 1),
            ("b".into(), "w2", 1),
            ("c".into(), "w1", 1),
            ("d".into(), "w2", 1),
        ]
    );
    assert!(l.dispatch(&["w1", "w2"], now).is_empty(), "both at the cap");
    assert!(l.ack("a"));
    let out = l.dispatch(&["w1", "w2"], now);
    assert_eq!(items(&out), vec![("e".into(), "w1", 1)]);
    assert!(l.is_done("a"));
    assert!(!l.offer("a", 0, now), "done ids are not queued again");
}

#[test]
fn naks_follow_the_backoff_then_the_event_is_dead() {
    let now = Instant::now();
    let mut l = ledger();
    l.offer("a", 0, now);
    l.dispatch(&["w"], now);
    assert_eq!(l.nak("a", &"w", None, "boom".into(), now), None);
    assert!(
        l.dispatch(&["w"], now).is_empty(),
        "waits the first backoff"
    );
    let t1 = now + Duration::from_secs(1);
    assert_eq!(items(&l.dispatch(&["w"], t1)), vec![("a".into(), "w", 2)]);
    l.nak("a", &"w", None, "boom".into(), t1);
    assert!(l.dispatch(&["w"], t1 + Duration::from_secs(4)).is_empty());
    let t2 = t1 + Duration::from_secs(5);
    assert_eq!(items(&l.dispatch(&["w"], t2)), vec![("a".into(), "w", 3)]);
    let dead = l.nak("a", &"w", None, "boom 3".into(), t2).expect("dead");
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.last_error, "boom 3");
    assert!(l.is_done("a"));
    assert_eq!(l.pending(), 0);
    assert_eq!(l.counts().dead_lettered, 1);
    assert_eq!(l.counts().redelivered, 2);
}

#[test]
fn a_nak_delay_replaces_the_backoff() {
    let now = Instant::now();
    let mut l = ledger();
    l.offer("a", 0, now);
    l.dispatch(&["w"], now);
    l.nak(
        "a",
        &"w",
        Some(Duration::from_millis(10)),
        "later".into(),
        now,
    );
    let out = l.dispatch(&["w"], now + Duration::from_millis(10));
    assert_eq!(items(&out), vec![("a".into(), "w", 2)]);
}

#[test]
fn term_dead_letters_at_once() {
    let now = Instant::now();
    let mut l = ledger();
    l.offer("a", 0, now);
    l.dispatch(&["w"], now);
    let dead = l.term("a", &"w", "poison".into()).expect("dead");
    assert_eq!((dead.attempts, dead.last_error.as_str()), (1, "poison"));
    assert!(l.is_done("a"));
}

#[test]
fn an_expired_ack_wait_moves_the_event_and_in_progress_extends_it() {
    let now = Instant::now();
    let mut l = ledger();
    l.offer("slow", 0, now);
    l.offer("kept", 0, now);
    l.dispatch(&["w1"], now);
    let half = now + Duration::from_secs(20);
    assert!(l.in_progress("kept", &"w1", half));
    assert!(
        !l.in_progress("kept", &"w2", half),
        "only the holder extends"
    );
    let t = now + Duration::from_secs(30);
    assert!(l.expire(t).is_empty());
    // "slow" waits its backoff, then goes to whoever is least loaded.
    let out = l.dispatch(&["w1", "w2"], t + Duration::from_secs(1));
    assert_eq!(items(&out), vec![("slow".into(), "w2", 2)]);
    // A late answer from w1 for "slow" is no longer its to give back.
    assert_eq!(l.nak("slow", &"w1", None, "late".into(), t), None);
    assert_eq!(l.counts().redelivered, 1);
}

#[test]
fn a_late_ack_still_finishes_the_event() {
    let now = Instant::now();
    let mut l = ledger();
    l.offer("a", 0, now);
    l.dispatch(&["w1"], now);
    l.expire(now + Duration::from_secs(30));
    assert!(l.ack("a"));
    assert!(l.is_done("a"));
    assert!(
        l.dispatch(&["w1"], now + Duration::from_secs(60))
            .is_empty()
    );
}

#[test]
fn a_gone_instance_gives_back_what_it_held() {
    let now = Instant::now();
    let mut l = ledger();
    for i in ["a", "b", "c"] {
        l.offer(i, 0, now);
    }
    l.dispatch(&["w1", "w2"], now);
    assert!(l.worker_gone(&"w1", now).is_empty());
    assert_eq!(l.counts().orphaned, 2);
    let out = l.dispatch(&["w2"], now + Duration::from_secs(1));
    let mut got: Vec<String> = out.iter().map(|d| d.item.clone()).collect();
    got.sort();
    assert_eq!(got, vec!["a".to_owned()], "w2 holds b, its cap is 2");
}

#[test]
fn attempts_of_a_previous_leader_count() {
    let now = Instant::now();
    let mut l = ledger();
    l.offer("a", 2, now);
    assert_eq!(items(&l.dispatch(&["w"], now)), vec![("a".into(), "w", 3)]);
    assert!(l.nak("a", &"w", None, "again".into(), now).is_some());
}

#[test]
fn forgotten_done_ids_can_be_offered_again() {
    let now = Instant::now();
    let mut l: Ledger<&str> = Ledger::new(rules(), vec!["old".to_owned()]);
    assert!(!l.offer("old", 0, now));
    l.forget_done("old");
    assert!(l.offer("old", 0, now));
}

#[test]
fn the_backoff_repeats_its_last_entry() {
    let r = rules();
    assert_eq!(r.backoff_after(1), Duration::from_secs(1));
    assert_eq!(r.backoff_after(2), Duration::from_secs(5));
    assert_eq!(r.backoff_after(9), Duration::from_secs(5));
    let none = Rules {
        backoff: Vec::new(),
        ..rules()
    };
    assert_eq!(none.backoff_after(1), Duration::ZERO);
}

#[test]
fn a_redelivery_goes_to_another_instance_if_one_has_room() {
    let now = Instant::now();
    let mut l = ledger();
    l.offer("a", 0, now);
    l.dispatch(&["w1", "w2"], now);
    assert_eq!(
        l.nak("a", &"w1", Some(Duration::ZERO), "x".into(), now),
        None
    );
    // w1 is listed first and as idle as w2, but it failed "a".
    let out = l.dispatch(&["w1", "w2"], now);
    assert_eq!(items(&out), vec![("a".into(), "w2", 2)]);
    // Alone, the instance that failed it gets it again.
    assert_eq!(
        l.nak("a", &"w2", Some(Duration::ZERO), "x".into(), now),
        None
    );
    let out = l.dispatch(&["w2"], now);
    assert_eq!(items(&out), vec![("a".into(), "w2", 3)]);
}

#[test]
fn an_event_settled_for_an_earlier_leader_is_done() {
    let now = Instant::now();
    let mut l = ledger();
    l.offer("a", 0, now);
    l.dispatch(&["w1"], now);
    assert!(l.done_elsewhere("a"), "pending, and out with w1");
    assert!(l.is_done("a"));
    assert!(l.holders().is_empty());
    assert!(!l.done_elsewhere("later"), "not offered yet");
    assert!(!l.offer("later", 0, now), "and never offered");
    assert_eq!(l.counts().acked, 0);
}
