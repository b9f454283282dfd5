//! The scenarios, written once against the traits of [`super::system`] and
//! run on every system.
//!
//! Each scenario returns a [`Measure`] or an error; [`bounded`] runs one
//! under a deadline and turns an error or a stuck system into
//! [`Outcome::Failed`], so that one system's failure costs one row.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::stream::{self, FuturesUnordered, StreamExt as _, TryStreamExt as _};

use super::relay::Relay;
use super::resources::{CpuMeter, HeapWindow, rss_bytes};
use super::results::{IdleTraffic, Measure, MemoryUse, Outcome};
use super::stats;
use super::system::{BenchEvent, Caller, EventSystem, Publisher, RpcSystem};
use super::tally::{Collecting, span};

/// Unmeasured calls before an RPC scenario: connections opened lazily,
/// first-call caches and the like are not what it measures.
pub const WARM_UP_CALLS: u64 = 10;

/// What a scenario needs besides its system and its size.
#[derive(Clone)]
pub struct Ctx {
    /// The server's processes (one per node of a cluster), for their CPU
    /// time; none for in-process systems.
    pub server_pids: Vec<u32>,
    /// Where the scenario reports how far it got.
    pub progress: Arc<Progress>,
    /// Quiet time before the idle scenarios measure (connections settle).
    pub settle: Duration,
    /// How long deliveries may stop coming, after the last publish, before
    /// the events still missing are declared lost.
    pub grace: Duration,
}

impl Ctx {
    /// The settings of a real run: 2 s to settle, 5 s of grace.
    pub fn new(server_pids: Vec<u32>, progress: Arc<Progress>) -> Ctx {
        Ctx {
            server_pids,
            progress,
            settle: Duration::from_secs(2),
            grace: Duration::from_secs(5),
        }
    }
}

/// How far the running scenario got: `done` of `total` units (events
/// delivered, calls answered, seconds watched). Read by the progress bar
/// and by the timeout message.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// A new unit of work of `total` units, none done.
    pub fn begin(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// `n` more units done.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the units done.
    pub fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
    }

    /// Units done.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Units in all.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Runs `scenario` for at most `deadline`: its measure, or why not (one
