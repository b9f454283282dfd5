//! The group leader's bookkeeping: which events wait, which are out with
//! which instance and until when, how many attempts each had, and which
//! are done (acked or dead-lettered). Pure state, no I/O: the connection
//! task feeds it what happens and does what it returns.
//!
//! Rules (the semantics in `docs/RELIABILITY.md` follow from them):
//!
//! * An event is out with at most one instance at a time.
//! * Every delivery counts as an attempt, including one whose instance
//!   died or did not answer within the ack wait.
//! * A failed attempt (nak, ack wait expired, instance gone) waits the
//!   backoff for its attempt number before the next delivery; a nak with
//!   a delay waits that delay instead. Backoff applies to naks too.
//! * After `max_deliver` attempts, or at once on `term`, the event is dead:
//!   the caller publishes it to the dead-letter topic and it is done.
//! * Events are handed out in the order they were offered (the topic's
//!   stored order), each to the instance with the fewest events out, up
//!   to `max_in_flight` per instance. A redelivery goes to another
//!   instance than the one that failed it, if another has room.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// How the leader treats events; the group's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    /// How long an instance has to answer a delivery.
    pub ack_wait: Duration,
    /// The wait before delivery n + 1 after a failed delivery n: entry
    /// `n - 1`, the last entry for later ones, none if empty.
    pub backoff: Vec<Duration>,
    /// Deliveries after which a failing event is dead-lettered (at least 1).
    pub max_deliver: u32,
    /// Most events out with one instance at a time (at least 1).
    pub max_in_flight: usize,
}

impl Rules {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::ZERO)
    }
}

/// One delivery to hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery<W> {
    pub item: String,
    pub worker: W,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// An event that will not be delivered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dead {
    pub item: String,
    /// Deliveries made.
    pub attempts: u32,
    /// Why the last one failed.
    pub last_error: String,
}

/// Where an event stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage<W> {
    /// Waiting for a delivery, not before `ready_at`.
    Waiting { ready_at: Instant },
    /// Out with `worker` until `deadline`.
    Out { worker: W, deadline: Instant },
}

#[derive(Debug, Clone)]
struct Entry<W> {
    attempts: u32,
    stage: Stage<W>,
    last_error: Option<String>,
    /// The instance whose attempt failed last: passed over next time if
    /// another can take the event.
    failed_with: Option<W>,
}

/// What the leader has counted since it took over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub acked: u64,
    /// Deliveries after the first: naks, expired ack waits, lost instances.
    pub redelivered: u64,
    /// Redeliveries because an instance went away with the event.
    pub orphaned: u64,
    pub dead_lettered: u64,
}

impl Counts {
    /// Adds `other` to these.
    pub fn add(&mut self, other: Counts) {
        self.acked += other.acked;
        self.redelivered += other.redelivered;
        self.orphaned += other.orphaned;
        self.dead_lettered += other.dead_lettered;
    }
}

/// The leader's ledger; `W` names an instance.
#[derive(Debug)]
pub(crate) struct Ledger<W> {
    rules: Rules,
    /// Item ids in the order they were offered; done ones are dropped.
    order: VecDeque<String>,
    entries: HashMap<String, Entry<W>>,
    /// Acked or dead-lettered: never offered again.
    done: HashSet<String>,
    out_per_worker: HashMap<W, usize>,
    counts: Counts,
}

impl<W: Clone + Eq + Hash> Ledger<W> {
    /// An empty ledger; `done` are the ids a previous leader finished.
    pub fn new(rules: Rules, done: impl IntoIterator<Item = String>) -> Ledger<W> {
        let mut rules = rules;
        rules.max_deliver = rules.max_deliver.max(1);
        rules.max_in_flight = rules.max_in_flight.max(1);
        Ledger {
            rules,
            order: VecDeque::new(),
            entries: HashMap::new(),
            done: done.into_iter().collect(),
            out_per_worker: HashMap::new(),
            counts: Counts::default(),
        }
    }

    /// A new (or stored) event: queued unless known or done. `attempts`
    /// are those a previous leader already made.
    pub fn offer(&mut self, item: &str, attempts: u32, now: Instant) -> bool {
        if self.done.contains(item) || self.entries.contains_key(item) {
            return false;
        }
        self.order.push_back(item.to_owned());
        let entry = Entry {
            attempts,
            stage: Stage::Waiting { ready_at: now },
            last_error: None,
            failed_with: None,
        };
        self.entries.insert(item.to_owned(), entry);
        true
    }

    /// Hands out what is ready to the instances in `workers` (those alive
    /// and in the group), oldest first, fewest-loaded instance first.
    pub fn dispatch(&mut self, workers: &[W], now: Instant) -> Vec<Delivery<W>> {
        let mut out = Vec::new();
        if workers.is_empty() {
            return out;
        }
        for item in &self.order {
            let Some(entry) = self.entries.get_mut(item) else {
                continue;
            };
            let Stage::Waiting { ready_at } = entry.stage else {
                continue;
            };
            if ready_at > now {
                continue;
            }
            let load = |w: &W| self.out_per_worker.get(w).copied().unwrap_or(0);
            let open = workers
                .iter()
                .filter(|w| load(w) < self.rules.max_in_flight);
            let Some(worker) = open
                .clone()
                .filter(|w| entry.failed_with.as_ref() != Some(*w))
                .min_by_key(|w| load(w))
                .or_else(|| open.min_by_key(|w| load(w)))
            else {
                break;
            };
            entry.attempts += 1;
            if entry.attempts > 1 {
                self.counts.redelivered += 1;
            }
            entry.stage = Stage::Out {
                worker: worker.clone(),
                deadline: now + self.rules.ack_wait,
            };
            *self.out_per_worker.entry(worker.clone()).or_default() += 1;
            out.push(Delivery {
                item: item.clone(),
                worker: worker.clone(),
                attempt: entry.attempts,
            });
        }
        out
    }

