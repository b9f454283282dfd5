//! Limits: oversize stanzas, clients that never read, hostile input.

mod common;

use std::time::Duration;

use common::raw::Raw;
use common::{client, init_tracing, send, within};
use tokio_xmpp::parsers::message::Message;
use xbus_server::Server;

#[tokio::test]
async fn oversize_stanza_gets_policy_violation_and_close() {
    init_tracing();
    let server = within(
        "start",
        Server::builder().max_stanza_size(64 * 1024).start(),
    )
    .await
    .unwrap();
    let mut raw = Raw::login(server.addr(), "big", "pw", "r").await;
    let body = "x".repeat(200 * 1024);
    raw.send(&format!(
        "<message to='big@localhost/r'><body>{body}</body></message>"
    ))
    .await;
    let answer = raw.read_to_close().await;
    assert!(
        answer.contains("policy-violation"),
        "{}",
        &answer[..answer.len().min(500)]
    );
    // Just under the limit passes.
    let mut raw = Raw::login(server.addr(), "big", "pw", "r2").await;
    let body = "y".repeat(60 * 1024);
    raw.send(&format!(
        "<message to='big@localhost/r2'><body>{body}</body></message>"
    ))
    .await;
    let echoed = raw
        .read_until("</message>")
        .await
        .expect("own message back");
    assert!(echoed.contains(&body));
}

#[tokio::test]
async fn client_that_never_reads_is_disconnected() {
    init_tracing();
    let server = within("start", Server::builder().outbound_queue(16).start())
        .await
        .unwrap();
    // Logged in, then never reads again.
    let mut slow = Raw::login(server.addr(), "slow", "pw", "r").await;
    let mut sender = client(&server, "fast@localhost/f", "pw").await;
    assert_eq!(server.session_count(), 2);
    let body = "z".repeat(60 * 1024);
    // 400 x 60 KiB = 24 MiB: far more than socket buffers plus 16 queued.
    for _ in 0..400 {
        let mut message = Message::chat(Some("slow@localhost/r".parse().unwrap()));
        message.bodies.insert(Default::default(), body.clone());
        send(&mut sender, message).await;
        if server.session_count() == 1 {
            break;
        }
    }
    within("slow session removed", async {
        while server.session_count() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The socket is closed by the server (after what it had written).
    let rest = slow.read_to_close().await;
    assert!(!rest.is_empty());
}

#[tokio::test]
async fn garbage_input_closes_only_that_connection() {
    init_tracing();
    let server = common::server().await;
    let mut ok = Raw::login(server.addr(), "fine", "pw", "r").await;
    for junk in [
        "<<<<>>>>",
        "<message><body>unclosed</message>",
        "\u{0}\u{1}\u{2}",
        "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>",
    ] {
        let mut raw = Raw::login(server.addr(), "junk", "pw", "r").await;
        raw.send(junk).await;
        let _ = raw.read_to_close().await;
    }
    let mut raw = Raw::connect(server.addr(), "localhost").await;
    raw.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!notbase64</auth>",
    )
    .await;
    let _ = raw.read_until("</stream:features>").await;
    // The server still works.
    ok.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut reply = String::new();
    while !reply.contains("result") {
        match ok.read_until(">").await {
            Some(part) => reply.push_str(&part),
            None => break,
        }
    }
    assert!(reply.contains("result"), "{reply}");
}
