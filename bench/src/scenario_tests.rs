//! The scenarios on the mock: counts, lost and duplicated events, stuck
//! systems, latency, idle traffic and memory, and a whole run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use super::mock::{Fault, Mock, PING};
use super::results::{Outcome, Report, Scenario};
use super::scenario::{self, Ctx, IdleConnections, Progress, bounded};
use super::systems::{Group, Kind};

/// Short waits: the mock delivers at once.
fn ctx() -> Ctx {
    Ctx {
        server_pids: vec![std::process::id()],
        progress: Arc::new(Progress::default()),
        settle: Duration::from_millis(150),
        grace: Duration::from_millis(300),
    }
}

/// Every test is bounded, whatever goes wrong.
const LIMIT: Duration = Duration::from_secs(30);

async fn mock(fault: Fault) -> Mock {
    Mock::start(fault).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_counts_every_event() {
    let mock = mock(Fault::None).await;
    let ctx = ctx();
    let m = tokio::time::timeout(LIMIT, scenario::throughput(&mock, 2000, 64, &ctx))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.count, 2000);
    assert!(m.seconds > 0.0 && m.per_second > 0.0, "{m:?}");
    assert!((m.per_second * m.seconds - 2000.0).abs() < 1e-6);
    assert!(m.server_cpu_secs.is_some());
    assert_eq!((ctx.progress.done(), ctx.progress.total()), (2000, 2000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_sums_the_deliveries() {
    let mock = mock(Fault::None).await;
    let m = tokio::time::timeout(LIMIT, scenario::fanout(&mock, 4, 500, 256, &ctx()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.count, 2000);
    let m = tokio::time::timeout(LIMIT, scenario::fanout(&mock, 16, 100, 8, &ctx()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.count, 1600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_event_is_an_error_with_counts() {
    let mock = mock(Fault::Drop(17)).await;
    let start = Instant::now();
    let error = tokio::time::timeout(LIMIT, scenario::throughput(&mock, 100, 16, &ctx()))
        .await
        .unwrap()
        .unwrap_err();
    let error = format!("{error:#}");
    assert!(
        error.contains("99 deliveries of 100 events: 1 missing (first: seq 17)"),
        "{error}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // Fan-out: every subscriber misses it.
    let error = tokio::time::timeout(LIMIT, scenario::fanout(&mock, 4, 100, 16, &ctx()))
        .await
        .unwrap()
        .unwrap_err();
    let error = format!("{error:#}");
    assert!(error.contains("4 subscribers lost events"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_an_error() {
    let mock = mock(Fault::Duplicate(5)).await;
    let outcome = bounded(
        LIMIT,
        &Progress::default(),
        scenario::throughput(&mock, 100, 16, &ctx()),
    )
    .await;
    let Outcome::Failed { error } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("1 extra deliveries (first: seq 5)"),
        "{error}"
    );
    assert!(!error.contains('\n'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_system_fails_within_the_deadline() {
    let mock = mock(Fault::Stall).await;
    let ctx = ctx();
    let deadline = Duration::from_millis(500);
    let start = Instant::now();
    let outcome = bounded(
        deadline,
        &ctx.progress,
        scenario::throughput(&mock, 1000, 16, &ctx),
    )
    .await;
    let Outcome::Failed { error } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(error, "timed out after 0.5 s (0 of 1000 done)");
    let outcome = bounded(
        deadline,
        &ctx.progress,
        scenario::rpc_concurrent(&mock, 100, 8, &ctx),
    )
    .await;
    assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_latency_at_a_fixed_rate() {
    let mock = mock(Fault::None).await;
    let m = tokio::time::timeout(LIMIT, scenario::push_latency(&mock, 500, 0.5, &ctx()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.count, 250);
    // 250 events at 500/s take about half a second.
    assert!(m.seconds > 0.4 && m.seconds < 2.0, "{m:?}");
    let latency = m.latency.unwrap();
    assert_eq!(latency.samples, 250);
    assert!(
        latency.p50_us > 0.0 && latency.p50_us < 100_000.0,
        "{latency:?}"
    );
    assert!(latency.p50_us <= latency.p99_us && latency.p99_us <= latency.max_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_counts_calls_and_latencies() {
    let mock = mock(Fault::None).await;
    let m = tokio::time::timeout(LIMIT, scenario::rpc_sequential(&mock, 200, &ctx()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m.count, m.latency.unwrap().samples), (200, 200));
    let m = tokio::time::timeout(LIMIT, scenario::rpc_concurrent(&mock, 1000, 64, &ctx()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m.count, m.latency.unwrap().samples), (1000, 1000));
    assert!(m.per_second > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_traffic_through_the_relay() {
    let mock = mock(Fault::None)
        .await
        .with_ping_every(Duration::from_millis(100));
    let m = tokio::time::timeout(LIMIT, scenario::idle(&mock, 1.0, &ctx()))
        .await
        .unwrap()
        .unwrap();
    let idle = m.idle.unwrap();
    // 10 pings of 10 bytes in a second, echoed: 600 a minute.
    assert!(
        (480.0..=720.0).contains(&idle.client_writes_per_min),
        "{idle:?}"
    );
    let pings = idle.bytes_up_per_min / PING.len() as f64;
    assert!((480.0..=720.0).contains(&pings), "{idle:?}");
    // Every ping written is echoed by the end of the next 100 ms; the
    // window may cut one.
    let echoed = idle.bytes_down_per_min / PING.len() as f64;
    assert!((pings - echoed).abs() <= 60.0, "{idle:?}");
    assert!((idle.bytes_per_min - idle.bytes_up_per_min - idle.bytes_down_per_min).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_memory_counts_heap_and_rss() {
    const EACH: usize = 1 << 20;
    let connect = |n: usize| async move {
        let held: Vec<Vec<u8>> = (0..n).map(|_| vec![1u8; EACH]).collect();
        Ok(IdleConnections {
            count: held.len(),
            guard: Box::new(held),
        })
    };
    let m = tokio::time::timeout(LIMIT, scenario::idle_memory(16, connect, &ctx()))
        .await
        .unwrap()
        .unwrap();
    let memory = m.memory.unwrap();
    assert_eq!((m.count, memory.connections), (16, 16));
    // Tests run side by side and allocate too: a loose band.
    let heap = memory.heap_bytes_per_connection.unwrap();
    assert!(
        heap > 0.7 * EACH as f64 && heap < 1.5 * EACH as f64,
        "{heap}"
    );
    // RSS growth depends on how much freed memory the allocator reuses
    // (CI saw 0.49 MiB for 1 MiB each): only that it is reported.
    assert!(memory.rss_bytes_per_connection.is_finite(), "{memory:?}");

    let short = |n: usize| async move {
        Ok(IdleConnections {
            count: n - 1,
            guard: Box::new(()),
        })
    };
    let error = scenario::idle_memory(4, short, &ctx()).await.unwrap_err();
    assert_eq!(error.to_string(), "3 connections made instead of 4");
}

#[test]
fn plan_rows() {
    let scenarios = Scenario::ALL;
    let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|&k| k != Kind::Mock).collect();
    let plan = crate::run::plan(
        &kinds,
        &["embedded", "prosody-stock", "prosody"],
        &scenarios,
    );
    let rows: Vec<(String, usize)> = plan
        .iter()
        .flat_map(|g| g.systems.iter().map(|(k, s)| (k.label(g.group), s.len())))
        .collect();
    let expected = [
        ("xbus/embedded", 10),
        ("raw-xmpp/embedded", 7),
        // Stock storage: the throughput row only.
        ("xbus/prosody-stock", 1),
        ("raw-xmpp/prosody-stock", 1),
        ("xbus/prosody", 9),
        ("raw-xmpp/prosody", 7),
        ("nats", 7),
        ("http", 2),
        ("poll-100ms", 5),
        ("poll-1s", 5),
    ];
    let expected: Vec<(String, usize)> = expected.iter().map(|&(l, n)| (l.to_owned(), n)).collect();
    assert_eq!(rows, expected);
    assert_eq!(plan.len(), 5);
    assert!(matches!(plan[3].group, Group::Nats));

    let only_rpc = crate::run::plan(&[Kind::Poll1s], &[], &[Scenario::RpcSequential]);
    assert!(only_rpc.is_empty());
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: crate::run::BenchArgs,
}

#[test]
fn quick_and_explicit_settings() {
    let parse = |line: &[&str]| {
        let args = Cli::try_parse_from([&["bench"], line].concat())
            .unwrap()
            .args;
        args.settings().unwrap()
    };
    let s = parse(&["--quick", "--events", "777"]);
    assert_eq!(
        (s.events, s.fanout_events, s.rpc_calls, s.idle_buses),
        (777, 500, 200, 50)
    );
    assert_eq!((s.rate, s.latency_secs, s.idle_secs), (200, 2.0, 5.0));
    let s = parse(&[]);
    assert_eq!(
        (s.events, s.rpc_concurrent_calls, s.window, s.rpc_in_flight),
        (50_000, 20_000, 256, 64)
    );
    assert!(
        s.event_bytes > 150 && s.event_bytes < 260,
        "{}",
        s.event_bytes
    );
    let args = Cli::try_parse_from(["bench", "--scenarios", "idle,group-3,throughput"])
        .unwrap()
        .args;
    assert_eq!(
        args.scenario_list().unwrap(),
        [Scenario::Throughput, Scenario::Group3, Scenario::Idle]
    );
    let args = Cli::try_parse_from(["bench", "--systems", "xbus,carrier-pigeon"])
        .unwrap()
        .args;
    assert!(args.kind_list().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_on_the_mock() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let args = Cli::try_parse_from([
        "bench",
        "--systems",
        "mock",
        "--quick",
        "--latency-secs",
        "0.5",
        "--idle-secs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap()
    .args;
    tokio::time::timeout(Duration::from_secs(60), crate::run::run(args))
        .await
        .unwrap()
        .unwrap();
    let json = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON report");
    let report: Report = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    // Every scenario but the consumer group's and the transient topic's
    // (xbus only).
    assert_eq!(report.rows.len(), Scenario::ALL.len() - 2);
    for row in &report.rows {
        assert_ne!(row.scenario, Scenario::Group3);
        assert_ne!(row.scenario, Scenario::ThroughputTransient);
        assert_eq!(row.system, "mock");
        assert!(matches!(row.outcome, Outcome::Measured(_)), "{row:?}");
    }
    assert!(report.started.ends_with('Z'));
}
