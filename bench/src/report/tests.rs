//! Tests of the report on the handcrafted run of [`fixture`](super::fixture).

use super::fixture::sample;
use super::*;

/// The markdown table line of `system` in the table under `caption`.
fn table_line<'a>(markdown: &'a str, caption: &str, system: &str) -> &'a str {
    let start = markdown
        .find(caption)
        .unwrap_or_else(|| panic!("no {caption:?}"));
    markdown[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .find(|line| {
            line.trim_start_matches('|')
                .trim_start()
                .starts_with(&format!("{system} "))
        })
        .unwrap_or_else(|| panic!("no row {system} under {caption:?}"))
}

fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('|')
        .split(" |")
        .map(str::trim)
        .collect()
}

#[test]
fn markdown_has_the_figures_and_comparisons() {
    let md = markdown(&sample());
    println!("{md}");
    assert!(md.starts_with("**xbus-bench**, 2025-06-01T12:00:00Z, on AMD EPYC 7B13"));
    assert!(md.contains("prosody 0.12.4, nats-server 2.10.18"));
    assert!(md.contains("100,000 events (64 in flight)"));

    let t = "Throughput 1→1";
    assert_eq!(
        cells(table_line(&md, t, "xbus/embedded")),
        [
            "xbus/embedded",
            "48,000",
            "96.0 %",
            "40.0 %",
            "1.50",
            "0.75",
            "2.00"
        ]
    );
    assert_eq!(cells(table_line(&md, t, "xbus/prosody"))[2], "90.0 %");
    // No raw-xmpp/ejabberd row: no comparison, but still one with NATS.
    assert_eq!(
        cells(table_line(&md, t, "xbus/ejabberd"))[2..4],
        ["—", "12.5 %"]
    );
    assert_eq!(
        cells(table_line(&md, t, "raw-xmpp/prosody"))[2..4],
        ["—", "16.7 %"]
    );
    assert_eq!(cells(table_line(&md, t, "nats"))[3], "100.0 %");
    assert_eq!(cells(table_line(&md, t, "http"))[3], "6.7 %");
    // The consumer group beside the 1→1 rate of its system.
    let g = "Consumer group of 3";
    assert_eq!(
        cells(table_line(&md, g, "xbus/embedded"))[..3],
        ["xbus/embedded", "36,000", "75.0 %"]
    );
    assert_eq!(cells(table_line(&md, g, "xbus/prosody"))[2], "50.0 %");
    assert!(md.find(t) < md.find(g) && md.find(g) < md.find("Fan-out 1→4"));
    assert_eq!(
        cells(table_line(&md, "Fan-out 1→4", "xbus/embedded"))[1..4],
        ["100,000", "90.9 %", "25.0 %"]
    );

    let failed = cells(table_line(&md, "Fan-out 1→16", "xbus/embedded"));
    assert_eq!(failed[1], "failed: timed out after 30 s \\| flushing");
    assert_eq!(failed.len(), 7);

    let push = cells(table_line(&md, "Push latency, publish", "xbus/embedded"));
    assert_eq!(
        push,
        [
            "xbus/embedded",
            "0.400",
            "1.20",
            "2.50",
            "4.10",
            "10,000",
            "1.50",
            "—"
        ]
    );
    assert_eq!(
        cells(table_line(&md, "Push latency, publish", "poll-100ms"))[1..3],
        ["50.0", "99.0"]
    );

    let rpc = cells(table_line(&md, "RPC, one call at a time", "xbus/embedded"));
    assert_eq!(
        rpc,
        [
            "xbus/embedded",
            "5,000",
            "0.180",
            "0.450",
            "0.900",
            "2.00",
            "—",
            "1.80×"
        ]
    );
    assert_eq!(
        cells(table_line(&md, "RPC, one call at a time", "http"))[7],
        "1.50×"
    );
    let rpc = cells(table_line(&md, "RPC, 64 calls in flight", "xbus/embedded"));
    assert_eq!(rpc[1], "40,000");
    assert_eq!(rpc[6..], ["97.6 %", "2.14×"]);
    assert_eq!(
        cells(table_line(&md, "RPC, 64 calls in flight", "xbus/prosody"))[1],
        "failed: connection reset"
    );

    assert_eq!(
        cells(table_line(&md, "Idle: connected", "poll-1s")),
        ["poll-1s", "60", "9,000 / 12,000"]
    );
    assert_eq!(
        cells(table_line(&md, "Idle: connected", "xbus/embedded"))[1],
        "2"
    );
    assert_eq!(
        cells(table_line(
            &md,
            "Client memory of 1,000 idle buses",
            "xbus/embedded"
        )),
        ["xbus/embedded", "1,000", "80.0", "40.0"]
    );
    assert_eq!(
        cells(table_line(
            &md,
            "Client memory of 1,000 idle buses",
            "raw-xmpp/embedded"
        ))[3],
        "—"
    );

    assert!(md.contains("### Notes\n\n- ejabberd: raw-xmpp client not run (test data)\n"));
    let targets_at = md.find("### Targets").expect("targets section");
    assert!(md.find("### Notes").expect("notes") < targets_at);
    assert!(md[targets_at..].contains("| xbus/embedded push latency p99 "));
    assert!(md[targets_at..].contains("✔") && md[targets_at..].contains("✘"));
}

