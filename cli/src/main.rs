//! `xbus`: the command-line companion of the xbus library.
//!
//! Publish, subscribe, call, watch the instances of a service, run the
//! embedded server, and benchmark xbus against the alternatives.

mod bench;

use clap::{Parser, Subcommand};

/// The xbus command line.
#[derive(Debug, Parser)]
#[command(name = "xbus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measures xbus beside raw tokio-xmpp, NATS and HTTP.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xbus: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
