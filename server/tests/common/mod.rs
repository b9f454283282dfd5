//! Helpers shared by the server's tests: bounded awaits, raw tokio-xmpp
//! clients and xbus buses on an embedded server.
#![allow(dead_code)]

pub mod raw;

use std::future::IntoFuture;
use std::time::Duration;

use futures::StreamExt;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::jid::{FullJid, Jid};
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, Stanza};
use xbus_server::Server;

/// Upper bound for any single await in these tests.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test after `STEP` with `what` in the message.
pub async fn within<F: IntoFuture>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future.into_future()).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// A default embedded server (open accounts, plaintext on loopback).
pub async fn server() -> Server {
    within("start", Server::builder().start())
        .await
        .expect("server starts")
}

/// A tokio-xmpp client logging in as `jid` at `addr`, not yet awaited.
pub fn client_at(addr: &str, jid: &str, password: &str) -> Client {
    Client::new_plaintext(
        jid.parse::<Jid>().expect("jid"),
        password.to_owned(),
        DnsConfig::addr(addr),
        Timeouts::tight(),
    )
}

/// A tokio-xmpp client online as `jid` (bare: the server picks a resource).
pub async fn client(server: &Server, jid: &str, password: &str) -> Client {
    let mut client = client_at(&server.addr().to_string(), jid, password);
    online(&mut client).await;
    client
}

/// Waits for the client's `Online` event.
pub async fn online(client: &mut Client) -> FullJid {
    within("online", async {
        loop {
            match client.next().await {
                Some(Event::Online { bound_jid, .. }) => {
                    return bound_jid.try_into_full().expect("full JID");
                }
                Some(Event::Disconnected(error)) => panic!("disconnected before online: {error}"),
                Some(Event::Stanza(_)) => {}
                None => panic!("client ended before online"),
            }
        }
    })
    .await
}

/// The next stanza for which `pick` returns `Some`, skipping the rest.
pub async fn next_matching<T>(
    what: &str,
    client: &mut Client,
    mut pick: impl FnMut(Stanza) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            match client.next().await {
                Some(Event::Stanza(stanza)) => {
                    if let Some(found) = pick(stanza) {
                        return found;
                    }
                }
                Some(Event::Disconnected(error)) => panic!("{what}: disconnected: {error}"),
                Some(Event::Online { .. }) => {}
                None => panic!("{what}: client ended"),
            }
        }
    })
    .await
}

/// The next message.
pub async fn next_message(what: &str, client: &mut Client) -> Message {
    next_matching(what, client, |s| match s {
        Stanza::Message(m) => Some(m),
        _ => None,
    })
    .await
}

/// The next presence.
pub async fn next_presence(what: &str, client: &mut Client) -> Presence {
    next_matching(what, client, |s| match s {
        Stanza::Presence(p) => Some(p),
        _ => None,
    })
    .await
}

/// The next IQ with id `id`.
pub async fn iq_reply(what: &str, client: &mut Client, id: &str) -> Iq {
    next_matching(what, client, |s| match s {
        Stanza::Iq(iq) if iq_id(&iq) == id => Some(iq),
        _ => None,
    })
    .await
}

/// The id of an IQ.
pub fn iq_id(iq: &Iq) -> &str {
    match iq {
        Iq::Get { id, .. } | Iq::Set { id, .. } | Iq::Result { id, .. } | Iq::Error { id, .. } => {
            id
        }
    }
}

/// Sends a stanza, bounded.
pub async fn send(client: &mut Client, stanza: impl Into<Stanza>) {
    within("send", client.send_stanza(stanza.into()))
        .await
        .expect("send");
}

/// A chat message to `to` with `body`.
pub fn chat(to: &str, body: &str) -> Message {
    let mut message = Message::chat(Some(to.parse::<Jid>().expect("jid")));
    message.bodies.insert(Default::default(), body.to_owned());
    message
}

/// The body of a message.
pub fn body(message: &Message) -> &str {
    message
        .bodies
        .values()
        .next()
        .map(String::as_str)
        .unwrap_or("")
}

/// An IQ get with `payload` to `to`.
pub fn iq_get(to: Option<&str>, id: &str, payload: Element) -> Iq {
    Iq::Get {
        from: None,
        to: to.map(|t| t.parse().expect("jid")),
        id: id.to_owned(),
        payload,
    }
}

/// Installs a tracing subscriber once (RUST_LOG decides what is shown).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
