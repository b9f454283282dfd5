//! [`BusStats`]: counters for monitoring and tests.

/// A snapshot of a bus's internal state, from [`Bus::stats`](crate::Bus::stats).
///
/// The `u64` counters count from the bus's start and never go down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BusStats {
    /// IQs sent and not answered yet (publishes, calls, subscriptions).
    pub pending_iqs: usize,
    /// Handlers running now.
    pub running_handlers: usize,
    /// Topics with local subscriptions.
    pub topics: usize,
    /// Services in the presence table, this bus's own included.
    pub services: usize,
    /// Publishes sent or waiting to be sent, and not yet confirmed.
    pub unconfirmed_publishes: usize,
    /// Incoming stanzas that carried nothing for this bus and were dropped
    /// (logged at debug or warn level): a direct event for a topic without
    /// an inbox, a pubsub notification from anyone but the pubsub service
    /// or for a topic without subscription, a message without an xbus
    /// payload, a bounced (error) message.
    pub ignored_stanzas: u64,
    /// Events whose xbus payload element could not be read (bad base64,
    /// unknown encoding, too large, ...): each was delivered as a
    /// [`DeliveryError`](crate::DeliveryError). Payloads that are read
    /// but do not decode into the subscriber's type are reported by its
    /// stream only.
    pub malformed_events: u64,
    /// Items dropped as duplicates by the subscriptions' windows of
    /// recent item ids (re-sent publishes, gap fetches after a reset).
    pub duplicates_dropped: u64,
    /// Events dropped by full [`DropOldest`](crate::BufferPolicy::DropOldest)
    /// buffers, summed over all subscriptions and inboxes.
    pub overflowed: u64,
    /// Incoming calls refused by the bus before they reached a handler:
    /// not allowed, unknown or missing method, overloaded, closing. (A request whose body
    /// does not decode is answered `bad-request` by the handler's wrapper
    /// and not counted here.)
    pub refused_calls: u64,
    /// Of those, the calls from accounts the bus's [`Allow`](crate::Allow)
    /// lists do not include (answered `forbidden`).
    pub forbidden_calls: u64,
    /// Direct events ([`Bus::send`](crate::Bus::send)) from accounts the
    /// bus's [`Allow`](crate::Allow) does not include, dropped unread.
    pub refused_messages: u64,
    /// Sessions lost and replaced by new ones (the reconnects that were
    /// not XEP-0198 resumptions).
    pub session_resets: u64,
    /// Pubsub subscriptions of this account's dead sessions that this bus
    /// removed (see `docs/RELIABILITY.md`, "Stale subscriptions").
    pub stale_subscriptions_removed: u64,
    /// Consumer-group events this bus, as a group's leader, marked done
    /// after an ack.
    pub group_acked: u64,
    /// Consumer-group deliveries after the first (naks, expired ack waits,
    /// lost instances) this bus made as a leader.
    pub group_redeliveries: u64,
    /// Of those, the ones because the instance holding the event went
    /// away: the events that may have been handled twice.
    pub group_orphaned: u64,
    /// Consumer-group events this bus, as a leader, published to a
    /// dead-letter topic.
    pub group_dead_lettered: u64,
    /// Times this bus, taking a group's leadership, found that the topic
    /// had dropped events the group had not handled (see
    /// `docs/RELIABILITY.md`, "Consumer groups").
    pub group_losses: u64,
    /// Times this bus took over a group's leadership. Each change of
    /// leader may hand out again the events then in flight (see
    /// `docs/RELIABILITY.md`, "Consumer groups").
    pub group_takeovers: u64,
}

/// The counters the connection task keeps.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub ignored_stanzas: u64,
    pub malformed_events: u64,
    pub duplicates_dropped: u64,
    pub overflowed: u64,
    pub refused_calls: u64,
    pub forbidden_calls: u64,
    pub refused_messages: u64,
    pub session_resets: u64,
    pub stale_subscriptions_removed: u64,
    pub group: crate::group::ledger::Counts,
    pub group_events_lost: u64,
    pub group_takeovers: u64,
}

impl Counters {
    /// Keeps what a leadership that ended had counted.
    pub fn add_group(&mut self, counts: crate::group::ledger::Counts) {
        self.group.add(counts);
    }
}
