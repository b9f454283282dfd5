//! `xbus reply METHOD JSON` (or `--command CMD`): serves a method from the
//! command line, as `nats reply` does: every call gets the fixed answer,
//! or what a shell command prints for it. Mocks a service from a shell.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use serde::Serialize;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use xbus::{Context, RawRequest, RpcError};

use super::connect::ConnectArgs;
use super::json::{self, parse_secs};
use super::shell;
use super::stop::Stop;

/// The error code of a request that does not decode as JSON data (e.g.
/// MessagePack binary), before any answer is made.
const UNDECODABLE: &str = "undecodable_request";

/// Options of `xbus reply`.
#[derive(Debug, clap::Args)]
pub struct ReplyArgs {
    /// The method to serve, e.g. `inventory.check`. The accounts of this
    /// account's domain may call it (the library's default allow-list);
    /// others are refused (`forbidden`).
    pub method: String,
    /// The answer to every call, as JSON; `-` reads it from stdin.
    #[arg(required_unless_present = "command", conflicts_with = "command")]
    pub json: Option<String>,
    /// Answer each call with what `sh -c CMD` prints (JSON), the request's
    /// JSON on its stdin and `XBUS_METHOD`, `XBUS_CALLER`,
    /// `XBUS_ENCODING`, `XBUS_VERSION` and `XBUS_HEADERS` in its
    /// environment. A non-zero exit, output that is not JSON or a run past
    /// the caller's deadline answers the error `command_failed`.
    #[arg(long, short = 'c', value_name = "CMD")]
    pub command: Option<String>,
    /// The schema version served: calls of another version are refused
    /// (`bad-request`). Calls come in either encoding and are answered in
    /// theirs.
    #[arg(long = "version", value_name = "N", default_value_t = 1)]
    pub schema_version: u32,
    /// Exit after answering N calls.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after SECS seconds: exit 0, or 1 if `--count` calls did not
    /// all come by then.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Where to connect and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// What each call is answered with.
enum Answer {
    /// The same JSON every time.
    Fixed(Value),
    /// What `sh -c CMD` prints.
    Command(String),
}

/// One printed line: a call served, and its answer or error.
#[derive(Serialize)]
struct Line<'a> {
    method: &'a str,
    caller: String,
    encoding: &'a str,
    version: u32,
    headers: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorLine<'a>>,
}

/// The error a call was answered with, as printed.
#[derive(Serialize)]
struct ErrorLine<'a> {
    code: &'a str,
    message: &'a str,
}

/// Serves the method until `--count` calls, `--timeout`, SIGINT or SIGTERM.
pub async fn run(args: ReplyArgs) -> anyhow::Result<()> {
    // Listen for the signals first, so that none is missed.
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    // A bad method or answer is refused before connecting.
    xbus::validate_topic(&args.method)
        .map_err(|e| anyhow!("invalid method name {:?}: {e}", args.method))?;
    let answer = Arc::new(match (&args.json, args.command) {
        (_, Some(command)) => Answer::Command(command),
        (Some(text), None) => Answer::Fixed(json::parse_arg(text)?),
        (None, None) => unreachable!("clap requires JSON or --command"),
    });
    let bus = args.connect.connect(|config| config).await?;
    let (served_tx, mut served) = mpsc::unbounded_channel();
    let handler = move |request: RawRequest, ctx: Context| {
        let (answer, served_tx) = (answer.clone(), served_tx.clone());
        async move {
            let (line, outcome) = serve(&answer, &request, &ctx).await;
            // The main loop is gone only while the bus closes.
            let _ = served_tx.send(line);
            outcome
        }
    };
    let serving = bus
        .serve_raw(args.method.clone(), handler)
        .version(args.schema_version)
        .await;
    if let Err(error) = serving {
        let _ = bus.close().await;
        return Err(anyhow!(error).context(format!("cannot serve {}", args.method)));
    }
    eprintln!("serving {} as {}", args.method, bus.jid());
    let stop = Stop::new(args.count, args.timeout, "calls");
    let mut printed = 0;
    let outcome = loop {
        if stop.done(printed) {
            break Ok(());
        }
        let line = tokio::select! {
            line = served.recv() => line,
            outcome = stop.timed_out(printed) => break outcome,
            _ = interrupt.recv() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
        };
        let Some(line) = line else {
            break Err(anyhow!(
                "the bus stopped serving: the connection was closed"
            ));
        };
        match super::print_line(&line) {
            Ok(true) => printed += 1,
            Ok(false) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    // Closing answers the calls still running before the stream ends.
    let _ = bus.close().await;
    outcome
}

/// Answers one call: its printed line and the serialized answer (in the
/// request's encoding) or the error the caller gets.
async fn serve(
    answer: &Answer,
    request: &RawRequest,
    ctx: &Context,
) -> (String, Result<Vec<u8>, RpcError>) {
    let decoded = json::decode(&request.data, request.encoding)
        .map_err(|e| RpcError::new(UNDECODABLE, super::flatten(&e)));
    let headers = json::headers_json(request.headers.iter());
    let response = match (&decoded, answer) {
        (Err(error), _) => Err(error.clone()),
        (Ok(_), Answer::Fixed(value)) => Ok(value.clone()),
        (Ok(input), Answer::Command(command)) => {
            let env = [
                ("XBUS_METHOD", request.method.clone()),
                ("XBUS_CALLER", ctx.from().to_string()),
                ("XBUS_ENCODING", request.encoding.as_str().to_owned()),
                ("XBUS_VERSION", request.version.to_string()),
                ("XBUS_HEADERS", headers.to_string()),
            ];
            shell::run(command, input, &env, ctx.deadline()).await
        }
    };
    let data = response
        .as_ref()
        .map_err(RpcError::clone)
        .and_then(|value| {
            json::encode(value, request.encoding)
                .map_err(|e| RpcError::new(shell::COMMAND_FAILED, super::flatten(&e)))
        });
    let line = Line {
        method: &request.method,
        caller: ctx.from().to_string(),
        encoding: request.encoding.as_str(),
        version: request.version,
        headers,
        request: decoded.as_ref().ok(),
        response: response.as_ref().ok(),
        error: data.as_ref().err().map(|e| ErrorLine {
            code: &e.code,
            message: &e.message,
        }),
    };
    let line = serde_json::to_string(&line).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    (line, data)
}
