//! `xbus-bench`: xbus beside raw tokio-xmpp, NATS and HTTP, in one run on
//! one machine, with the same events and calls for every system.
//!
//! ```text
//! cargo run --release -p xbus-bench -- --quick          # a smoke test, ~2 minutes
//! cargo run --release -p xbus-bench -- --out results    # the full run, ~20 minutes
//! ```
//!
//! [`run::run`] plans the rows (scenario × system), starts one group of
//! systems at a time ([`systems`]), runs each scenario ([`scenario`]) under
//! a deadline, and hands the report to [`report`]. What each scenario
//! measures and how to read the figures is in `docs/BENCHMARKS.md`.
//!
//! The benchmark is its own crate so that the `xbus` command stays small:
//! the comparison peers (NATS, HTTP), the plot and the test harness that
//! starts Prosody and ejabberd are built here only.

pub mod group;
pub mod http;
pub mod meta;
pub mod mock;
pub mod nats;
pub mod plot;
pub mod progress;
pub mod raw_xmpp;
pub mod relay;
pub mod report;
pub mod resources;
pub mod results;
pub mod run;
pub mod scenario;
pub mod servers;
pub mod stats;
pub mod system;
pub mod systems;
pub mod tally;
pub mod xmpp;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod scenario_tests;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The benchmark's command line.
#[derive(Debug, Parser)]
#[command(name = "xbus-bench", version, about)]
struct Cli {
    #[command(flatten)]
    args: run::BenchArgs,
    /// Runs the embedded server and nothing else: the benchmark starts
    /// itself so, to measure the server's CPU apart from the clients'.
    #[arg(long, hide = true)]
    serve_embedded: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("xbus-bench: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if cli.serve_embedded {
            servers::serve_embedded().await
        } else {
            run::run(cli.args).await
        }
    });
    // Clients still closing their streams must not hold the exit up.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xbus-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`).
fn init_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