    /// `item` was acked. A late ack (after the event was taken back, even
    /// from another instance than the one holding it now) still finishes
    /// it: the work was done.
    pub fn ack(&mut self, item: &str) -> bool {
        let Some(entry) = self.entries.remove(item) else {
            return false;
        };
        self.release(&entry.stage);
        self.finish(item);
        self.counts.acked += 1;
        true
    }

    /// An instance reports `item` settled for an earlier leader: done,
    /// without counting an ack here. Returns whether it was pending.
    pub fn done_elsewhere(&mut self, item: &str) -> bool {
        match self.entries.remove(item) {
            Some(entry) => {
                self.release(&entry.stage);
                self.finish(item);
                true
            }
            None => {
                self.done.insert(item.to_owned());
                false
            }
        }
    }

    /// `worker` gave `item` back: after `delay`, or after the backoff. Dead
    /// if it was the last attempt.
    pub fn nak(
        &mut self,
        item: &str,
        worker: &W,
        delay: Option<Duration>,
        error: String,
        now: Instant,
    ) -> Option<Dead> {
        if !self.is_out_with(item, worker) {
            return None;
        }
        self.fail(item, delay, error, now)
    }

    /// `worker` said `item` can never succeed: dead at once.
    pub fn term(&mut self, item: &str, worker: &W, error: String) -> Option<Dead> {
        if !self.is_out_with(item, worker) {
            return None;
        }
        let entry = self.entries.remove(item)?;
        self.release(&entry.stage);
        Some(self.bury(item, entry.attempts, error))
    }

    /// `worker` is still at it: a new ack wait from now.
    pub fn in_progress(&mut self, item: &str, worker: &W, now: Instant) -> bool {
        match self.entries.get_mut(item).map(|e| &mut e.stage) {
            Some(Stage::Out {
                worker: holder,
                deadline,
            }) if holder == worker => {
                *deadline = now + self.rules.ack_wait;
                true
            }
            _ => false,
        }
    }

    /// Takes back what is out past its ack wait; returns the events that
    /// died of it.
    pub fn expire(&mut self, now: Instant) -> Vec<Dead> {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.stage, Stage::Out { deadline, .. } if deadline <= now))
            .map(|(item, _)| item.clone())
            .collect();
        let mut dead = Vec::new();
        for item in expired {
            let error = "not acked within the ack wait".to_owned();
            dead.extend(self.fail(&item, None, error, now));
        }
        dead
    }

    /// `worker` is gone (dead or left the group): what it held is taken
    /// back at once, each a failed attempt.
    pub fn worker_gone(&mut self, worker: &W, now: Instant) -> Vec<Dead> {
        let held: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(&e.stage, Stage::Out { worker: w, .. } if w == worker))
            .map(|(item, _)| item.clone())
            .collect();
        let mut dead = Vec::new();
        for item in held {
            self.counts.orphaned += 1;
            let error = "the instance holding it went away".to_owned();
            dead.extend(self.fail(&item, None, error, now));
        }
        dead
    }

    /// The instances holding events now.
    pub fn holders(&self) -> Vec<W> {
        self.out_per_worker.keys().cloned().collect()
    }

    /// Events not done yet.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    /// Deliveries made so far of `item` (0 if it is not pending).
    pub fn attempts_of(&self, item: &str) -> u32 {
        self.entries.get(item).map_or(0, |e| e.attempts)
    }

    /// Whether `item` is done.
    pub fn is_done(&self, item: &str) -> bool {
        self.done.contains(item)
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Forgets that `item` is done (it is too old to come again).
    pub fn forget_done(&mut self, item: &str) {
        self.done.remove(item);
    }

    fn is_out_with(&self, item: &str, worker: &W) -> bool {
        matches!(
            self.entries.get(item).map(|e| &e.stage),
            Some(Stage::Out { worker: w, .. }) if w == worker
        )
    }

    /// A failed attempt: back to waiting, or dead after the last one.
    fn fail(
        &mut self,
        item: &str,
        delay: Option<Duration>,
        error: String,
        now: Instant,
    ) -> Option<Dead> {
        let entry = self.entries.get(item)?;
        let stage = entry.stage.clone();
        let attempts = entry.attempts;
        self.release(&stage);
        if attempts >= self.rules.max_deliver {
            self.entries.remove(item);
            return Some(self.bury(item, attempts, error));
        }
        let wait = delay.unwrap_or_else(|| self.rules.backoff_after(attempts));
        let entry = self.entries.get_mut(item)?;
        entry.stage = Stage::Waiting {
            ready_at: now + wait,
        };
        entry.last_error = Some(error);
        if let Stage::Out { worker, .. } = stage {
            entry.failed_with = Some(worker);
        }
        None
    }

    fn bury(&mut self, item: &str, attempts: u32, last_error: String) -> Dead {
        self.finish(item);
        self.counts.dead_lettered += 1;
        Dead {
            item: item.to_owned(),
            attempts,
            last_error,
        }
    }

    fn finish(&mut self, item: &str) {
        self.done.insert(item.to_owned());
        if let Some(at) = self.order.iter().position(|i| i == item) {
            self.order.remove(at);
        }
    }

    fn release(&mut self, stage: &Stage<W>) {
        if let Stage::Out { worker, .. } = stage
            && let Some(n) = self.out_per_worker.get_mut(worker)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.out_per_worker.remove(worker);
            }
        }
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
