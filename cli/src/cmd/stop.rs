//! When the printing loops of `sub`, `consume` and `reply` stop: after
//! `--count` lines, or at `--timeout`.

use std::time::Duration;

use anyhow::anyhow;
use tokio::time::Instant;

/// The `--count` and `--timeout` of a printing loop.
pub struct Stop {
    count: Option<u64>,
    deadline: Option<Instant>,
    /// What is counted, plural: `events`, `jobs`, `calls`.
    what: &'static str,
}

impl Stop {
    /// Stops after `count` lines of `what`, or `timeout` from now.
    pub fn new(count: Option<u64>, timeout: Option<Duration>, what: &'static str) -> Stop {
        Stop {
            count,
            deadline: timeout.map(|timeout| Instant::now() + timeout),
            what,
        }
    }

    /// Whether `printed` lines are all that `--count` asked for.
    pub fn done(&self, printed: u64) -> bool {
        self.count.is_some_and(|n| printed >= n)
    }

    /// Resolves at the `--timeout` (never without one) to how the command
    /// ends: well, or with an error if the `--count` lines did not all come.
    pub async fn timed_out(&self, printed: u64) -> anyhow::Result<()> {
        match self.deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
        match self.count {
            Some(n) => Err(anyhow!(
                "timed out: {printed} of {n} {} within the timeout",
                self.what
            )),
            None => Ok(()),
        }
    }
}
