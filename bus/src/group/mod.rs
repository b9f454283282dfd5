//! Durable consumer groups (issue 13, in progress): the instances of a
//! service share a topic's events, each event handled by one of them until
//! acked or dead-lettered.
//!
//! So far only the leader's bookkeeping ([`ledger`]) exists; the consumer
//! API, the wire format and the group state on the server follow.

// Not wired into the bus yet: only the unit tests use it.
#[allow(dead_code)]
pub(crate) mod ledger;
