//! Glue between the harness (servers, accounts) and xbus, shared by the
//! integration tests.
#![allow(dead_code)]

use std::future::IntoFuture;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::xmlstream::Timeouts;
use xbus::{Bus, BusConfig};
use xbus_integration_tests::{Account, Prosody};

/// Upper bound for any single await in these tests.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test after `STEP` with `what` in the message.
pub async fn within<F: IntoFuture>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future.into_future()).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// The next item of a stream, bounded by `STEP`.
pub async fn next<S: Stream + Unpin>(what: &str, stream: &mut S) -> S::Item {
    within(what, stream.next())
        .await
        .unwrap_or_else(|| panic!("stream ended: {what}"))
}

/// Starts a Prosody for one test.
pub fn prosody() -> Prosody {
    Prosody::start().expect("start prosody")
}

/// A plaintext-on-loopback config for `account`.
pub fn config(server: &Prosody, account: &Account) -> xbus::BusConfigBuilder {
    BusConfig::builder(account.jid.clone(), account.password.clone())
        .server(server.addr().to_string())
        .allow_plaintext()
}

/// A fresh account and a bus connected as it.
pub async fn bus(server: &Prosody) -> Bus {
    let account = server.account().expect("register account");
    let config = config(server, &account).build().expect("valid config");
    within("connect", Bus::connect(config))
        .await
        .expect("connect")
}

/// A raw tokio-xmpp client (no xbus) logged in as `account`: for injecting
/// what a well-behaved bus would never send.
pub async fn raw_client(server: &Prosody, account: &Account) -> tokio_xmpp::Client {
    let mut client = tokio_xmpp::Client::new_plaintext(
        account.jid.parse::<tokio_xmpp::jid::Jid>().expect("jid"),
        account.password.clone(),
        DnsConfig::addr(&server.addr().to_string()),
        Timeouts::tight(),
    );
    within("raw client online", async {
        while let Some(event) = client.next().await {
            if event.is_online() {
                return;
            }
        }
        panic!("raw client stream ended before it was online");
    })
    .await;
    client
}

/// Installs a tracing subscriber once (RUST_LOG decides what is shown).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Sends an IQ from a raw client and waits for its answer, polling the
/// client's stream meanwhile (its answers arrive through it).
pub async fn raw_iq(
    client: &mut tokio_xmpp::Client,
    to: &str,
    request: tokio_xmpp::IqRequest,
) -> tokio_xmpp::IqResponse {
    let to = to.parse::<tokio_xmpp::jid::Jid>().expect("jid");
    let token = client.send_iq(Some(to), request).await;
    within("raw iq answer", async {
        tokio::select! {
            response = token => response.expect("iq answered"),
            _ = async { loop { let _ = client.next().await; } } => unreachable!(),
        }
    })
    .await
}

/// A Prosody and two buses on it (tracing initialised): the usual start.
pub async fn two_buses() -> (Prosody, Bus, Bus) {
    init_tracing();
    let server = prosody();
    let first = bus(&server).await;
    let second = bus(&server).await;
    (server, first, second)
}

/// A bus connected as `account` with the resource `resource`: one
/// instance of the service `account`.
pub async fn instance(server: &Prosody, account: &Account, resource: &str) -> Bus {
    let config = BusConfig::builder(
        format!("{}/{resource}", account.jid),
        account.password.clone(),
    )
    .server(server.addr().to_string())
    .allow_plaintext()
    .build()
    .expect("valid config");
    within("connect instance", Bus::connect(config))
        .await
        .expect("connect instance")
}

/// `count` instances of one fresh service account, named `i1`, `i2`, ...
pub async fn instances(server: &Prosody, count: usize) -> (Account, Vec<Bus>) {
    let account = server.account().expect("register account");
    let mut buses = Vec::new();
    for n in 1..=count {
        buses.push(instance(server, &account, &format!("i{n}")).await);
    }
    (account, buses)
}
