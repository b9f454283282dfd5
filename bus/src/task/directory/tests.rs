//! The presence table's picks, discovery and liveness, without a server.

use super::*;
use std::str::FromStr;

fn jid(s: &str) -> FullJid {
    FullJid::from_str(s).unwrap()
}

async fn directory() -> (Directory, BareJid) {
    let config = BusConfig::builder("me@example.org", "pw")
        .discovery_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut directory = Directory::new(BareJid::from_str("me@example.org").unwrap(), &config);
    let service = BareJid::from_str("inv@example.org").unwrap();
    assert!(directory.start_discovery(&service));
    for name in ["a", "b", "c"] {
        directory
            .online(jid(&format!("inv@example.org/{name}")), Status::Ready)
            .await;
    }
    directory.discovered(&service);
    (directory, service)
}

fn picks(directory: &mut Directory, service: &BareJid, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let picked = directory.pick(service, &[]).unwrap();
            picked.resource().to_string()
        })
        .collect()
}

#[tokio::test]
async fn picks_in_turn_and_skips_draining_and_tried_instances() {
    let (mut directory, service) = directory().await;
    assert_eq!(
        picks(&mut directory, &service, 6),
        ["a", "b", "c", "a", "b", "c"]
    );
    directory
        .online(jid("inv@example.org/b"), Status::Draining)
        .await;
    let turns = picks(&mut directory, &service, 4);
    assert!(
        turns == ["a", "c", "a", "c"] || turns == ["c", "a", "c", "a"],
        "{turns:?}"
    );
    let tried = [jid("inv@example.org/a")];
    assert_eq!(
        directory.pick(&service, &tried),
        Some(jid("inv@example.org/c"))
    );
    let tried = [jid("inv@example.org/a"), jid("inv@example.org/c")];
    assert_eq!(directory.pick(&service, &tried), None);
    assert!(directory.why_none(&service, true).contains("just left"));
}

#[tokio::test]
async fn prefers_the_instance_with_the_fewest_calls_in_flight() {
    let (mut directory, service) = directory().await;
    directory.call_started(&jid("inv@example.org/a"));
    directory.call_started(&jid("inv@example.org/a"));
    directory.call_started(&jid("inv@example.org/b"));
    assert_eq!(picks(&mut directory, &service, 1), ["c"]);
    directory.call_started(&jid("inv@example.org/c"));
    // b and c have one each, a two: b and c take turns.
    let next = picks(&mut directory, &service, 1);
    assert!(next == ["b"] || next == ["c"], "{next:?}");
    directory.call_ended(&jid("inv@example.org/a"));
    directory.call_ended(&jid("inv@example.org/a"));
    assert_eq!(picks(&mut directory, &service, 1), ["a"]);
}

#[tokio::test]
async fn knows_when_to_wait_for_presence() {
    let (mut directory, service) = directory().await;
    let own = directory.own.clone();
    assert!(
        !directory.must_discover(&own),
        "own instances need no subscription"
    );
    assert!(!directory.must_discover(&service), "discovered");
    let other = BareJid::from_str("billing@example.org").unwrap();
    assert!(
        !directory.tracks(&other),
        "unsolicited presence is not tracked"
    );
    assert!(directory.must_discover(&other));
    assert!(directory.start_discovery(&other));
    assert!(
        !directory.start_discovery(&other),
        "one subscription request"
    );
    assert!(
        directory.must_discover(&other),
        "waiting for the first presence"
    );
    directory.subscribed(&other);
    assert!(
        directory.must_discover(&other),
        "approval without presence does not end the discovery"
    );
    directory.refused(&other);
    assert!(!directory.must_discover(&other));
    assert!(directory.why_none(&other, false).contains("refused"));
    directory.gone(&jid("inv@example.org/a")).await;
    assert_eq!(directory.list(&service).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_silent_instance_leaves_the_rotation_and_comes_back_when_it_speaks() {
    let (mut directory, service) = directory().await;
    let (tx, mut events) = mpsc::channel(16);
    directory.service(&service).watchers.push((1, tx));
    let a = jid("inv@example.org/a");
    directory.touch(&service);
    assert!(directory.probing());
    directory.call_started(&a);
    tokio::time::advance(Duration::from_millis(300)).await;
    let checks = directory.check_liveness().await;
    assert_eq!(
        checks.probe,
        std::slice::from_ref(&a),
        "only the instance that owes an answer"
    );
    directory.probing_sent(&a, "p1".into());
    tokio::time::advance(Duration::from_millis(800)).await;
    let checks = directory.check_liveness().await;
    assert_eq!(checks.expired, ["p1"]);
    assert_eq!(
        events.try_recv().unwrap(),
        InstanceEvent::Unresponsive(a.clone())
    );
    assert_eq!(directory.unresponsive(&service), std::slice::from_ref(&a));
    assert_eq!(directory.list(&service).len(), 2);
    let turns = picks(&mut directory, &service, 6);
    assert!(!turns.contains(&"a".to_owned()), "{turns:?}");
    directory.heard(&a).await;
    assert!(matches!(events.try_recv().unwrap(), InstanceEvent::Responsive(i) if i.jid == a));
    assert_eq!(directory.list(&service).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn suspicion_never_empties_the_rotation() {
    let (mut directory, service) = directory().await;
    directory.touch(&service);
    for name in ["a", "b", "c"] {
        let member = jid(&format!("inv@example.org/{name}"));
        directory.probing_sent(&member, format!("p-{name}"));
    }
    tokio::time::advance(Duration::from_millis(800)).await;
    let checks = directory.check_liveness().await;
    assert_eq!(checks.expired.len(), 3);
    assert_eq!(directory.list(&service).len(), 0);
    assert!(
        directory.pick(&service, &[]).is_some(),
        "all unresponsive: calls still go somewhere"
    );
}
