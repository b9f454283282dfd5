//! Durable consumer groups (issue 13, in progress): the instances of a
//! service share a topic's events, each event handled by one of them until
//! acked or dead-lettered.
//!
//! So far the leader's bookkeeping ([`ledger`]) and the group's progress
//! as kept on the server ([`state`]) exist; the consumer API, the wire
//! format and the leader's election follow.

// Not wired into the bus yet: only the unit tests use them.
#[allow(dead_code)]
pub(crate) mod ledger;
#[allow(dead_code)]
pub(crate) mod state;
