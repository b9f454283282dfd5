//! `xbus-bench` as a user runs it, on the in-process mock system (no
//! servers needed): the table on stdout, the report files, the exit code.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `xbus-bench` with `args`, killing it after `limit`.
fn bench(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xbus-bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xbus-bench");
    let start = Instant::now();
    while child.try_wait().expect("wait for xbus-bench").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let output = child
                .wait_with_output()
                .expect("collect xbus-bench's output");
            panic!(
                "xbus-bench {args:?} still ran after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
        .wait_with_output()
        .expect("collect xbus-bench's output")
}

#[test]
fn bench_on_the_mock_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let output = bench(
        &[
            "--systems",
            "mock",
            "--quick",
            "--latency-secs",
            "0.5",
            "--idle-secs",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The markdown report has a table for every scenario.
    for heading in [
        "**Throughput 1→1",
        "**Fan-out 1→4",
        "**Fan-out 1→16",
        "**Push latency, publish to delivery",
        "**RPC, one call at a time",
        "**RPC, 64 calls in flight",
        "**Idle: connected and subscribed",
        "**Client memory of 50 idle buses",
        "### Targets",
    ] {
        assert!(
            stdout.contains(heading),
            "{heading} missing from:\n{stdout}"
        );
    }
    assert!(stdout.contains("mock"), "{stdout}");
    // A line per row on stderr, none failed.
    assert!(!stderr.contains("FAILED"), "{stderr}");

    let json = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON report");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{report:#}");
    for row in rows {
        assert_eq!(row["system"], "mock");
        assert_eq!(row["outcome"]["status"], "measured", "{row:#}");
    }
}

#[test]
fn unknown_names_are_refused() {
    let output = bench(&["--systems", "carrier-pigeon"], Duration::from_secs(30));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown system \"carrier-pigeon\""),
        "{stderr}"
    );
    let output = bench(&["--scenarios", "warp"], Duration::from_secs(30));
    assert!(!output.status.success());
}

/// The embedded server runs as a child process of the benchmark (its CPU
/// is measured apart): one small row on it, through the binary.
#[test]
fn bench_on_the_embedded_server_measures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let output = bench(
        &[
            "--systems",
            "xbus,raw-xmpp",
            "--servers",
            "embedded",
            "--scenarios",
            "rpc-sequential,throughput",
            "--rpc-calls",
            "50",
            "--events",
            "200",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr:\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    // xbus: both scenarios; raw-xmpp: throughput only (it has no RPC).
    assert!(rows.len() >= 3, "{report:#}");
    for row in rows {
        assert_eq!(row["outcome"]["status"], "measured", "{row:#}");
        assert!(
            row["system"].as_str().unwrap().ends_with("/embedded"),
            "{row:#}"
        );
    }
}
