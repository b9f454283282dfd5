//! What one `xbus-bench` run measured: the data behind the markdown table,
//! the JSON file and the SVG plot.

use serde::{Deserialize, Serialize};

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// When the run started, RFC 3339 UTC.
    pub started: String,
    /// The machine: CPU model, cores, kernel (one line).
    pub machine: String,
    /// Versions of the servers and clients measured, e.g.
    /// `prosody 0.12.3`, `nats-server 2.9.10`, `async-nats 0.51`.
    pub versions: Vec<String>,
    /// The settings of the run (counts, rates, durations), as given.
    pub settings: Settings,
    /// One row per scenario and system, in run order.
    pub rows: Vec<Row>,
    /// Systems or scenarios left out, and why (e.g. "ejabberd: not installed").
    pub notes: Vec<String>,
}

/// The knobs of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Events of the throughput scenarios (1→1 and the consumer group).
    pub events: u64,
    /// Events the fan-out scenarios publish (each subscriber gets them all).
    pub fanout_events: u64,
    /// Publishes in flight at once in the throughput scenarios.
    pub window: usize,
    /// Events per second of the push-latency scenario.
    pub rate: u64,
    /// Seconds the push-latency scenario publishes for.
    pub latency_secs: f64,
    /// Sequential calls of the RPC scenario.
    pub rpc_calls: u64,
    /// Calls of the concurrent RPC scenario.
    pub rpc_concurrent_calls: u64,
    /// Calls in flight in the concurrent RPC scenario.
    pub rpc_in_flight: usize,
    /// Seconds the idle scenario watches.
    pub idle_secs: f64,
    /// Idle buses of the memory scenario.
    pub idle_buses: usize,
    /// Encoded size of one event, in bytes (MessagePack).
    pub event_bytes: usize,
}

/// Which scenario a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// (1) One publisher, one subscriber, `events` as fast as possible.
    Throughput,
    /// (1b) One publisher, a consumer group of 3 instances (one account):
    /// each event handled and acknowledged by one of them.
    #[serde(rename = "group-3")]
    Group3,
    /// (1) As [`Scenario::Throughput`], on a transient topic: the server
    /// stores nothing (xbus only).
    ThroughputTransient,
    /// (2) One publisher, 4 subscribers.
    Fanout4,
    /// (2) One publisher, 16 subscribers.
    Fanout16,
    /// (3) Publish at a fixed rate, latency from publish to delivery.
    PushLatency,
    /// (4) One call at a time.
    RpcSequential,
    /// (4) 64 calls in flight.
    RpcConcurrent,
    /// (5) Connected, subscribed, nothing happening: traffic per minute.
    Idle,
    /// Client memory per idle connection (1,000 idle buses in one process).
    IdleMemory,
}

impl Scenario {
    /// Every scenario, in run order.
    pub const ALL: [Scenario; 10] = [
        Scenario::Throughput,
        Scenario::ThroughputTransient,
        Scenario::Group3,
        Scenario::Fanout4,
        Scenario::Fanout16,
        Scenario::PushLatency,
        Scenario::RpcSequential,
        Scenario::RpcConcurrent,
        Scenario::Idle,
        Scenario::IdleMemory,
    ];

    /// Short name, as on the command line (`--scenarios throughput,idle`).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Group3 => "group-3",
            Scenario::ThroughputTransient => "throughput-transient",
            Scenario::Fanout4 => "fanout-4",
            Scenario::Fanout16 => "fanout-16",
            Scenario::PushLatency => "push-latency",
            Scenario::RpcSequential => "rpc-sequential",
            Scenario::RpcConcurrent => "rpc-concurrent",
            Scenario::Idle => "idle",
            Scenario::IdleMemory => "idle-memory",
        }
    }

    /// The scenario called `name`.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name.trim())
    }
}

/// One scenario on one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The scenario.
    pub scenario: Scenario,
    /// The system, e.g. `xbus/embedded`, `raw-xmpp/prosody`, `nats`,
    /// `http`, `poll-100ms`.
    pub system: String,
    /// What was measured, or why nothing was.
    pub outcome: Outcome,
}

/// The result of one row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Outcome {
    /// It ran.
    Measured(Measure),
    /// It failed; the error, one line.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// Figures of one row; the ones a scenario does not produce are `None`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measure {
    /// Events delivered or calls answered (fan-out: deliveries summed over
    /// the subscribers; consumer group: jobs acknowledged by its instances).
    pub count: u64,
    /// Wall-clock seconds of the measured span.
    pub seconds: f64,
    /// `count / seconds`.
    pub per_second: f64,
    /// Latency distribution (push latency, RPC).
    pub latency: Option<Latency>,
    /// CPU seconds the benchmark process used during the span (clients,
    /// and the in-process HTTP server for the HTTP systems).
    pub client_cpu_secs: f64,
    /// CPU seconds the server process used during the span, when there is
    /// a separate server process.
    pub server_cpu_secs: Option<f64>,
    /// Idle scenario: traffic while nothing happens.
    pub idle: Option<IdleTraffic>,
    /// Idle-memory scenario.
    pub memory: Option<MemoryUse>,
}

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// The distribution for the plot: `(quantile in 0..=1, microseconds)`,
    /// about 200 points, denser towards the tail.
    pub cdf: Vec<(f64, f64)>,
}

/// Traffic of one idle client, scaled to one minute.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleTraffic {
    /// Writes the client made (XMPP keepalives and acks, NATS PINGs, HTTP
    /// requests) per minute.
    pub client_writes_per_min: f64,
    /// Bytes both ways per minute.
    pub bytes_per_min: f64,
    /// Bytes client to server per minute.
    pub bytes_up_per_min: f64,
    /// Bytes server to client per minute.
    pub bytes_down_per_min: f64,
}

/// Memory of idle connections in the benchmark process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryUse {
    /// Connections (buses) held open.
    pub connections: usize,
    /// Resident set size growth divided by `connections`, bytes.
    pub rss_bytes_per_connection: f64,
    /// Heap bytes allocated and not freed, divided by `connections`
    /// (counted by the benchmark's allocator), when known.
    pub heap_bytes_per_connection: Option<f64>,
}
