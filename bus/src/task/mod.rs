//! The connection task: the one place that owns the XMPP stream.
//!
//! [`Bus`](crate::Bus) handles talk to it through a bounded command
//! channel; every command that needs an answer carries a `oneshot`. The
//! task sends IQs and routes their answers ([`iq`]), fans pubsub
//! notifications and direct events out to local subscriptions and fills
//! their gaps ([`pubsub`]), runs handlers and routes calls ([`rpc`]), keeps
//! the presence table ([`presence`]), answers pings, and restores presence,
//! subscriptions and unconfirmed publishes after a reconnect that lost the
//! session ([`session`]).

mod directory;
mod group;
mod iq;
mod liveness;
mod presence;
mod pubsub;
mod pulse;
mod rpc;
mod session;
mod stale;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_xmpp::Stanza;
use tokio_xmpp::stanzastream::{Event, StanzaStage, StanzaState, StanzaStream};
use tracing::{debug, info, warn};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use crate::allow::Allow;
use crate::command::{CallFailure, CloseReply, Command, Dropped, Shared};
use crate::config::BusConfig;
use crate::error::{CloseError, SendError};
use crate::pubsub::Incoming;
use crate::queue::Producer;
use crate::reconnect::Health;
use crate::serve::ErasedHandler;
use crate::stats::{BusStats, Counters};
use crate::status::ConnectionEvent;

use self::directory::Directory;
use self::iq::{PendingIq, answer};
use self::pubsub::Topic;
use self::rpc::OutgoingCall;
use self::session::Confirmed;
use self::stale::StaleRounds;

/// At most this many ready commands, or handlers' answers, are handled
/// in one go, so that their stanzas leave in one write: tokio-xmpp asks the
/// server for an ack (`<r/>`, answered by `<a/>`) after every batch it
/// writes, and one stanza per batch doubled the server's stanzas per call.
const BATCH: usize = 64;

/// How often liveness is checked while a service is in use (see
/// [`crate::liveness`]); idle buses do not wake up for it.
const PULSE: Duration = Duration::from_millis(100);

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

pub(crate) struct Task {
    stream: StanzaStream,
    commands: mpsc::Receiver<Box<Command>>,
    dropped: mpsc::UnboundedReceiver<Dropped>,
    shared: Arc<Shared>,
    pubsub: Jid,
    stream_management: bool,
    max_payload: usize,
    close_timeout: Duration,
    pending: HashMap<String, PendingIq>,
    topics: HashMap<String, Topic>,
    inboxes: HashMap<String, Vec<(u64, Producer<Incoming>)>>,
    /// Each served method's handler, and who may call it.
    handlers: HashMap<String, (ErasedHandler, Allow)>,
    /// Who may call methods without handler and send to inboxes.
    allow: Allow,
    /// Handler slots; a call that finds none is refused.
    slots: Arc<Semaphore>,
    max_handlers: usize,
    /// Answers of running handlers, to be sent by this task.
    // Boxed: a channel allocates its slots in blocks of 32, and a `Stanza`
    // is ~400 bytes, which made this idle channel 12 KiB of every bus.
    answers: mpsc::UnboundedReceiver<Box<Stanza>>,
    answers_tx: mpsc::UnboundedSender<Box<Stanza>>,
    directory: Directory,
    /// Unavailable presence was sent (closing): calls are refused.
    offline_announced: bool,
    drain: Drain,
    next_id: u64,
    /// The topics' `max_items`: how much history a gap fetch asks for, and
    /// the size of each subscription's duplicate window.
    max_items: usize,
    counters: Counters,
    health: Health,
    /// Publishes confirmed lately, for a repeat after a session reset.
    recent: VecDeque<Confirmed>,
    /// When the connection was last lost.
    lost_at: Option<Instant>,
    outbox_capacity: usize,
    /// When to look for leftover subscriptions of this account again.
    stale: StaleRounds,
    /// Consumer groups: membership, leadership, jobs.
    groups: group::Groups,
    /// Where consumers settle their jobs. Boxed for the reason `Bus`'s
    /// commands are: 32 unboxed slots were 5.4 KiB of every bus, consumer
    /// group or not.
    settle_tx: mpsc::UnboundedSender<Box<crate::consume::Settle>>,
    settle_rx: mpsc::UnboundedReceiver<Box<crate::consume::Settle>>,
    /// Told once the server has handled the first initial presence
    /// ([`Bus::connect`](crate::Bus::connect) waits for it).
    online: Option<oneshot::Sender<()>>,
}

