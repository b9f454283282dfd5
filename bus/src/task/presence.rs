//! The task's side of presence: subscription requests by policy, the
//! roster, presence updates into the [`Directory`](super::directory), and
//! the commands that read it (watch, instances, send to any).

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};
use xmpp_parsers::iq::IqPayload;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::roster::Roster;
use xmpp_parsers::stanza_error::StanzaError;

use super::directory::Parked;
use super::{PendingIq, Task};
use crate::error::SendError;
use crate::presence::{Instance, InstanceEvent, Status, announced};

impl Task {
    /// Asks the server for the roster: which services we already are
    /// subscribed to.
    pub(super) async fn fetch_roster(&mut self) {
        let to = Jid::from(self.bound().to_bare());
        let query = Element::from(Roster {
            ver: None,
            items: Vec::new(),
        });
        self.send_iq(to.clone(), false, query, PendingIq::Roster { to })
            .await;
    }

    pub(super) async fn on_roster(&mut self, answer: Result<Option<Element>, StanzaError>) {
        let roster = match answer.map(|r| r.map(Roster::try_from)) {
            Ok(Some(Ok(roster))) => roster,
            other => {
                debug!(?other, "no usable roster");
                return;
            }
        };
        for item in &roster.items {
            self.directory.apply_roster_item(item);
        }
        self.expire_parked().await;
    }

    /// A roster push from our server; from anyone else it is refused.
    pub(super) fn on_roster_push(&mut self, from: Option<&Jid>, query: &Element) -> IqPayload {
        let own = Jid::from(self.bound().to_bare());
        if from.is_some_and(|f| *f != own) {
            return IqPayload::Error(StanzaError::new(
                xmpp_parsers::stanza_error::ErrorType::Cancel,
                xmpp_parsers::stanza_error::DefinedCondition::ServiceUnavailable,
                "en",
                "roster pushes come from the user's server only",
            ));
        }
        if let Ok(roster) = Roster::try_from(query.clone()) {
            for item in &roster.items {
                self.directory.apply_roster_item(item);
            }
        }
        IqPayload::Result(None)
    }

    /// Asks `service` for a presence subscription, unless asked already.
    pub(super) async fn discover(&mut self, service: &BareJid) {
        if self.directory.start_discovery(service) {
            info!(%service, "asking for a presence subscription");
            let subscribe = Presence::new(PresenceType::Subscribe).with_to(service.clone());
            self.send(subscribe.into()).await;
        }
    }

    pub(super) async fn on_presence(&mut self, presence: Presence) {
        let Some(from) = presence.from.clone() else {
            return;
        };
        let bare = from.to_bare();
        match presence.type_ {
            PresenceType::Subscribe => {
                let own = &self.directory.own;
                let approved = self.directory.policy.approves(own, &bare);
                info!(%bare, approved, "presence subscription request");
                let answer = if approved {
                    PresenceType::Subscribed
                } else {
                    PresenceType::Unsubscribed
                };
                self.send(Presence::new(answer).with_to(bare).into()).await;
            }
            PresenceType::Subscribed => self.directory.subscribed(&bare),
            PresenceType::Unsubscribed | PresenceType::Error => {
                self.directory.refused(&bare);
                self.expire_parked().await;
            }
            PresenceType::None | PresenceType::Unavailable => {
                if bare == self.directory.own
                    && let Ok(full) = from.try_as_full()
                {
                    let available = presence.type_ == PresenceType::None;
                    if available {
                        self.stale.present(full);
                    }
                    let full = full.clone();
                    self.member_presence(&full, available.then_some(&presence))
                        .await;
                }
                // Only services we asked about (or our own) are tracked, so
                // unsolicited presence cannot grow the table.
                if !self.directory.tracks(&bare) {
                    return;
                }
                let Ok(full) = from.try_into_full() else {
                    return;
                };
                let status = match presence.type_ {
                    PresenceType::None => announced(&presence),
                    _ => None,
                };
                match status {
                    Some(status) => {
                        let takes_calls = status.takes_calls();
                        self.directory.online(full, status).await;
                        // Discovery is over at the first instance that takes
                        // calls. A draining one alone leaves it open until
                        // its deadline: the presence of a ready one may be
                        // on its way, and parked calls released now would
                        // find nobody to take them.
                        if takes_calls {
                            self.directory.discovered(&bare);
                            self.expire_parked().await;
                        }
                    }
                    None => self.directory.gone(&full).await,
                }
            }
            PresenceType::Probe | PresenceType::Unsubscribe => {}
        }
    }

    /// Routes the parked work of every service whose discovery ended.
    pub(super) async fn expire_parked(&mut self) {
        for (service, parked) in self.directory.take_expired() {
            match parked {
                Parked::Call(call) => self.route_call(service, call).await,
                Parked::SendToAny { payload, reply } => {
                    self.send_to_any(service, payload, reply).await;
                }
                Parked::Instances(reply) => {
                    self.directory.touch(&service);
                    let _ = reply.send(self.directory.list(&service));
                }
            }
        }
    }

    pub(super) async fn send_to_any(
        &mut self,
        service: BareJid,
        payload: Element,
        reply: oneshot::Sender<Result<FullJid, SendError>>,
    ) {
        if self.directory.must_discover(&service) {
            self.discover(&service).await;
            self.directory
                .park(&service, Parked::SendToAny { payload, reply });
            return;
        }
        // This bus takes the event itself only if it has an inbox for it.
        let topic = payload.attr("topic").unwrap_or_default();
        let skip = match self.inboxes.contains_key(topic) {
            true => Vec::new(),
            false => vec![self.bound()],
        };
        let Some(to) = self.directory.pick(&service, &skip) else {
            let reason = self.directory.why_none(&service, false);
            let _ = reply.send(Err(SendError::NoInstance {
                service: service.to_string(),
                reason,
            }));
            return;
        };
        let mut message = Message::new_with_type(MessageType::Normal, Some(Jid::from(to.clone())));
        message.payloads.push(payload);
        self.send_acked(message, to, reply).await;
    }

    pub(super) async fn set_status(&mut self, status: Status) {
        self.directory.status = status;
        let announce = self.announcement();
        self.send(announce.into()).await;
    }

    pub(super) async fn watch(
        &mut self,
        service: BareJid,
        id: u64,
        tx: mpsc::Sender<InstanceEvent>,
    ) {
        for instance in self.directory.list(&service) {
            let _ = tx.send(InstanceEvent::Online(instance)).await;
        }
        for jid in self.directory.unresponsive(&service) {
            let _ = tx.send(InstanceEvent::Unresponsive(jid)).await;
        }
        self.directory.service(&service).watchers.push((id, tx));
        self.directory.touch(&service);
        if self.directory.must_discover(&service) {
            self.discover(&service).await;
        }
    }

    pub(super) async fn instances(
        &mut self,
        service: BareJid,
        reply: oneshot::Sender<Vec<Instance>>,
    ) {
        if self.directory.must_discover(&service) {
            self.discover(&service).await;
            self.directory.park(&service, Parked::Instances(reply));
        } else {
            self.directory.touch(&service);
            let _ = reply.send(self.directory.list(&service));
        }
    }
}
