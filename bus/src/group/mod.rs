//! Durable consumer groups (issue 13, in progress): the instances of a
//! service share a topic's events, each event handled by one of them until
//! acked or dead-lettered.
//!
//! The pure parts live here: the leader's bookkeeping ([`ledger`]), the
//! group's progress as kept on the server ([`state`]), the job IQs
//! ([`wire`]), and the election with its epoch fence ([`fence`]). The
//! public API is in `consume.rs`, the connection task's side in
//! `task/group/`; the semantics in `docs/RELIABILITY.md`.

pub(crate) mod fence;
pub(crate) mod ledger;
pub(crate) mod state;
pub(crate) mod wire;

use crate::error::ConsumeError;

/// A group on a topic: the unit of progress, leadership and membership.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct GroupKey {
    pub topic: String,
    pub group: String,
}

impl GroupKey {
    pub fn new(topic: &str, group: &str) -> GroupKey {
        GroupKey {
            topic: topic.to_owned(),
            group: group.to_owned(),
        }
    }

    /// The pubsub node that keeps the group's progress.
    pub fn state_node(&self) -> String {
        format!("xbus.group.{}.{}", self.group, self.topic)
    }
}

/// A group name: 1 to 64 ASCII letters, digits, `_` or `-`.
pub(crate) fn validate_group(group: &str) -> Result<(), ConsumeError> {
    let valid = !group.is_empty()
        && group.len() <= wire::MAX_GROUP_LEN
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ConsumeError::InvalidGroup(group.to_owned()))
    }
}
