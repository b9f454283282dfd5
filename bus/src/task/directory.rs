//! The presence table: which instances of which services are online, the
//! presence subscriptions that tell us, and the work parked while a
//! service is being discovered. Pure state: the stanzas are sent by
//! [`super::presence`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use xmpp_parsers::jid::{BareJid, FullJid, ResourcePart};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Presence;
use xmpp_parsers::roster::{Ask, Item, Subscription};

use super::pulse::{Pulse, Verdict};
use super::rpc::OutgoingCall;
use crate::command::CallFailure;
use crate::config::BusConfig;
use crate::error::SendError;
use crate::liveness::Liveness;
use crate::presence::{Instance, InstanceEvent, Status, SubscriptionPolicy, announce};

/// Our presence subscription to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sub {
    /// Never asked.
    Unknown,
    /// Asked; work waits for the first presence until `until`, after
    /// which the service counts as offline. `approved` once the service
    /// said `subscribed` (its instances' presence follows, from each
    /// instance separately on some servers).
    Pending { until: Instant, approved: bool },
    /// Approved: the table is authoritative.
    Subscribed,
    /// Refused.
    Refused,
}

/// A service counts as in use (its instances are probed) this long after
/// this bus last called it, sent to it or listed it.
const IN_USE_FOR: Duration = Duration::from_secs(30);

/// An online instance.
struct Member {
    status: Status,
    /// Calls this bus has sent it that are not answered yet.
    in_flight: usize,
    pulse: Pulse,
}

impl Member {
    fn new(status: Status) -> Member {
        Member {
            status,
            in_flight: 0,
            pulse: Pulse::new(Instant::now()),
        }
    }
}

/// What one round of liveness checks asks the task to do.
#[derive(Default)]
pub(super) struct Checks {
    /// Instances to ping.
    pub probe: Vec<FullJid>,
    /// Pings that went unanswered: their pending IQs can go.
    pub expired: Vec<String>,
    /// Instances that just became unresponsive.
    pub unresponsive: Vec<FullJid>,
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

pub(super) struct Service {
    pub sub: Sub,
    instances: BTreeMap<ResourcePart, Member>,
    pub watchers: Vec<(u64, mpsc::Sender<InstanceEvent>)>,
    parked: Vec<Parked>,
    /// Where the round robin goes on.
    cursor: usize,
    /// Until when the service counts as in use without a watcher.
    in_use_until: Option<Instant>,
}

impl Service {
    fn new(sub: Sub) -> Service {
        Service {
            sub,
            instances: BTreeMap::new(),
            watchers: Vec::new(),
            parked: Vec::new(),
            cursor: 0,
            in_use_until: None,
        }
    }

