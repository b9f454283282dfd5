//! The targets, checked against the rows of a run.

use serde::{Deserialize, Serialize};

use super::format::{
    NATS, XBUS, count, kib, measured, ms, pct, percent_of, raw_peer, rows_of, times,
};
use crate::results::{Outcome, Report, Scenario};

/// xbus against raw tokio-xmpp on the same server: at least this share.
const RAW_SHARE_PCT: f64 = 95.0;
/// Push latency p99 of xbus: at most this, in microseconds.
const PUSH_P99_US: f64 = 3_000.0;
/// Embedded server against NATS: xbus throughput at least this share.
const NATS_THROUGHPUT_PCT: f64 = 30.0;
/// Embedded server against NATS: xbus RPC p50 at most this multiple.
const NATS_RPC_P50_TIMES: f64 = 2.0;
/// Client memory per idle connection: at most this, in bytes.
const IDLE_BYTES: f64 = 64.0 * 1024.0;
/// The server bundled with xbus.
const EMBEDDED: &str = "xbus/embedded";

/// One target of the issue, checked against one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// What is checked, e.g. `xbus/prosody throughput vs raw-xmpp/prosody`.
    pub name: String,
    /// The bound, e.g. `≥ 95 %`.
    pub wanted: String,
    /// What the run measured, or why it could not be compared.
    pub measured: String,
    /// Whether the measurement meets the bound; `false` when a row the
    /// check needs failed or is missing.
    pub met: bool,
}

impl TargetCheck {
    fn new(name: String, wanted: String, measured: String, met: bool) -> TargetCheck {
        TargetCheck {
            name,
            wanted,
            measured,
            met,
        }
    }
}

/// Checks the targets against the rows present in `report`:
///
/// - xbus reaches at least 95 % of the raw tokio-xmpp client's throughput
///   (scenario `throughput`) and RPC rate (`rpc-concurrent`) on each server;
/// - xbus push latency p99 is at most 3 ms (each xbus row);
/// - on the embedded server, xbus throughput is at least 30 % of NATS's and
///   the sequential RPC p50 at most twice NATS's;
/// - client memory per idle connection is at most 64 KiB (heap when
///   counted, else RSS).
///
/// A check appears for each xbus row of the scenarios concerned; when the
/// xbus row failed, or the row it is compared with failed or is missing,
/// the check is listed as not met and `measured` says why.
pub fn targets(report: &Report) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    for (scenario, what) in [
        (Scenario::Throughput, "throughput"),
        (Scenario::RpcConcurrent, "RPC rate (64 in flight)"),
    ] {
        for system in xbus_systems(report, scenario) {
            let Some(raw) = raw_peer(&system) else {
                continue;
            };
            let name = format!("{system} {what} vs {raw}");
            let wanted = format!("≥ {RAW_SHARE_PCT:.0} %");
            checks.push(share_check(
                report,
                scenario,
                &system,
                &raw,
                name,
                wanted,
                RAW_SHARE_PCT,
            ));
        }
    }
    for system in xbus_systems(report, Scenario::PushLatency) {
        let name = format!("{system} push latency p99");
        let wanted = format!("≤ {} ms", ms(PUSH_P99_US));
        let p99 = measured(report, Scenario::PushLatency, &system)
            .and_then(|m| m.latency.as_ref())
            .map(|latency| latency.p99_us);
        checks.push(match p99 {
            Some(p99) => {
                TargetCheck::new(name, wanted, format!("{} ms", ms(p99)), p99 <= PUSH_P99_US)
            }
            None => TargetCheck::new(
                name,
                wanted,
                unmeasured(report, Scenario::PushLatency, &system),
                false,
            ),
        });
    }
    if has_row(report, Scenario::Throughput, EMBEDDED) {
        let name = format!("{EMBEDDED} throughput vs {NATS}");
        let wanted = format!("≥ {NATS_THROUGHPUT_PCT:.0} %");
        checks.push(share_check(
            report,
            Scenario::Throughput,
            EMBEDDED,
            NATS,
            name,
            wanted,
            NATS_THROUGHPUT_PCT,
        ));
    }
    if has_row(report, Scenario::RpcSequential, EMBEDDED) {
        checks.push(rpc_p50_check(report));
    }
    for system in xbus_systems(report, Scenario::IdleMemory) {
        let name = format!("{system} client memory per idle connection");
        let wanted = format!("≤ {} KiB", kib(IDLE_BYTES));
        let memory =
            measured(report, Scenario::IdleMemory, &system).and_then(|m| m.memory.as_ref());
        checks.push(match memory {
            Some(memory) => {
                let (bytes, kind) = match memory.heap_bytes_per_connection {
                    Some(heap) => (heap, "heap"),
                    None => (memory.rss_bytes_per_connection, "RSS"),
                };
                let shown = format!("{} KiB ({kind})", kib(bytes));
                TargetCheck::new(name, wanted, shown, bytes <= IDLE_BYTES)
            }
            None => TargetCheck::new(
                name,
                wanted,
                unmeasured(report, Scenario::IdleMemory, &system),
                false,
            ),
        });
    }
    checks
}

