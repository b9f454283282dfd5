//! One benchmark run: the options, the plan, and the rows.
//!
//! [`run`] plans the rows (scenario × system), starts one group of systems
//! at a time ([`systems`]), runs each scenario ([`scenario`]) under a
//! deadline, and hands the [`Report`] to [`report`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};

use crate::progress::{self, Bars};
use crate::results::{Outcome, Report, Row, Scenario, Settings};
use crate::scenario::{self, Ctx, Progress, bounded};
use crate::systems::{self, Group, Kind, Sut};
use crate::{group, meta, report, servers, system};

/// Options of `xbus-bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Systems to measure, comma separated: xbus, raw-xmpp, nats, http,
    /// poll-100ms, poll-1s.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "xbus,raw-xmpp,nats,http,poll-100ms,poll-1s"
    )]
    systems: Vec<String>,
    /// XMPP servers for xbus and raw-xmpp, comma separated: embedded,
    /// prosody, ejabberd (item storage tuned as docs/SERVERS.md says),
    /// prosody-stock, ejabberd-stock (the servers' own storage; throughput
    /// only), ejabberd-cluster (two ejabberd nodes in a cluster, clients
    /// spread over them; not in the default list). Those not installed are
    /// left out with a note.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "embedded,prosody-stock,prosody,ejabberd-stock,ejabberd"
    )]
    servers: Vec<String>,
    /// Scenarios, comma separated: throughput, throughput-transient (on a
    /// topic the server does not store; xbus only), group-3 (a consumer
    /// group of 3 instances; xbus only), fanout-4, fanout-16, push-latency,
    /// rpc-sequential, rpc-concurrent, idle, idle-memory [default: all].
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Events of the throughput scenarios and group-3 [default: 50000;
    /// --quick: 2000].
    #[arg(long)]
    events: Option<u64>,
    /// Events of the fan-out scenarios [default: 10000; --quick: 500].
    #[arg(long)]
    fanout_events: Option<u64>,
    /// Publishes in flight in the throughput, group-3 and fan-out scenarios.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Events per second of the push-latency scenario [default: 200, a
    /// rate every server sustains (ejabberd stores ~450 items/s here), so
    /// the figure is push latency, not queueing].
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds of the push-latency scenario [default: 15; --quick: 2].
    #[arg(long)]
    latency_secs: Option<f64>,
    /// Calls of the sequential RPC scenario [default: 5000; --quick: 200].
    #[arg(long)]
    rpc_calls: Option<u64>,
    /// Calls of the concurrent RPC scenario [default: 20000; --quick: 1000].
    #[arg(long)]
    rpc_concurrent_calls: Option<u64>,
    /// Calls in flight in the concurrent RPC scenario.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Seconds the idle scenario watches [default: 60; --quick: 5].
    #[arg(long)]
    idle_secs: Option<f64>,
    /// Idle buses of the idle-memory scenario [default: 1000; --quick: 50].
    #[arg(long)]
    idle_buses: Option<usize>,
    /// Directory for the report files.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Small counts, for a smoke test (explicit counts still win).
    #[arg(long)]
    quick: bool,
}

impl BenchArgs {
    /// The counts of this run: explicit options, else `--quick`'s, else
    /// the defaults.
    pub(crate) fn settings(&self) -> anyhow::Result<Settings> {
        let q = self.quick;
        let pick = |given: Option<u64>, full: u64, quick: u64| {
            given.unwrap_or(if q { quick } else { full })
        };
        let secs = |given: Option<f64>, full: f64, quick: f64| {
            given.unwrap_or(if q { quick } else { full })
        };
        let settings = Settings {
            events: pick(self.events, 50_000, 2_000),
            fanout_events: pick(self.fanout_events, 10_000, 500),
            window: self.window,
            rate: pick(self.rate, 200, 200),
            latency_secs: secs(self.latency_secs, 15.0, 2.0),
            rpc_calls: pick(self.rpc_calls, 5_000, 200),
            rpc_concurrent_calls: pick(self.rpc_concurrent_calls, 20_000, 1_000),
            rpc_in_flight: self.in_flight,
            idle_secs: secs(self.idle_secs, 60.0, 5.0),
            idle_buses: self.idle_buses.unwrap_or(if q { 50 } else { 1_000 }),
            event_bytes: rmp_serde::to_vec_named(&system::BenchEvent::new(0))
                .map_or(0, |bytes| bytes.len()),
        };
        if settings.window == 0 || settings.rpc_in_flight == 0 {
            bail!("--window and --in-flight must be at least 1");
        }
        if settings.rate == 0 {
            bail!("--rate must be at least 1");
        }
        let positive = |s: f64| s.is_finite() && s > 0.0;
        if !positive(settings.latency_secs) || !positive(settings.idle_secs) {
            bail!("--latency-secs and --idle-secs must be more than 0");
        }
        Ok(settings)
    }

