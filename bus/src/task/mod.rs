//! The connection task: the one place that owns the XMPP stream.
//!
//! [`Bus`](crate::Bus) handles talk to it through a bounded command
//! channel; every command that needs an answer carries a `oneshot`. The
//! task routes IQ answers to their callers, fans pubsub notifications and
//! direct events out to local subscriptions ([`pubsub`]), runs handlers
//! and routes calls ([`rpc`]), keeps the presence table ([`presence`]),
//! answers pings, and restores presence and subscriptions after a
//! reconnect that lost the session.

mod directory;
mod presence;
mod pubsub;
mod rpc;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_xmpp::Stanza;
use tokio_xmpp::stanzastream::{Event, StanzaStage, StanzaState, StanzaStream, StreamEvent};
use tracing::{debug, info, warn};
use xmpp_parsers::iq::{Iq, IqHeader, IqPayload};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::command::{CallFailure, CloseReply, Command, Dropped, IqOutcome, Shared};
use crate::config::BusConfig;
use crate::error::{CloseError, SendError};
use crate::pubsub::Incoming;
use crate::queue::Producer;
use crate::serve::ErasedHandler;
use crate::stats::{BusStats, Counters};
use crate::status::{ConnectionEvent, StatusSender};

use self::directory::Directory;
use self::pubsub::Topic;
use self::rpc::OutgoingCall;

/// What an IQ this task sent is waiting for.
enum PendingIq {
    /// A handle's IQ (publish, create): the answer goes back as is.
    Caller {
        to: Jid,
        reply: oneshot::Sender<IqOutcome>,
        /// What to send again after a session reset: `(set, payload)`.
        resend: Option<(bool, Element)>,
    },
    /// A call to an instance.
    Call { to: FullJid, call: OutgoingCall },
    /// The task's own subscription to a topic.
    Subscribe { to: Jid, topic: String },
    /// Stored items of a topic, for the subscriptions `subs` catching up.
    History {
        to: Jid,
        topic: String,
        subs: Vec<u64>,
    },
    /// The roster, fetched after each login.
    Roster { to: Jid },
    /// An IQ whose answer only gets logged.
    Fire { to: Jid, what: &'static str },
    /// The ping that ends a close: its answer comes after every stanza the
    /// server routed to this session before it.
    Drain { to: Jid },
}

/// Where a close stands once nothing is pending any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// The drain ping is not sent yet.
    NotStarted,
    /// Waiting for the drain ping's answer.
    Waiting,
    /// Every stanza routed here before the close was handled.
    Done,
}

impl PendingIq {
    fn to(&self) -> Jid {
        match self {
            PendingIq::Caller { to, .. }
            | PendingIq::Subscribe { to, .. }
            | PendingIq::History { to, .. }
            | PendingIq::Roster { to }
            | PendingIq::Fire { to, .. }
            | PendingIq::Drain { to } => to.clone(),
            PendingIq::Call { to, .. } => Jid::from(to.clone()),
        }
    }

    /// Whether someone still waits for the answer.
    fn is_abandoned(&self) -> bool {
        match self {
            PendingIq::Caller { reply, .. } => reply.is_closed(),
            PendingIq::Call { call, .. } => call.reply.is_closed(),
            _ => false,
        }
    }

    /// Whether a handle waits for it (`close()` waits for these).
    fn has_caller(&self) -> bool {
        matches!(self, PendingIq::Caller { .. } | PendingIq::Call { .. }) && !self.is_abandoned()
    }
}

pub(crate) struct Task {
    stream: StanzaStream,
    commands: mpsc::Receiver<Command>,
    dropped: mpsc::UnboundedReceiver<Dropped>,
    shared: Arc<Shared>,
    pubsub: Jid,
    stream_management: bool,
    max_payload: usize,
    close_timeout: Duration,
    pending: HashMap<String, PendingIq>,
    topics: HashMap<String, Topic>,
    inboxes: HashMap<String, Vec<(u64, Producer<Incoming>)>>,
    handlers: HashMap<String, ErasedHandler>,
    /// Handler slots; a call that finds none is refused.
    slots: Arc<Semaphore>,
    max_handlers: usize,
    /// Answers of running handlers, to be sent by this task.
    answers: mpsc::UnboundedReceiver<Stanza>,
    answers_tx: mpsc::UnboundedSender<Stanza>,
    directory: Directory,
    /// Unavailable presence was sent (closing): calls are refused.
    offline_announced: bool,
    drain: Drain,
    next_id: u64,
    /// The topics' `max_items`: how much history a gap fetch asks for, and
    /// the size of each subscription's duplicate window.
    max_items: usize,
    counters: Counters,
    status: StatusSender,
}

