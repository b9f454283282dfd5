//! A raw tokio-xmpp client (no xbus), for injecting what a well-behaved
//! bus would never send: malformed requests, payloads whose topic is not
//! their node. Plaintext, for the loopback test servers.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt as _;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::xmlstream::Timeouts;

use crate::Account;

/// How long [`raw_client`] waits to be online.
const ONLINE_WITHIN: Duration = Duration::from_secs(10);

/// A client logged in as `account` at `addr`, online; panics if it is
/// not within 10 s.
pub async fn raw_client(addr: SocketAddr, account: &Account) -> tokio_xmpp::Client {
    let mut client = tokio_xmpp::Client::new_plaintext(
        account.jid.parse::<tokio_xmpp::jid::Jid>().expect("jid"),
        account.password.clone(),
        DnsConfig::addr(&addr.to_string()),
        Timeouts::tight(),
    );
    let online = tokio::time::timeout(ONLINE_WITHIN, async {
        while let Some(event) = client.next().await {
            if event.is_online() {
                return;
            }
        }
        panic!("raw client stream ended before it was online");
    })
    .await;
    assert!(
        online.is_ok(),
        "timed out after {ONLINE_WITHIN:?}: raw client online"
    );
    client
}

/// Sends an IQ from `client` to `to` and waits up to `limit` for its
/// answer (`None` without one), polling the client's stream meanwhile
/// (the answer arrives through it).
pub async fn raw_iq_within(
    client: &mut tokio_xmpp::Client,
    to: &str,
    request: tokio_xmpp::IqRequest,
    limit: Duration,
) -> Option<tokio_xmpp::IqResponse> {
    let to = to.parse::<tokio_xmpp::jid::Jid>().expect("jid");
    let token = client.send_iq(Some(to), request).await;
    tokio::time::timeout(limit, async {
        tokio::select! {
            response = token => response.expect("iq answered"),
            _ = async { loop { let _ = client.next().await; } } => unreachable!(),
        }
    })
    .await
    .ok()
}
