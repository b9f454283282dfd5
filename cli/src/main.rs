//! `xbus`: the command-line companion of the xbus library.
//!
//! Publish, subscribe, call, watch the instances of a service, run the
//! embedded server, and run the benchmark.
//!
//! | command | what it does |
//! |---|---|
//! | `xbus server` | runs the embedded XMPP server until SIGINT/SIGTERM |
//! | `xbus pub TOPIC JSON` | publishes one event, prints its item id |
//! | `xbus sub TOPIC` | prints each event on a topic as one line of JSON |
//! | `xbus consume TOPIC --group NAME` | takes a share of a consumer group's events, prints each job as JSON and acks it (`--nak` to nak) |
//! | `xbus req TARGET METHOD JSON` | calls a service, prints its answer as JSON |
//! | `xbus reply METHOD JSON` | serves a method: answers every call with the JSON (`--command CMD`: with what `sh -c CMD` prints for the request), prints one JSON line per call |
//! | `xbus services SERVICE` | the live table of a service's instances |
//! | `xbus topic create TOPIC --publisher JID [--publishers-only] [--subscriber JID]` | creates a topic as this account and lets those accounts publish (only them, with `--publishers-only`) and subscribe (only them, with `--subscriber`), for servers where services may not create topics |
//! | `xbus bench ARGS` | runs `xbus-bench ARGS`, the benchmark (its own crate, `bench/`): xbus beside raw tokio-xmpp, NATS and HTTP |
//!
//! The bus commands take `--jid`, `--password` (or `--password-file`),
//! `--server`, `--pubsub` and `--tls`, or the variables `XBUS_JID`,
//! `XBUS_PASSWORD` (or `XBUS_PASSWORD_FILE`), `XBUS_SERVER`, `XBUS_PUBSUB`
//! and `XBUS_TLS` (`required`, `plaintext` or a CA file), as
//! `BusConfig::from_env` reads them. On failure a command prints one line
//! starting with `xbus: ` on stderr and exits with 1 (2 for a usage error).
//! Logs go to stderr, filtered by `RUST_LOG` (default `warn`).
//!
//! ## Example session
//!
//! ```text
//! $ xbus server --bind 127.0.0.1:5222 &
//! listening on 127.0.0.1:5222 (domain localhost, pubsub pubsub.localhost, open accounts, plaintext)
//! $ export XBUS_SERVER=127.0.0.1:5222 XBUS_TLS=plaintext XBUS_PASSWORD=s3cret
//! $ XBUS_JID=shop@localhost xbus sub orders.created --count 1 &
//! subscribed to orders.created
//! $ XBUS_JID=orders@localhost xbus pub orders.created '{"id":7,"total_cents":1299}'
//! 2c2982a7e35fe0898f97d32d3ca5ac01
//! {"topic":"orders.created","item_id":"2c2982a7e35fe0898f97d32d3ca5ac01","publisher":"orders@localhost","encoding":"msgpack","version":1,"headers":{},"event":{"id":7,"total_cents":1299}}
//! $ XBUS_JID=shop@localhost xbus services inventory@localhost --once
//! INSTANCE                   STATUS
//! inventory@localhost/inv-1  ready
//! inventory@localhost/inv-2  draining
//! $ XBUS_JID=shop@localhost xbus req inventory@localhost inventory.check '{"sku":"A1"}'
//! {"available":3,"sku":"A1"}
//! $ XBUS_JID=shop@localhost xbus req inventory@localhost inventory.check '{"sku":"Z9"}'
//! xbus: inventory.check at inventory@localhost/inv-1 failed: unknown_sku: no SKU Z9
//! $ XBUS_JID=shop@localhost xbus pub orders.created '{oops'
//! xbus: invalid JSON: key must be a string at line 1 column 2
//! ```

mod cmd;
mod logs;

use std::process::ExitCode;

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
    /// Publishes one event (JSON) to a topic and prints its item id.
    Pub(cmd::publish::PubArgs),
    /// Prints each event on a topic as one line of JSON.
    Sub(cmd::subscribe::SubArgs),
    /// Takes a share of a consumer group's events: prints each job as one
    /// line of JSON and acks it.
    Consume(cmd::consume::ConsumeArgs),
    /// Calls a method of a service and prints the answer as JSON.
    Req(cmd::request::ReqArgs),
    /// Serves a method: answers every call with fixed JSON, or with what a
    /// shell command prints; one line of JSON per call.
    Reply(cmd::reply::ReplyArgs),
    /// Shows the online instances of a service, live.
    Services(cmd::services::ServicesArgs),
    /// Sets topics up: `xbus topic create TOPIC --publisher JID`.
    Topic(cmd::topic::TopicArgs),
    /// Runs the embedded XMPP server.
    Server(cmd::server::ServerArgs),
    /// Measures xbus beside raw tokio-xmpp, NATS and HTTP: runs
    /// `xbus-bench`, the benchmark, when it is installed.
    Bench(cmd::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logs::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("xbus: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let done = match cli.command {
            Command::Pub(args) => cmd::publish::run(args).await,
            Command::Sub(args) => cmd::subscribe::run(args).await,
            Command::Consume(args) => cmd::consume::run(args).await,
            Command::Req(args) => cmd::request::run(args).await,
            Command::Reply(args) => cmd::reply::run(args).await,
            Command::Services(args) => cmd::services::run(args).await,
            Command::Topic(args) => cmd::topic::run(args).await,
            Command::Server(args) => cmd::server::run(args).await,
            // Waits for the benchmark's process: nothing else runs here.
            Command::Bench(args) => return cmd::bench::run(args),
        };
        done.map(|()| ExitCode::SUCCESS)
    });
    // Tasks still running (a bus's connection task) must not hold the exit up.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xbus: {}", cmd::flatten(&error));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
