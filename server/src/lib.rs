//! # xbus-server: an embedded, single-node XMPP server
//!
//! Runs in-process on tokio so that examples and tests need nothing
//! installed. Production stays on Prosody or ejabberd.
#![deny(missing_docs)]

pub mod pubsub;
