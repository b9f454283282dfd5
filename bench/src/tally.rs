//! Deliveries as the subscribers of a scenario see them: a tally per
//! subscriber of which events arrived how often, kept by a task per
//! subscriber, and checked when publishing is over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::scenario::Progress;
use super::system::{BenchEvent, Subscriber};

/// Seconds from `start` to the last delivery of all `tallies`.
pub fn span(start: Instant, tallies: &[Tally]) -> anyhow::Result<f64> {
    let last = tallies
        .iter()
        .filter_map(|t| t.last)
        .max()
        .context("nothing was delivered")?;
    // Never zero: rates divide by it.
    Ok(last.duration_since(start).as_secs_f64().max(1e-9))
}

/// What one subscriber received.
pub struct Tally {
    /// Deliveries per `seq` (saturating).
    seen: Vec<u8>,
    /// Distinct `seq`s delivered.
    distinct: u64,
    /// Deliveries, duplicates included.
    pub deliveries: u64,
    /// Deliveries of a `seq` that was never published.
    strays: u64,
    /// When the last delivery arrived.
    last: Option<Instant>,
    /// Age of each delivery at receipt, when asked for.
    pub ages_ns: Vec<u64>,
}

impl Tally {
    fn new(events: u64, ages: bool) -> Tally {
        let len = usize::try_from(events).unwrap_or(usize::MAX);
        Tally {
            seen: vec![0; len],
            distinct: 0,
            deliveries: 0,
            strays: 0,
            last: None,
            ages_ns: Vec::with_capacity(if ages { len } else { 0 }),
        }
    }

    fn record(&mut self, event: &BenchEvent, ages: bool) {
        if ages {
            self.ages_ns.push(event.age_ns());
        }
        self.last = Some(Instant::now());
        self.deliveries += 1;
        match usize::try_from(event.seq)
            .ok()
            .and_then(|i| self.seen.get_mut(i))
        {
            Some(seen) => {
                if *seen == 0 {
                    self.distinct += 1;
                }
                *seen = seen.saturating_add(1);
            }
            None => self.strays += 1,
        }
    }

    /// `Err` with the counts unless every event arrived exactly once.
    fn check(&self, events: u64) -> anyhow::Result<()> {
        let missing = events - self.distinct;
        let duplicates = self.deliveries - self.distinct - self.strays;
        if missing == 0 && duplicates == 0 && self.strays == 0 {
            return Ok(());
        }
        let mut problems = Vec::new();
        if missing > 0 {
            let first = self.seen.iter().position(|&n| n == 0).unwrap_or(0);
            problems.push(format!("{missing} missing (first: seq {first})"));
        }
        if duplicates > 0 {
            let first = self.seen.iter().position(|&n| n > 1).unwrap_or(0);
            problems.push(format!(
                "{duplicates} extra deliveries (first: seq {first})"
            ));
        }
        if self.strays > 0 {
            problems.push(format!("{} with a seq never published", self.strays));
        }
        bail!(
            "{} deliveries of {events} events: {}",
            self.deliveries,
            problems.join(", ")
        )
    }
}

/// Subscriber tasks, each tallying its deliveries until it has every
/// event or is told to stop. Dropped, it aborts them.
pub struct Collecting {
    tasks: JoinSet<(usize, anyhow::Result<Tally>)>,
    subscribers: usize,
    events: u64,
    stop: watch::Sender<bool>,
}

impl Collecting {
    pub fn spawn(
        subscribers: Vec<Box<dyn Subscriber>>,
        events: u64,
        ages: bool,
        progress: &Arc<Progress>,
    ) -> Collecting {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let count = subscribers.len();
        for (i, sub) in subscribers.into_iter().enumerate() {
            let task = collect(sub, events, ages, progress.clone(), stopped.clone());
            tasks.spawn(async move { (i, task.await) });
        }
        Collecting {
            tasks,
            subscribers: count,
            events,
            stop,
        }
    }

    /// Waits until every subscriber has every event, or until no delivery
    /// came for `grace`; then checks that each got each event exactly once.
    pub async fn finish(
        mut self,
        progress: &Progress,
        grace: Duration,
    ) -> anyhow::Result<Vec<Tally>> {
        let mut tallies: Vec<Option<Tally>> = (0..self.subscribers).map(|_| None).collect();
        let mut check = tokio::time::interval(Duration::from_millis(20));
        let mut seen = progress.done();
        let mut quiet_since = Instant::now();
        loop {
            tokio::select! {
                joined = self.tasks.join_next() => match joined {
                    None => break,
                    Some(Ok((i, Ok(tally)))) => tallies[i] = Some(tally),
                    Some(Ok((i, Err(error)))) => {
                        return Err(error.context(format!("subscriber {i}")));
                    }
                    Some(Err(error)) => return Err(anyhow!("a subscriber task failed: {error}")),
                },
                _ = check.tick() => {
                    let done = progress.done();
                    if done != seen {
                        seen = done;
                        quiet_since = Instant::now();
                    } else if quiet_since.elapsed() >= grace {
                        // The tasks return what they have.
                        let _ = self.stop.send(true);
                    }
                }
            }
        }
        let tallies: Vec<Tally> = tallies.into_iter().flatten().collect();
        let mut failures = tallies
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.check(self.events).err().map(|e| (i, e)));
        if let Some((i, error)) = failures.next() {
            let others = failures.count();
            let error = error.context(format!("subscriber {i}"));
            if others > 0 {
                return Err(error.context(format!("{} subscribers lost events", others + 1)));
            }
            return Err(error);
        }
        Ok(tallies)
    }
}

async fn collect(
    mut sub: Box<dyn Subscriber>,
    events: u64,
    ages: bool,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new(events, ages);
    while tally.distinct < events {
        tokio::select! {
            biased;
            event = sub.next() => {
                tally.record(&event?, ages);
                progress.add(1);
            }
            _ = stop.changed() => break,
        }
    }
    Ok(tally)
}
