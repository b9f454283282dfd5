use std::collections::VecDeque;

use super::*;

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn deque(list: &[&str]) -> VecDeque<String> {
    ids(list).into_iter().collect()
}

#[test]
fn the_state_goes_through_xml_unchanged() {
    let state = GroupState {
        epoch: 7,
        high: Some("h1".into()),
        floor: Some("f1".into()),
        pending: vec![("p1".into(), 2), ("p2".into(), 1)],
        done: vec![done_hash("d1"), done_hash("d2")],
    };
    let element = state.to_element();
    let text = String::from(&element);
    assert!(
        text.contains("epoch=\"7\"") || text.contains("epoch='7'"),
        "{text}"
    );
    assert_eq!(GroupState::from_element(&element), Ok(state));
    let empty = GroupState::default();
    assert_eq!(GroupState::from_element(&empty.to_element()), Ok(empty));
}

#[test]
fn bad_states_are_typed_errors() {
    let parse = |xml: &str| GroupState::from_element(&xml.parse::<Element>().unwrap());
    assert_eq!(
        parse("<other xmlns='urn:xbus:group:0'/>"),
        Err(StateError::NotAGroup)
    );
    assert!(matches!(
        parse("<group xmlns='urn:xbus:group:0' epoch='-1'/>"),
        Err(StateError::BadAttribute { name: "epoch", .. })
    ));
    assert!(matches!(
        parse("<group xmlns='urn:xbus:group:0'><pending item='a' count='x'/></group>"),
        Err(StateError::BadAttribute { name: "count", .. })
    ));
    assert!(matches!(
        parse("<group xmlns='urn:xbus:group:0'><pending count='1'/></group>"),
        Err(StateError::BadAttribute { name: "item", .. })
    ));
    assert!(matches!(
        parse("<group xmlns='urn:xbus:group:0'><done>12345 zzzzzzzzzzzz</done></group>"),
        Err(StateError::BadAttribute { name: "done", .. })
    ));
    let many: String = (0..=MAX_ENTRIES)
        .map(|i| format!("<pending item='i{i}' count='1'/>"))
        .collect();
    assert_eq!(
        parse(&format!("<group xmlns='urn:xbus:group:0'>{many}</group>")),
        Err(StateError::TooMany("pending"))
    );
    // Unknown children are skipped.
    assert_eq!(
        parse("<group xmlns='urn:xbus:group:0' epoch='1'><later xmlns='urn:x'/></group>"),
        Ok(GroupState {
            epoch: 1,
            ..GroupState::default()
        })
    );
}

#[test]
fn the_done_hash_is_fnv1a_48() {
    // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
    assert_eq!(done_hash("a"), 0xdc4c_8601_ec8c);
    assert_eq!(format!("{:012x}", done_hash("")), "9ce484222325");
}

#[test]
fn up_to_the_floor_all_is_done_then_only_the_hashed_ones() {
    // "x" turned up between the floor and the high mark, never handed out.
    let stored = ids(&["a", "b", "x", "c", "d", "e"]);
    let state = GroupState {
        epoch: 2,
        high: Some("d".into()),
        floor: Some("a".into()),
        pending: vec![("c".into(), 2)],
        done: vec![done_hash("b"), done_hash("d")],
    };
    let r = reconcile(&state, &stored);
    assert_eq!(r.done, ids(&["a", "b", "d"]).into_iter().collect());
    assert_eq!(r.attempts.get("c"), Some(&2));
    assert_eq!(r.lost, None);
    let fresh = reconcile(&GroupState::default(), &stored);
    assert!(fresh.done.is_empty());
}

#[test]
fn a_mark_the_topic_no_longer_keeps_is_a_loss() {
    let stored = ids(&["x", "y"]);
    let state = GroupState {
        epoch: 1,
        high: Some("gone".into()),
        ..GroupState::default()
    };
    let r = reconcile(&state, &stored);
    assert!(r.done.is_empty());
    assert_eq!(
        r.lost,
        Some(Lost {
            last_known: "gone".into(),
            oldest_stored: Some("x".into())
        })
    );
}