    /// Whether its instances are probed at `now`.
    fn in_use(&self, now: Instant) -> bool {
        !self.watchers.is_empty() || self.in_use_until.is_some_and(|until| now < until)
    }
}

/// The presence table.
pub(super) struct Directory {
    pub own: BareJid,
    pub policy: SubscriptionPolicy,
    pub status: Status,
    pub discovery_timeout: Duration,
    pub liveness: Liveness,
    services: HashMap<BareJid, Service>,
    /// Some service may be in use: liveness checks run.
    probing: bool,
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
            liveness: config.liveness,
            services,
            probing: false,
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
            Some(Sub::Pending { until, .. }) => Instant::now() < until,
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
                Sub::Pending { until, .. } => until,
                _ => Instant::now(),
            })
            .min()
    }

    /// Takes the parked work of services whose discovery ended.
    pub fn take_expired(&mut self) -> Vec<(BareJid, Parked)> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (jid, service) in &mut self.services {
            let waiting = matches!(service.sub, Sub::Pending { until, .. } if now < until);
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

    pub fn service(&mut self, service: &BareJid) -> &mut Service {
        self.services
            .entry(service.clone())
            .or_insert_with(|| Service::new(Sub::Unknown))
    }

    /// The online instances that take calls, least busy first, ties in
    /// turn; `tried` are left out, and so are unresponsive ones unless
    /// every other is (suspicion never empties the rotation).
    pub fn pick(&mut self, service: &BareJid, tried: &[FullJid]) -> Option<FullJid> {
        self.touch(service);
        let entry = self.services.get_mut(service)?;
        let eligible = |(r, m): &(&ResourcePart, &Member)| {
            m.status.takes_calls() && !tried.iter().any(|t| t.resource().as_str() == r.as_str())
        };
        let any_responsive = entry
            .instances
            .iter()
            .filter(eligible)
            .any(|(_, m)| !m.pulse.is_unresponsive());
        let candidates: Vec<(&ResourcePart, usize)> = entry
            .instances
            .iter()
            .filter(eligible)
            .filter(|(_, m)| !(any_responsive && m.pulse.is_unresponsive()))
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
            Sub::Pending { approved: true, .. } => format!("no instance of {service} is online"),
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
            member.pulse.call_started(Instant::now());
        }
    }

    pub fn call_ended(&mut self, jid: &FullJid) {
        if let Some(member) = self.member(jid) {
            member.in_flight = member.in_flight.saturating_sub(1);
            if member.in_flight == 0 {
                member.pulse.calls_settled();
            }
        }
    }

    /// Marks `service` as in use: its instances are probed for a while.
    pub fn touch(&mut self, service: &BareJid) {
        if let Some(entry) = self.services.get_mut(service) {
            entry.in_use_until = Some(Instant::now() + IN_USE_FOR);
            self.probing = true;
        }
    }

    /// Whether no service is tracked: then nobody's liveness matters.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Whether liveness checks have anything to look at.
    pub fn probing(&self) -> bool {
        self.probing && self.liveness.enabled
    }

    /// `jid` said something (an answer, a ping's answer, a request): proof
    /// that it is alive. Watchers learn if it was unresponsive.
    pub async fn heard(&mut self, jid: &FullJid) {
        let Some(service) = self.services.get_mut(&jid.to_bare()) else {
            return;
        };
        let Some(member) = service.instances.get_mut(jid.resource()) else {
            return;
        };
        if member.pulse.heard(Instant::now(), member.in_flight > 0) {
            let instance = Instance {
                jid: jid.clone(),
                status: member.status.clone(),
            };
            info!(%jid, "instance answers again; back in the rotation");
            deliver(&mut service.watchers, InstanceEvent::Responsive(instance)).await;
        }
    }

    /// The ping `id` to `jid` was answered (or refused by its client).
    pub fn probe_answered(&mut self, jid: &FullJid, id: &str) {
        if let Some(member) = self.member(jid) {
            member.pulse.probe_answered(id);
        }
    }

    /// The ping `id` to `jid` just left.
    pub fn probing_sent(&mut self, jid: &FullJid, id: String) {
        if let Some(member) = self.member(jid) {
            member.pulse.probing(id, Instant::now());
        }
    }

    /// One round of liveness checks: which instances to ping, and which
    /// just became unresponsive (their watchers are told here).
    pub async fn check_liveness(&mut self) -> Checks {
        let now = Instant::now();
        let liveness = self.liveness;
        let mut checks = Checks::default();
        let mut any = false;
        for (bare, service) in &mut self.services {
            if !service.in_use(now) {
                continue;
            }
            any = true;
            let mut unresponsive = Vec::new();
            for (resource, member) in &mut service.instances {
                match member.pulse.tick(now, &liveness, &mut checks.expired) {
                    Verdict::Wait => {}
                    Verdict::Probe => checks.probe.push(bare.with_resource(resource)),
                    Verdict::Unresponsive => unresponsive.push(bare.with_resource(resource)),
                }
            }
            for jid in unresponsive {
                warn!(%jid, after = ?liveness.timeout, "instance does not answer a ping; out of the rotation");
                checks.unresponsive.push(jid.clone());
                deliver(&mut service.watchers, InstanceEvent::Unresponsive(jid)).await;
            }
        }
        self.probing = any;
        checks
    }

    /// Our own connection is back: pings that could not be answered while
    /// it was down count for nothing.
    pub fn restart_pulses(&mut self) {
        let now = Instant::now();
        for service in self.services.values_mut() {
            for member in service.instances.values_mut() {
                member.pulse.restart(now);
            }
        }
    }

    /// Records an available presence.
    pub async fn online(&mut self, jid: FullJid, status: Status) {
        let service = self.service(&jid.to_bare());
        let instance = Instance {
            jid: jid.clone(),
            status: status.clone(),
        };
        let event = match service.instances.get_mut(jid.resource()) {
            Some(member) => {
                // Presence is proof of life too.
                let back = member.pulse.heard(Instant::now(), member.in_flight > 0);
                if member.status == status && !back {
                    return;
                }
                member.status = status;
                match back {
                    true => InstanceEvent::Responsive(instance),
                    false => InstanceEvent::StatusChanged(instance),
                }
            }
            None => {
                service
                    .instances
                    .insert(jid.resource().to_owned(), Member::new(status));
                InstanceEvent::Online(instance)
            }
        };
        debug!(?event, "presence");
        deliver(&mut service.watchers, event).await;
    }

    /// Records that an instance is gone.
    pub async fn gone(&mut self, jid: &FullJid) {
        let Some(service) = self.services.get_mut(&jid.to_bare()) else {
            return;
        };
        if service.instances.remove(jid.resource()).is_some() {
            debug!(%jid, "instance offline");
            let event = InstanceEvent::Offline(jid.clone());
            deliver(&mut service.watchers, event).await;
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

    /// Whether presence from `service` is tracked: only services this bus
    /// asked about (or its own), so unsolicited presence cannot grow the
    /// table.
    pub fn tracks(&self, service: &BareJid) -> bool {
        self.services.contains_key(service)
    }

    /// The service approved our subscription. A discovery under way goes
    /// on until the first presence or its deadline: the approval comes
    /// before the instances' presence, and parked work released now would
    /// find nobody.
    pub fn subscribed(&mut self, service: &BareJid) {
        if let Some(entry) = self.services.get_mut(service) {
            entry.sub = match entry.sub {
                Sub::Pending { until, .. } if Instant::now() < until => Sub::Pending {
                    until,
                    approved: true,
                },
                _ => Sub::Subscribed,
            };
        }
    }

    /// The service refused our subscription (or its server failed it).
    pub fn refused(&mut self, service: &BareJid) {
        if *service == self.own {
            return;
        }
        if let Some(entry) = self.services.get_mut(service) {
            debug!(%service, "presence subscription refused");
            entry.sub = Sub::Refused;
        }
    }

    /// A first instance showed up: the discovery is over.
    pub fn discovered(&mut self, service: &BareJid) {
        if let Some(entry) = self.services.get_mut(service)
            && matches!(entry.sub, Sub::Pending { .. } | Sub::Unknown)
        {
            entry.sub = Sub::Subscribed;
        }
    }

    /// Starts a discovery of `service`; true if a subscription request
    /// must be sent (none was sent before).
    pub fn start_discovery(&mut self, service: &BareJid) -> bool {
        let until = Instant::now() + self.discovery_timeout;
        let entry = self.service(service);
        if matches!(entry.sub, Sub::Unknown) {
            entry.sub = Sub::Pending {
                until,
                approved: false,
            };
            return true;
        }
        false
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

    /// The instances of `service` that are online but unresponsive.
    pub fn unresponsive(&self, service: &BareJid) -> Vec<FullJid> {
        self.services
            .get(service)
            .map(|s| {
                s.instances
                    .iter()
                    .filter(|(_, m)| m.pulse.is_unresponsive())
                    .map(|(r, _)| service.with_resource(r))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The online instances of `service` that are not unresponsive.
    pub fn list(&self, service: &BareJid) -> Vec<Instance> {
        self.services
            .get(service)
            .map(|s| {
                s.instances
                    .iter()
                    .filter(|(_, m)| !m.pulse.is_unresponsive())
                    .map(|(r, m)| Instance {
                        jid: service.with_resource(r),
                        status: m.status.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn apply_roster_item(&mut self, item: &Item) {
        let sub = match (&item.subscription, &item.ask) {
            (Subscription::To | Subscription::Both, _) => {
                // Like a `subscribed` presence: a discovery under way waits
                // for the first presence.
                self.subscribed(&item.jid);
                match self.services.get(&item.jid).map(|s| s.sub) {
                    Some(pending @ Sub::Pending { .. }) => pending,
                    _ => Sub::Subscribed,
                }
            }
            (Subscription::Remove, _) => Sub::Unknown,
            // Keep the end of a discovery under way.
            (_, Ask::Subscribe) => match self.services.get(&item.jid).map(|s| s.sub) {
                Some(pending @ Sub::Pending { .. }) => pending,
                _ => Sub::Pending {
                    until: Instant::now(),
                    approved: false,
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

/// Hands `item` to every receiver, waiting for room (back-pressure) and
/// forgetting receivers that are gone.
async fn deliver<T: Clone>(receivers: &mut Vec<(u64, mpsc::Sender<T>)>, item: T) {
    let mut gone = Vec::new();
    for (id, tx) in receivers.iter() {
        if tx.send(item.clone()).await.is_err() {
            gone.push(*id);
        }
    }
    receivers.retain(|(id, _)| !gone.contains(id));
}

#[cfg(test)]
mod tests;
