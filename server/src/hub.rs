//! The session registry and router: every stanza a client sends is handed
//! to [`Hub::route`], which decides where it goes (RFC 6121 section 8) and
//! puts it on the bounded outbound queue of each receiving session.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, mpsc};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::auth::AccountStore;
use crate::config::Config;
use crate::pubsub::PubSub;
use crate::roster::RosterItem;
use crate::sm::ResumeRequest;

/// One bound resource as the router sees it.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    pub id: u64,
    pub jid: FullJid,
    tx: mpsc::Sender<Stanza>,
    kill: Arc<Kill>,
    /// The last available presence it broadcast; `None`: not available.
    pub presence: Option<Presence>,
    /// Whether it fetched the roster (and so gets roster pushes).
    pub interested: bool,
}

impl SessionHandle {
    /// Queues `stanza` for this session; a full queue disconnects it.
    pub fn deliver(&self, stanza: Stanza) {
        match self.tx.try_send(stanza) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(jid = %self.jid, "outbound queue full: disconnecting the session");
                self.kill.kill(false);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!(jid = %self.jid, "session gone, stanza dropped");
            }
        }
    }

    /// The priority of its available presence (`None`: unavailable).
    pub fn priority(&self) -> Option<i8> {
        self.presence.as_ref().map(|p| p.priority.0)
    }
}

/// What the server keeps per user.
#[derive(Debug, Default)]
pub(crate) struct User {
    pub sessions: Vec<SessionHandle>,
    pub roster: BTreeMap<BareJid, RosterItem>,
    /// Subscription requests not yet answered, by requester.
    pub pending_in: BTreeMap<BareJid, Presence>,
    pub offline: VecDeque<Message>,
}

/// Mutable state behind the hub's lock.
#[derive(Debug)]
pub(crate) struct State {
    pub users: HashMap<String, User>,
    pub pubsub: PubSub,
    pub resumable: HashMap<String, (BareJid, mpsc::Sender<ResumeRequest>)>,
}

impl State {
    /// The user `node`, created on first use.
    pub fn user(&mut self, node: &str) -> &mut User {
        self.users.entry(node.to_owned()).or_default()
    }

    /// The session bound to `jid`, if any.
    pub fn session(&self, jid: &FullJid) -> Option<&SessionHandle> {
        let node = jid.node()?;
        self.users
            .get(node.as_str())?
            .sessions
            .iter()
            .find(|s| s.jid == *jid)
    }

    pub fn session_mut(&mut self, id: u64, node: &str) -> Option<&mut SessionHandle> {
        self.users
            .get_mut(node)?
            .sessions
            .iter_mut()
            .find(|s| s.id == id)
    }

    /// Available sessions of `node`.
    pub fn available(&self, node: &str) -> impl Iterator<Item = &SessionHandle> {
        self.users
            .get(node)
            .into_iter()
            .flat_map(|u| u.sessions.iter())
            .filter(|s| s.presence.is_some())
    }
}

/// The shared core of a running server.
#[derive(Debug)]
pub(crate) struct Hub {
    pub config: Config,
    pub domain: BareJid,
    pub pubsub_jid: BareJid,
    pub accounts: AccountStore,
    /// The listener is on a loopback address (STARTTLS optional).
    pub loopback: bool,
    state: Mutex<State>,
    next_id: AtomicU64,
}

/// What [`Hub::bind`] returns to the new session.
pub(crate) struct Bound {
    pub id: u64,
    pub jid: FullJid,
    pub rx: mpsc::Receiver<Stanza>,
    pub kill: Arc<Kill>,
}

/// Tells a session task to end at once (queue overflow or replaced).
#[derive(Debug, Default)]
pub(crate) struct Kill {
    notify: Notify,
    killed: std::sync::atomic::AtomicBool,
    conflict: std::sync::atomic::AtomicBool,
}