#[test]
fn the_progress_names_the_newest_handed_out_and_what_is_done_since_the_floor() {
    let trail = deque(&["t1", "t2"]);
    let seen = deque(&["a", "b", "c", "d"]);
    let done = ["t1", "t2", "a", "c"];
    let attempts = |i: &str| u32::from(i == "b" || i == "c");
    let state = progress_of(
        Some(&"z".to_owned()),
        &trail,
        &seen,
        |i| done.contains(&i),
        attempts,
    );
    assert_eq!(state.high.as_deref(), Some("c"));
    assert_eq!(state.floor.as_deref(), Some("z"), "fewer than the window");
    assert_eq!(state.pending, vec![("b".to_owned(), 1)]);
    let hashes: Vec<u64> = ["t1", "t2", "a", "c"]
        .iter()
        .map(|i| done_hash(i))
        .collect();
    assert_eq!(state.done, hashes);
    // Nothing in `seen` handed out yet: the trail's newest is the mark.
    let state = progress_of(None, &trail, &seen, |i| i.starts_with('t'), |_| 0);
    assert_eq!(state.high.as_deref(), Some("t2"));
}

#[test]
fn the_floor_trails_the_mark_by_the_window() {
    let trail: VecDeque<String> = (0..DONE_WINDOW + 5).map(|i| format!("i{i}")).collect();
    let state = progress_of(None, &trail, &VecDeque::new(), |_| true, |_| 1);
    assert_eq!(state.floor, Some("i4".to_owned()));
    assert_eq!(state.done.len(), DONE_WINDOW);
    assert_eq!(state.high, Some(format!("i{}", DONE_WINDOW + 4)));
}

#[test]
fn too_many_pending_lower_the_mark_instead_of_dropping_any() {
    let seen: VecDeque<String> = (0..MAX_ENTRIES + 10).map(|i| format!("i{i}")).collect();
    let state = progress_of(None, &VecDeque::new(), &seen, |_| false, |_| 1);
    assert_eq!(state.pending.len(), MAX_ENTRIES);
    assert_eq!(state.high, Some(format!("i{}", MAX_ENTRIES - 1)));
}

#[test]
fn a_done_item_republished_after_the_mark_stays_done() {
    // "b" and "d" were done; a publisher's repeat after its session reset
    // moved "b" to the end, after the high mark. "n" is new.
    let stored = ids(&["a", "c", "d", "e", "b", "n"]);
    let state = GroupState {
        epoch: 2,
        high: Some("d".into()),
        floor: Some("a".into()),
        pending: vec![("c".into(), 1)],
        done: vec![done_hash("b"), done_hash("d")],
    };
    let r = reconcile(&state, &stored);
    assert_eq!(r.done, ids(&["a", "b", "d"]).into_iter().collect());
}

#[test]
fn every_leaders_state_counts_and_the_newest_judges_losses() {
    let stored = ids(&["a", "b", "c", "d", "e"]);
    // An old leader saw "a" and "c" done, "b" pending after 2 deliveries.
    let old = GroupState {
        epoch: 3,
        high: Some("c".into()),
        floor: None,
        pending: vec![("b".into(), 2)],
        done: vec![done_hash("a"), done_hash("c")],
    };
    // A newer one, whose save the old one's late save did not overwrite:
    // "b" done, "d" pending after 1.
    let newer = GroupState {
        epoch: 4,
        high: Some("d".into()),
        floor: None,
        pending: vec![("d".into(), 1)],
        done: vec![done_hash("a"), done_hash("b")],
    };
    let r = reconcile_all(&[old.clone(), newer], &stored);
    assert_eq!(r.done, ids(&["a", "b", "c"]).into_iter().collect());
    assert_eq!(r.attempts, [("d".to_owned(), 1)].into_iter().collect());
    assert_eq!(r.lost, None);
    // A stale state's mark that is gone is no loss; the newest's is.
    let gone = GroupState {
        epoch: 1,
        high: Some("gone".into()),
        ..GroupState::default()
    };
    assert_eq!(reconcile_all(&[gone.clone(), old], &stored).lost, None);
    let lost = reconcile_all(&[gone], &stored).lost;
    assert_eq!(lost.map(|l| l.last_known), Some("gone".to_owned()));
    assert_eq!(reconcile_all(&[], &stored).done.len(), 0);
}
