//! One bus in a process of its own, for process-fault tests: `serve` (an
//! instance of a service), `call` (a caller) or `subscribe` (a topic's
//! subscriber). Usage, settings and output
//! lines: `xbus_integration_tests::instance`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use xbus::{Bus, BusConfig, Context};
use xbus_integration_tests::instance::{Echo, Echoed, Job};

/// Prints one line and flushes, so the test sees it at once.
fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

const USAGE: &str = "usage: xbus_instance serve [--grace-ms N]\n       \
    xbus_instance call SERVICE [--count N] [--interval-ms N] [--sleep-ms N] [--timeout-ms N] [--wait]\n       \
    xbus_instance subscribe TOPIC\n       \
    xbus_instance consume GROUP [--sleep-ms N] [--timeout-ms ACK-WAIT]";

/// Options after the mode.
#[derive(Debug)]
struct Options {
    target: Option<String>,
    count: u64,
    interval: Duration,
    sleep_ms: u64,
    timeout: Duration,
    wait: bool,
    grace: Duration,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        target: None,
        count: 1,
        interval: Duration::ZERO,
        sleep_ms: 0,
        timeout: Duration::from_secs(5),
        wait: false,
        grace: Duration::from_millis(200),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--count" => options.count = number("--count")?,
            "--interval-ms" => options.interval = Duration::from_millis(number("--interval-ms")?),
            "--sleep-ms" => options.sleep_ms = number("--sleep-ms")?,
            "--timeout-ms" => options.timeout = Duration::from_millis(number("--timeout-ms")?),
            "--grace-ms" => options.grace = Duration::from_millis(number("--grace-ms")?),
            "--wait" => options.wait = true,
            other if !other.starts_with("--") && options.target.is_none() => {
                options.target = Some(other.to_owned())
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let options = match parse(&args[1..]) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("xbus_instance: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Signals are caught from the start: a SIGTERM during connect is not
    // a kill.
    let (Ok(term), Ok(int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("xbus_instance: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let config = match BusConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("xbus_instance: {e}");
            return ExitCode::from(2);
        }
    };
    let bus = match Bus::connect(config).await {
        Ok(bus) => bus,
        Err(e) => {
            say(format!("connect-error {e}"));
            return ExitCode::FAILURE;
        }
    };
    let ok = match mode.as_str() {
        "serve" => serve(&bus, options, term, int).await,
        "call" | "subscribe" | "consume" => match options.target.clone() {
            Some(target) if mode == "call" => call(&bus, &target, options, term, int).await,
            Some(group) if mode == "consume" => consume(&bus, &group, options, term, int).await,
            Some(topic) => subscribe(&bus, &topic, term, int).await,
            None => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bus.close().await {
        Ok(()) => say("closed"),
        Err(e) => say(format!("close-error {e}")),
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Serves [`Echo`] and a [`Job`] inbox until SIGTERM or SIGINT, then
/// drains: `draining` status, a grace period for calls routed before the
/// callers saw it; `main` then closes (which finishes running handlers).
async fn serve(
    bus: &Bus,
    options: Options,
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) -> bool {
    let resource = bus.jid().resource().to_string();
    let served = bus
        .serve(move |req: Echo, _ctx: Context| {
            let resource = resource.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(req.sleep_ms)).await;
                say(format!("call {}", req.seq));
                Ok(Echoed {
                    resource,
                    seq: req.seq,
                })
            }
        })
        .await;
    if let Err(e) = served {
        eprintln!("xbus_instance: serve: {e}");
        return false;
    }
    let mut jobs = match bus.inbox::<Job>().await {
        Ok(jobs) => jobs,
        Err(e) => {
            eprintln!("xbus_instance: inbox: {e}");
            return false;
        }
    };
    say(format!("ready {}", bus.jid()));
    loop {
        tokio::select! {
            job = jobs.next() => match job {
                Some(Ok(delivery)) => say(format!("job {}", delivery.event.seq)),
                Some(Err(bad)) => eprintln!("xbus_instance: bad job: {bad}"),
                None => return false,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    if let Err(e) = bus.set_status("draining").await {
        eprintln!("xbus_instance: set_status: {e}");
    }
    say("draining");
    // Jobs and calls still arrive while callers learn of the new status.
    let grace = tokio::time::sleep(options.grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            job = jobs.next() => match job {
                Some(Ok(delivery)) => say(format!("job {}", delivery.event.seq)),
                Some(Err(bad)) => eprintln!("xbus_instance: bad job: {bad}"),
                None => break,
            },
            _ = &mut grace => break,
        }
    }
    true
}

/// Makes `options.count` calls to `target`, one line each; with `--wait`,
/// then stays connected until killed (or SIGTERM/SIGINT: then it closes).
async fn call(
    bus: &Bus,
    target: &str,
    options: Options,
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) -> bool {
    say(format!("ready {}", bus.jid()));
    let mut all_ok = true;
    for seq in 1..=options.count {
        if seq > 1 {
            tokio::time::sleep(options.interval).await;
        }
        let request = Echo {
            seq,
            sleep_ms: options.sleep_ms,
        };
        match bus.request(target, request).timeout(options.timeout).await {
            Ok(answer) => say(format!("ok {}", answer.resource)),
            Err(e) => {
                all_ok = false;
                say(format!("err {e}"));
            }
        }
    }
    if options.wait {
        say("waiting");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    all_ok
}

/// Subscribes to `topic` and prints `event ITEM-ID` for each event, until
/// SIGTERM or SIGINT.
async fn subscribe(
    bus: &Bus,
    topic: &str,
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) -> bool {
    let mut events = match bus.subscribe_raw(topic).await {
        Ok(events) => events,
        Err(e) => {
            eprintln!("xbus_instance: subscribe: {e}");
            return false;
        }
    };
    say(format!("ready {}", bus.jid()));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(delivery)) => say(format!("event {}", delivery.item_id.unwrap_or_default())),
                Some(Err(bad)) => eprintln!("xbus_instance: bad event: {bad}"),
                None => return false,
            },
            _ = term.recv() => return true,
            _ = int.recv() => return true,
        }
    }
}

/// Consumes [`Job`] events (topic `fault.job`) in `group`: prints `job SEQ
/// ATTEMPT` for each, sleeps `--sleep-ms`, acks, prints `acked SEQ`; until
/// SIGTERM or SIGINT. `--timeout-ms` is the ack wait.
async fn consume(
    bus: &Bus,
    group: &str,
    options: Options,
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) -> bool {
    let consume_options = xbus::ConsumeOptions::new()
        .ack_wait(options.timeout)
        .backoff([Duration::from_millis(100)]);
    let mut jobs = match bus.consume::<Job>(group, consume_options).await {
        Ok(jobs) => jobs,
        Err(e) => {
            eprintln!("xbus_instance: consume: {e}");
            return false;
        }
    };
    say(format!("ready {}", bus.jid()));
    loop {
        tokio::select! {
            job = jobs.next() => match job {
                Some(Ok(job)) => {
                    let seq = job.event.seq;
                    say(format!("job {seq} {}", job.attempt));
                    tokio::time::sleep(Duration::from_millis(options.sleep_ms)).await;
                    match job.ack() {
                        Ok(()) => say(format!("acked {seq}")),
                        Err(e) => say(format!("ack-error {seq} {e}")),
                    }
                }
                Some(Err(bad)) => eprintln!("xbus_instance: bad job: {bad}"),
                None => return false,
            },
            _ = term.recv() => return true,
            _ = int.recv() => return true,
        }
    }
}
