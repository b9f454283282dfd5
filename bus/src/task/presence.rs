//! The presence table: which instances of which services are online, the
//! presence subscriptions that tell us, and the calls parked while a
//! service is being discovered.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info};
use xmpp_parsers::iq::IqPayload;
use xmpp_parsers::jid::{BareJid, FullJid, Jid, ResourcePart};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::roster::{Ask, Item, Roster, Subscription};
use xmpp_parsers::stanza_error::StanzaError;

use super::rpc::OutgoingCall;
use super::{PendingIq, Task};
use crate::command::CallFailure;
use crate::config::BusConfig;
use crate::error::SendError;
use crate::presence::{Instance, InstanceEvent, Status, SubscriptionPolicy, announce, announced};

/// Our presence subscription to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// Never asked.
    Unknown,
    /// Asked; calls wait for the answer until `until`, after which the
    /// service counts as offline.
    Pending { until: Instant },
    /// Approved: the table is authoritative.
    Subscribed,
    /// Refused.
    Refused,
}

/// An online instance.
struct Member {
    status: Status,
    /// Calls this bus has sent it that are not answered yet.
    in_flight: usize,
}

/// Work waiting for a service's first presence.
pub(super) enum Parked {
    Call(OutgoingCall),
    SendToAny {
        payload: Element,
        reply: oneshot::Sender<Result<FullJid, SendError>>,
    },
    Instances(oneshot::Sender<Vec<Instance>>),
}

struct Service {
    sub: Sub,
    instances: BTreeMap<ResourcePart, Member>,
    watchers: Vec<(u64, mpsc::Sender<InstanceEvent>)>,
    parked: Vec<Parked>,
    /// Where the round robin goes on.
    cursor: usize,
}

impl Service {
    fn new(sub: Sub) -> Service {
        Service {
            sub,
            instances: BTreeMap::new(),
            watchers: Vec::new(),
            parked: Vec::new(),
            cursor: 0,
        }
    }
}

/// The presence table.
pub(super) struct Directory {
    own: BareJid,
    policy: SubscriptionPolicy,
    status: Status,
    discovery_timeout: Duration,
    services: HashMap<BareJid, Service>,
}

impl Directory {
    pub fn new(own: BareJid, config: &BusConfig) -> Directory {
        let mut services = HashMap::new();
        // Our own account's resources see each other without a subscription.
        services.insert(own.clone(), Service::new(Sub::Subscribed));
        Directory {
            own,
            policy: config.subscription_policy.clone(),
            status: Status::Ready,
            discovery_timeout: config.discovery_timeout,
            services,
        }
    }

    /// The presence that announces this bus.
    pub fn announcement(&self) -> Presence {
        announce(&self.status)
    }

    /// Whether work for `service` has to wait for its presence first.
    pub fn must_discover(&self, service: &BareJid) -> bool {
        match self.services.get(service).map(|s| s.sub) {
            None | Some(Sub::Unknown) => true,
            Some(Sub::Pending { until }) => Instant::now() < until,
            Some(Sub::Subscribed) | Some(Sub::Refused) => false,
        }
    }

    pub fn park(&mut self, service: &BareJid, parked: Parked) {
        self.service(service).parked.push(parked);
    }

    pub fn park_call(&mut self, service: &BareJid, call: OutgoingCall) {
        self.park(service, Parked::Call(call));
    }

