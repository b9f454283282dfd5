//! A group's progress as it is kept on the server, and how a new leader
//! reads it against the topic's stored items.
//!
//! A leader hands items out in the order it learns of them, which is the
//! topic's stored order as long as nothing goes wrong. Around a server
//! crash it is not: Prosody stored items republished after its restart
//! before items it had stored earlier. So progress does not rest on
//! positions alone:
//!
//! * a **high mark**: the newest item handed out at least once; every
//!   stored item after it is not done;
//! * a **floor**, [`DONE_WINDOW`] items handed out before the high mark:
//!   every stored item up to it is done;
//! * between the two, the items that are done, as 48-bit hashes of their
//!   ids (FNV-1a, 12 hex digits): an item that turns up there but that the
//!   leader never handed out is not among them, so it is not taken as done;
//! * the items up to the high mark that are not done yet, with the
//!   deliveries each had.
//!
//! ```xml
//! <group xmlns='urn:xbus:group:0' epoch='3' high='9f…c1' floor='11…e0'>
//!   <pending item='b2…4e' count='2'/>
//!   <done>3fa94c0d2b1e 0c77d1a95e02 …</done>
//! </group>
//! ```
//!
//! A high mark that is no longer among the stored items means that more
//! events were published than the topic keeps while the group was behind:
//! they are lost to it, and [`reconcile`] says so ([`Lost`]).

use std::collections::{HashMap, HashSet};

use xmpp_parsers::minidom::Element;

use crate::codec::name;

/// The namespace of the group state and of the group's wire elements.
pub(crate) const NS: &str = "urn:xbus:group:0";

/// Most `<pending/>` entries a state may hold.
pub(crate) const MAX_ENTRIES: usize = 4096;
/// Items handed out between the floor and the high mark: how far back an
/// item the leader never saw may turn up and still be handed out.
pub(crate) const DONE_WINDOW: usize = 4096;

/// The hash of an item id kept in `<done/>`: FNV-1a 64, low 48 bits.
pub(crate) fn done_hash(item: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in item.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash & 0xffff_ffff_ffff
}
/// Longest item id accepted (xbus writes 32 hex digits).
const MAX_ID_LEN: usize = 256;

/// A group's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupState {
    /// The leader's epoch: each takeover increments it.
    pub epoch: u64,
    /// The newest item handed out at least once: no stored item after it
    /// is done.
    pub high: Option<String>,
    /// Every stored item up to this one is done, except `pending`.
    pub floor: Option<String>,
    /// Items up to `high` not done yet, with the deliveries made.
    pub pending: Vec<(String, u32)>,
    /// [`done_hash`]es of the done items after `floor`, up to `high`.
    pub done: Vec<u64>,
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
        if let Some(floor) = &self.floor {
            group = group.attr(name("floor"), floor.as_str());
        }
        for (item, count) in &self.pending {
            group = group.append(
                Element::builder("pending", NS)
                    .attr(name("item"), item.as_str())
                    .attr(name("count"), count.to_string()),
            );
        }
        if !self.done.is_empty() {
            let hashes: Vec<String> = self.done.iter().map(|h| format!("{h:012x}")).collect();
            group = group.append(Element::builder("done", NS).append(hashes.join(" ")));
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
        let floor = group.attr("floor").map(item_id).transpose()?;
        let mut state = GroupState {
            epoch,
            high,
            floor,
            ..GroupState::default()
        };
        for child in group.children().filter(|c| c.is("done", NS)) {
            for hash in child.text().split_whitespace() {
                if state.done.len() == DONE_WINDOW {
                    return Err(StateError::TooMany("done"));
                }
                let bad = || StateError::BadAttribute {
                    name: "done",
                    value: hash.chars().take(64).collect(),
                    why: "a done hash has 12 hex digits",
                };
                if hash.len() != 12 {
                    return Err(bad());
                }
                state
                    .done
                    .push(u64::from_str_radix(hash, 16).map_err(|_| bad())?);
            }
        }
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
    let at = |mark: &Option<String>| {
        mark.as_ref()
            .and_then(|m| stored.iter().position(|item| item == m))
    };
    let (high_at, floor_at) = (at(&state.high), at(&state.floor));
    let hashes: HashSet<u64> = state.done.iter().copied().collect();
    let mut done: HashSet<String> = HashSet::new();
    for (i, item) in stored.iter().enumerate() {
        // Up to the floor by position; anywhere by hash: a publisher that
        // repeats its last publishes after a session reset moves them to
        // the end of the stored order, after the high mark.
        let below_floor = high_at.is_some() && floor_at.is_some_and(|f| i <= f);
        if !attempts.contains_key(item) && (below_floor || hashes.contains(&done_hash(item))) {
            done.insert(item.clone());
        }
    }
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

/// Reads every stored state against `stored`. Each state is one leader's
/// view, saved under its own item: an item any of them saw done is done,
/// its deliveries are the most any of them counted, and losses are judged
/// by the newest (highest epoch) state.
pub(crate) fn reconcile_all(states: &[GroupState], stored: &[String]) -> Reconciled {
    let newest = states.iter().map(|s| s.epoch).max();
    let mut merged = Reconciled {
        done: HashSet::new(),
        attempts: HashMap::new(),
        lost: None,
    };
    for state in states {
        let one = reconcile(state, stored);
        merged.done.extend(one.done);
        for (item, count) in one.attempts {
            let most = merged.attempts.entry(item).or_default();
            *most = (*most).max(count);
        }
        if Some(state.epoch) == newest && merged.lost.is_none() {
            merged.lost = one.lost;
        }
    }
    merged
        .attempts
        .retain(|item, _| !merged.done.contains(item));
    merged
}

/// A leader's progress: `trail` are the done items before `seen` (in the
/// order handed out, oldest first; `below` the newest done item before
/// them, if any), `seen` the items from the first one not done.
pub(crate) fn progress_of<'a>(
    below: Option<&String>,
    trail: &'a std::collections::VecDeque<String>,
    seen: &'a std::collections::VecDeque<String>,
    is_done: impl Fn(&str) -> bool,
    attempts: impl Fn(&str) -> u32,
) -> GroupState {
    let touched = |item: &str| is_done(item) || attempts(item) > 0;
    // The high mark, lowered if more items than a state holds are pending
    // before it (what follows then counts as not done: handled again
    // rather than lost).
    let mut upto = seen.iter().rposition(|item| touched(item)).map(|at| at + 1);
    let mut pending = Vec::new();
    for (i, item) in seen.iter().take(upto.unwrap_or(0)).enumerate() {
        if !is_done(item) {
            if pending.len() == MAX_ENTRIES {
                upto = Some(i);
                break;
            }
            pending.push((item.clone(), attempts(item)));
        }
    }
    let handed: Vec<&String> = trail
        .iter()
        .chain(seen.iter().take(upto.unwrap_or(0)))
        .collect();
    let start = handed.len().saturating_sub(DONE_WINDOW);
    let floor = match start {
        0 => below.cloned(),
        _ => Some(handed[start - 1].clone()),
    };
    let done = handed[start..]
        .iter()
        .filter(|item| is_done(item))
        .map(|item| done_hash(item))
        .collect();
    GroupState {
        epoch: 0,
        high: handed
            .last()
            .map(|h| (*h).clone())
            .or_else(|| below.cloned()),
        floor,
        pending,
        done,
    }
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
