//! The outputs of a run: a markdown fragment (tables per scenario group and
//! the targets), the whole [`Report`] as JSON, and the latency plot.

#[cfg(test)]
pub(crate) mod fixture;
mod format;
mod targets;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use self::format::{
    NATS, cell, count, kib, measured, ms, pct, percent_of, raw_peer, rows_of, secs, times,
};
use crate::results::{Measure, Outcome, Report, Row, Scenario};

pub use self::targets::{TargetCheck, targets};

/// Renders `report` as a markdown fragment readable in a terminal and on
/// GitHub: a header line (date, machine, versions, settings), one table per
/// scenario that has rows, grouped (events, push latency, RPC, idle, idle
/// memory), the notes, and last the [`targets()`] table.
pub fn markdown(report: &Report) -> String {
    let mut out = header(report);
    let groups: [(&str, &[Scenario]); 5] = [
        (
            "Events",
            &[
                Scenario::Throughput,
                Scenario::ThroughputTransient,
                Scenario::Group3,
                Scenario::Fanout4,
                Scenario::Fanout16,
            ],
        ),
        ("Push latency", &[Scenario::PushLatency]),
        ("RPC", &[Scenario::RpcSequential, Scenario::RpcConcurrent]),
        ("Idle traffic", &[Scenario::Idle]),
        ("Idle memory", &[Scenario::IdleMemory]),
    ];
    for (title, scenarios) in groups {
        let present: Vec<Scenario> = scenarios
            .iter()
            .copied()
            .filter(|scenario| rows_of(report, *scenario).next().is_some())
            .collect();
        if present.is_empty() {
            continue;
        }
        let _ = write!(out, "\n### {title}\n");
        for scenario in present {
            let _ = write!(out, "\n**{}**\n\n", caption(report, scenario));
            out.push_str(&render(&scenario_table(report, scenario)));
        }
    }
    if !report.notes.is_empty() {
        out.push_str("\n### Notes\n\n");
        for note in &report.notes {
            let _ = writeln!(out, "- {}", note.trim());
        }
    }
    out.push_str("\n### Targets\n\n");
    let checks: Vec<TargetCheck> = targets(report);
    if checks.is_empty() {
        out.push_str("No row to check the targets against.\n");
    } else {
        let mut table = Table::new(
            &["target", "wanted", "measured", "met"],
            &[false, false, false, false],
        );
        for check in checks {
            let met = if check.met { "✔" } else { "✘" };
            table.push(vec![
                cell(&check.name),
                check.wanted,
                cell(&check.measured),
                met.into(),
            ]);
        }
        out.push_str(&render(&table));
    }
    out
}

/// Writes `report.md` ([`markdown`]), `report.json` (the whole report) and
/// `latency.svg` ([`latency_svg`](crate::plot::latency_svg)) into
/// `dir`, creating it, and returns the paths written.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).context("encoding the report as JSON")?;
    let svg = crate::plot::latency_svg(report)?;
    let files = [
        ("report.md", markdown(report)),
        ("report.json", json + "\n"),
        ("latency.svg", svg),
    ];
    let mut paths = Vec::with_capacity(files.len());
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}

/// The first line: date, machine, versions, settings.
fn header(report: &Report) -> String {
    let s = &report.settings;
    let versions = if report.versions.is_empty() {
        "not recorded".to_owned()
    } else {
        report.versions.join(", ")
    };
    format!(
        "**xbus-bench**, {started}, on {machine}. Versions: {versions}. Settings: \
         {events} events ({window} in flight), {fanout} fan-out events, \
         push at {rate}/s for {latency} s, {rpc} sequential calls, \
         {rpc_c} calls with {in_flight} in flight, idle {idle} s, \
         {buses} idle buses, events of {bytes} B.\n",
        started = report.started,
        machine = report.machine.trim(),
        events = count(s.events as f64),
        window = s.window,
        fanout = count(s.fanout_events as f64),
        rate = count(s.rate as f64),
        latency = s.latency_secs,
        rpc = count(s.rpc_calls as f64),
        rpc_c = count(s.rpc_concurrent_calls as f64),
        in_flight = s.rpc_in_flight,
        idle = s.idle_secs,
        buses = count(s.idle_buses as f64),
        bytes = s.event_bytes,
    )
}

