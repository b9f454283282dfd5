//! `xbus bench`: xbus beside raw tokio-xmpp, NATS and HTTP, in one run.

pub mod results;
pub mod servers;
pub mod system;

/// Options of `xbus bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Runs the benchmark.
pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