/// How the handles reach the task, and how it tells
/// [`Bus::connect`](crate::Bus::connect) that the bus is online.
pub(crate) struct Channels {
    pub commands: mpsc::Receiver<Box<Command>>,
    pub dropped: mpsc::UnboundedReceiver<Dropped>,
    pub online: oneshot::Sender<()>,
}

impl Task {
    pub(crate) fn new(
        stream: StanzaStream,
        channels: Channels,
        shared: Arc<Shared>,
        config: &BusConfig,
        stream_management: bool,
        health: Health,
    ) -> Task {
        let Channels {
            commands,
            dropped,
            online,
        } = channels;
        let own = shared.bound.read().expect("lock poisoned").to_bare();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
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
            allow: config.allow.clone(),
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
            health,
            recent: VecDeque::new(),
            lost_at: None,
            outbox_capacity: config.outbox_capacity,
            stale: StaleRounds::default(),
            online: Some(online),
            groups: group::Groups::default(),
            settle_tx,
            settle_rx,
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
        let mut pulse = tokio::time::interval(PULSE);
        let mut group_tick = tokio::time::interval(group::GROUP_TICK);
        group_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Set once closing starts: the deadline, and whom to tell.
        let mut closing: Option<(Instant, Option<CloseReply>)> = None;
        // While closing: the goodbye presence goes out by then at the latest.
        let mut announce_by = Instant::now();
        self.start_session().await;
        loop {
            if let Some((deadline, _)) = &closing {
                if Instant::now() >= *deadline {
                    break;
                }
                let late = Instant::now() >= announce_by;
                if !self.offline_announced && (self.groups.settled() || late) {
                    // Groups we lead leave their progress for the next
                    // leader, which the goodbye makes the others elect:
                    // the goodbye waits until the server confirmed it.
                    self.flush_groups().await;
                    if self.groups.saved() || late {
                        // Tell callers, so that no new calls are routed here.
                        self.send(Presence::new(PresenceType::Unavailable).into())
                            .await;
                        self.offline_announced = true;
                    }
                }
                // Idle: no answer awaited, no handler running, no answer
                // left to send. Then one server round trip, so that calls
                // already routed here (and acknowledged) are answered too.
                let idle = self.offline_announced
                    && self.callers_pending() == 0
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
                    self.send(*answer).await;
                    // The answers that are ready too go out with it (BATCH).
                    for _ in 1..BATCH {
                        let Ok(answer) = self.answers.try_recv() else {
                            break;
                        };
                        self.send(*answer).await;
                    }
                }
                Some(dropped) = self.dropped.recv() => self.on_dropped(dropped).await,
                Some(settle) = self.settle_rx.recv() => self.on_settle(*settle).await,
                _ = group_tick.tick(), if self.groups.any() => self.group_tick().await,
                command = self.commands.recv(), if closing.is_none() => {
                    let (reply, deadline) = match command.map(|command| *command) {
                        Some(Command::Close { reply, deadline }) => (Some(reply), deadline),
                        Some(command) => match self.on_commands(command).await {
                            Some((reply, deadline)) => (Some(reply), deadline),
                            None => continue,
                        },
                        None => (None, Instant::now() + self.close_timeout),
                    };
                    // Groups we lead stop handing out jobs; the goodbye
                    // waits until the jobs out are settled and saved (see
                    // the top of the loop).
                    self.groups.closing();
                    let now = Instant::now();
                    announce_by = now + deadline.saturating_duration_since(now) / 2;
                    closing = Some((deadline, reply));
                },
                _ = tokio::time::sleep_until(parked_until.unwrap_or_else(Instant::now)), if parked_until.is_some() => {
                    self.expire_parked().await;
                }
                _ = pulse.tick(), if self.directory.probing() => self.check_liveness().await,
                _ = sweep.tick() => {
                    self.sweep();
                    self.expire_history_fetches().await;
                    self.stale_tick().await;
                }
            }
        }
        let unconfirmed = self.callers_pending();
        let running = self.handlers_running();
        let after = self.close_timeout;
        if running > 0 {
            warn!(
                running,
                "close: handlers still running at the close timeout are abandoned"
            );
        }
        self.finish().await;
        if let Some((_, Some(reply))) = closing {
            let result = match (running, unconfirmed) {
                (0, 0) => Ok(()),
                (0, pending) => Err(CloseError::Unconfirmed { pending, after }),
                (running, _) => Err(CloseError::HandlersAbandoned { running, after }),
            };
            let _ = reply.send(result);
        }
    }

    /// Handles `first` and the commands that are ready after it (up to
    /// [`BATCH`]), so that their stanzas leave together; returns the reply
    /// and deadline of a [`Command::Close`] met on the way, which ends the
    /// batch.
    async fn on_commands(&mut self, first: Command) -> Option<(CloseReply, Instant)> {
        self.on_command(first).await;
        for _ in 1..BATCH {
            match self.commands.try_recv().map(|command| *command) {
                Ok(Command::Close { reply, deadline }) => return Some((reply, deadline)),
                Ok(command) => self.on_command(command).await,
                Err(_) => break,
            }
        }
        None
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
        self.health.closed();
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
        self.shared.status.report(ConnectionEvent::Closed);
        info!("bus closed");
    }

    async fn send(&mut self, stanza: Stanza) -> tokio_xmpp::stanzastream::StanzaToken {
        self.stream.send(Box::new(stanza)).await
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
                // `resend` is kept instead of a copy of `payload`: a deep
                // copy of every publish was most of this task's cost per
                // event.
                let pending = PendingIq::Caller {
                    to: to.clone(),
                    reply,
                    resend,
                };
                self.send_iq(to, set, payload, pending).await;
            }
            Command::Subscribe {
                topic,
                tx,
                replay,
                transient,
                reply,
            } => {
                self.add_subscription(topic, tx, replay, transient, reply)
                    .await
            }
            Command::Consume {
                key,
                options,
                tx,
                notices,
                reply,
            } => {
                let joined = self.join_group(key, options, tx, notices).await;
                let _ = reply.send(joined);
            }
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
                allow,
                reply,
            } => {
                let result = self.add_handler(method, handler, allow);
                let _ = reply.send(result);
            }
            Command::Call {
                target,
                method,
                token,
                request,
                reply,
                route,
            } => {
                let call = OutgoingCall::new(target, method, token, request, reply, route);
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
                let mut group = c.group;
                group.add(self.groups.counts());
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
                    forbidden_calls: c.forbidden_calls,
                    refused_messages: c.refused_messages,
                    session_resets: c.session_resets,
                    stale_subscriptions_removed: c.stale_subscriptions_removed,
                    group_acked: group.acked,
                    group_redeliveries: group.redelivered,
                    group_orphaned: group.orphaned,
                    group_dead_lettered: group.dead_lettered,
                    group_losses: c.group_events_lost,
                    group_takeovers: c.group_takeovers,
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
            Dropped::Group { key } => self.leave_group(&key).await,
        }
    }

    async fn on_stanza(&mut self, stanza: Stanza) {
        match stanza {
            Stanza::Iq(iq) => self.on_iq(iq).await,
            Stanza::Message(message) => self.on_message(message).await,
            Stanza::Presence(presence) => self.on_presence(presence).await,
        }
    }
}
