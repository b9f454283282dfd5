//! Durable consumer groups (issue 13, in progress): the instances of a
//! service share a topic's events, each event handled by one of them until
//! acked or dead-lettered.
//!
//! So far the pure parts exist: the leader's bookkeeping ([`ledger`]),
//! the group's progress as kept on the server ([`state`]), the job IQs
//! ([`wire`]), and the election with its epoch fence ([`fence`]). The
//! consumer API and the connection task's side follow.

// Not wired into the bus yet: only the unit tests use them.
#[allow(dead_code)]
pub(crate) mod fence;
#[allow(dead_code)]
pub(crate) mod ledger;
#[allow(dead_code)]
pub(crate) mod state;
#[allow(dead_code)]
pub(crate) mod wire;
