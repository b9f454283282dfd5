//! XEP-0198 stream management: acks, resumption, hibernation timeout.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raw::Raw;
use common::{body, chat, client, client_at, init_tracing, next_message, send, within};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_xmpp::Event;
use xbus_server::Server;

/// The value of attribute `name` in `text`.
fn attr(text: &str, name: &str) -> String {
    for quote in ['\'', '"'] {
        let needle = format!("{name}={quote}");
        if let Some(start) = text.find(&needle) {
            let rest = &text[start + needle.len()..];
            return rest[..rest.find(quote).unwrap()].to_owned();
        }
    }
    panic!("no {name} in {text}");
}

#[tokio::test]
async fn raw_resume_gets_stanzas_sent_while_away() {
    init_tracing();
    let server = common::server().await;
    let mut raw = Raw::login(server.addr(), "rita", "pw", "r").await;
    raw.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = raw.read_until(">").await.unwrap();
    assert!(enabled.contains("<enabled"), "{enabled}");
    let id = attr(&enabled, "id");
    // One stanza delivered and acknowledged before the drop.
    let mut bob = client(&server, "bob@localhost/b", "pw").await;
    send(&mut bob, chat("rita@localhost/r", "before")).await;
    raw.read_until("before").await.unwrap();
    raw.send("<a xmlns='urn:xmpp:sm:3' h='1'/>").await;
    raw.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let ack = raw.read_until("<a ").await.unwrap();
    let ack = format!("{ack}{}", raw.read_until(">").await.unwrap());
    drop(raw);
    // Still bound while hibernating; what is sent now waits.
    send(&mut bob, chat("rita@localhost/r", "while away")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.session_count(), 2, "{ack}");

    let mut again = Raw::connect(server.addr(), "localhost").await;
    assert!(again.auth_plain("rita", "pw").await);
    again.header("localhost").await;
    again.read_until("</stream:features>").await.unwrap();
    again
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='1'/>"
        ))
        .await;
    let resumed = again.read_until(">").await.unwrap();
    assert!(resumed.contains("<resumed"), "{resumed}");
    assert_eq!(attr(&resumed, "h"), "0");
    let got = again.read_until("while away").await.expect("queued stanza");
    assert!(!got.contains("before"), "acked stanza re-sent: {got}");
    // A wrong id fails.
    let mut other = Raw::connect(server.addr(), "localhost").await;
    assert!(other.auth_plain("rita", "pw").await);
    other.header("localhost").await;
    other.read_until("</stream:features>").await.unwrap();
    other
        .send("<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>")
        .await;
    let failed = other.read_until(">").await.unwrap();
    assert!(failed.contains("<failed"), "{failed}");
    // The stream stays usable: bind a new session instead.
    other
        .send(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>fresh</resource></bind></iq>",
        )
        .await;
    let bound = other.read_until("</iq>").await.unwrap();
    assert!(bound.contains("rita@localhost/fresh"), "{bound}");
}

#[tokio::test]
async fn unresumed_session_ends_after_the_timeout() {
    init_tracing();
    let server = within(
        "start",
        Server::builder()
            .resume_timeout(Duration::from_millis(500))
            .start(),
    )
    .await
    .unwrap();
    let mut raw = Raw::login(server.addr(), "tim", "pw", "r").await;
    raw.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    raw.read_until("<enabled").await.unwrap();
    raw.send("<presence/>").await;
    raw.read_until("<presence").await.unwrap();
    let mut other = client(&server, "tim@localhost/other", "pw").await;
    send(
        &mut other,
        tokio_xmpp::parsers::presence::Presence::available(),
    )
    .await;
    drop(raw);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.session_count(), 2, "hibernating");
    // Queued for the hibernating session; rerouted when it ends.
    let mut bob = client(&server, "bob@localhost/b", "pw").await;
    send(&mut bob, chat("tim@localhost/r", "stranded")).await;
    // After the timeout: gone, and unavailable broadcast to the other resource.
    let gone = common::next_matching("unavailable", &mut other, |s| match s {
        tokio_xmpp::Stanza::Presence(p)
            if p.type_ == tokio_xmpp::parsers::presence::Type::Unavailable =>
        {
            p.from
        }
        _ => None,
    })
    .await;
    assert_eq!(gone.to_string(), "tim@localhost/r");
    assert_eq!(server.session_count(), 2);
    let rerouted = next_message("rerouted to the bare JID", &mut other).await;
    assert_eq!(body(&rerouted), "stranded");
}

/// A TCP proxy whose connections can be cut, to make a client lose its
/// connection without closing its stream.
struct Proxy {
    addr: std::net::SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let registry = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(link);
            }
        });
        Proxy {
            addr,
            links,
            accept,
        }
    }

    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test]
async fn tokio_xmpp_client_resumes_after_losing_its_connection() {
    init_tracing();
    let server = common::server().await;
    let proxy = Proxy::start(server.addr()).await;
    let mut alice = client_at(&proxy.addr.to_string(), "alice@localhost/a", "pw");
    common::online(&mut alice).await;
    let mut bob = client(&server, "bob@localhost/b", "pw").await;
    send(&mut bob, chat("alice@localhost/a", "one")).await;
    assert_eq!(body(&next_message("first", &mut alice).await), "one");

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut bob, chat("alice@localhost/a", "two")).await;
    // tokio-xmpp reconnects by itself and resumes the session.
    let resumed = within("resumed", async {
        loop {
            match alice.next().await {
                Some(Event::Online { resumed, .. }) => return resumed,
                Some(Event::Stanza(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(resumed, "a new session instead of a resumed one");
    assert_eq!(body(&next_message("second", &mut alice).await), "two");
    assert_eq!(server.session_count(), 2);
}

#[tokio::test]
async fn after_a_restart_a_failed_resumption_binds_a_new_session() {
    init_tracing();
    let mut server = common::server().await;
    let mut alice = client(&server, "alice@localhost/a", "pw").await;
    within("restart", server.restart()).await.unwrap();
    let resumed = within("online again", async {
        loop {
            match alice.next().await {
                Some(Event::Online { resumed, .. }) => return resumed,
                Some(Event::Stanza(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(!resumed, "nothing to resume after a restart");
    assert_eq!(server.session_count(), 1);
}
