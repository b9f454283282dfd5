//! What the report says about the run besides its rows: when, on which
//! machine, with which versions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::systems::{Group, Kind};

/// Client libraries as locked in `Cargo.lock` (major.minor: what a
/// reader needs to compare runs).
const TOKIO_XMPP: &str = "tokio-xmpp 6.0";
const ASYNC_NATS: &str = "async-nats 0.51";
const AXUM: &str = "axum 0.8";
const REQWEST: &str = "reqwest 0.13";

/// `time` as RFC 3339 UTC, whole seconds: `2024-05-01T12:00:00Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// CPU model, cores and kernel, one line.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

/// Versions of what `groups` and `kinds` measure: servers (asked of the
/// system) and client libraries.
pub async fn versions(groups: &[Group], kinds: &[Kind]) -> Vec<String> {
    let mut versions = vec![format!("xbus {}", env!("CARGO_PKG_VERSION"))];
    for group in groups {
        match group {
            // Not `prosody --version`: Prosody 0.12 has no such option and
            // starts the server instead.
            Group::Xmpp(server @ ("prosody" | "ejabberd" | "ejabberd-cluster")) => {
                let package = server.trim_end_matches("-cluster");
                let version = output("dpkg-query", &["-W", "-f=${Version}", package]).await;
                versions.push(format!("{server} {}", version.as_deref().unwrap_or("?")));
            }
            Group::Nats => {
                // `nats-server: v2.9.10`
                let version = output("nats-server", &["--version"]).await;
                let version = version
                    .as_deref()
                    .and_then(|v| v.rsplit(' ').next())
                    .map(|v| v.trim_start_matches('v').to_owned());
                versions.push(format!("nats-server {}", version.as_deref().unwrap_or("?")));
            }
            _ => {}
        }
    }
    let uses = |k: &[Kind]| kinds.iter().any(|kind| k.contains(kind));
    if uses(&[Kind::Xbus, Kind::RawXmpp]) {
        versions.push(TOKIO_XMPP.to_owned());
    }
    if uses(&[Kind::Nats]) {
        versions.push(ASYNC_NATS.to_owned());
    }
    if uses(&[Kind::Http, Kind::Poll100ms, Kind::Poll1s]) {
        versions.push(AXUM.to_owned());
        versions.push(REQWEST.to_owned());
    }
    versions
}

/// The first line `program args` prints, if it runs within 5 s.
async fn output(program: &str, args: &[&str]) -> Option<String> {
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    (out.status.success() && !line.is_empty()).then(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn describes_the_machine() {
        let machine = machine();
        assert!(machine.contains("cores, Linux"), "{machine}");
    }
}
