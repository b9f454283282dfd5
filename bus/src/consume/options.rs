//! How a group treats its events: where a new group starts, the ack
//! wait, backoff and dead-letter topic ([`ConsumeOptions`]).

use std::time::Duration;

#[cfg(doc)]
use super::Job;
#[cfg(doc)]
use crate::Bus;

/// Where a new group starts on its topic. Only the first instance of a
/// group ever uses it: once the group has progress on the server, every
/// instance continues from there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartAt {
    /// Every event the topic still stores, then new ones.
    #[default]
    All,
    /// Only events published after the group was created.
    New,
    /// The events stored after this item id, then new ones.
    AfterItem(String),
}

/// How a group treats its events; see [`Bus::consume`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ConsumeOptions {
    pub(crate) start: StartAt,
    pub(crate) ack_wait: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) backoff: Vec<Duration>,
    pub(crate) max_deliver: u32,
    pub(crate) dead_letter: Option<String>,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            start: StartAt::All,
            ack_wait: Duration::from_secs(30),
            max_in_flight: 16,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            max_deliver: 5,
            dead_letter: None,
        }
    }
}

impl ConsumeOptions {
    /// The defaults: [`StartAt::All`], a 30 s ack wait, 16 jobs in flight
    /// per instance, a backoff of 1 s, 5 s, then 30 s, 5 deliveries at
    /// most, and the dead-letter topic `TOPIC.dead-letter`.
    pub fn new() -> ConsumeOptions {
        ConsumeOptions::default()
    }

    /// Where a new group starts. Default: [`StartAt::All`].
    pub fn start(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// How long an instance has to settle a job ([`Job::ack`],
    /// [`Job::nak`], [`Job::term`]) before the job goes to another
    /// instance; [`Job::in_progress`] restarts it. Default: 30 s.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait.max(Duration::from_millis(10));
        self
    }

    /// Most unsettled jobs one instance holds at a time (at least 1).
    /// Default: 16.
    pub fn max_in_flight(mut self, jobs: usize) -> Self {
        self.max_in_flight = jobs.max(1);
        self
    }

    /// The wait before delivery n + 1 after delivery n failed (a nak
    /// without delay, an expired ack wait, a lost instance): entry n - 1,
    /// the last entry for later ones. Default: 1 s, 5 s, 30 s.
    pub fn backoff(mut self, schedule: impl IntoIterator<Item = Duration>) -> Self {
        self.backoff = schedule.into_iter().collect();
        self
    }

    /// Deliveries after which a failing event goes to the dead-letter
    /// topic (at least 1). Default: 5.
    pub fn max_deliver(mut self, deliveries: u32) -> Self {
        self.max_deliver = deliveries.max(1);
        self
    }

    /// The topic dead events are published to. Default:
    /// `TOPIC.dead-letter`.
    pub fn dead_letter(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter = Some(topic.into());
        self
    }

    pub(crate) fn dead_letter_topic(&self, topic: &str) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| format!("{topic}.dead-letter"))
    }
}
