//! # xbus-server: an embedded, single-node XMPP server
//!
//! Runs in-process on tokio so that examples and tests need nothing
//! installed. Production stays on Prosody or ejabberd.
//!
//! ```no_run
//! # async fn demo() -> Result<(), xbus_server::ServerError> {
//! let server = xbus_server::Server::builder()
//!     .domain("localhost")
//!     .bind("127.0.0.1:0")
//!     .start()
//!     .await?;
//! println!("XMPP on {} for {}", server.addr(), server.domain());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! With the `bus` feature, `start_with_bus` starts a server and connects
//! an xbus `Bus` in one line, and `Server::bus` connects
//! more.
//!
//! What it implements: c2s over TCP with optional STARTTLS (rustls with
//! ring), SASL PLAIN and SCRAM-SHA-1/-256, resource binding, routing per
//! RFC 6121, presence subscriptions with an in-memory roster, offline
//! messages with `<delay/>`, XEP-0030 disco, XEP-0199 ping, XEP-0198 stream
//! management with resumption, and the XEP-0060 service at
//! `pubsub.<domain>` (see [`pubsub`]). Everything is kept in memory.
//!
//! ## Behaviour worth knowing
//!
//! - **Accounts.** Open mode (the default) registers any user name on its
//!   first login and offers only SASL PLAIN (SCRAM cannot register a
//!   password it has never seen). With [`ServerBuilder::account`],
//!   [`ServerBuilder::fixed_accounts`] or [`Server::register`] the server
//!   offers SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN.
//! - **Resource conflict.** Binding a resource that is already bound
//!   replaces the old session (RFC 6120 7.7.2.2, as Prosody and ejabberd
//!   do by default): it gets a `conflict` stream error. Without a
//!   requested resource the server picks `xbus-<random>`.
//! - **Messages to a bare JID** (`normal`, `chat`) go to every available
//!   resource with the highest non-negative priority (as Prosody and
//!   ejabberd do), `headline` to every non-negative one; with none
//!   available, `normal`/`chat` are stored offline (bounded, oldest
//!   dropped) and `headline` is dropped. A message to an absent full JID
//!   is handled as sent to the bare JID (`normal`/`chat`) or dropped.
//! - **IQs** to an absent full JID or to another user's bare JID get
//!   `service-unavailable` from the server, `from` the original `to`.
//! - **Limits.** A stanza larger than the maximum gets a
//!   `policy-violation` stream error; a session whose outbound queue fills
//!   up (a client that does not read) is disconnected; so is a XEP-0198
//!   session with too many unacknowledged stanzas.
//! - **Stream management.** A lost connection of a resumable session is
//!   kept for the resume timeout; what it was sent meanwhile is delivered
//!   on resumption. When it ends, unacknowledged and queued
//!   `normal`/`chat` messages are routed again to the bare JID (other
//!   resources or offline storage) and requests are answered with
//!   `service-unavailable`.
#![deny(missing_docs)]
// docs.rs: items of the `bus` feature say so.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
#[cfg(feature = "bus")]
mod bus;
mod c2s;
mod config;
mod error;
mod hub;
mod io;
mod offline;
mod presence;
pub mod pubsub;
mod roster;
mod server;
mod server_iq;
mod session;
mod sm;
mod tls;

#[cfg(feature = "bus")]
pub use bus::{EmbeddedError, start_with_bus};
pub use config::ServerBuilder;
pub use error::ServerError;
pub use server::Server;