impl Kill {
    /// Ends the session; `conflict`: because a new one took its resource.
    pub fn kill(&self, conflict: bool) {
        self.conflict.store(conflict, Ordering::Relaxed);
        self.killed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Whether [`kill`](Self::kill) was called; and whether for a conflict.
    pub fn killed(&self) -> Option<bool> {
        self.killed
            .load(Ordering::Acquire)
            .then(|| self.conflict.load(Ordering::Relaxed))
    }

    /// Resolves once killed.
    pub async fn wait(&self) {
        while self.killed().is_none() {
            self.notify.notified().await;
        }
    }
}

impl Hub {
    pub fn new(config: Config, domain: BareJid, pubsub_jid: BareJid, loopback: bool) -> Hub {
        let pubsub = PubSub::new(Jid::from(pubsub_jid.clone()), config.pubsub.clone());
        let accounts = AccountStore::new(&config.accounts);
        Hub {
            config,
            domain,
            pubsub_jid,
            accounts,
            loopback,
            state: Mutex::new(State {
                users: HashMap::new(),
                pubsub,
                resumable: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `jid` is a user of this server (bare, local domain).
    pub fn local_node<'j>(&self, jid: &'j Jid) -> Option<&'j str> {
        let node = jid.node()?;
        (jid.domain() == self.domain.domain()).then_some(node.as_str())
    }

    /// Binds a resource for `user`. A resource already bound is replaced:
    /// the old session gets a `conflict` stream error (RFC 6120 7.7.2.2).
    pub fn bind(&self, user: &str, resource: Option<&str>) -> Option<Bound> {
        let resource = match resource.map(str::trim) {
            Some(r) if !r.is_empty() => r.to_owned(),
            _ => format!("xbus-{:016x}", rand::random::<u64>()),
        };
        let jid = FullJid::new(&format!("{user}@{}/{resource}", self.domain.domain())).ok()?;
        let (tx, rx) = mpsc::channel(self.config.outbound_queue);
        let kill = Arc::new(Kill::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let node = jid.node()?.as_str().to_owned();
        let user = state.user(&node);
        if let Some(old) = user.sessions.iter().find(|s| s.jid == jid) {
            tracing::info!(%jid, "resource conflict: the new session replaces the old one");
            old.kill.kill(true);
            // The old one leaves the registry now; its task ends on its own.
            let old_id = old.id;
            self.end_session_locked(&mut state, old_id, &jid);
        }
        state.user(&node).sessions.push(SessionHandle {
            id,
            jid: jid.clone(),
            tx,
            kill: kill.clone(),
            presence: None,
            interested: false,
        });
        Some(Bound { id, jid, rx, kill })
    }

    /// Removes session `id`: unavailable presence if it was available,
    /// pubsub clean-up, resumption entry dropped.
    pub fn end_session(&self, id: u64, jid: &FullJid) {
        let mut state = self.lock();
        self.end_session_locked(&mut state, id, jid);
    }

    fn end_session_locked(&self, state: &mut State, id: u64, jid: &FullJid) {
        let Some(node) = jid.node().map(|n| n.as_str().to_owned()) else {
            return;
        };
        let Some(user) = state.users.get_mut(&node) else {
            return;
        };
        let Some(pos) = user.sessions.iter().position(|s| s.id == id) else {
            return;
        };
        let was_available = user.sessions[pos].presence.is_some();
        if was_available {
            let mut unavailable = Presence::new(xmpp_parsers::presence::Type::Unavailable);
            unavailable.from = Some(jid.clone().into());
            crate::presence::broadcast(self, state, jid, &unavailable);
        }
        if let Some(user) = state.users.get_mut(&node) {
            user.sessions.retain(|s| s.id != id);
        }
        state.pubsub.session_ended(jid);
        tracing::debug!(%jid, "session ended");
    }

    /// Forgets every session (their tasks are gone): for a restart that
    /// keeps accounts, rosters, offline messages and pubsub data.
    pub fn forget_sessions(&self) {
        let mut state = self.lock();
        let mut ended = Vec::new();
        for user in state.users.values_mut() {
            ended.extend(user.sessions.drain(..).map(|s| s.jid));
        }
        state.resumable.clear();
        for jid in &ended {
            state.pubsub.session_ended(jid);
        }
    }

    /// Routes one stanza sent by the session `from` (already stamped).
    pub fn route(&self, session: u64, from: &FullJid, stanza: Stanza) {
        match stanza {
            Stanza::Message(message) => {
                let mut state = self.lock();
                self.route_message(&mut state, Jid::from(from.clone()), message);
            }
            Stanza::Iq(iq) => self.route_iq(session, from, iq),
            Stanza::Presence(presence) => crate::presence::handle(self, session, from, presence),
        }
    }

    /// Routes a message from `from` (a local session or the pubsub service).
    pub fn route_message(&self, state: &mut State, from: Jid, mut message: Message) {
        message.from = Some(from.clone());
        let to = match &message.to {
            Some(to) => to.clone(),
            None => Jid::from(from.to_bare()),
        };
        let Some(node) = self.local_node(&to).map(str::to_owned) else {
            if to.to_bare() == self.domain || to.to_bare() == self.pubsub_jid {
                tracing::debug!(%to, "message to a service dropped");
            } else {
                self.bounce_message(state, message, DefinedCondition::RemoteServerNotFound);
            }
            return;
        };
        if let Some(full) = to.try_as_full().ok().map(|f| f.to_owned()) {
            if let Some(session) = state.session(&full) {
                session.deliver(Stanza::Message(message));
                return;
            }
            // RFC 6121 8.5.3.2.1: no such resource; normal and chat are
            // treated as sent to the bare JID, the rest is dropped.
            if !matches!(message.type_, MessageType::Normal | MessageType::Chat) {
                return;
            }
        }
        let available: Vec<&SessionHandle> = state
            .available(&node)
            .filter(|s| s.priority().is_some_and(|p| p >= 0))
            .collect();
        match message.type_ {
            MessageType::Error => {}
            MessageType::Groupchat => {
                self.bounce_message(state, message, DefinedCondition::ServiceUnavailable);
            }
            MessageType::Headline => {
                for session in available {
                    session.deliver(Stanza::Message(message.clone()));
                }
            }
            MessageType::Normal | MessageType::Chat => {
                let top = available.iter().filter_map(|s| s.priority()).max();
                if let Some(top) = top {
                    // Every resource of the highest priority, as Prosody and
                    // ejabberd do.
                    for session in available.iter().filter(|s| s.priority() == Some(top)) {
                        session.deliver(Stanza::Message(message.clone()));
                    }
                } else if self.accounts.exists(&node) {
                    crate::offline::store(self, state, &node, message);
                } else {
                    self.bounce_message(state, message, DefinedCondition::ServiceUnavailable);
                }
            }
        }
    }

    /// Sends an error reply for `message` back to its sender.
    fn bounce_message(&self, state: &mut State, message: Message, condition: DefinedCondition) {
        if message.type_ == MessageType::Error {
            return;
        }
        let (Some(from), to) = (message.from.clone(), message.to.clone()) else {
            return;
        };
        let mut reply = message;
        reply.type_ = MessageType::Error;
        reply.from = to;
        reply.to = Some(from.clone());
        reply.payloads = vec![stanza_error(condition).into()];
        reply.bodies.clear();
        if let Ok(full) = from.try_into_full()
            && let Some(session) = state.session(&full)
        {
            session.deliver(Stanza::Message(reply));
        }
    }

    /// Routes an IQ from a local session.
    fn route_iq(&self, session: u64, from: &FullJid, iq: Iq) {
        let to = iq_to(&iq).cloned();
        let is_request = matches!(iq, Iq::Get { .. } | Iq::Set { .. });
        let Some(to) = to else {
            return crate::server_iq::handle(self, session, from, iq);
        };
        let bare = to.to_bare();
        if bare == self.pubsub_jid {
            return self.pubsub_iq(from, iq);
        }
        if bare == self.domain || (bare == from.to_bare() && to.resource().is_none()) {
            return crate::server_iq::handle(self, session, from, iq);
        }
        let state = self.lock();
        if let Ok(full) = to.clone().try_into_full()
            && let Some(target) = state.session(&full)
        {
            target.deliver(Stanza::Iq(iq));
            return;
        }
        if !is_request {
            return;
        }
        let condition = if self.local_node(&to).is_some() {
            DefinedCondition::ServiceUnavailable
        } else {
            DefinedCondition::RemoteServerNotFound
        };
        if let Some(me) = state.session(from) {
            me.deliver(Stanza::Iq(iq_error(iq, condition)));
        }
    }

    /// Hands an IQ to the pubsub service and routes what it returns.
    fn pubsub_iq(&self, from: &FullJid, iq: Iq) {
        let mut state = self.lock();
        let State { users, pubsub, .. } = &mut *state;
        // The `presence` access model: whether `from` receives the presence
        // of a node's owner (its roster has the owner with `to`).
        let roster = from.node().and_then(|n| users.get(n.as_str()));
        let sees = |owner: &str| {
            let owner = owner.parse::<BareJid>().ok();
            roster
                .zip(owner)
                .and_then(|(user, owner)| user.roster.get(&owner))
                .is_some_and(|item| item.to)
        };
        let outcome = pubsub.handle_iq_seeing(from, iq, &sees);
        let reply = outcome.reply;
        if let Some(me) = state.session(from) {
            me.deliver(Stanza::Iq(reply));
        }
        let service = Jid::from(self.pubsub_jid.clone());
        for notification in outcome.notifications {
            self.route_message(&mut state, service.clone(), notification);
        }
    }

    /// Queues `stanza` for the session `jid`, if it is bound.
    pub fn send_to(&self, state: &State, jid: &FullJid, stanza: Stanza) {
        if let Some(session) = state.session(jid) {
            session.deliver(stanza);
        }
    }
}

/// The `to` of an IQ.
pub(crate) fn iq_to(iq: &Iq) -> Option<&Jid> {
    match iq {
        Iq::Get { to, .. } | Iq::Set { to, .. } | Iq::Result { to, .. } | Iq::Error { to, .. } => {
            to.as_ref()
        }
    }
}

/// The error answer to a request IQ, sent as if by its addressee.
pub(crate) fn iq_error(iq: Iq, condition: DefinedCondition) -> Iq {
    let (Iq::Get { from, to, id, .. }
    | Iq::Set { from, to, id, .. }
    | Iq::Result { from, to, id, .. }
    | Iq::Error { from, to, id, .. }) = iq;
    Iq::Error {
        from: to,
        to: from,
        id,
        error: stanza_error(condition),
        payload: None,
    }
}

/// A `cancel` stanza error with `condition` and no text.
pub(crate) fn stanza_error(condition: DefinedCondition) -> StanzaError {
    StanzaError {
        type_: ErrorType::Cancel,
        by: None,
        defined_condition: condition,
        texts: BTreeMap::new(),
        other: None,
    }
}

impl Hub {
    /// A stanza queued for a session that ended without delivering it:
    /// messages go to the user's other resources or offline storage,
    /// requests get `service-unavailable`.
    pub fn undeliverable(&self, owner: &FullJid, stanza: Stanza) {
        let mut state = self.lock();
        match stanza {
            Stanza::Message(mut message)
                if matches!(message.type_, MessageType::Normal | MessageType::Chat) =>
            {
                let Some(from) = message.from.clone() else {
                    return;
                };
                message.to = Some(Jid::from(owner.to_bare()));
                self.route_message(&mut state, from, message);
            }
            Stanza::Iq(iq @ (Iq::Get { .. } | Iq::Set { .. })) => {
                let reply = iq_error(iq, DefinedCondition::ServiceUnavailable);
                if let Some(Ok(to)) = iq_to(&reply).map(|j| j.clone().try_into_full()) {
                    self.send_to(&state, &to, Stanza::Iq(reply));
                }
            }
            _ => {}
        }
    }
}