    pub(crate) fn scenario_list(&self) -> anyhow::Result<Vec<Scenario>> {
        if self.scenarios.is_empty() {
            return Ok(Scenario::ALL.to_vec());
        }
        let mut chosen = Vec::new();
        for name in &self.scenarios {
            let scenario = Scenario::from_name(name).with_context(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {name:?} (one of {})", names.join(", "))
            })?;
            chosen.push(scenario);
        }
        // Run order, each once.
        Ok(Scenario::ALL
            .into_iter()
            .filter(|s| chosen.contains(s))
            .collect())
    }

    pub(crate) fn kind_list(&self) -> anyhow::Result<Vec<Kind>> {
        let mut chosen = Vec::new();
        for name in &self.systems {
            let kind = Kind::from_name(name).with_context(|| {
                format!("unknown system {name:?} (one of xbus, raw-xmpp, nats, http, poll-100ms, poll-1s)")
            })?;
            chosen.push(kind);
        }
        Ok(Kind::ALL
            .into_iter()
            .filter(|k| chosen.contains(k))
            .collect())
    }
}

/// The systems of one group, each with its scenarios.
pub(crate) struct GroupPlan {
    pub(crate) group: Group,
    pub(crate) systems: Vec<(Kind, Vec<Scenario>)>,
}

/// Groups in run order: each XMPP server (xbus, then raw-xmpp), NATS, HTTP
/// and polling, the mock. Systems without a scenario are left out.
pub(crate) fn plan(
    kinds: &[Kind],
    servers: &[&'static str],
    scenarios: &[Scenario],
) -> Vec<GroupPlan> {
    let mut groups: Vec<Group> = servers.iter().map(|&s| Group::Xmpp(s)).collect();
    groups.extend([Group::Nats, Group::Http, Group::Mock]);
    groups
        .into_iter()
        .map(|group| GroupPlan {
            group,
            systems: kinds
                .iter()
                .filter(|k| k.runs_in(group))
                .map(|&k| (k, k.scenarios(group, scenarios)))
                .filter(|(_, s)| !s.is_empty())
                .collect(),
        })
        .filter(|g| !g.systems.is_empty())
        .collect()
}

/// Runs the benchmark: every row, then the report files and the markdown
/// table on stdout. A system that fails costs its rows, not the run.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let started = meta::rfc3339(SystemTime::now());
    let settings = args.settings()?;
    let scenarios = args.scenario_list()?;
    let kinds = args.kind_list()?;
    let mut notes = Vec::new();
    let servers = if kinds.iter().any(|k| k.on_xmpp()) {
        let (available, unavailable) = servers::available(&args.servers);
        notes.extend(unavailable);
        available
    } else {
        Vec::new()
    };
    let plan = plan(&kinds, &servers, &scenarios);
    let total = plan
        .iter()
        .flat_map(|g| &g.systems)
        .map(|(_, s)| s.len() as u64)
        .sum();
    if total == 0 {
        bail!("nothing to run: no system has any of the chosen scenarios");
    }

    let progress = Arc::new(Progress::default());
    let bars = Bars::new(total, progress.clone());
    let mut rows = Vec::new();
    for group_plan in &plan {
        let group = group_plan.group;
        bars.message(format!("starting {}", group.name()));
        let state = within(START_GROUP, systems::start_group(group)).await;
        for (kind, scenarios) in &group_plan.systems {
            let mut label = kind.label(group);
            let sut = match &state {
                Ok(state) => {
                    bars.message(format!("starting {label}"));
                    within(START_SYSTEM, systems::start_system(state, *kind))
                        .await
                        .with_context(|| format!("start {label}"))
                }
                Err(error) => Err(anyhow::anyhow!("start {}: {error:#}", group.name())),
            };
            if let Some(name) = sut.as_ref().ok().and_then(Sut::name) {
                label = name;
            }
            for &scenario in scenarios {
                bars.message(format!("{} · {label}", scenario.name()));
                let outcome = match &sut {
                    Ok(sut) => {
                        let ctx = Ctx::new(sut.server_pids.clone(), progress.clone());
                        run_row(scenario, sut, &settings, &ctx).await
                    }
                    Err(error) => Outcome::Failed {
                        error: format!("{error:#}"),
                    },
                };
                let row = Row {
                    scenario,
                    system: label.clone(),
                    outcome,
                };
                bars.row_done(&progress::summary(&row));
                rows.push(row);
            }
            // The system stops here, before the next one starts.
            drop(sut);
        }
        // And the group's server with it, once the clients dropped above
        // have said goodbye: a bus closes its stream in its own task, and
        // one that still runs when its server goes would start reconnecting.
        tokio::time::sleep(CLOSE_GRACE).await;
        drop(state);
    }
    bars.finish();

    let groups: Vec<Group> = plan.iter().map(|g| g.group).collect();
    let report = Report {
        started,
        machine: meta::machine(),
        versions: meta::versions(&groups, &kinds).await,
        settings,
        rows,
        notes,
    };
    let files = report::write_all(&report, &args.out)
        .with_context(|| format!("write the report into {}", args.out.display()))?;
    println!("{}", report::markdown(&report));
    for file in files {
        eprintln!("wrote {}", file.display());
    }
    Ok(())
}