#[test]
fn targets_are_met_or_not() {
    let checks = targets(&sample());
    let check = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
    };
    let expect = [
        (
            "xbus/embedded throughput vs raw-xmpp/embedded",
            true,
            "96.0 % (48,000 vs 50,000 /s)",
        ),
        (
            "xbus/prosody throughput vs raw-xmpp/prosody",
            false,
            "90.0 % (18,000 vs 20,000 /s)",
        ),
        (
            "xbus/ejabberd throughput vs raw-xmpp/ejabberd",
            false,
            "raw-xmpp/ejabberd: not run",
        ),
        (
            "xbus/embedded RPC rate (64 in flight) vs raw-xmpp/embedded",
            true,
            "97.6 % (40,000 vs 41,000 /s)",
        ),
        (
            "xbus/prosody RPC rate (64 in flight) vs raw-xmpp/prosody",
            false,
            "xbus/prosody failed: connection reset",
        ),
        ("xbus/embedded push latency p99", true, "1.20 ms"),
        ("xbus/prosody push latency p99", false, "3.50 ms"),
        (
            "xbus/embedded throughput vs nats",
            true,
            "40.0 % (48,000 vs 120,000 /s)",
        ),
        (
            "xbus/embedded RPC p50 (sequential) vs nats",
            true,
            "1.80× (0.180 vs 0.100 ms)",
        ),
        (
            "xbus/embedded client memory per idle connection",
            true,
            "40.0 KiB (heap)",
        ),
        (
            "xbus/prosody client memory per idle connection",
            false,
            "68.4 KiB (RSS)",
        ),
    ];
    for (name, met, measured) in expect {
        let c = check(name);
        assert_eq!((c.met, c.measured.as_str()), (met, measured), "{name}");
    }
    assert_eq!(checks.len(), expect.len(), "{checks:#?}");
    assert_eq!(check("xbus/embedded push latency p99").wanted, "≤ 3.00 ms");
    assert_eq!(
        check("xbus/embedded client memory per idle connection").wanted,
        "≤ 64.0 KiB"
    );
}

#[test]
fn targets_of_an_empty_run() {
    let mut report = sample();
    report.rows.clear();
    assert!(targets(&report).is_empty());
    assert!(markdown(&report).ends_with("No row to check the targets against.\n"));
}

/// Compares JSON values, numbers to within rounding.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn write_all_writes_three_files() {
    let report = sample();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bench-out");
    let paths = write_all(&report, &out).expect("write_all");
    let names: Vec<_> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["report.md", "report.json", "latency.svg"]);
    for path in &paths {
        assert!(path.starts_with(&out));
        assert!(std::fs::metadata(path).expect("written").len() > 0);
    }
    assert_eq!(
        std::fs::read_to_string(&paths[0]).unwrap(),
        markdown(&report)
    );

    let json = std::fs::read_to_string(&paths[1]).unwrap();
    let back: Report = serde_json::from_str(&json).expect("JSON round-trips to a Report");
    let (before, after) = (
        serde_json::to_value(&report).unwrap(),
        serde_json::to_value(&back).unwrap(),
    );
    assert!(same_json(&before, &after));
    assert_eq!(back.rows.len(), report.rows.len());
    assert!(
        json.contains("\"status\": \"failed\"") && json.contains("\"scenario\": \"push-latency\"")
    );

    let svg = std::fs::read_to_string(&paths[2]).unwrap();
    assert!(svg.starts_with("<svg"));
}

/// Writes the sample's outputs into `$XBUS_REPORT_SAMPLE_DIR`, to look at.
#[test]
#[ignore = "writes into $XBUS_REPORT_SAMPLE_DIR"]
fn write_sample() {
    let dir = std::env::var_os("XBUS_REPORT_SAMPLE_DIR").expect("XBUS_REPORT_SAMPLE_DIR");
    let paths = write_all(&sample(), Path::new(&dir)).expect("write_all");
    println!("{paths:?}");
}