impl Task {
    pub(crate) fn new(
        stream: StanzaStream,
        commands: mpsc::Receiver<Command>,
        dropped: mpsc::UnboundedReceiver<Dropped>,
        shared: Arc<Shared>,
        config: &BusConfig,
        stream_management: bool,
        status: StatusSender,
    ) -> Task {
        let own = shared.bound.read().expect("lock poisoned").to_bare();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        Task {
            stream,
            commands,
            dropped,
            shared,
            pubsub: Jid::from(config.pubsub_service()),
            stream_management,
            max_payload: config.max_payload,
            close_timeout: config.close_timeout,
            pending: HashMap::new(),
            topics: HashMap::new(),
            inboxes: HashMap::new(),
            handlers: HashMap::new(),
            slots: Arc::new(Semaphore::new(config.max_concurrent_handlers)),
            max_handlers: config.max_concurrent_handlers,
            answers,
            answers_tx,
            directory: Directory::new(own, config),
            offline_announced: false,
            drain: Drain::NotStarted,
            next_id: 0,
            max_items: usize::try_from(config.max_items)
                .unwrap_or(usize::MAX)
                .max(1),
            counters: Counters::default(),
            status,
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn bound(&self) -> FullJid {
        self.shared.bound.read().expect("lock poisoned").clone()
    }

    /// Runs until [`Command::Close`], until every handle is gone, or until
    /// the stream fails for good.
    pub(crate) async fn run(mut self) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        // Set once closing starts: the deadline, and whom to tell.
        let mut closing: Option<(Instant, Option<CloseReply>)> = None;
        self.fetch_roster().await;
        loop {
            if let Some((deadline, _)) = &closing {
                if Instant::now() >= *deadline {
                    break;
                }
                // Idle: no answer awaited, no handler running, no answer
                // left to send. Then one server round trip, so that calls
                // already routed here (and acknowledged) are answered too.
                let idle = self.callers_pending() == 0
                    && self.handlers_running() == 0
                    && self.answers.is_empty();
                if idle {
                    match self.drain {
                        Drain::Done => break,
                        Drain::NotStarted => self.start_drain().await,
                        Drain::Waiting => {}
                    }
                }
            }
            let parked_until = self.directory.next_deadline();
            tokio::select! {
                event = self.stream.next() => match event {
                    Some(Event::Stanza(stanza)) => self.on_stanza(stanza).await,
                    Some(Event::Stream(event)) => self.on_stream_event(event).await,
                    None => {
                        warn!("XMPP stream ended for good");
                        break;
                    }
                },
                Some(answer) = self.answers.recv() => {
                    self.send(answer).await;
                }
                Some(dropped) = self.dropped.recv() => self.on_dropped(dropped).await,
                command = self.commands.recv(), if closing.is_none() => {
                    let reply = match command {
                        Some(Command::Close { reply }) => Some(reply),
                        Some(command) => {
                            self.on_command(command).await;
                            continue;
                        }
                        None => None,
                    };
                    // Tell callers first, so that no new calls are routed here.
                    self.send(Presence::new(PresenceType::Unavailable).into()).await;
                    self.offline_announced = true;
                    closing = Some((Instant::now() + self.close_timeout, reply));
                },
                _ = tokio::time::sleep_until(parked_until.unwrap_or_else(Instant::now)), if parked_until.is_some() => {
                    self.expire_parked().await;
                }
                _ = sweep.tick() => self.sweep(),
            }
        }
        let unconfirmed = self.callers_pending();
        let close_timeout = self.close_timeout;
        self.finish().await;
        if let Some((_, Some(reply))) = closing {
            let result = match unconfirmed {
                0 => Ok(()),
                pending => Err(CloseError::Unconfirmed {
                    pending,
                    after: close_timeout,
                }),
            };
            let _ = reply.send(result);
        }
    }

    /// Forgets IQs whose caller timed out and gave up.
    fn sweep(&mut self) {
        let abandoned: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.is_abandoned())
            .map(|(id, _)| id.clone())
            .collect();
        for id in abandoned {
            if let Some(PendingIq::Call { to, .. }) = self.pending.remove(&id) {
                self.directory.call_ended(&to);
            }
        }
    }