/// How long starting a server (Prosody, ejabberd, nats-server) may take.
const START_GROUP: Duration = Duration::from_secs(120);
/// How long building one system on a running server may take.
const START_SYSTEM: Duration = Duration::from_secs(60);
/// Time for dropped clients to close their streams before their server stops.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// `start`'s result, or an error once `limit` has passed.
async fn within<T>(
    limit: Duration,
    start: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, start)
        .await
        .unwrap_or_else(|_| bail!("did not start within {} s", limit.as_secs()))
}

/// One row: `scenario` on `sut`, bounded by [`deadline`].
async fn run_row(scenario: Scenario, sut: &Sut, s: &Settings, ctx: &Ctx) -> Outcome {
    ctx.progress.begin(0);
    let events = || sut.events.as_deref().context("not an event system");
    let rpc = || sut.rpc.as_deref().context("not an RPC system");
    let measure = async {
        match scenario {
            Scenario::Throughput => scenario::throughput(events()?, s.events, s.window, ctx).await,
            Scenario::ThroughputTransient => {
                let transient = sut
                    .transient
                    .as_deref()
                    .context("no transient topics here")?;
                scenario::throughput(transient, s.events, s.window, ctx).await
            }
            Scenario::Group3 => {
                let groups = sut.groups.as_deref().context("no consumer groups here")?;
                group::group(groups, group::INSTANCES, s.events, s.window, ctx).await
            }
            Scenario::Fanout4 => {
                scenario::fanout(events()?, 4, s.fanout_events, s.window, ctx).await
            }
            Scenario::Fanout16 => {
                scenario::fanout(events()?, 16, s.fanout_events, s.window, ctx).await
            }
            Scenario::PushLatency => {
                scenario::push_latency(events()?, s.rate, s.latency_secs, ctx).await
            }
            Scenario::RpcSequential => scenario::rpc_sequential(rpc()?, s.rpc_calls, ctx).await,
            Scenario::RpcConcurrent => {
                scenario::rpc_concurrent(rpc()?, s.rpc_concurrent_calls, s.rpc_in_flight, ctx).await
            }
            Scenario::Idle => scenario::idle(events()?, s.idle_secs, ctx).await,
            Scenario::IdleMemory => {
                let connect = sut
                    .idle_connect
                    .as_ref()
                    .context("no idle connections here")?;
                scenario::idle_memory(s.idle_buses, connect, ctx).await
            }
        }
    };
    bounded(deadline(scenario, s, ctx), &ctx.progress, measure).await
}

/// How long `scenario` may take, setup included: a minute plus a generous
/// allowance per event, call or second.
pub fn deadline(scenario: Scenario, s: &Settings, ctx: &Ctx) -> Duration {
    let base = Duration::from_secs(60);
    let per = |units: u64, each_ms: u64| Duration::from_millis(units.saturating_mul(each_ms));
    let secs = |secs: f64| Duration::from_secs_f64(secs.max(0.0));
    base + match scenario {
        Scenario::Throughput | Scenario::ThroughputTransient | Scenario::Group3 => per(s.events, 5),
        Scenario::Fanout4 => per(s.fanout_events * 4, 2),
        Scenario::Fanout16 => per(s.fanout_events * 16, 2),
        Scenario::PushLatency => secs(s.latency_secs * 2.0) + ctx.grace,
        Scenario::RpcSequential => per(s.rpc_calls + scenario::WARM_UP_CALLS, 5),
        Scenario::RpcConcurrent => per(s.rpc_concurrent_calls, 2),
        Scenario::Idle => secs(s.idle_secs) + ctx.settle,
        Scenario::IdleMemory => per(s.idle_buses as u64, 50) + ctx.settle,
    }
}
