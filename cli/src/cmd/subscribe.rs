//! `xbus sub TOPIC`: prints each delivery on a topic as one line of JSON.

use std::time::Duration;

use anyhow::{anyhow, bail};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use xbus::{RawDelivery, RawPayload, RawSubscription, Replay, SubscribeOptions};

use super::connect::ConnectArgs;
use super::json::{self, parse_secs};
use super::stop::Stop;

/// Options of `xbus sub`.
#[derive(Debug, clap::Args)]
pub struct SubArgs {
    /// The topic (pubsub node), e.g. `orders.created`.
    pub topic: String,
    /// Exit after printing N events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Start with the last N events the topic stored, oldest first.
    #[arg(long, value_name = "N")]
    pub replay: Option<u32>,
    /// Stop after SECS seconds: exit 0, or 1 if `--count` events did not
    /// all arrive by then.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Where to connect and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// One printed line: the delivery with its event decoded to JSON (and,
/// for `xbus consume`, the job's attempt).
#[derive(Serialize)]
struct Line<'a> {
    topic: &'a str,
    item_id: Option<&'a str>,
    publisher: Option<&'a str>,
    encoding: &'a str,
    version: u32,
    headers: Value,
    event: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
}

/// Subscribes and prints deliveries until `--count`, `--timeout` or Ctrl-C.
pub async fn run(args: SubArgs) -> anyhow::Result<()> {
    let bus = args.connect.connect(|config| config).await?;
    let options = match args.replay {
        Some(n) => SubscribeOptions::new().replay(Replay::Last(n)),
        None => SubscribeOptions::new(),
    };
    let mut subscription = bus.subscribe_raw_with(&args.topic, options).await?;
    eprintln!("subscribed to {}", args.topic);
    let stop = Stop::new(args.count, args.timeout, "events");
    let outcome = receive(&mut subscription, &stop).await;
    drop(subscription);
    let _ = bus.close().await;
    outcome
}

/// Prints deliveries until `stop` says so, Ctrl-C or stdout is closed.
async fn receive(subscription: &mut RawSubscription, stop: &Stop) -> anyhow::Result<()> {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut printed = 0;
    loop {
        if stop.done(printed) {
            return Ok(());
        }
        let next = tokio::select! {
            next = subscription.next() => next,
            outcome = stop.timed_out(printed) => return outcome,
            _ = &mut interrupted => return Ok(()),
        };
        let delivery = match next {
            None => bail!("the subscription ended: the connection was closed"),
            Some(Err(malformed)) => {
                eprintln!("xbus: {}", super::flatten(&anyhow!(malformed)));
                continue;
            }
            Some(Ok(delivery)) => delivery,
        };
        match line(&delivery) {
            Ok(line) => {
                if !super::print_line(&line)? {
                    return Ok(());
                }
                printed += 1;
            }
            Err(error) => eprintln!(
                "xbus: item {} on {}: {}",
                delivery.item_id.as_deref().unwrap_or("(no id)"),
                delivery.payload.topic,
                super::flatten(&error)
            ),
        }
    }
}

/// The JSON line of a delivery; an error if its payload does not decode.
fn line(delivery: &RawDelivery) -> anyhow::Result<String> {
    event_line(
        &delivery.payload,
        delivery.item_id.as_deref(),
        delivery.publisher.as_deref(),
        delivery.server_headers.iter(),
        None,
    )
}

/// The JSON line of an event: `payload` decoded, with where it came from;
/// an error if the payload does not decode.
pub(super) fn event_line<'a>(
    payload: &'a RawPayload,
    item_id: Option<&'a str>,
    publisher: Option<&'a str>,
    server_headers: impl Iterator<Item = (&'a str, &'a str)>,
    attempt: Option<u32>,
) -> anyhow::Result<String> {
    let event = json::decode(&payload.data, payload.encoding)?;
    let headers = payload.headers.iter().chain(server_headers);
    let line = Line {
        topic: &payload.topic,
        item_id,
        publisher,
        encoding: payload.encoding.as_str(),
        version: payload.version,
        headers: json::headers_json(headers),
        event,
        attempt,
    };
    Ok(serde_json::to_string(&line)?)
}
