//! Liveness probes: how a bus notices that an instance it uses has died or
//! frozen; see [`Liveness`].

use std::time::Duration;

/// How a bus notices that an instance it uses has died or frozen, long
/// before the server says so.
///
/// A process killed with `SIGKILL`, frozen, or cut off by a dead network
/// leaves its XMPP session waiting for an XEP-0198 resumption: Prosody keeps
/// it "available" for 600 s by default, ejabberd for 300 s, the embedded
/// server for 60 s. Presence alone would keep the instance in the rotation
/// that long. So a bus watches the instances it uses itself:
///
/// * Everything an instance says proves it alive: an answer to a call, an
///   answer to a ping, its presence.
/// * An instance that owes this bus an answer to a call and has said nothing
///   for [`suspect_after`](Liveness::suspect_after), or that has said
///   nothing at all for [`interval`](Liveness::interval), gets an XEP-0199
///   ping to its full JID. An instance's connection task answers pings
///   itself, whatever its handlers are doing: slow calls do not make it
///   look dead.
/// * A ping unanswered after [`timeout`](Liveness::timeout) makes the
///   instance **unresponsive**: callers and
///   [`send_to_any`](crate::Bus::send_to_any) skip it,
///   [`instances`](crate::Bus::instances) leaves it out, and watchers get
///   [`InstanceEvent::Unresponsive`](crate::InstanceEvent::Unresponsive). It
///   keeps being pinged, less and less often (up to every 8 intervals).
///   Calls already sent to it are not failed: they end with its answer or
///   their timeout.
/// * Anything it says again brings it back
///   ([`InstanceEvent::Responsive`](crate::InstanceEvent::Responsive)). An
///   error from its server saying the session is gone
///   (`service-unavailable`) removes it, as its unavailable presence would
///   ([`InstanceEvent::Offline`](crate::InstanceEvent::Offline)).
/// * If every instance that takes calls is unresponsive, calls still go to
///   them: suspicion never empties a rotation by itself, so a congested
///   link cannot turn every call into `NoResponder`.
///
/// Only services in use are watched this way: those with a
/// [`Watch`](crate::Watch), and those this bus called, sent to or listed in
/// the last 30 s. With the defaults, an instance that died is out of the
/// rotation within about 1.2 s of the first call it leaves unanswered, and
/// within 1.7 s when it was idle. The cost: at most one ping (about 150
/// bytes each way) per instance per interval, and none to an instance that
/// answers calls from this bus more often than that.
///
/// These are the settings of those probes. Set them with
/// [`BusConfigBuilder::liveness`](crate::BusConfigBuilder::liveness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Liveness {
    /// Ping an instance that has said nothing for this long. Default 750 ms.
    pub interval: Duration,
    /// Ping an instance that owes this bus a call's answer and has said
    /// nothing for this long. Default 250 ms.
    pub suspect_after: Duration,
    /// A ping unanswered for this long makes the instance unresponsive.
    /// Default 750 ms.
    pub timeout: Duration,
    /// Whether probes run at all. Default true.
    pub enabled: bool,
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness {
            interval: Duration::from_millis(750),
            suspect_after: Duration::from_millis(250),
            timeout: Duration::from_millis(750),
            enabled: true,
        }
    }
}

impl Liveness {
    /// No probes: an instance leaves the rotation only when the server
    /// says it is offline (after its XEP-0198 resumption window), or when
    /// a call to it is answered with `service-unavailable`.
    pub fn disabled() -> Liveness {
        Liveness {
            enabled: false,
            ..Liveness::default()
        }
    }

    /// Sets [`interval`](Self::interval).
    pub fn interval(mut self, interval: Duration) -> Liveness {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Sets [`suspect_after`](Self::suspect_after).
    pub fn suspect_after(mut self, after: Duration) -> Liveness {
        self.suspect_after = after.max(Duration::from_millis(10));
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Liveness {
        self.timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// The longest pause between two pings to an unresponsive instance.
    pub(crate) fn max_backoff(&self) -> Duration {
        self.interval * 8
    }
}
