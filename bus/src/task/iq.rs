//! IQs: what the task's own IQs wait for, sending them, and routing the
//! answers and requests that come in.

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_xmpp::Stanza;
use tracing::{debug, warn};
use xmpp_parsers::iq::{Iq, IqHeader, IqPayload};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::rpc::OutgoingCall;
use super::{Drain, Task};
use crate::command::IqOutcome;
use crate::group::GroupKey;
use crate::pubsub::Repeatable;

/// What an IQ this task sent is waiting for.
pub(super) enum PendingIq {
    /// A handle's IQ (publish, create): the answer goes back as is.
    Caller {
        to: Jid,
        reply: oneshot::Sender<IqOutcome>,
        /// What to send again (as a `set`) after a session reset.
        resend: Option<Repeatable>,
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
        sent: Instant,
    },
    /// The roster, fetched after each login.
    Roster { to: Jid },
    /// An IQ whose answer only gets logged.
    Fire { to: Jid, what: &'static str },
    /// The ping that ends a close: its answer comes after every stanza the
    /// server routed to this session before it.
    Drain { to: Jid },
    /// The ping sent right after a resumption: is the session alive?
    Probe { to: Jid, sent: Instant },
    /// A liveness ping to an instance in use (see [`crate::liveness`]).
    Liveness { to: FullJid },
    /// The ping to our server sent after initial presence: its answer
    /// means the server has handled the presence.
    Online { to: Jid },
    /// The listing of this account's pubsub subscriptions (see
    /// [`stale`](super::stale)).
    StaleList { to: Jid },
    /// A ping to another session of this account that holds
    /// subscriptions.
    StaleCheck { to: FullJid, sent: Instant },
    /// Removing a dead session's subscription to `node`.
    StaleRemove { to: Jid, node: String },
    /// A consumer group's stored state, read while claiming leadership.
    GroupState { to: Jid, key: GroupKey },
    /// The group's topic's stored items, read while claiming.
    GroupStored { to: Jid, key: GroupKey },
    /// The group's stored states read again once the stored items are:
    /// what another leader saved meanwhile.
    GroupCatchUp { to: Jid, key: GroupKey },
    /// Our claim of a group, announced to another member.
    GroupClaim {
        to: FullJid,
        key: GroupKey,
        epoch: u64,
        sent: Instant,
    },
    /// A save of a group's progress; `then` is a claim to answer once the
    /// save is confirmed.
    GroupSave {
        to: Jid,
        key: GroupKey,
        then: Option<IqHeader>,
    },
    /// A job handed to another instance of the group.
    GroupJob {
        to: FullJid,
        key: GroupKey,
        item: String,
        sent: Instant,
    },
}

impl PendingIq {
    pub(super) fn to(&self) -> Jid {
        match self {
            PendingIq::Caller { to, .. }
            | PendingIq::Subscribe { to, .. }
            | PendingIq::History { to, .. }
            | PendingIq::Roster { to }
            | PendingIq::Fire { to, .. }
            | PendingIq::Drain { to }
            | PendingIq::Probe { to, .. }
            | PendingIq::Online { to }
            | PendingIq::StaleList { to }
            | PendingIq::StaleRemove { to, .. }
            | PendingIq::GroupState { to, .. }
            | PendingIq::GroupStored { to, .. }
            | PendingIq::GroupCatchUp { to, .. }
            | PendingIq::GroupSave { to, .. } => to.clone(),
            PendingIq::Call { to, .. }
            | PendingIq::Liveness { to }
            | PendingIq::StaleCheck { to, .. }
            | PendingIq::GroupJob { to, .. }
            | PendingIq::GroupClaim { to, .. } => Jid::from(to.clone()),
        }
    }

    /// Whether `from` is whom the IQ went to. Compared in place: this runs
    /// for every answer, and [`to`](Self::to) copies the JID.
    pub(super) fn sent_to(&self, from: &Jid) -> bool {
        match self {
            PendingIq::Caller { to, .. }
            | PendingIq::Subscribe { to, .. }
            | PendingIq::History { to, .. }
            | PendingIq::Roster { to }
            | PendingIq::Fire { to, .. }
            | PendingIq::Drain { to }
            | PendingIq::Probe { to, .. }
            | PendingIq::Online { to }
            | PendingIq::StaleList { to }
            | PendingIq::StaleRemove { to, .. }
            | PendingIq::GroupState { to, .. }
            | PendingIq::GroupStored { to, .. }
            | PendingIq::GroupCatchUp { to, .. }
            | PendingIq::GroupSave { to, .. } => from == to,
            PendingIq::Call { to, .. }
            | PendingIq::Liveness { to }
            | PendingIq::StaleCheck { to, .. }
            | PendingIq::GroupJob { to, .. }
            | PendingIq::GroupClaim { to, .. } => from == to,
        }
    }

    /// Whether someone still waits for the answer.
    pub(super) fn is_abandoned(&self) -> bool {
        match self {
            PendingIq::Caller { reply, .. } => reply.is_closed(),
            PendingIq::Call { call, .. } => call.reply.is_closed(),
            _ => false,
        }
    }

    /// Whether a handle waits for it (`close()` waits for these).
    pub(super) fn has_caller(&self) -> bool {
        matches!(self, PendingIq::Caller { .. } | PendingIq::Call { .. }) && !self.is_abandoned()
    }
}

impl Task {
    pub(super) async fn send_iq(
        &mut self,
        to: Jid,
        set: bool,
        payload: Element,
        pending: PendingIq,
    ) {
        let id = format!("xb{}", self.next_id());
        self.send_iq_as(id, to, set, payload, pending).await;
    }

