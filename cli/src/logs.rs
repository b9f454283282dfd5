//! The command's logs: one line per event on stderr, filtered by `RUST_LOG`.
//!
//! A small [`tracing::Subscriber`] instead of `tracing-subscriber`, whose
//! registry and filter would be a fifth of this command's dependencies.
//! What it reads from `RUST_LOG` is the common part of the `env_logger` and
//! `EnvFilter` syntax: comma-separated directives `LEVEL` or
//! `TARGET=LEVEL`, where a target matches itself and the modules below it,
//! the longest matching target wins, and the default is `warn`. Lines carry
//! the time (UTC), the level, the target, the message and the event's
//! fields; span context is not shown.
//!
//! ```text
//! RUST_LOG=debug xbus sub orders.created
//! RUST_LOG=warn,xbus::task=trace xbus services billing@example.com
//! ```

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// Installs the stderr logger for the whole process, filtered by
/// `RUST_LOG`. Directives it cannot read are named on stderr and skipped.
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let (filter, refused) = Filter::parse(&spec);
    for directive in refused {
        eprintln!(
            "xbus: RUST_LOG: ignoring {directive:?} (use LEVEL or TARGET=LEVEL, \
             LEVEL one of off, error, warn, info, debug, trace)"
        );
    }
    let _ = tracing::subscriber::set_global_default(StderrLog { filter });
}

/// Which levels each target logs.
#[derive(Debug, PartialEq)]
struct Filter {
    /// The level of targets no directive names.
    default: LevelFilter,
    /// `(target, level)`, longest target first.
    targets: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// The filter of `spec`, and the directives it could not read.
    fn parse(spec: &str) -> (Filter, Vec<String>) {
        let mut filter = Filter {
            default: LevelFilter::WARN,
            targets: Vec::new(),
        };
        let mut refused = Vec::new();
        for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let (target, level) = match directive.split_once('=') {
                Some((target, level)) => (Some(target.trim()), level.trim()),
                None => (None, directive),
            };
            let Ok(level) = level.parse::<LevelFilter>() else {
                refused.push(directive.to_string());
                continue;
            };
            match target {
                Some(target) if !target.is_empty() => {
                    filter.targets.push((target.to_string(), level));
                }
                Some(_) => refused.push(directive.to_string()),
                None => filter.default = level,
            }
        }
        filter
            .targets
            .sort_by_key(|(target, _)| std::cmp::Reverse(target.len()));
        (filter, refused)
    }

    /// The level `target` logs at.
    fn level(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(prefix, _)| {
                target
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
            .map_or(self.default, |&(_, level)| level)
    }

    /// The most verbose level any target logs at.
    fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|&(_, level)| level)
            .fold(self.default, LevelFilter::max)
    }
}

/// Writes enabled events to stderr; spans are accepted and not tracked.
struct StderrLog {
    filter: Filter,
}

impl Subscriber for StderrLog {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Spans are never shown: only events need to pass.
        metadata.is_event() && self.filter.level(metadata.target()) >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.filter.max())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut line = format!(
            "{} {:>5} {}:",
            utc_now(),
            level_name(metadata.level()),
            metadata.target()
        );
        event.record(&mut Fields(&mut line));
        line.push('\n');
        // A closed stderr leaves nowhere to report to.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Appends ` message` and ` name=value` for each field.
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = if field.name() == "message" {
            write!(self.0, " {value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn utc_now() -> String {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// `secs` after the Unix epoch, with `millis`, as RFC 3339 in UTC.
fn rfc3339(secs: u64, millis: u32) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_set_levels_per_target() {
        let (filter, refused) = Filter::parse("info, xbus=debug ,xbus::task=trace,loud");
        assert_eq!(refused, ["loud"]);
        assert_eq!(filter.level("tokio_xmpp::client"), LevelFilter::INFO);
        assert_eq!(filter.level("xbus"), LevelFilter::DEBUG);
        assert_eq!(filter.level("xbus::bus"), LevelFilter::DEBUG);
        assert_eq!(filter.level("xbus::task::pubsub"), LevelFilter::TRACE);
        // A target matches whole path segments only.
        assert_eq!(filter.level("xbus_cli"), LevelFilter::INFO);
        assert_eq!(filter.max(), LevelFilter::TRACE);
    }

    #[test]
    fn no_directive_is_warn() {
        let (filter, refused) = Filter::parse("");
        assert!(refused.is_empty());
        assert_eq!(filter.level("xbus"), LevelFilter::WARN);
        let (filter, refused) = Filter::parse("=debug,off");
        assert_eq!(refused, ["=debug"]);
        assert_eq!(filter.level("xbus"), LevelFilter::OFF);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(1_796_610_855, 123), "2026-12-07T02:34:15.123Z");
    }
}