/// The line above a scenario's table.
fn caption(report: &Report, scenario: Scenario) -> String {
    let s = &report.settings;
    match scenario {
        Scenario::Throughput => format!(
            "Throughput 1→1: {} events, {} publishes in flight",
            count(s.events as f64),
            s.window
        ),
        Scenario::ThroughputTransient => format!(
            "Throughput 1→1 on a transient topic (`#[event(transient)]`: the server stores \
             nothing): {} events, {} publishes in flight (vs persisted: share of the throughput \
             row's rate)",
            count(s.events as f64),
            s.window
        ),
        Scenario::Group3 => format!(
            "Consumer group of 3 (one account, 3 buses): {} events, {} publishes in flight, \
             each acked by one instance (vs 1→1: share of the throughput row's rate)",
            count(s.events as f64),
            s.window
        ),
        Scenario::Fanout4 | Scenario::Fanout16 => {
            let n = if scenario == Scenario::Fanout4 { 4 } else { 16 };
            format!(
                "Fan-out 1→{n}: {} events, each to {n} subscribers (rates are deliveries/s)",
                count(s.fanout_events as f64)
            )
        }
        Scenario::PushLatency => format!(
            "Push latency, publish to delivery: {} events/s for {} s (ms)",
            count(s.rate as f64),
            s.latency_secs
        ),
        Scenario::RpcSequential => format!(
            "RPC, one call at a time: {} calls (latency in ms)",
            count(s.rpc_calls as f64)
        ),
        Scenario::RpcConcurrent => format!(
            "RPC, {} calls in flight: {} calls (latency in ms)",
            s.rpc_in_flight,
            count(s.rpc_concurrent_calls as f64)
        ),
        Scenario::Idle => format!(
            "Idle: connected and subscribed, nothing published, {} s watched, scaled to one minute",
            s.idle_secs
        ),
        Scenario::IdleMemory => format!(
            "Client memory of {} idle buses in one process",
            count(s.idle_buses as f64)
        ),
    }
}

/// The table of one scenario.
fn scenario_table(report: &Report, scenario: Scenario) -> Table {
    let (headers, right): (&[&str], &[bool]) = match scenario {
        Scenario::Throughput | Scenario::Fanout4 | Scenario::Fanout16 => (
            &[
                "system",
                "events/s",
                "vs raw-xmpp",
                "vs NATS",
                "client CPU s",
                "server CPU s",
                "seconds",
            ],
            &[false, true, true, true, true, true, true],
        ),
        Scenario::Group3 => (
            &[
                "system",
                "events/s",
                "vs 1→1",
                "client CPU s",
                "server CPU s",
                "seconds",
            ],
            &[false, true, true, true, true, true],
        ),
        Scenario::ThroughputTransient => (
            &[
                "system",
                "events/s",
                "vs persisted",
                "client CPU s",
                "server CPU s",
                "seconds",
            ],
            &[false, true, true, true, true, true],
        ),
        Scenario::PushLatency => (
            &[
                "system",
                "p50",
                "p99",
                "p99.9",
                "max",
                "samples",
                "client CPU s",
                "server CPU s",
            ],
            &[false, true, true, true, true, true, true, true],
        ),
        Scenario::RpcSequential | Scenario::RpcConcurrent => (
            &[
                "system",
                "calls/s",
                "p50",
                "p99",
                "p99.9",
                "max",
                "vs raw-xmpp",
                "p50 vs NATS",
            ],
            &[false, true, true, true, true, true, true, true],
        ),
        Scenario::Idle => (
            &["system", "client writes/min", "bytes/min up / down"],
            &[false, true, true],
        ),
        Scenario::IdleMemory => (
            &[
                "system",
                "connections",
                "RSS/connection KiB",
                "heap/connection KiB",
            ],
            &[false, true, true, true],
        ),
    };
    let mut table = Table::new(headers, right);
    for row in rows_of(report, scenario) {
        let mut cells = vec![cell(&row.system)];
        match &row.outcome {
            Outcome::Failed { error } => {
                cells.push(format!("failed: {}", cell(error)));
                cells.resize(headers.len(), String::new());
            }
            Outcome::Measured(m) => cells.extend(figures(report, row, m)),
        }
        table.push(cells);
    }
    table
}