    pub(super) async fn send_iq_as(
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

    pub(super) async fn on_iq(&mut self, iq: Iq) {
        let (header, payload) = iq.split();
        let answer = match payload {
            IqPayload::Result(payload) => Ok(payload),
            IqPayload::Error(error) => Err(error),
            IqPayload::Get(request) | IqPayload::Set(request) => {
                self.heard_from(header.from.as_ref()).await;
                self.on_iq_request(header, request).await;
                return;
            }
        };
        if !matches!(&answer, Err(e) if crate::rpc::is_unavailable(e)) {
            self.heard_from(header.from.as_ref()).await;
        }
        let Some(pending) = self.pending.remove(&header.id) else {
            debug!(id = header.id, "answer to an unknown or expired IQ dropped");
            return;
        };
        // An answer must come from whom the IQ went to; the server answers
        // for our own account without a `from`.
        let from_ok = match &header.from {
            Some(from) => pending.sent_to(from),
            None => pending.sent_to(&Jid::from(self.bound().to_bare())),
        };
        if !from_ok {
            let expected = pending.to();
            warn!(id = header.id, from = ?header.from, %expected, "IQ answer from the wrong sender ignored");
            self.pending.insert(header.id, pending);
            return;
        }
        match pending {
            PendingIq::Caller {
                to, reply, resend, ..
            } => {
                if let (Ok(_), Some(request)) = (&answer, resend) {
                    self.confirmed(to, request);
                }
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
            PendingIq::Probe { .. } => self.health.resumed_dead(false),
            PendingIq::Liveness { to } => self.on_liveness_answer(to, &header.id, answer).await,
            PendingIq::Online { .. } => {
                if let Some(online) = self.online.take() {
                    let _ = online.send(());
                }
            }
            PendingIq::GroupState { key, .. } => self.on_group_state(key, answer).await,
            PendingIq::GroupStored { key, .. } => self.on_group_stored(key, answer).await,
            PendingIq::GroupCatchUp { key, .. } => self.on_group_catch_up(key, answer).await,
            PendingIq::GroupJob { to, key, item, .. } => {
                self.on_job_answer(to, key, item, answer).await
            }
            PendingIq::GroupClaim { to, key, epoch, .. } => {
                self.on_claim_answer(to, key, epoch, answer).await
            }
            PendingIq::GroupSave { key, then, .. } => self.on_group_saved(key, then, answer).await,
            PendingIq::StaleList { .. } => self.on_own_subscriptions(answer).await,
            PendingIq::StaleCheck { to, .. } => self.on_stale_check(to, answer),
            PendingIq::StaleRemove { node, .. } => self.on_stale_removed(&node, answer),
            PendingIq::Fire { what, .. } => {
                if let Err(error) = answer {
                    debug!(what, error = %crate::pubsub::server_error(&error), "server refused");
                }
            }
        }
    }

    /// Answers an IQ get or set: calls, roster pushes and pings; anything
    /// else gets `service-unavailable`.
    pub(super) async fn on_iq_request(&mut self, header: IqHeader, request: Element) {
        if request.is(crate::rpc::REQUEST, crate::codec::NS) {
            self.on_incoming_call(header, request).await;
            return;
        }
        if request.is("job", crate::group::state::NS) {
            self.on_job(header, request).await;
            return;
        }
        if request.is("claim", crate::group::state::NS) {
            self.on_claim(header, request).await;
            return;
        }
        if request.is("settled", crate::group::state::NS) {
            self.on_report(header, request).await;
            return;
        }
        let response = if request.is("ping", xmpp_parsers::ns::PING) {
            IqPayload::Result(None)
        } else if request.is("progress", crate::group::state::NS) {
            self.on_progress(header.from.as_ref(), &request)
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

    pub(super) async fn answer_iq(&mut self, header: IqHeader, response: IqPayload) {
        self.send(answer(header, response)).await;
    }
}

/// An IQ get (`set == false`) or set.
pub(super) fn iq(id: String, to: Jid, set: bool, payload: Element) -> Stanza {
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
pub(super) fn answer(header: IqHeader, response: IqPayload) -> Stanza {
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

/// How long the answer to a job handed to another instance is awaited.
const JOB_ANSWER_KEPT: std::time::Duration = std::time::Duration::from_secs(600);

impl Task {
    /// Forgets IQs whose caller timed out and gave up, and notes resumed
    /// sessions that do not answer.
    pub(super) fn sweep(&mut self) {
        let unanswered: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p, PendingIq::StaleCheck { sent, .. } if sent.elapsed() >= super::stale::STALE_PING))
            .map(|(id, _)| id.clone())
            .collect();
        for id in unanswered {
            if let Some(PendingIq::StaleCheck { to, .. }) = self.pending.remove(&id) {
                self.stale_unanswered(&to);
            }
        }
        let before = self.pending.len();
        self.pending.retain(|_, pending| match pending {
            PendingIq::Probe { sent, .. } => sent.elapsed() < crate::reconnect::RESUME_PROBE,
            _ => true,
        });
        if self.pending.len() < before {
            warn!(
                after = ?crate::reconnect::RESUME_PROBE,
                "the resumed session does not answer; the next connection starts a fresh one"
            );
            self.health.resumed_dead(true);
        }
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
        let unanswered: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| match p {
                PendingIq::GroupJob { sent, .. } | PendingIq::GroupClaim { sent, .. } => {
                    sent.elapsed() >= JOB_ANSWER_KEPT
                }
                _ => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in unanswered {
            if let Some(PendingIq::GroupJob { to, .. }) = self.pending.remove(&id) {
                self.directory.call_ended(&to);
            }
        }
    }
}