    /// The earliest end of a discovery that has work parked.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.services
            .values()
            .filter(|s| !s.parked.is_empty())
            .map(|s| match s.sub {
                Sub::Pending { until } => until,
                _ => Instant::now(),
            })
            .min()
    }

    /// Takes the parked work of services whose discovery ended.
    fn take_expired(&mut self) -> Vec<(BareJid, Parked)> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (jid, service) in &mut self.services {
            let waiting = matches!(service.sub, Sub::Pending { until } if now < until);
            if !waiting {
                out.extend(service.parked.drain(..).map(|p| (jid.clone(), p)));
            }
        }
        out
    }

    /// Fails all parked work (the bus is closing).
    pub fn fail_parked(&mut self, reason: &str) {
        for service in self.services.values_mut() {
            for parked in service.parked.drain(..) {
                match parked {
                    Parked::Call(call) => call.fail(CallFailure::Disconnected),
                    Parked::SendToAny { reply, .. } => {
                        let _ = reply.send(Err(SendError::NotAcknowledged(reason.to_owned())));
                    }
                    Parked::Instances(reply) => drop(reply),
                }
            }
        }
    }

    fn service(&mut self, service: &BareJid) -> &mut Service {
        self.services
            .entry(service.clone())
            .or_insert_with(|| Service::new(Sub::Unknown))
    }

    /// The online instances that take calls, least busy first, ties in
    /// turn; `tried` are left out.
    pub fn pick(&mut self, service: &BareJid, tried: &[FullJid]) -> Option<FullJid> {
        let entry = self.services.get_mut(service)?;
        let candidates: Vec<(&ResourcePart, usize)> = entry
            .instances
            .iter()
            .filter(|(_, m)| m.status.takes_calls())
            .filter(|(r, _)| !tried.iter().any(|t| t.resource().as_str() == r.as_str()))
            .map(|(r, m)| (r, m.in_flight))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let n = candidates.len();
        let start = entry.cursor % n;
        let best = (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| candidates[i].1)
            .expect("candidates is not empty");
        let resource = candidates[best].0.clone();
        entry.cursor = best + 1;
        Some(service.with_resource(&resource))
    }

    /// Why [`pick`](Self::pick) found nobody.
    pub fn why_none(&self, service: &BareJid, retried: bool) -> String {
        let Some(entry) = self.services.get(service) else {
            return format!("{service} is unknown");
        };
        let online = entry.instances.len();
        match entry.sub {
            Sub::Refused => format!("{service} refused the presence subscription"),
            _ if retried && online > 0 => {
                format!(
                    "the instance picked had just left and the others of {service} are draining"
                )
            }
            _ if retried => format!(
                "the instance picked had just left; no other instance of {service} is online"
            ),
            _ if online == 1 => format!("the only instance of {service} is draining"),
            _ if online > 0 => format!("all {online} instances of {service} are draining"),
            Sub::Pending { .. } => format!(
                "no instance of {service} is online (presence subscription not approved yet)"
            ),
            _ => format!("no instance of {service} is online"),
        }
    }

    fn member(&mut self, jid: &FullJid) -> Option<&mut Member> {
        self.services
            .get_mut(&jid.to_bare())?
            .instances
            .get_mut(jid.resource())
    }

    pub fn call_started(&mut self, jid: &FullJid) {
        if let Some(member) = self.member(jid) {
            member.in_flight += 1;
        }
    }

    pub fn call_ended(&mut self, jid: &FullJid) {
        if let Some(member) = self.member(jid) {
            member.in_flight = member.in_flight.saturating_sub(1);
        }
    }

    /// Records an available presence; true if the service had no instance.
    async fn online(&mut self, jid: FullJid, status: Status) -> bool {
        let service = self.service(&jid.to_bare());
        let first = service.instances.is_empty();
        let instance = Instance {
            jid: jid.clone(),
            status: status.clone(),
        };
        let event = match service.instances.get_mut(jid.resource()) {
            Some(member) if member.status == status => return false,
            Some(member) => {
                member.status = status;
                InstanceEvent::StatusChanged(instance)
            }
            None => {
                service.instances.insert(
                    jid.resource().to_owned(),
                    Member {
                        status,
                        in_flight: 0,
                    },
                );
                InstanceEvent::Online(instance)
            }
        };
        debug!(?event, "presence");
        super::pubsub::deliver(&mut service.watchers, event).await;
        first
    }

    /// Records that an instance is gone.
    pub async fn gone(&mut self, jid: &FullJid) {
        let Some(service) = self.services.get_mut(&jid.to_bare()) else {
            return;
        };
        if service.instances.remove(jid.resource()).is_some() {
            debug!(%jid, "instance offline");
            let event = InstanceEvent::Offline(jid.clone());
            super::pubsub::deliver(&mut service.watchers, event).await;
        }
    }

    /// After a session reset: the table is rebuilt from fresh presence.
    pub async fn forget_instances(&mut self) {
        let all: Vec<FullJid> = self
            .services
            .iter()
            .flat_map(|(bare, s)| s.instances.keys().map(|r| bare.with_resource(r)))
            .collect();
        for jid in all {
            self.gone(&jid).await;
        }
    }

    /// How many services the table tracks, our own included.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn unwatch(&mut self, service: &BareJid, id: u64) {
        if let Some(entry) = self.services.get_mut(service) {
            entry.watchers.retain(|(i, _)| *i != id);
        }
    }

    fn list(&self, service: &BareJid) -> Vec<Instance> {
        self.services
            .get(service)
            .map(|s| {
                s.instances
                    .iter()
                    .map(|(r, m)| Instance {
                        jid: service.with_resource(r),
                        status: m.status.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn apply_roster_item(&mut self, item: &Item) {
        let sub = match (&item.subscription, &item.ask) {
            (Subscription::To | Subscription::Both, _) => Sub::Subscribed,
            (Subscription::Remove, _) => Sub::Unknown,
            // Keep the end of a discovery under way.
            (_, Ask::Subscribe) => match self.services.get(&item.jid).map(|s| s.sub) {
                Some(pending @ Sub::Pending { .. }) => pending,
                _ => Sub::Pending {
                    until: Instant::now(),
                },
            },
            _ => match self.services.get(&item.jid).map(|s| s.sub) {
                // "none" after our request: refused or cancelled.
                Some(Sub::Subscribed) => Sub::Refused,
                Some(other) => other,
                None => return,
            },
        };
        if item.jid != self.own {
            self.service(&item.jid).sub = sub;
        }
    }
}

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
        let until = Instant::now() + self.directory.discovery_timeout;
        let entry = self.directory.service(service);
        if matches!(entry.sub, Sub::Unknown) {
            entry.sub = Sub::Pending { until };
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
            PresenceType::Subscribed => {
                if let Some(entry) = self.directory.services.get_mut(&bare) {
                    entry.sub = Sub::Subscribed;
                }
            }
            PresenceType::Unsubscribed | PresenceType::Error => {
                if let Some(entry) = self.directory.services.get_mut(&bare) {
                    if bare != self.directory.own {
                        debug!(%bare, "presence subscription refused");
                        entry.sub = Sub::Refused;
                    }
                }
                self.expire_parked().await;
            }
            PresenceType::None | PresenceType::Unavailable => {
                // Only services we asked about (or our own) are tracked, so
                // unsolicited presence cannot grow the table.
                if !self.directory.services.contains_key(&bare) {
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
                        if self.directory.online(full, status).await {
                            // Discovery is over: the parked work can go.
                            if let Some(entry) = self.directory.services.get_mut(&bare) {
                                entry.sub = match entry.sub {
                                    Sub::Pending { .. } | Sub::Unknown => Sub::Subscribed,
                                    other => other,
                                };
                            }
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
        let announce = self.directory.announcement();
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
        self.directory.service(&service).watchers.push((id, tx));
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
            let _ = reply.send(self.directory.list(&service));
        }
    }
}
