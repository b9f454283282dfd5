//! Service liveness over presence: an instance's [`Status`], what
//! [`Bus::watch`](crate::Bus::watch) reports, and who may see this bus's
//! presence ([`SubscriptionPolicy`]).
//!
//! Every bus is one instance of a service: the service is its bare JID,
//! the instance its resource. It announces itself with
//! `<presence><status>ready</status><instance xmlns='urn:xbus:0' status='ready'/></presence>`;
//! only resources that carry the `<instance/>` element count as instances.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::str::FromStr;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use xmpp_parsers::jid::{BareJid, FullJid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use crate::bus::Bus;
use crate::codec::{NS, RawPayload, name};
use crate::command::{Command, Dropped};
use crate::error::SendError;
use crate::event::Event;
use crate::stats::BusStats;
use crate::subscription::DropGuard;

/// Element that marks a presence as an xbus instance's.
const INSTANCE: &str = "instance";

/// What an instance tells callers about itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Status {
    /// Takes calls and work. The status every bus starts with.
    #[default]
    Ready,
    /// Finishing its work before it stops: callers pick other instances.
    Draining,
    /// Any other status text; such an instance still takes calls.
    Other(String),
}

impl Status {
    /// The status as it goes on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Status::Ready => "ready",
            Status::Draining => "draining",
            Status::Other(text) => text,
        }
    }

    /// Whether callers may pick an instance with this status.
    pub fn takes_calls(&self) -> bool {
        !matches!(self, Status::Draining)
    }
}

impl From<&str> for Status {
    fn from(text: &str) -> Status {
        match text {
            "ready" => Status::Ready,
            "draining" => Status::Draining,
            other => Status::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One online instance of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Instance {
    /// Its full JID: the service's bare JID and the instance's resource.
    pub jid: FullJid,
    /// What it last announced.
    pub status: Status,
}

/// A change in a watched service, from [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstanceEvent {
    /// An instance came online (or was online when the watch started).
    Online(Instance),
    /// An online instance announced another status.
    StatusChanged(Instance),
    /// An instance went offline.
    Offline(FullJid),
    /// An online instance stopped answering: a ping went unanswered (see
    /// [`Liveness`](crate::Liveness)). It is out of the rotation; its
    /// server may still list it as available for minutes (XEP-0198
    /// resumption window). Followed by [`Responsive`](Self::Responsive) if
    /// it answers again, or [`Offline`](Self::Offline).
    Unresponsive(FullJid),
    /// An unresponsive instance answers again and is back in the rotation.
    Responsive(Instance),
}

/// Which presence subscription requests this bus approves: who may see
/// its instances and call them by service name.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum SubscriptionPolicy {
    /// Approve accounts of this bus's own domain. The default.
    #[default]
    SameDomain,
    /// Approve everyone.
    AcceptAll,
    /// Refuse everyone.
    RejectAll,
    /// Ask a function.
    Custom(Arc<dyn Fn(&BareJid) -> bool + Send + Sync>),
}

impl SubscriptionPolicy {
    /// A policy that approves the accounts for which `approve` is true.
    pub fn custom(approve: impl Fn(&BareJid) -> bool + Send + Sync + 'static) -> Self {
        SubscriptionPolicy::Custom(Arc::new(approve))
    }

    /// Whether a request from `from` to the bus `own` is approved.
    pub(crate) fn approves(&self, own: &BareJid, from: &BareJid) -> bool {
        match self {
            SubscriptionPolicy::SameDomain => own.domain() == from.domain(),
            SubscriptionPolicy::AcceptAll => true,
            SubscriptionPolicy::RejectAll => false,
            SubscriptionPolicy::Custom(approve) => approve(from),
        }
    }
}

impl fmt::Debug for SubscriptionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionPolicy::SameDomain => f.write_str("SameDomain"),
            SubscriptionPolicy::AcceptAll => f.write_str("AcceptAll"),
            SubscriptionPolicy::RejectAll => f.write_str("RejectAll"),
            SubscriptionPolicy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// [`Bus::watch`](crate::Bus::watch) or
/// [`Bus::instances`](crate::Bus::instances) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The service is not a valid bare JID.
    #[error("invalid service {service:?}: {reason}")]
    InvalidService {
        /// What was given.
        service: String,
        /// Why it is not a bare JID.
        reason: String,
    },
    /// The bus is closed.
    #[error("the bus is closed")]
    Closed,
}

/// The instance events of one service: a [`Stream`] that first reports the
/// instances already known as [`InstanceEvent::Online`], then every change.
/// Dropping it stops the watch. Like a subscription it holds up to
/// `subscription_capacity` events; a full watch holds back the bus.
#[derive(Debug)]
pub struct Watch {
    pub(crate) service: BareJid,
    pub(crate) rx: mpsc::Receiver<InstanceEvent>,
    pub(crate) _guard: DropGuard,
}

impl Watch {
    /// The watched service.
    pub fn service(&self) -> &BareJid {
        &self.service
    }
}

