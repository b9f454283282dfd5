//! The consumer-group scenario (`group-3`): the throughput scenario with a
//! consumer group of [`INSTANCES`] instances in place of the subscriber.
//!
//! The instances' jobs are merged into one stream ([`Merged`]) and tallied
//! as one subscriber by [`Collecting`], so that every event must be
//! handled exactly once *by the group*, as the 1→1 scenario checks it for
//! its subscriber: a lost event or a second delivery fails the row with
//! the counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::results::Measure;
use super::scenario::{Ctx, fresh_topic, publish_and_count};
use super::system::{BenchEvent, GroupSystem, Subscriber};
use super::tally::Collecting;

/// Instances of the group in the `group-3` scenario.
pub const INSTANCES: usize = 3;

/// The `seq` of the warm-up event, published before the measured ones.
pub const WARM_UP_SEQ: u64 = u64::MAX;

/// How long the group may take to handle the warm-up event: a new group
/// elects its leader (about half a second to a second) before jobs flow.
pub const WARM_UP_LIMIT: Duration = Duration::from_secs(30);

/// (1b) One publisher and a consumer group of `instances` instances that
/// acknowledge every job: `events` with up to `window` publishes in flight.
///
/// The group first handles one warm-up event (not counted), so that its
/// leader is elected before the clock starts. The span then runs from the
/// first publish to the moment the last event was acknowledged for the
/// first time (its ack handed to its bus); every event must be handled
/// once.
pub async fn group(
    system: &dyn GroupSystem,
    instances: usize,
    events: u64,
    window: usize,
    ctx: &Ctx,
) -> anyhow::Result<Measure> {
    if instances == 0 {
        bail!("a group needs at least one instance");
    }
    let topic = fresh_topic("grp");
    let publisher = system.publisher().await.context("connect the publisher")?;
    let members = system.group(&topic, instances).await;
    let mut merged = Merged::spawn(members.context("join the group")?);

    let warm_up = BenchEvent::new(WARM_UP_SEQ);
    publisher
        .publish(&topic, &warm_up)
        .await
        .context("publish the warm-up event")?;
    publisher.flush().await.context("flush")?;
    tokio::time::timeout(WARM_UP_LIMIT, merged.next())
        .await
        .with_context(|| {
            format!(
                "the group handled no warm-up event within {} s",
                WARM_UP_LIMIT.as_secs()
            )
        })?
        .context("warm-up")
        .and_then(|event| match event.seq {
            WARM_UP_SEQ => Ok(()),
            seq => bail!("the group handled seq {seq} instead of the warm-up event"),
        })?;

    let shares = merged.shares();
    ctx.progress.begin(events);
    let collecting = Collecting::spawn(vec![Box::new(merged)], events, false, &ctx.progress);
    let measure = publish_and_count(&*publisher, &topic, events, window, collecting, ctx)
        .await
        .with_context(|| format!("a group of {instances}"))?;
    tracing::debug!(shares = ?shares.get(), "{}: jobs per instance", system.name());
    Ok(measure)
}

/// The jobs of all the instances of a group, as one subscriber: a task per
/// instance forwards what it handles. Dropped, it stops them.
pub struct Merged {
    rx: mpsc::Receiver<anyhow::Result<BenchEvent>>,
    shares: Shares,
    _tasks: JoinSet<()>,
}

/// How many jobs each instance of a [`Merged`] group handled so far.
#[derive(Clone)]
pub struct Shares(Arc<[AtomicU64]>);

impl Shares {
    /// The counts, in instance order.
    pub fn get(&self) -> Vec<u64> {
        self.0.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }
}

impl Merged {
    /// Starts forwarding the jobs of `members`.
    pub fn spawn(members: Vec<Box<dyn Subscriber>>) -> Merged {
        // Room for a window of jobs per instance; beyond it the instances
        // wait (back-pressure, as a subscription's buffer).
        let (tx, rx) = mpsc::channel(1024);
        let shares = Shares(members.iter().map(|_| AtomicU64::new(0)).collect());
        let mut tasks = JoinSet::new();
        for (i, mut member) in members.into_iter().enumerate() {
            let (tx, shares) = (tx.clone(), shares.clone());
            tasks.spawn(async move {
                loop {
                    let next = member.next().await;
                    let failed = next.is_err();
                    if !failed {
                        shares.0[i].fetch_add(1, Ordering::Relaxed);
                    }
                    let next = next.with_context(|| format!("instance {}", i + 1));
                    if tx.send(next).await.is_err() || failed {
                        return;
                    }
                }
            });
        }
        Merged {
            rx,
            shares,
            _tasks: tasks,
        }
    }

    /// The jobs each instance handled, as they go on.
    pub fn shares(&self) -> Shares {
        self.shares.clone()
    }
}

#[async_trait]
impl Subscriber for Merged {
    async fn next(&mut self) -> anyhow::Result<BenchEvent> {
        self.rx
            .recv()
            .await
            .context("every instance of the group stopped")?
    }
}
