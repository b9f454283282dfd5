//! Number formatting and row look-ups shared by the markdown report, the
//! target checks and the plot.

use crate::results::{Measure, Outcome, Report, Row, Scenario};

/// The prefix of the xbus systems: `xbus/<server>`.
pub const XBUS: &str = "xbus/";
/// The prefix of the raw tokio-xmpp systems: `raw-xmpp/<server>`.
pub const RAW: &str = "raw-xmpp/";
/// The NATS system.
pub const NATS: &str = "nats";

/// The rows of `scenario`, in run order.
pub fn rows_of(report: &Report, scenario: Scenario) -> impl Iterator<Item = &Row> {
    report
        .rows
        .iter()
        .filter(move |row| row.scenario == scenario)
}

/// The figures of `system` in `scenario`, if that row exists and ran.
pub fn measured<'a>(report: &'a Report, scenario: Scenario, system: &str) -> Option<&'a Measure> {
    rows_of(report, scenario)
        .find(|row| row.system == system)
        .and_then(|row| match &row.outcome {
            Outcome::Measured(measure) => Some(measure),
            Outcome::Failed { .. } => None,
        })
}

/// The raw tokio-xmpp system on the same server as `system`, when
/// `system` is an xbus one (`xbus/prosody` → `raw-xmpp/prosody`).
pub fn raw_peer(system: &str) -> Option<String> {
    system
        .strip_prefix(XBUS)
        .map(|server| format!("{RAW}{server}"))
}

/// `part / whole` in percent, when `whole` is positive.
pub fn percent_of(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0 && part.is_finite()).then(|| part / whole * 100.0)
}

/// A percentage, one decimal below 100 %, none above 1,000 %.
pub fn pct(value: f64) -> String {
    if value >= 1000.0 {
        format!("{} %", group(value.round()))
    } else {
        format!("{value:.1} %")
    }
}

/// A ratio, as `1.42×`.
pub fn times(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}×")
    } else {
        format!("{value:.2}×")
    }
}

/// A count or rate: whole, with thousands separators; small values keep
/// one decimal (`2.5`).
pub fn count(value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    if value.abs() < 10.0 && value.fract() != 0.0 {
        format!("{value:.1}")
    } else {
        group(value.round())
    }
}

/// `value` (whole) with `,` between groups of three digits.
fn group(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0.0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Microseconds as milliseconds with three significant digits
/// (`0.0523`, `0.523`, `5.23`, `52.3`, `523`).
pub fn ms(micros: f64) -> String {
    let ms = micros / 1000.0;
    if !ms.is_finite() {
        return "—".into();
    }
    if ms == 0.0 {
        return "0".into();
    }
    let magnitude = ms.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 6) as usize;
    format!("{ms:.decimals$}")
}

/// Seconds (wall clock or CPU), two decimals.
pub fn secs(value: f64) -> String {
    format!("{value:.2}")
}

/// Bytes as KiB, one decimal.
pub fn kib(bytes: f64) -> String {
    format!("{:.1}", bytes / 1024.0)
}

/// `text` made safe for one markdown table cell: one line, no `|`.
pub fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(1_234_567.4), "1,234,567");
        assert_eq!(count(999.6), "1,000");
        assert_eq!(count(2.5), "2.5");
        assert_eq!(count(0.0), "0");
        assert_eq!(ms(523.0), "0.523");
        assert_eq!(ms(52.3), "0.0523");
        assert_eq!(ms(5_234.0), "5.23");
        assert_eq!(ms(52_340.0), "52.3");
        assert_eq!(ms(523_400.0), "523");
        assert_eq!(ms(5_234_000.0), "5234");
        assert_eq!(pct(97.04), "97.0 %");
        assert_eq!(pct(2500.0), "2,500 %");
        assert_eq!(times(1.456), "1.46×");
        assert_eq!(kib(2048.0), "2.0");
        assert_eq!(cell("a | b\nc"), "a \\| b c");
        assert_eq!(
            raw_peer("xbus/prosody").as_deref(),
            Some("raw-xmpp/prosody")
        );
        assert_eq!(raw_peer("nats"), None);
        assert_eq!(percent_of(1.0, 0.0), None);
    }
}
