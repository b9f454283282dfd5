//! A group's progress as it is kept on the server, and how a new leader
//! reads it against the topic's stored items.
//!
//! The topic's items are stored oldest first, so progress is a **floor**
//! (the newest item that, with every item stored before it, is done) plus
//! the few done items above it (acked out of order) and the attempts
//! already made on pending ones. That stays small whatever the topic's
//! `max_items`:
//!
//! ```xml
//! <group xmlns='urn:xbus:group:0' epoch='3' floor='9f…c1'>
//!   <done item='a0…17'/>
//!   <attempts item='b2…4e' count='2'/>
//! </group>
//! ```
//!
//! A floor that is no longer among the stored items means that more
//! events were published than the topic keeps while the group was behind:
//! they are lost to it, and [`reconcile`] says so ([`Lost`]).

use std::collections::HashSet;

use xmpp_parsers::minidom::Element;

use crate::codec::name;

/// The namespace of the group state and of the group's wire elements.
pub(crate) const NS: &str = "urn:xbus:group:0";

/// Most `<done/>` and most `<attempts/>` entries a state may hold.
pub(crate) const MAX_ENTRIES: usize = 4096;
/// Longest item id accepted (xbus writes 32 hex digits).
const MAX_ID_LEN: usize = 256;

/// A group's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupState {
    /// The leader's epoch: each takeover increments it.
    pub epoch: u64,
    /// Every stored item up to and including this one is done.
    pub floor: Option<String>,
    /// Done items above the floor.
    pub done_above: Vec<String>,
    /// Attempts already made on pending items.
    pub attempts: Vec<(String, u32)>,
}

/// Why a stored state cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    #[error("not a <group xmlns='{NS}'/> element")]
    NotAGroup,
    #[error("attribute {name}={value:?} is not valid: {why}")]
    BadAttribute {
        name: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("more than {MAX_ENTRIES} <{0}/> entries")]
    TooMany(&'static str),
}

impl GroupState {
    /// The state as stored.
    pub fn to_element(&self) -> Element {
        let mut group = Element::builder("group", NS).attr(name("epoch"), self.epoch.to_string());
        if let Some(floor) = &self.floor {
            group = group.attr(name("floor"), floor.as_str());
        }
        for item in &self.done_above {
            group = group.append(Element::builder("done", NS).attr(name("item"), item.as_str()));
        }
        for (item, count) in &self.attempts {
            group = group.append(
                Element::builder("attempts", NS)
                    .attr(name("item"), item.as_str())
                    .attr(name("count"), count.to_string()),
            );
        }
        group.build()
    }

    /// Reads a stored state; unknown children are skipped (a later
    /// version may add some).
    pub fn from_element(group: &Element) -> Result<GroupState, StateError> {
        if !group.is("group", NS) {
            return Err(StateError::NotAGroup);
        }
        let epoch = match group.attr("epoch") {
            None => 0,
            Some(text) => text.parse().map_err(|_| StateError::BadAttribute {
                name: "epoch",
                value: text.to_owned(),
                why: "not a whole number",
            })?,
        };
        let floor = group.attr("floor").map(item_id).transpose()?;
        let mut state = GroupState {
            epoch,
            floor,
            ..GroupState::default()
        };
        for child in group.children() {
            if child.is("done", NS) {
                if state.done_above.len() == MAX_ENTRIES {
                    return Err(StateError::TooMany("done"));
                }
                state.done_above.push(item_id(required(child, "item")?)?);
            } else if child.is("attempts", NS) {
                if state.attempts.len() == MAX_ENTRIES {
                    return Err(StateError::TooMany("attempts"));
                }
                let item = item_id(required(child, "item")?)?;
                let text = required(child, "count")?;
                let count = text.parse().map_err(|_| StateError::BadAttribute {
                    name: "count",
                    value: text.to_owned(),
                    why: "not a whole number",
                })?;
                state.attempts.push((item, count));
            }
        }
        Ok(state)
    }
}

/// What a new leader makes of a state and the stored items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reconciled {
    /// Stored items that are done.
    pub done: HashSet<String>,
    /// Set when the floor is gone from the stored items.
    pub lost: Option<Lost>,
}

/// Events the group never got: the topic dropped them before the group
/// handled them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    /// The last item the group knows it finished.
    pub last_known: String,
    /// The oldest item the topic still stores.
    pub oldest_stored: Option<String>,
}

/// Reads `state` against `stored` (the topic's items, oldest first).
pub(crate) fn reconcile(state: &GroupState, stored: &[String]) -> Reconciled {
    let above: HashSet<&str> = state.done_above.iter().map(String::as_str).collect();
    let floor_at = state
        .floor
        .as_ref()
        .and_then(|floor| stored.iter().position(|item| item == floor));
    let mut done: HashSet<String> = stored
        .iter()
        .enumerate()
        .filter(|(i, item)| floor_at.is_some_and(|f| *i <= f) || above.contains(item.as_str()))
        .map(|(_, item)| item.clone())
        .collect();
    done.shrink_to_fit();
    let lost = match (&state.floor, floor_at) {
        (Some(floor), None) => Some(Lost {
            last_known: floor.clone(),
            oldest_stored: stored.first().cloned(),
        }),
        _ => None,
    };
    Reconciled { done, lost }
}

/// The floor and the done items above it, for `seen` (item ids in stored
/// order) and what is done.
pub(crate) fn floor_of<'a>(
    seen: impl IntoIterator<Item = &'a String>,
    is_done: impl Fn(&str) -> bool,
) -> (Option<String>, Vec<String>) {
    let mut floor = None;
    let mut above = Vec::new();
    let mut gap = false;
    for item in seen {
        match (is_done(item), gap) {
            (true, false) => floor = Some(item.clone()),
            (true, true) => above.push(item.clone()),
            (false, _) => gap = true,
        }
    }
    (floor, above)
}

fn required<'a>(element: &'a Element, attr: &'static str) -> Result<&'a str, StateError> {
    element.attr(attr).ok_or(StateError::BadAttribute {
        name: attr,
        value: String::new(),
        why: "missing",
    })
}

fn item_id(text: &str) -> Result<String, StateError> {
    if text.is_empty() || text.len() > MAX_ID_LEN {
        return Err(StateError::BadAttribute {
            name: "item",
            value: text.chars().take(64).collect(),
            why: "an item id has 1 to 256 characters",
        });
    }
    Ok(text.to_owned())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