/// The figure cells of a measured row (all columns but the first).
fn figures(report: &Report, row: &Row, m: &Measure) -> Vec<String> {
    let dash = || "—".to_owned();
    let server_cpu = m.server_cpu_secs.map(secs).unwrap_or_else(dash);
    let latency = |pick: fn(&crate::results::Latency) -> f64| {
        m.latency.as_ref().map(|l| ms(pick(l))).unwrap_or_else(dash)
    };
    match row.scenario {
        Scenario::Throughput | Scenario::Fanout4 | Scenario::Fanout16 => vec![
            count(m.per_second),
            vs_raw(report, row, m).unwrap_or_else(dash),
            vs_nats(report, row, m).unwrap_or_else(dash),
            secs(m.client_cpu_secs),
            server_cpu,
            secs(m.seconds),
        ],
        Scenario::Group3 | Scenario::ThroughputTransient => vec![
            count(m.per_second),
            measured(report, Scenario::Throughput, &row.system)
                .and_then(|one| percent_of(m.per_second, one.per_second))
                .map(pct)
                .unwrap_or_else(dash),
            secs(m.client_cpu_secs),
            server_cpu,
            secs(m.seconds),
        ],
        Scenario::PushLatency => vec![
            latency(|l| l.p50_us),
            latency(|l| l.p99_us),
            latency(|l| l.p999_us),
            latency(|l| l.max_us),
            m.latency
                .as_ref()
                .map(|l| count(l.samples as f64))
                .unwrap_or_else(dash),
            secs(m.client_cpu_secs),
            server_cpu,
        ],
        Scenario::RpcSequential | Scenario::RpcConcurrent => {
            let p50_vs_nats = m
                .latency
                .as_ref()
                .zip(measured(report, row.scenario, NATS).and_then(|n| n.latency.as_ref()))
                .filter(|(_, nats)| nats.p50_us > 0.0)
                .map(|(ours, nats)| times(ours.p50_us / nats.p50_us));
            vec![
                count(m.per_second),
                latency(|l| l.p50_us),
                latency(|l| l.p99_us),
                latency(|l| l.p999_us),
                latency(|l| l.max_us),
                vs_raw(report, row, m).unwrap_or_else(dash),
                p50_vs_nats.unwrap_or_else(dash),
            ]
        }
        Scenario::Idle => match &m.idle {
            Some(idle) => vec![
                count(idle.client_writes_per_min),
                format!(
                    "{} / {}",
                    count(idle.bytes_up_per_min),
                    count(idle.bytes_down_per_min)
                ),
            ],
            None => vec![dash(), dash()],
        },
        Scenario::IdleMemory => match &m.memory {
            Some(memory) => vec![
                count(memory.connections as f64),
                kib(memory.rss_bytes_per_connection),
                memory
                    .heap_bytes_per_connection
                    .map(kib)
                    .unwrap_or_else(dash),
            ],
            None => vec![dash(), dash(), dash()],
        },
    }
}

/// An xbus row's rate as a share of the raw tokio-xmpp rate on its server.
fn vs_raw(report: &Report, row: &Row, m: &Measure) -> Option<String> {
    let raw = measured(report, row.scenario, &raw_peer(&row.system)?)?;
    percent_of(m.per_second, raw.per_second).map(pct)
}

/// A row's rate as a share of NATS's.
fn vs_nats(report: &Report, row: &Row, m: &Measure) -> Option<String> {
    let nats = measured(report, row.scenario, NATS)?;
    percent_of(m.per_second, nats.per_second).map(pct)
}

/// A markdown table, padded so that it also reads in a terminal.
struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str], right: &[bool]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            right: right.to_vec(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }
}

/// `table` as markdown lines, columns padded to a common width.
fn render(table: &Table) -> String {
    let width = |text: &str| text.chars().count();
    let mut widths: Vec<usize> = table.headers.iter().map(|h| width(h).max(3)).collect();
    for row in &table.rows {
        for (w, text) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(text));
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            let text = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = " ".repeat(w - width(text));
            if table.right.get(i).copied().unwrap_or(false) {
                let _ = write!(out, " {pad}{text} |");
            } else {
                let _ = write!(out, " {text}{pad} |");
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&table.headers);
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        let dashes = "-".repeat(w.saturating_sub(1));
        if table.right.get(i).copied().unwrap_or(false) {
            let _ = write!(out, " {dashes}: |");
        } else {
            let _ = write!(out, " {dashes}- |");
        }
    }
    out.push('\n');
    for row in &table.rows {
        out.push_str(&line(row));
    }
    out
}
