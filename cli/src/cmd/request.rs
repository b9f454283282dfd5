//! `xbus req TARGET METHOD JSON`: calls a service and prints its answer.

use std::time::Duration;

use super::connect::ConnectArgs;
use super::json::{self, Body, EncodingArg};

/// How long a call to a service (a bare JID) waits at most for the
/// presence of its instances.
const DISCOVERY: Duration = Duration::from_secs(2);

/// Options of `xbus req`.
#[derive(Debug, clap::Args)]
pub struct ReqArgs {
    /// A service (bare JID: the bus picks an online instance) or one
    /// instance (full JID).
    pub target: String,
    /// The method, e.g. `inventory.check`.
    pub method: String,
    /// The request as JSON; `-` reads it from stdin.
    pub json: String,
    /// How the request (and its answer) are serialized.
    #[arg(long, value_enum, default_value_t)]
    pub encoding: EncodingArg,
    /// The request's schema version.
    #[arg(long = "version", value_name = "N", default_value_t = 1)]
    pub schema_version: u32,
    /// An XEP-0131 header to send with the request (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = json::parse_header)]
    pub headers: Vec<(String, String)>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = json::parse_secs)]
    pub timeout: Duration,
    /// Where to connect and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Makes the call and prints the answer as one line of JSON.
pub async fn run(args: ReqArgs) -> anyhow::Result<()> {
    let body = Body::from_args(
        &args.json,
        args.encoding,
        args.schema_version,
        &args.headers,
    )?;
    let request = body.into_request(args.method.clone());
    // Each run is a bus's first call: give the service's presence time.
    let discovery = args.timeout.min(DISCOVERY);
    let bus = args
        .connect
        .connect(|config| config.discovery_timeout(discovery))
        .await?;
    let answer = bus
        .request_raw(&args.target, request, Some(args.timeout))
        .await;
    // The answer is in (or lost); a failed close changes nothing for it.
    let _ = bus.close().await;
    // A handler's error reads `METHOD at INSTANCE failed: CODE: MESSAGE`.
    let (_from, response) = answer?;
    let value = json::decode(&response.data, response.encoding)?;
    super::print_line(&value.to_string())?;
    Ok(())
}
