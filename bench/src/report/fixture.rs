//! A handcrafted run for the tests of the report and the plot: rows for
//! every scenario, two failed rows, and no `raw-xmpp/ejabberd` row.

use crate::results::{
    IdleTraffic, Latency, Measure, MemoryUse, Outcome, Report, Row, Scenario, Settings,
};

/// A latency distribution with these percentiles (microseconds) and a CDF
/// through them.
fn latency(samples: u64, p50: f64, p99: f64, p999: f64, max: f64) -> Latency {
    let cdf = vec![
        (0.0, p50 * 0.6),
        (0.25, p50 * 0.85),
        (0.5, p50),
        (0.75, p50 * 1.3),
        (0.9, (p50 * p99).sqrt()),
        (0.99, p99),
        (0.995, (p99 * p999).sqrt()),
        (0.999, p999),
        (0.9995, (p999 * max).sqrt()),
        (1.0, max),
    ];
    Latency {
        samples,
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        max_us: max,
        mean_us: p50 * 1.1,
        cdf,
    }
}

fn row(scenario: Scenario, system: &str, measure: Measure) -> Row {
    Row {
        scenario,
        system: system.into(),
        outcome: Outcome::Measured(measure),
    }
}

fn failed(scenario: Scenario, system: &str, error: &str) -> Row {
    Row {
        scenario,
        system: system.into(),
        outcome: Outcome::Failed {
            error: error.into(),
        },
    }
}

/// Events: `per_second` over 2 s.
fn rate(per_second: f64) -> Measure {
    Measure {
        count: (per_second * 2.0) as u64,
        seconds: 2.0,
        per_second,
        client_cpu_secs: 1.5,
        server_cpu_secs: Some(0.75),
        ..Measure::default()
    }
}

fn timed(per_second: f64, latency: Latency) -> Measure {
    Measure {
        latency: Some(latency),
        server_cpu_secs: None,
        ..rate(per_second)
    }
}

fn idle(writes: f64, up: f64, down: f64) -> Measure {
    Measure {
        idle: Some(IdleTraffic {
            client_writes_per_min: writes,
            bytes_per_min: up + down,
            bytes_up_per_min: up,
            bytes_down_per_min: down,
        }),
        ..Measure::default()
    }
}

fn memory(rss: f64, heap: Option<f64>) -> Measure {
    Measure {
        memory: Some(MemoryUse {
            connections: 1000,
            rss_bytes_per_connection: rss,
            heap_bytes_per_connection: heap,
        }),
        ..Measure::default()
    }
}

/// A run with rows for every scenario, a failed row or two, and no
/// `raw-xmpp/ejabberd` row.
pub(crate) fn sample() -> Report {
    use Scenario::*;
    let rows = vec![
        row(Throughput, "xbus/embedded", rate(48_000.0)),
        row(Throughput, "raw-xmpp/embedded", rate(50_000.0)),
        row(Throughput, "xbus/prosody", rate(18_000.0)),
        row(Throughput, "raw-xmpp/prosody", rate(20_000.0)),
        row(Throughput, "xbus/ejabberd", rate(15_000.0)),
        row(Throughput, "nats", rate(120_000.0)),
        row(Throughput, "http", rate(8_000.0)),
        row(Group3, "xbus/embedded", rate(36_000.0)),
        row(Group3, "xbus/prosody", rate(9_000.0)),
        row(Fanout4, "xbus/embedded", rate(100_000.0)),
        row(Fanout4, "raw-xmpp/embedded", rate(110_000.0)),
        row(Fanout4, "nats", rate(400_000.0)),
        failed(Fanout16, "xbus/embedded", "timed out after 30 s | flushing"),
        row(Fanout16, "nats", rate(1_000_000.0)),
        row(
            PushLatency,
            "xbus/embedded",
            timed(1000.0, latency(10_000, 400.0, 1_200.0, 2_500.0, 4_100.0)),
        ),
        row(
            PushLatency,
            "xbus/prosody",
            timed(1000.0, latency(10_000, 900.0, 3_500.0, 6_000.0, 12_000.0)),
        ),
        row(
            PushLatency,
            "nats",
            timed(1000.0, latency(10_000, 120.0, 300.0, 650.0, 1_400.0)),
        ),
        row(
            PushLatency,
            "poll-100ms",
            timed(
                1000.0,
                latency(10_000, 50_000.0, 99_000.0, 99_900.0, 101_000.0),
            ),
        ),
        row(
            RpcSequential,
            "xbus/embedded",
            timed(5_000.0, latency(10_000, 180.0, 450.0, 900.0, 2_000.0)),
        ),
        row(
            RpcSequential,
            "xbus/prosody",
            timed(2_400.0, latency(10_000, 400.0, 800.0, 1_500.0, 3_000.0)),
        ),
        row(
            RpcSequential,
            "nats",
            timed(9_000.0, latency(10_000, 100.0, 200.0, 400.0, 900.0)),
        ),
        row(
            RpcSequential,
            "http",
            timed(6_000.0, latency(10_000, 150.0, 320.0, 700.0, 1_100.0)),
        ),
        row(
            RpcConcurrent,
            "xbus/embedded",
            timed(
                40_000.0,
                latency(50_000, 1_500.0, 3_000.0, 5_000.0, 9_000.0),
            ),
        ),
        row(
            RpcConcurrent,
            "raw-xmpp/embedded",
            timed(
                41_000.0,
                latency(50_000, 1_450.0, 2_900.0, 4_800.0, 8_000.0),
            ),
        ),
        failed(RpcConcurrent, "xbus/prosody", "connection reset"),
        row(
            RpcConcurrent,
            "raw-xmpp/prosody",
            timed(
                30_000.0,
                latency(50_000, 2_000.0, 4_000.0, 6_000.0, 9_000.0),
            ),
        ),
        row(
            RpcConcurrent,
            "nats",
            timed(90_000.0, latency(50_000, 700.0, 1_400.0, 2_000.0, 3_000.0)),
        ),
        row(Idle, "xbus/embedded", idle(2.0, 600.0, 400.0)),
        row(Idle, "nats", idle(2.0, 120.0, 60.0)),
        row(Idle, "poll-1s", idle(60.0, 9_000.0, 12_000.0)),
        row(
            IdleMemory,
            "xbus/embedded",
            memory(81_920.0, Some(40_960.0)),
        ),
        row(IdleMemory, "raw-xmpp/embedded", memory(30_000.0, None)),
        row(IdleMemory, "xbus/prosody", memory(70_000.0, None)),
    ];
    Report {
        started: "2025-06-01T12:00:00Z".into(),
        machine: "AMD EPYC 7B13, 2 cores, Linux 6.8".into(),
        versions: vec!["prosody 0.12.4".into(), "nats-server 2.10.18".into()],
        settings: Settings {
            events: 100_000,
            fanout_events: 20_000,
            window: 64,
            rate: 1_000,
            latency_secs: 10.0,
            rpc_calls: 10_000,
            rpc_concurrent_calls: 50_000,
            rpc_in_flight: 64,
            idle_secs: 60.0,
            idle_buses: 1_000,
            event_bytes: 200,
        },
        rows,
        notes: vec!["ejabberd: raw-xmpp client not run (test data)".into()],
    }
}