/// `system`'s rate over `reference`'s rate in `scenario`, at least
/// `min_pct` percent.
fn share_check(
    report: &Report,
    scenario: Scenario,
    system: &str,
    reference: &str,
    name: String,
    wanted: String,
    min_pct: f64,
) -> TargetCheck {
    let Some(ours) = measured(report, scenario, system) else {
        return TargetCheck::new(name, wanted, unmeasured(report, scenario, system), false);
    };
    let Some(theirs) = measured(report, scenario, reference) else {
        return TargetCheck::new(name, wanted, unmeasured(report, scenario, reference), false);
    };
    match percent_of(ours.per_second, theirs.per_second) {
        Some(share) => {
            let shown = format!(
                "{} ({} vs {} /s)",
                pct(share),
                count(ours.per_second),
                count(theirs.per_second)
            );
            TargetCheck::new(name, wanted, shown, share >= min_pct)
        }
        None => TargetCheck::new(name, wanted, format!("{reference}: no rate"), false),
    }
}

/// Sequential RPC p50 on the embedded server against NATS's.
fn rpc_p50_check(report: &Report) -> TargetCheck {
    let scenario = Scenario::RpcSequential;
    let name = format!("{EMBEDDED} RPC p50 (sequential) vs {NATS}");
    let wanted = format!("≤ {}", times(NATS_RPC_P50_TIMES));
    let p50 = |system| {
        measured(report, scenario, system)
            .and_then(|m| m.latency.as_ref())
            .map(|latency| latency.p50_us)
    };
    let Some(ours) = p50(EMBEDDED) else {
        return TargetCheck::new(name, wanted, unmeasured(report, scenario, EMBEDDED), false);
    };
    let Some(theirs) = p50(NATS).filter(|p50| *p50 > 0.0) else {
        return TargetCheck::new(name, wanted, unmeasured(report, scenario, NATS), false);
    };
    let ratio = ours / theirs;
    let shown = format!("{} ({} vs {} ms)", times(ratio), ms(ours), ms(theirs));
    TargetCheck::new(name, wanted, shown, ratio <= NATS_RPC_P50_TIMES)
}

/// The xbus systems with a row in `scenario`, in run order.
fn xbus_systems(report: &Report, scenario: Scenario) -> Vec<String> {
    let mut systems: Vec<String> = Vec::new();
    for row in rows_of(report, scenario) {
        if row.system.starts_with(XBUS) && !systems.contains(&row.system) {
            systems.push(row.system.clone());
        }
    }
    systems
}

/// Whether `system` has a row in `scenario`, whatever its outcome.
fn has_row(report: &Report, scenario: Scenario, system: &str) -> bool {
    rows_of(report, scenario).any(|row| row.system == system)
}

/// Why `system` has no usable figure in `scenario`.
fn unmeasured(report: &Report, scenario: Scenario, system: &str) -> String {
    match rows_of(report, scenario).find(|row| row.system == system) {
        None => format!("{system}: not run"),
        Some(row) => match &row.outcome {
            Outcome::Failed { error } => format!("{system} failed: {error}"),
            Outcome::Measured(_) => format!("{system}: no figure"),
        },
    }
}
