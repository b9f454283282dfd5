//! `xbus pub TOPIC JSON`: publishes one event and prints its item id.

use super::connect::ConnectArgs;
use super::json::{self, Body, EncodingArg};
use anyhow::Context as _;

/// Options of `xbus pub`.
#[derive(Debug, clap::Args)]
pub struct PubArgs {
    /// The topic (pubsub node), e.g. `orders.created`.
    pub topic: String,
    /// The event as JSON; `-` reads it from stdin.
    pub json: String,
    /// How the event is serialized on the wire.
    #[arg(long, value_enum, default_value_t)]
    pub encoding: EncodingArg,
    /// The event's schema version.
    #[arg(long = "version", value_name = "N", default_value_t = 1)]
    pub schema_version: u32,
    /// An XEP-0131 header to send with the event (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = json::parse_header)]
    pub headers: Vec<(String, String)>,
    /// Where to connect and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Publishes the event, waits for the server's confirmation and prints the
/// item id.
pub async fn run(args: PubArgs) -> anyhow::Result<()> {
    let body = Body::from_args(
        &args.json,
        args.encoding,
        args.schema_version,
        &args.headers,
    )?;
    let payload = body.into_payload(args.topic.clone());
    let bus = args.connect.connect(|config| config).await?;
    let published = bus.publish_raw(payload).await;
    let closed = bus.close().await;
    let receipt = published.with_context(|| format!("publish to {:?}", args.topic))?;
    closed.context("close the connection")?;
    super::print_line(&receipt.item_id)?;
    Ok(())
}
