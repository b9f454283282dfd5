//! What [`Bus`](crate::Bus) handles and the connection task say to each
//! other.

use std::sync::RwLock;

use tokio::sync::{mpsc, oneshot};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;

use crate::error::{CloseError, SendError, ServerError, SubscribeError};
use crate::pubsub::Incoming;

/// The answer to an IQ: the result payload, or the stanza error.
pub(crate) type IqOutcome = Result<Option<Element>, ServerError>;

/// Where the task reports the outcome of a close.
pub(crate) type CloseReply = oneshot::Sender<Result<(), CloseError>>;

/// What a [`Bus`](crate::Bus) handle asks of the task.
pub(crate) enum Command {
    /// Send an IQ get (`set == false`) or set and report its answer.
    Iq {
        to: Jid,
        set: bool,
        payload: Element,
        reply: oneshot::Sender<IqOutcome>,
    },
    /// Add a local subscription to a topic, subscribing on the server if
    /// it is the first.
    Subscribe {
        topic: String,
        tx: mpsc::Sender<Incoming>,
        reply: oneshot::Sender<Result<u64, SubscribeError>>,
    },
    /// Add a local receiver of events sent directly to this bus.
    Inbox {
        topic: String,
        tx: mpsc::Sender<Incoming>,
        reply: oneshot::Sender<u64>,
    },
    /// Send one `<message/>` with an xbus payload.
    Send {
        to: Jid,
        payload: Element,
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    /// Wait for pending IQs (bounded), go unavailable, end the stream.
    Close {
        reply: oneshot::Sender<Result<(), CloseError>>,
    },
}

/// A local subscription or inbox went away (sent from `Drop`, so it uses
/// an unbounded channel: one small message per dropped stream).
#[derive(Debug)]
pub(crate) enum Dropped {
    Subscription { topic: String, id: u64 },
    Inbox { topic: String, id: u64 },
}

/// State shared between the handles and the task.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The full JID the server bound for the current session.
    pub bound: RwLock<FullJid>,
}
