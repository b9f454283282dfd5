use super::*;

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_state_goes_through_xml_unchanged() {
    let state = GroupState {
        epoch: 7,
        high: Some("h1".into()),
        pending: vec![("p1".into(), 2), ("p2".into(), 1)],
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
fn everything_up_to_the_mark_but_the_pending_is_done() {
    let stored = ids(&["a", "b", "c", "d", "e"]);
    let state = GroupState {
        epoch: 2,
        high: Some("c".into()),
        pending: vec![("b".into(), 2)],
    };
    let r = reconcile(&state, &stored);
    assert_eq!(r.done, ids(&["a", "c"]).into_iter().collect());
    assert_eq!(r.attempts.get("b"), Some(&2));
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
        pending: Vec::new(),
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
fn the_mark_is_the_newest_item_handed_out() {
    let seen = ids(&["a", "b", "c", "d"]);
    let done = ["a", "c"];
    let attempts = |i: &str| match i {
        "b" => 1,
        "c" => 1,
        _ => 0,
    };
    let (high, pending) = progress_of(
        Some(&"z".to_owned()),
        seen.iter(),
        |i| done.contains(&i),
        attempts,
    );
    assert_eq!(high.as_deref(), Some("c"));
    assert_eq!(pending, vec![("b".to_owned(), 1)]);
    // Nothing handed out yet: the mark below stays.
    let (high, pending) = progress_of(Some(&"z".to_owned()), seen.iter(), |_| false, |_| 0);
    assert_eq!(high.as_deref(), Some("z"));
    assert!(pending.is_empty());
}

#[test]
fn too_many_pending_lower_the_mark_instead_of_dropping_any() {
    let seen: Vec<String> = (0..MAX_ENTRIES + 10).map(|i| format!("i{i}")).collect();
    let (high, pending) = progress_of(None, seen.iter(), |_| false, |_| 1);
    assert_eq!(pending.len(), MAX_ENTRIES);
    assert_eq!(high, Some(format!("i{}", MAX_ENTRIES - 1)));
}
