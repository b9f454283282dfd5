//! The run's progress on stderr: a bar of rows done with the current
//! `scenario · system`, a bar of the current row's events or calls, and a
//! line per finished row. The bars are not drawn when stderr is not a
//! terminal; the lines always are.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use super::results::{Outcome, Row};
use super::scenario::Progress;

/// The two bars and the task that moves the inner one.
pub struct Bars {
    multi: MultiProgress,
    rows: ProgressBar,
    inner: ProgressBar,
    ticker: JoinHandle<()>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Bars {
    /// Bars for `rows` rows; the inner bar follows `progress`.
    pub fn new(rows: u64, progress: Arc<Progress>) -> Bars {
        let multi = MultiProgress::new();
        if cfg!(test) {
            // `cargo test` in a terminal: keep its output readable.
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        let rows = multi.add(ProgressBar::new(rows).with_style(style(
            "{elapsed_precise} [{bar:30}] {pos}/{len} rows  {msg}",
        )));
        let inner = multi.add(
            ProgressBar::new(0).with_style(style("{spinner} [{bar:30}] {human_pos}/{human_len}")),
        );
        let follower = inner.clone();
        let ticker = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            loop {
                ticks.tick().await;
                let (done, total) = (progress.done(), progress.total());
                if follower.length() != Some(total) || done < follower.position() {
                    // A new row began.
                    follower.reset();
                    follower.set_length(total);
                }
                follower.set_position(done);
            }
        });
        Bars {
            multi,
            rows,
            inner,
            ticker,
        }
    }

    /// Shows what runs now.
    pub fn message(&self, message: String) {
        self.rows.set_message(message);
    }

    /// A row finished: its `summary` goes above the bars.
    pub fn row_done(&self, summary: &str) {
        self.multi.suspend(|| eprintln!("{summary}"));
        self.rows.inc(1);
    }

    /// Removes the bars.
    pub fn finish(&self) {
        self.ticker.abort();
        self.inner.finish_and_clear();
        self.rows.finish_and_clear();
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// One line about a finished row.
pub fn summary(row: &Row) -> String {
    let mut line = format!("{} · {}: ", row.scenario.name(), row.system);
    let m = match &row.outcome {
        Outcome::Failed { error } => {
            line.push_str("FAILED: ");
            line.push_str(error);
            return line;
        }
        Outcome::Measured(m) => m,
    };
    let _ = write!(
        line,
        "{} in {:.2} s = {:.0}/s",
        m.count, m.seconds, m.per_second
    );
    if let Some(l) = &m.latency {
        let _ = write!(
            line,
            "; latency µs p50 {:.0} p99 {:.0} p99.9 {:.0} max {:.0}",
            l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    if let Some(idle) = &m.idle {
        let _ = write!(
            line,
            "; {:.1} writes/min, {:.0} B/min ({:.0} up, {:.0} down)",
            idle.client_writes_per_min,
            idle.bytes_per_min,
            idle.bytes_up_per_min,
            idle.bytes_down_per_min
        );
    }
    if let Some(memory) = &m.memory {
        let _ = write!(
            line,
            "; per connection: {:.0} B RSS",
            memory.rss_bytes_per_connection
        );
        if let Some(heap) = memory.heap_bytes_per_connection {
            let _ = write!(line, ", {heap:.0} B heap");
        }
    }
    let _ = write!(line, "; CPU {:.2} s client", m.client_cpu_secs);
    if let Some(server) = m.server_cpu_secs {
        let _ = write!(line, ", {server:.2} s server");
    }
    line
}
