use super::*;

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_state_goes_through_xml_unchanged() {
    let state = GroupState {
        epoch: 7,
        floor: Some("f1".into()),
        done_above: ids(&["d1", "d2"]),
        attempts: vec![("p1".into(), 2)],
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
        parse("<group xmlns='urn:xbus:group:0'><attempts item='a' count='x'/></group>"),
        Err(StateError::BadAttribute { name: "count", .. })
    ));
    assert!(matches!(
        parse("<group xmlns='urn:xbus:group:0'><done/></group>"),
        Err(StateError::BadAttribute { name: "item", .. })
    ));
    let many: String = (0..=MAX_ENTRIES)
        .map(|i| format!("<done item='i{i}'/>"))
        .collect();
    assert_eq!(
        parse(&format!("<group xmlns='urn:xbus:group:0'>{many}</group>")),
        Err(StateError::TooMany("done"))
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
fn the_floor_and_what_is_done_above_it() {
    let seen = ids(&["a", "b", "c", "d", "e"]);
    let done = ["a", "b", "d"];
    let (floor, above) = floor_of(&seen, |i| done.contains(&i));
    assert_eq!(floor.as_deref(), Some("b"));
    assert_eq!(above, ids(&["d"]));
    let (floor, above) = floor_of(&seen, |_| false);
    assert_eq!((floor, above), (None, Vec::new()));
}

#[test]
fn a_new_leader_finds_what_is_done() {
    let stored = ids(&["a", "b", "c", "d", "e"]);
    let state = GroupState {
        floor: Some("b".into()),
        done_above: ids(&["d", "zz"]),
        ..GroupState::default()
    };
    let r = reconcile(&state, &stored);
    let mut done: Vec<&str> = r.done.iter().map(String::as_str).collect();
    done.sort();
    assert_eq!(done, vec!["a", "b", "d"]);
    assert_eq!(r.lost, None);
    // A fresh group (no floor) has nothing done and lost nothing.
    let r = reconcile(&GroupState::default(), &stored);
    assert!(r.done.is_empty() && r.lost.is_none());
}

#[test]
fn a_floor_gone_from_the_topic_is_reported_as_lost() {
    let stored = ids(&["x", "y"]);
    let state = GroupState {
        floor: Some("b".into()),
        ..GroupState::default()
    };
    let r = reconcile(&state, &stored);
    assert_eq!(
        r.lost,
        Some(Lost {
            last_known: "b".into(),
            oldest_stored: Some("x".into()),
        })
    );
    assert!(r.done.is_empty(), "every stored item is still to handle");
}