/// line). Dropping the scenario on timeout aborts the tasks it spawned.
pub async fn bounded(
    deadline: Duration,
    progress: &Progress,
    scenario: impl Future<Output = anyhow::Result<Measure>>,
) -> Outcome {
    match tokio::time::timeout(deadline, scenario).await {
        Ok(Ok(measure)) => Outcome::Measured(measure),
        Ok(Err(error)) => Outcome::Failed {
            error: one_line(&format!("{error:#}")),
        },
        Err(_) => Outcome::Failed {
            error: format!(
                "timed out after {} s ({} of {} done)",
                deadline.as_secs_f64(),
                progress.done(),
                progress.total()
            ),
        },
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A topic no earlier run used: `bench.<tag>.<random>`.
pub(super) fn fresh_topic(tag: &str) -> String {
    format!("bench.{tag}.{:016x}", rand::random::<u64>())
}

/// (1) One publisher, one subscriber: `events` with up to `window`
/// publishes in flight. The span runs from the first publish to the last
/// delivery; every event must arrive exactly once.
pub async fn throughput(
    system: &dyn EventSystem,
    events: u64,
    window: usize,
    ctx: &Ctx,
) -> anyhow::Result<Measure> {
    deliveries(system, "tp", 1, events, window, ctx).await
}

/// (2) As [`throughput`] with `subscribers` subscribers; the count is the
/// deliveries summed over them.
pub async fn fanout(
    system: &dyn EventSystem,
    subscribers: usize,
    events: u64,
    window: usize,
    ctx: &Ctx,
) -> anyhow::Result<Measure> {
    deliveries(system, "fan", subscribers, events, window, ctx).await
}

async fn deliveries(
    system: &dyn EventSystem,
    tag: &str,
    subscribers: usize,
    events: u64,
    window: usize,
    ctx: &Ctx,
) -> anyhow::Result<Measure> {
    let topic = fresh_topic(tag);
    let publisher = system.publisher().await.context("connect the publisher")?;
    let mut subs = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let sub = system.subscriber(&topic).await;
        subs.push(sub.with_context(|| format!("subscriber {i}: subscribe"))?);
    }
    ctx.progress.begin(events * subscribers as u64);
    let collecting = Collecting::spawn(subs, events, false, &ctx.progress);
    publish_and_count(&*publisher, &topic, events, window, collecting, ctx).await
}

/// Publishes `events` to `topic` (`window` at a time) while `collecting`
/// tallies the deliveries: the deliveries per second from the first
/// publish to the last delivery, and the CPU time meanwhile.
pub(super) async fn publish_and_count(
    publisher: &dyn Publisher,
    topic: &str,
    events: u64,
    window: usize,
    collecting: Collecting,
    ctx: &Ctx,
) -> anyhow::Result<Measure> {
    let cpu = CpuMeter::start(&ctx.server_pids);
    let start = Instant::now();
    publish_all(publisher, topic, events, window).await?;
    let tallies = collecting.finish(&ctx.progress, ctx.grace).await?;
    let (client_cpu_secs, server_cpu_secs) = cpu.read();

    let count = tallies.iter().map(|t| t.deliveries).sum::<u64>();
    let seconds = span(start, &tallies)?;
    Ok(Measure {
        count,
        seconds,
        per_second: count as f64 / seconds,
        client_cpu_secs,
        server_cpu_secs,
        ..Measure::default()
    })
}

/// Publishes events `0..events` to `topic`, up to `window` at a time,
/// then flushes.
async fn publish_all(
    publisher: &dyn Publisher,
    topic: &str,
    events: u64,
    window: usize,
) -> anyhow::Result<()> {
    stream::iter(0..events)
        .map(|seq| async move {
            let event = BenchEvent::new(seq);
            let published = publisher.publish(topic, &event).await;
            published.with_context(|| format!("publish {seq}"))
        })
        .buffer_unordered(window.max(1))
        .try_collect::<()>()
        .await?;
    publisher.flush().await.context("flush")
}

/// (3) Publishes `rate` events a second for `secs` seconds, each without
/// waiting for the previous one's acknowledgement, and records for each
/// the time from handing it to the publisher to its delivery.
pub async fn push_latency(
    system: &dyn EventSystem,
    rate: u64,
    secs: f64,
    ctx: &Ctx,
) -> anyhow::Result<Measure> {
    if rate == 0 {
        bail!("the rate must be at least 1 event a second");
    }
    let events = ((rate as f64 * secs).round() as u64).max(1);
    let topic = fresh_topic("lat");
    let publisher = system.publisher().await.context("connect the publisher")?;
    let sub = system.subscriber(&topic).await.context("subscribe")?;
    ctx.progress.begin(events);
    let collecting = Collecting::spawn(vec![sub], events, true, &ctx.progress);

    let cpu = CpuMeter::start(&ctx.server_pids);
    let start = Instant::now();
    let (publisher, topic) = (&*publisher, topic.as_str());
    // Behind schedule (a slow tick), the missed publishes go out at once:
    // the rate holds on average and each event's clock starts when it is
    // handed over.
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = FuturesUnordered::new();
    let mut seq = 0;
    while seq < events {
        tokio::select! {
            _ = ticks.tick() => {
                let event = BenchEvent::new(seq);
                in_flight.push(async move {
                    let published = publisher.publish(topic, &event).await;
                    published.with_context(|| format!("publish {}", event.seq))
                });
                seq += 1;
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => done?,
        }
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    publisher.flush().await.context("flush")?;
    let mut tallies = collecting.finish(&ctx.progress, ctx.grace).await?;
    let (client_cpu_secs, server_cpu_secs) = cpu.read();

    let seconds = span(start, &tallies)?;
    let tally = tallies.pop().context("no subscriber")?;
    Ok(Measure {
        count: tally.deliveries,
        seconds,
        per_second: tally.deliveries as f64 / seconds,
        latency: stats::latency(tally.ages_ns),
        client_cpu_secs,
        server_cpu_secs,
        ..Measure::default()
    })
}

/// (4) `calls` calls one after the other, after [`WARM_UP_CALLS`].
pub async fn rpc_sequential(
    system: &dyn RpcSystem,
    calls: u64,
    ctx: &Ctx,
) -> anyhow::Result<Measure> {
    rpc(system, calls, 1, ctx).await
}

/// (4) `calls` calls with `in_flight` of them in flight at once, after
/// [`WARM_UP_CALLS`].
pub async fn rpc_concurrent(
    system: &dyn RpcSystem,
    calls: u64,
    in_flight: usize,
    ctx: &Ctx,
) -> anyhow::Result<Measure> {
    rpc(system, calls, in_flight, ctx).await
}

async fn rpc(
    system: &dyn RpcSystem,
    calls: u64,
    in_flight: usize,
    ctx: &Ctx,
) -> anyhow::Result<Measure> {
    let _responder = system.responder().await.context("start the responder")?;
    let caller = system.caller().await.context("connect the caller")?;
    let caller = &*caller;
    for seq in 0..WARM_UP_CALLS {
        call(caller, seq).await.context("warm-up")?;
    }
    ctx.progress.begin(calls);
    let cpu = CpuMeter::start(&ctx.server_pids);
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(usize::try_from(calls).unwrap_or(0));
    let mut answers = stream::iter(0..calls)
        .map(|seq| call(caller, seq))
        .buffer_unordered(in_flight.max(1));
    while let Some(latency) = answers.next().await {
        latencies.push(latency?);
        ctx.progress.add(1);
    }
    let seconds = start.elapsed().as_secs_f64();
    let (client_cpu_secs, server_cpu_secs) = cpu.read();
    Ok(Measure {
        count: calls,
        seconds,
        per_second: calls as f64 / seconds,
        latency: stats::latency(latencies),
        client_cpu_secs,
        server_cpu_secs,
        ..Measure::default()
    })
}

/// One call; its latency in nanoseconds. The answer must be the request.
async fn call(caller: &dyn Caller, seq: u64) -> anyhow::Result<u64> {
    let request = BenchEvent::new(seq);
    let start = Instant::now();
    let answer = caller
        .call(&request)
        .await
        .with_context(|| format!("call {seq}"))?;
    let latency = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    if answer != request {
        bail!(
            "call {seq}: the answer is not the request (seq {}, sent_ns {} instead of {}, body {} bytes instead of {})",
            answer.seq,
            answer.sent_ns,
            request.sent_ns,
            answer.body.len(),
            request.body.len()
        );
    }
    Ok(latency)
}

/// (5) One client connected through a byte-counting [`Relay`], subscribed
/// and otherwise idle: after `ctx.settle`, what it exchanges with its
/// server in `secs` seconds, scaled to a minute.
pub async fn idle(system: &dyn EventSystem, secs: f64, ctx: &Ctx) -> anyhow::Result<Measure> {
    let relay = Relay::start(system.addr())
        .await
        .context("start the relay")?;
    let topic = fresh_topic("idle");
    let _client = system
        .idle_client(relay.addr(), &topic)
        .await
        .context("connect the idle client")?;
    tokio::time::sleep(ctx.settle).await;
    if relay.traffic().connections == 0 {
        bail!("the idle client did not connect through the relay");
    }

    let watched = Duration::from_secs_f64(secs);
    ctx.progress.begin(watched.as_secs().max(1));
    let before = relay.traffic();
    let cpu = CpuMeter::start(&ctx.server_pids);
    let start = Instant::now();
    while start.elapsed() < watched {
        let left = watched.saturating_sub(start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        ctx.progress.set(start.elapsed().as_secs());
    }
    let seconds = start.elapsed().as_secs_f64();
    let traffic = relay.traffic().since(&before);
    let (client_cpu_secs, server_cpu_secs) = cpu.read();

    let per_min = 60.0 / seconds;
    Ok(Measure {
        count: traffic.up_reads,
        seconds,
        per_second: traffic.up_reads as f64 / seconds,
        client_cpu_secs,
        server_cpu_secs,
        idle: Some(IdleTraffic {
            client_writes_per_min: traffic.up_reads as f64 * per_min,
            bytes_per_min: (traffic.up_bytes + traffic.down_bytes) as f64 * per_min,
            bytes_up_per_min: traffic.up_bytes as f64 * per_min,
            bytes_down_per_min: traffic.down_bytes as f64 * per_min,
        }),
        ..Measure::default()
    })
}

/// Connections the idle-memory scenario holds: `count` of them, kept open
/// by `guard` until it is dropped.
pub struct IdleConnections {
    /// How many connections were made.
    pub count: usize,
    /// Holds them open.
    pub guard: Box<dyn Send>,
}

/// Memory of `n` idle connections in this process: RSS and live heap
/// (counted by [`super::resources::CountingAllocator`]) before
/// `connect(n)` and `ctx.settle` after it. The count is `n`, the span and
/// rate those of connecting.
pub async fn idle_memory<F, Fut>(n: usize, connect: F, ctx: &Ctx) -> anyhow::Result<Measure>
where
    F: FnOnce(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<IdleConnections>>,
{
    if n == 0 {
        bail!("no connections to measure");
    }
    ctx.progress.begin(n as u64);
    let cpu = CpuMeter::start(&ctx.server_pids);
    let rss_before = rss_bytes().context("read /proc/self/statm")?;
    let heap = HeapWindow::open();
    let start = Instant::now();
    let connections = connect(n).await.context("connect")?;
    let seconds = start.elapsed().as_secs_f64();
    if connections.count != n {
        bail!("{} connections made instead of {n}", connections.count);
    }
    ctx.progress.set(n as u64);
    tokio::time::sleep(ctx.settle).await;
    let heap_bytes = heap.bytes();
    drop(heap);
    let rss_after = rss_bytes().context("read /proc/self/statm")?;
    let (client_cpu_secs, server_cpu_secs) = cpu.read();
    // Closing them is not measured.
    drop(connections.guard);

    let per = n as f64;
    Ok(Measure {
        count: n as u64,
        seconds,
        per_second: per / seconds,
        client_cpu_secs,
        server_cpu_secs,
        memory: Some(MemoryUse {
            connections: n,
            rss_bytes_per_connection: (rss_after as f64 - rss_before as f64) / per,
            heap_bytes_per_connection: Some(heap_bytes as f64 / per),
        }),
        ..Measure::default()
    })
}