    async fn start_drain(&mut self) {
        self.drain = Drain::Waiting;
        let Ok(to) = self.bound().domain().as_str().parse::<Jid>() else {
            self.drain = Drain::Done;
            return;
        };
        let ping = Element::builder("ping", xmpp_parsers::ns::PING).build();
        self.send_iq(to.clone(), false, ping, PendingIq::Drain { to })
            .await;
    }

    fn callers_pending(&self) -> usize {
        self.pending.values().filter(|p| p.has_caller()).count()
    }

    fn handlers_running(&self) -> usize {
        self.max_handlers - self.slots.available_permits()
    }

    async fn finish(mut self) {
        self.directory.fail_parked("the bus is closing");
        for (_, pending) in self.pending.drain() {
            if let PendingIq::Call { call, .. } = pending {
                call.fail(CallFailure::Disconnected);
            }
        }
        if !self.offline_announced {
            let unavailable = Presence::new(PresenceType::Unavailable);
            let mut token = self.stream.send(Box::new(unavailable.into())).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), token.wait_for(StanzaStage::Sent))
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.stream.close())
            .await
            .is_err()
        {
            debug!("stream did not close within 5 s; dropped");
        }
        self.status.report(ConnectionEvent::Closed);
        info!("bus closed");
    }

    async fn send(&mut self, stanza: Stanza) -> tokio_xmpp::stanzastream::StanzaToken {
        self.stream.send(Box::new(stanza)).await
    }

    async fn send_iq(&mut self, to: Jid, set: bool, payload: Element, pending: PendingIq) {
        let id = format!("xb{}", self.next_id());
        self.send_iq_as(id, to, set, payload, pending).await;
    }

    async fn send_iq_as(
        &mut self,
        id: String,
        to: Jid,
        set: bool,
        payload: Element,
        pending: PendingIq,
    ) {
        self.pending.insert(id.clone(), pending);
        self.send(iq(id, to, set, payload)).await;
    }

    /// After a session reset: sends the IQs that are safe to repeat
    /// (publishes, node creation) again, under their ids. If the old session
    /// delivered one, the server stores the same item id twice, which
    /// overwrites it, and subscriptions drop the second notification.
    async fn resend_after_reset(&mut self) {
        let again: Vec<(String, Jid, bool, Element)> = self
            .pending
            .iter()
            .filter_map(|(id, pending)| match pending {
                PendingIq::Caller {
                    to,
                    reply,
                    resend: Some((set, payload)),
                } if !reply.is_closed() => Some((id.clone(), to.clone(), *set, payload.clone())),
                _ => None,
            })
            .collect();
        if !again.is_empty() {
            info!(iqs = again.len(), "re-sending unconfirmed publishes");
        }
        for (id, to, set, payload) in again {
            self.send(iq(id, to, set, payload)).await;
        }
    }

    /// Sends `message` and reports on `reply` once the server acknowledged
    /// it (XEP-0198), or once it was written without stream management.
    async fn send_acked<T: Send + 'static>(
        &mut self,
        message: Message,
        done: T,
        reply: oneshot::Sender<Result<T, SendError>>,
    ) {
        let mut token = self.send(message.into()).await;
        let stage = if self.stream_management {
            StanzaStage::Acked
        } else {
            StanzaStage::Sent
        };
        tokio::spawn(async move {
            let result = match token.wait_for(stage).await {
                Some(StanzaState::Sent { .. }) | Some(StanzaState::Acked { .. }) => Ok(done),
                Some(StanzaState::Failed { error }) => Err(SendError::NotAcknowledged(
                    error.into_io_error().to_string(),
                )),
                _ => Err(SendError::NotAcknowledged("the stream was closed".into())),
            };
            let _ = reply.send(result);
        });
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Iq {
                to,
                set,
                payload,
                resend,
                reply,
            } => {
                let pending = PendingIq::Caller {
                    to: to.clone(),
                    reply,
                    resend: resend.then(|| (set, payload.clone())),
                };
                self.send_iq(to, set, payload, pending).await;
            }
            Command::Subscribe {
                topic,
                tx,
                replay,
                reply,
            } => self.add_subscription(topic, tx, replay, reply).await,
            Command::Inbox { topic, tx, reply } => {
                let id = self.next_id();
                self.inboxes.entry(topic).or_default().push((id, tx));
                let _ = reply.send(id);
            }
            Command::Send { to, payload, reply } => {
                let mut message = Message::new_with_type(MessageType::Normal, Some(to));
                message.payloads.push(payload);
                self.send_acked(message, (), reply).await;
            }
            Command::Serve {
                method,
                handler,
                reply,
            } => {
                let result = self.add_handler(method, handler);
                let _ = reply.send(result);
            }
            Command::Call {
                target,
                method,
                token,
                request,
                reply,
            } => {
                let call = OutgoingCall::new(target, method, token, request, reply);
                self.start_call(call).await;
            }
            Command::SendToAny {
                service,
                payload,
                reply,
            } => self.send_to_any(service, payload, reply).await,
            Command::SetStatus { status } => self.set_status(status).await,
            Command::Watch { service, tx, reply } => {
                let id = self.next_id();
                self.watch(service, id, tx).await;
                let _ = reply.send(id);
            }
            Command::Instances { service, reply } => self.instances(service, reply).await,
            Command::Stats { reply } => {
                let c = self.counters;
                let _ = reply.send(BusStats {
                    pending_iqs: self.pending.len(),
                    running_handlers: self.handlers_running(),
                    topics: self.topics.len(),
                    services: self.directory.len(),
                    unconfirmed_publishes: self
                        .pending
                        .values()
                        .filter(|p| {
                            matches!(
                                p,
                                PendingIq::Caller {
                                    resend: Some(_),
                                    ..
                                }
                            )
                        })
                        .count(),
                    ignored_stanzas: c.ignored_stanzas,
                    malformed_events: c.malformed_events,
                    duplicates_dropped: c.duplicates_dropped,
                    overflowed: c.overflowed,
                    refused_calls: c.refused_calls,
                    session_resets: c.session_resets,
                });
            }
            Command::Close { .. } => unreachable!("handled by run()"),
        }
    }

    async fn on_dropped(&mut self, dropped: Dropped) {
        match dropped {
            Dropped::Inbox { topic, id } => {
                if let Some(list) = self.inboxes.get_mut(&topic) {
                    list.retain(|(i, _)| *i != id);
                    if list.is_empty() {
                        self.inboxes.remove(&topic);
                    }
                }
            }
            Dropped::Subscription { topic, id } => self.remove_subscription(topic, id).await,
            Dropped::Watch { service, id } => self.directory.unwatch(&service, id),
            Dropped::Call { token } => self.cancel_call(token),
        }
    }

    async fn on_stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Reset {
                bound_jid,
                features,
            } => {
                self.counters.session_resets += 1;
                self.status.report(ConnectionEvent::SessionReset);
                info!(jid = %bound_jid, "new session bound; restoring presence, subscriptions and unconfirmed publishes");
                if let Ok(full) = bound_jid.try_into_full() {
                    *self.shared.bound.write().expect("lock poisoned") = full;
                }
                self.stream_management = features.stream_management.is_some();
                let announce = self.directory.announcement();
                self.send(announce.into()).await;
                // Answers to IQs of the lost session will never come.
                let lost: Vec<String> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| !matches!(p, PendingIq::Caller { .. }))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in lost {
                    if let Some(PendingIq::Call { to, call }) = self.pending.remove(&id) {
                        self.directory.call_ended(&to);
                        call.fail(CallFailure::Disconnected);
                    }
                }
                self.directory.forget_instances().await;
                self.fetch_roster().await;
                self.resubscribe_all().await;
                self.resend_after_reset().await;
            }
            StreamEvent::Suspended => debug!("XMPP connection lost"),
            StreamEvent::Resumed => self.status.report(ConnectionEvent::Resumed),
        }
    }

    async fn on_stanza(&mut self, stanza: Stanza) {
        match stanza {
            Stanza::Iq(iq) => self.on_iq(iq).await,
            Stanza::Message(message) => self.on_message(message).await,
            Stanza::Presence(presence) => self.on_presence(presence).await,
        }
    }

    async fn on_iq(&mut self, iq: Iq) {
        let (header, payload) = iq.split();
        let answer = match payload {
            IqPayload::Result(payload) => Ok(payload),
            IqPayload::Error(error) => Err(error),
            IqPayload::Get(request) | IqPayload::Set(request) => {
                self.on_iq_request(header, request).await;
                return;
            }
        };
        let Some(pending) = self.pending.remove(&header.id) else {
            debug!(id = header.id, "answer to an unknown or expired IQ dropped");
            return;
        };
        // An answer must come from whom the IQ went to; the server answers
        // for our own account without a `from`.
        let expected = pending.to();
        let from_ok = match &header.from {
            Some(from) => *from == expected,
            None => expected == self.bound().to_bare(),
        };
        if !from_ok {
            warn!(id = header.id, from = ?header.from, %expected, "IQ answer from the wrong sender ignored");
            self.pending.insert(header.id, pending);
            return;
        }
        match pending {
            PendingIq::Caller { reply, .. } => {
                let _ = reply.send(answer.map_err(|e| crate::pubsub::server_error(&e)));
            }
            PendingIq::Call { to, call } => self.on_call_answer(to, call, answer).await,
            PendingIq::Subscribe { topic, .. } => {
                let answer = answer.map_err(|e| crate::pubsub::server_error(&e));
                self.on_subscribed(topic, answer).await;
            }
            PendingIq::History { topic, subs, .. } => {
                let answer = answer.map_err(|e| crate::pubsub::server_error(&e));
                self.on_history(topic, subs, answer).await;
            }
            PendingIq::Roster { .. } => self.on_roster(answer).await,
            PendingIq::Drain { .. } => self.drain = Drain::Done,
            PendingIq::Fire { what, .. } => {
                if let Err(error) = answer {
                    debug!(what, error = %crate::pubsub::server_error(&error), "server refused");
                }
            }
        }
    }

    /// Answers an IQ get or set: calls, roster pushes and pings; anything
    /// else gets `service-unavailable`.
    async fn on_iq_request(&mut self, header: IqHeader, request: Element) {
        if request.is(crate::rpc::REQUEST, crate::codec::NS) {
            self.on_incoming_call(header, request).await;
            return;
        }
        let response = if request.is("ping", xmpp_parsers::ns::PING) {
            IqPayload::Result(None)
        } else if request.is("query", xmpp_parsers::ns::ROSTER) {
            self.on_roster_push(header.from.as_ref(), &request)
        } else {
            debug!(from = ?header.from, ns = %request.ns(), "unsupported IQ request");
            IqPayload::Error(StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "en",
                format!(
                    "xbus does not serve <{} xmlns='{}'/>",
                    request.name(),
                    request.ns()
                ),
            ))
        };
        self.answer_iq(header, response).await;
    }

    async fn answer_iq(&mut self, header: IqHeader, response: IqPayload) {
        self.send(answer(header, response)).await;
    }
}

/// An IQ get (`set == false`) or set.
fn iq(id: String, to: Jid, set: bool, payload: Element) -> Stanza {
    let payload = if set {
        IqPayload::Set(payload)
    } else {
        IqPayload::Get(payload)
    };
    Iq::assemble(
        IqHeader {
            from: None,
            to: Some(to),
            id,
        },
        payload,
    )
    .into()
}

/// The answer to the IQ with `header`.
fn answer(header: IqHeader, response: IqPayload) -> Stanza {
    Iq::assemble(
        IqHeader {
            from: None,
            to: header.from,
            id: header.id,
        },
        response,
    )
    .into()
}
