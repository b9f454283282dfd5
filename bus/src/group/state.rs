//! A group's progress as it is kept on the server, and how a new leader
//! reads it against the topic's stored items.
//!
//! The topic's items are stored oldest first, and a leader hands them out
//! in that order. So progress is a **high mark** (the newest item handed
//! out at least once) plus the items up to it that are not done yet, with
//! the deliveries each had: every other stored item up to the mark is
//! done. That stays small whatever the topic's `max_items`: the pending
//! items are those out with an instance or waiting for a redelivery.
//!
//! ```xml
//! <group xmlns='urn:xbus:group:0' epoch='3' high='9f…c1'>
//!   <pending item='b2…4e' count='2'/>
//! </group>
//! ```
//!
//! A mark that is no longer among the stored items means that more
//! events were published than the topic keeps while the group was behind:
//! they are lost to it, and [`reconcile`] says so ([`Lost`]).

use std::collections::{HashMap, HashSet};

use xmpp_parsers::minidom::Element;

use crate::codec::name;

/// The namespace of the group state and of the group's wire elements.
pub(crate) const NS: &str = "urn:xbus:group:0";

/// Most `<pending/>` entries a state may hold.
pub(crate) const MAX_ENTRIES: usize = 4096;
/// Longest item id accepted (xbus writes 32 hex digits).
const MAX_ID_LEN: usize = 256;

/// A group's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupState {
    /// The leader's epoch: each takeover increments it.
    pub epoch: u64,
    /// The newest item handed out at least once: every stored item up to
    /// it is done, except `pending`.
    pub high: Option<String>,
    /// Items up to `high` not done yet, with the deliveries made.
    pub pending: Vec<(String, u32)>,
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
        if let Some(high) = &self.high {
            group = group.attr(name("high"), high.as_str());
        }
        for (item, count) in &self.pending {
            group = group.append(
                Element::builder("pending", NS)
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
        let high = group.attr("high").map(item_id).transpose()?;
        let mut state = GroupState {
            epoch,
            high,
            ..GroupState::default()
        };
        for child in group.children().filter(|c| c.is("pending", NS)) {
            if state.pending.len() == MAX_ENTRIES {
                return Err(StateError::TooMany("pending"));
            }
            let item = item_id(required(child, "item")?)?;
            let text = required(child, "count")?;
            let count = text.parse().map_err(|_| StateError::BadAttribute {
                name: "count",
                value: text.to_owned(),
                why: "not a whole number",
            })?;
            state.pending.push((item, count));
        }
        Ok(state)
    }
}

/// What a new leader makes of a state and the stored items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reconciled {
    /// Stored items that are done.
    pub done: HashSet<String>,
    /// Deliveries already made of the pending items.
    pub attempts: HashMap<String, u32>,
    /// Set when the high mark is gone from the stored items.
    pub lost: Option<Lost>,
}

/// Events the group never got: the topic dropped them before the group
/// handled them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    /// The last item the group knows it handed out.
    pub last_known: String,
    /// The oldest item the topic still stores.
    pub oldest_stored: Option<String>,
}

/// Reads `state` against `stored` (the topic's items, oldest first).
pub(crate) fn reconcile(state: &GroupState, stored: &[String]) -> Reconciled {
    let attempts: HashMap<String, u32> = state.pending.iter().cloned().collect();
    let high_at = state
        .high
        .as_ref()
        .and_then(|high| stored.iter().position(|item| item == high));
    let mut done: HashSet<String> = match high_at {
        Some(at) => stored[..=at]
            .iter()
            .filter(|item| !attempts.contains_key(*item))
            .cloned()
            .collect(),
        None => HashSet::new(),
    };
    done.shrink_to_fit();
    let lost = match (&state.high, high_at) {
        (Some(high), None) => Some(Lost {
            last_known: high.clone(),
            oldest_stored: stored.first().cloned(),
        }),
        _ => None,
    };
    Reconciled {
        done,
        attempts,
        lost,
    }
}

/// The high mark and the pending items for `seen` (item ids in stored
/// order, from the first one not done), given the mark below them
/// (`floor`: done with everything before it), what is done, and the
/// deliveries made of each item.
pub(crate) fn progress_of<'a>(
    floor: Option<&String>,
    seen: impl ExactSizeIterator<Item = &'a String> + DoubleEndedIterator + Clone,
    is_done: impl Fn(&str) -> bool,
    attempts: impl Fn(&str) -> u32,
) -> (Option<String>, Vec<(String, u32)>) {
    let touched = |item: &str| is_done(item) || attempts(item) > 0;
    let Some(high_at) = seen.clone().rposition(|item| touched(item)) else {
        return (floor.cloned(), Vec::new());
    };
    let mut high = floor.cloned();
    let mut pending = Vec::new();
    for item in seen.take(high_at + 1) {
        if !is_done(item) {
            if pending.len() == MAX_ENTRIES {
                // A lower mark: what follows counts as not done (handled
                // again rather than lost).
                break;
            }
            pending.push((item.clone(), attempts(item)));
        }
        high = Some(item.clone());
    }
    (high, pending)
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
