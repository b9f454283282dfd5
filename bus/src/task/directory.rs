//! The presence table: which instances of which services are online, the
//! presence subscriptions that tell us, and the work parked while a
//! service is being discovered. Pure state: the stanzas are sent by
//! [`super::presence`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;
use xmpp_parsers::jid::{BareJid, FullJid, ResourcePart};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Presence;
use xmpp_parsers::roster::{Ask, Item, Subscription};

use super::rpc::OutgoingCall;
use crate::command::CallFailure;
use crate::config::BusConfig;
use crate::error::SendError;
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

pub(super) struct Service {
    pub sub: Sub,
    instances: BTreeMap<ResourcePart, Member>,
    pub watchers: Vec<(u64, mpsc::Sender<InstanceEvent>)>,
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
    pub own: BareJid,
    pub policy: SubscriptionPolicy,
    pub status: Status,
    pub discovery_timeout: Duration,
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
        }
    }

    pub fn call_ended(&mut self, jid: &FullJid) {
        if let Some(member) = self.member(jid) {
            member.in_flight = member.in_flight.saturating_sub(1);
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
            Some(member) if member.status == status => return,
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
        if let Some(entry) = self.services.get_mut(service) {
            if matches!(entry.sub, Sub::Pending { .. } | Sub::Unknown) {
                entry.sub = Sub::Subscribed;
            }
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

    pub fn list(&self, service: &BareJid) -> Vec<Instance> {
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
mod tests {
    use super::*;
    use std::str::FromStr;

    fn jid(s: &str) -> FullJid {
        FullJid::from_str(s).unwrap()
    }

    async fn directory() -> (Directory, BareJid) {
        let config = BusConfig::builder("me@example.org", "pw")
            .discovery_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut directory = Directory::new(BareJid::from_str("me@example.org").unwrap(), &config);
        let service = BareJid::from_str("inv@example.org").unwrap();
        assert!(directory.start_discovery(&service));
        for name in ["a", "b", "c"] {
            directory
                .online(jid(&format!("inv@example.org/{name}")), Status::Ready)
                .await;
        }
        directory.discovered(&service);
        (directory, service)
    }

    fn picks(directory: &mut Directory, service: &BareJid, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let picked = directory.pick(service, &[]).unwrap();
                picked.resource().to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn picks_in_turn_and_skips_draining_and_tried_instances() {
        let (mut directory, service) = directory().await;
        assert_eq!(
            picks(&mut directory, &service, 6),
            ["a", "b", "c", "a", "b", "c"]
        );
        directory
            .online(jid("inv@example.org/b"), Status::Draining)
            .await;
        let turns = picks(&mut directory, &service, 4);
        assert!(
            turns == ["a", "c", "a", "c"] || turns == ["c", "a", "c", "a"],
            "{turns:?}"
        );
        let tried = [jid("inv@example.org/a")];
        assert_eq!(
            directory.pick(&service, &tried),
            Some(jid("inv@example.org/c"))
        );
        let tried = [jid("inv@example.org/a"), jid("inv@example.org/c")];
        assert_eq!(directory.pick(&service, &tried), None);
        assert!(directory.why_none(&service, true).contains("just left"));
    }

    #[tokio::test]
    async fn prefers_the_instance_with_the_fewest_calls_in_flight() {
        let (mut directory, service) = directory().await;
        directory.call_started(&jid("inv@example.org/a"));
        directory.call_started(&jid("inv@example.org/a"));
        directory.call_started(&jid("inv@example.org/b"));
        assert_eq!(picks(&mut directory, &service, 1), ["c"]);
        directory.call_started(&jid("inv@example.org/c"));
        // b and c have one each, a two: b and c take turns.
        let next = picks(&mut directory, &service, 1);
        assert!(next == ["b"] || next == ["c"], "{next:?}");
        directory.call_ended(&jid("inv@example.org/a"));
        directory.call_ended(&jid("inv@example.org/a"));
        assert_eq!(picks(&mut directory, &service, 1), ["a"]);
    }

    #[tokio::test]
    async fn knows_when_to_wait_for_presence() {
        let (mut directory, service) = directory().await;
        let own = directory.own.clone();
        assert!(
            !directory.must_discover(&own),
            "own instances need no subscription"
        );
        assert!(!directory.must_discover(&service), "discovered");
        let other = BareJid::from_str("billing@example.org").unwrap();
        assert!(
            !directory.tracks(&other),
            "unsolicited presence is not tracked"
        );
        assert!(directory.must_discover(&other));
        assert!(directory.start_discovery(&other));
        assert!(
            !directory.start_discovery(&other),
            "one subscription request"
        );
        assert!(
            directory.must_discover(&other),
            "waiting for the first presence"
        );
        directory.subscribed(&other);
        assert!(
            directory.must_discover(&other),
            "approval without presence does not end the discovery"
        );
        directory.refused(&other);
        assert!(!directory.must_discover(&other));
        assert!(directory.why_none(&other, false).contains("refused"));
        directory.gone(&jid("inv@example.org/a")).await;
        assert_eq!(directory.list(&service).len(), 2);
    }
}