impl Stream for Watch {
    type Item = InstanceEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Bus {
    /// Announces another status for this instance: callers skip
    /// [`Status::Draining`] instances. Accepts a [`Status`] or a `&str`
    /// (`"ready"`, `"draining"`, any other text).
    pub async fn set_status(&self, status: impl Into<Status>) -> Result<(), SendError> {
        let status = status.into();
        self.command(Command::SetStatus { status })
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Watches the instances of `service` (a bare JID): first the ones
    /// online now, then every change. Asks for a presence subscription to
    /// the service if this bus has none; the service approves it by its
    /// [`SubscriptionPolicy`].
    pub async fn watch(&self, service: &str) -> Result<Watch, WatchError> {
        let service = parse_service(service)?;
        let (tx, rx) = mpsc::channel(self.config().subscription_capacity);
        let (reply, answer) = oneshot::channel();
        self.command(Command::Watch {
            service: service.clone(),
            tx,
            reply,
        })
        .await
        .map_err(|_| WatchError::Closed)?;
        let id = answer.await.map_err(|_| WatchError::Closed)?;
        Ok(Watch {
            _guard: self.guard(Dropped::Watch {
                service: service.clone(),
                id,
            }),
            service,
            rx,
        })
    }

    /// The online instances of `service` (a bare JID) with their status.
    /// For a service this bus has never seen, it first asks for a presence
    /// subscription and waits up to the
    /// [`discovery_timeout`](crate::BusConfigBuilder::discovery_timeout).
    pub async fn instances(&self, service: &str) -> Result<Vec<Instance>, WatchError> {
        let service = parse_service(service)?;
        let (reply, answer) = oneshot::channel();
        self.command(Command::Instances { service, reply })
            .await
            .map_err(|_| WatchError::Closed)?;
        answer.await.map_err(|_| WatchError::Closed)
    }

    /// Sends `event` to exactly one online instance of `service`, picked in
    /// turn among those not [`Draining`](Status::Draining): competing
    /// consumers for work. Resolves to the instance once the server
    /// acknowledged the message; with no instance online it fails with
    /// [`SendError::NoInstance`]. The instance receives it in its
    /// [`inbox`](Bus::inbox).
    pub async fn send_to_any<E: Event>(
        &self,
        service: &str,
        event: &E,
    ) -> Result<FullJid, SendError> {
        let service = BareJid::from_str(service).map_err(|e| SendError::InvalidRecipient {
            jid: service.to_owned(),
            reason: e.to_string(),
        })?;
        let payload = RawPayload::encode(event)?;
        let span = tracing::info_span!("send", topic = payload.topic.as_str(), to = %service);
        self.send_payload(span, payload, |payload, reply| Command::SendToAny {
            service,
            payload,
            reply,
        })
        .await
    }

    /// Counters of this bus's connection task.
    pub async fn stats(&self) -> Result<BusStats, WatchError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Stats { reply })
            .await
            .map_err(|_| WatchError::Closed)?;
        answer.await.map_err(|_| WatchError::Closed)
    }
}

fn parse_service(service: &str) -> Result<BareJid, WatchError> {
    BareJid::from_str(service).map_err(|e| WatchError::InvalidService {
        service: service.to_owned(),
        reason: e.to_string(),
    })
}

/// The available presence that announces this instance with `status`.
pub(crate) fn announce(status: &Status) -> Presence {
    let mut presence = Presence::new(PresenceType::None);
    presence.set_status("", status.as_str());
    presence.payloads.push(
        Element::builder(INSTANCE, NS)
            .attr(name("status"), status.as_str())
            .build(),
    );
    presence
}

/// The status an available presence announces, if it is an xbus
/// instance's.
pub(crate) fn announced(presence: &Presence) -> Option<Status> {
    let instance = presence.payloads.iter().find(|p| p.is(INSTANCE, NS))?;
    Some(Status::from(instance.attr("status").unwrap_or("ready")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_presence() {
        for status in [
            Status::Ready,
            Status::Draining,
            Status::Other("warming up".into()),
        ] {
            let presence = announce(&status);
            let elem = Element::from(presence.clone());
            let back = Presence::try_from(elem).unwrap();
            assert_eq!(announced(&back), Some(status.clone()));
        }
        assert_eq!(announced(&Presence::new(PresenceType::None)), None);
        assert!(!Status::Draining.takes_calls());
        assert!(Status::Other("busy".into()).takes_calls());
    }

    #[test]
    fn policies_decide_by_domain_or_function() {
        let own = BareJid::from_str("inventory@a.example").unwrap();
        let same = BareJid::from_str("orders@a.example").unwrap();
        let other = BareJid::from_str("orders@b.example").unwrap();
        assert!(SubscriptionPolicy::SameDomain.approves(&own, &same));
        assert!(!SubscriptionPolicy::SameDomain.approves(&own, &other));
        assert!(SubscriptionPolicy::AcceptAll.approves(&own, &other));
        assert!(!SubscriptionPolicy::RejectAll.approves(&own, &same));
        let only_orders =
            SubscriptionPolicy::custom(|jid| jid.node().is_some_and(|n| n.as_str() == "orders"));
        assert!(only_orders.approves(&own, &other));
        assert!(!only_orders.approves(&other, &own));
    }
}
