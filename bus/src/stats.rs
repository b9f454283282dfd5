//! [`BusStats`]: counters for monitoring and tests.

/// A snapshot of a bus's internal state, from [`Bus::stats`](crate::Bus::stats).
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
}
