//! What [`Bus`](crate::Bus) handles and the connection task say to each
//! other.

use std::sync::RwLock;

use tokio::sync::{mpsc, oneshot};
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::error::{CloseError, SendError, ServerError, SubscribeError};
use crate::presence::{Instance, InstanceEvent, Status};
use crate::pubsub::{Incoming, Repeatable};
use crate::queue::Producer;
use crate::request::ServeError;
use crate::serve::ErasedHandler;
use crate::stats::BusStats;
use crate::status::StatusSender;

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
        /// Built by the handle, so that the task only sends it.
        payload: Element,
        /// The same request, to send again if the session is reset before
        /// the answer comes (publishes and node creation: doing them twice
        /// is harmless), always as a `set`; `None` for IQs that must not
        /// be repeated.
        resend: Option<Repeatable>,
        reply: oneshot::Sender<IqOutcome>,
    },
    /// Add a local subscription to a topic, subscribing on the server if
    /// it is the first.
    Subscribe {
        topic: String,
        tx: Producer<Incoming>,
        /// Deliver the last this many stored items first.
        replay: usize,
        /// The topic keeps no items: no gap fill after a session reset.
        transient: bool,
        reply: oneshot::Sender<Result<u64, SubscribeError>>,
    },
    /// Join a consumer group; the reply carries where jobs are settled.
    Consume {
        key: crate::group::GroupKey,
        options: crate::consume::ConsumeOptions,
        tx: mpsc::Sender<crate::consume::Handed>,
        notices: mpsc::Sender<crate::consume::GroupError>,
        reply: oneshot::Sender<
            Result<mpsc::UnboundedSender<Box<crate::consume::Settle>>, crate::error::ConsumeError>,
        >,
    },
    /// Add a local receiver of events sent directly to this bus.
    Inbox {
        topic: String,
        tx: Producer<Incoming>,
        reply: oneshot::Sender<u64>,
    },
    /// Send one `<message/>` with an xbus payload.
    Send {
        to: Jid,
        payload: Element,
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    /// Answer calls of `method` with `handler`.
    Serve {
        method: String,
        handler: ErasedHandler,
        allow: crate::allow::Allow,
        reply: oneshot::Sender<Result<(), ServeError>>,
    },
    /// Call a method on a service (an instance is picked) or an instance.
    Call {
        target: Target,
        method: String,
        /// Names the call's IQs, so a dropped caller can cancel it.
        token: u64,
        request: Element,
        reply: oneshot::Sender<CallOutcome>,
        /// Where the task sent it, for errors that name the instance.
        route: Route,
    },
    /// Send one `<message/>` with an xbus payload to one online instance of
    /// a service.
    SendToAny {
        service: BareJid,
        payload: Element,
        reply: oneshot::Sender<Result<FullJid, SendError>>,
    },
    /// Announce another status.
    SetStatus { status: Status },
    /// Report the instance events of a service to `tx`.
    Watch {
        service: BareJid,
        tx: mpsc::Sender<InstanceEvent>,
        reply: oneshot::Sender<u64>,
    },
    /// List the online instances of a service.
    Instances {
        service: BareJid,
        reply: oneshot::Sender<Vec<Instance>>,
    },
    /// Report counters.
    Stats { reply: oneshot::Sender<BusStats> },
    /// Go unavailable, wait for pending IQs and running handlers
    /// (bounded), end the stream.
    Close {
        reply: oneshot::Sender<Result<(), CloseError>>,
        /// The end of the close timeout, which the handle's own wait for
        /// publishes has used up in part.
        deadline: tokio::time::Instant,
    },
}

/// A local subscription or inbox went away (sent from `Drop`, so it uses
/// an unbounded channel: one small message per dropped stream).
#[derive(Debug)]
pub(crate) enum Dropped {
    Subscription {
        topic: String,
        id: u64,
    },
    Inbox {
        topic: String,
        id: u64,
    },
    Watch {
        service: BareJid,
        id: u64,
    },
    /// A consumer left its group.
    Group {
        key: crate::group::GroupKey,
    },
    /// The caller of a call stopped waiting.
    Call {
        token: u64,
    },
}

/// Whom a call goes to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Any online instance of the service (bare JID), picked by the task.
    Service(BareJid),
    /// This instance.
    Instance(FullJid),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Service(jid) => jid.fmt(f),
            Target::Instance(jid) => jid.fmt(f),
        }
    }
}

/// The end of a call, as far as the task can tell.
pub(crate) type CallOutcome = Result<Answer, CallFailure>;

/// An instance answered.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The instance that answered.
    pub from: FullJid,
    /// Its result payload, or its (or its server's) stanza error.
    pub result: Result<Option<Element>, StanzaError>,
}

/// No answer will come.
#[derive(Debug)]
pub(crate) enum CallFailure {
    /// Nobody to ask: no instance online, or the subscription refused.
    NoResponder { reason: String },
    /// The session was lost or the bus closed.
    Disconnected,
}

/// State shared between the handles and the task.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The full JID the server bound for the current session.
    pub bound: RwLock<FullJid>,
    /// Where connection events go.
    pub status: StatusSender,
}

/// The instance a call was last sent to: set by the task, read by the
/// caller when the call times out or the connection goes.
pub(crate) type Route = std::sync::Arc<std::sync::Mutex<Option<xmpp_parsers::jid::FullJid>>>;
