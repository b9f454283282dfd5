//! Stream negotiation: SASL, STARTTLS, binding, resource conflicts.

mod common;

use base64::Engine;
use common::raw::Raw;
use common::{client, init_tracing, next_message, send, within};
use xbus_server::{Server, ServerError};

#[tokio::test]
async fn open_mode_registers_on_first_plain_login() {
    init_tracing();
    let server = common::server().await;
    let first = client(&server, "alice@localhost", "secret").await;
    assert_eq!(
        first.bound_jid().expect("bound").to_bare().to_string(),
        "alice@localhost"
    );
    within("end", first.send_end()).await.ok();
    // The password chosen at registration is now required.
    let _again = client(&server, "alice@localhost", "secret").await;
    refused(&server, "alice@localhost", "other").await;
}

#[tokio::test]
async fn fixed_accounts_log_in_with_scram_and_refuse_wrong_passwords() {
    init_tracing();
    let server = within(
        "start",
        Server::builder()
            .account("alice", "wonderland")
            .account("bob", "builder")
            .start(),
    )
    .await
    .unwrap();
    // tokio-xmpp picks SCRAM-SHA-256, the strongest offered.
    let alice = client(&server, "alice@localhost", "wonderland").await;
    let features = alice.get_stream_features().expect("features");
    assert!(features.can_bind());
    let _bob = client(&server, "bob@localhost", "builder").await;
    refused(&server, "alice@localhost", "wrong").await;
    refused(&server, "mallory@localhost", "anything").await;
}

/// Logging in must fail with `not-authorized` (tokio-xmpp's client only
/// retries, so this speaks SASL PLAIN by hand).
async fn refused(server: &Server, jid: &str, password: &str) {
    let user = jid.split('@').next().unwrap();
    let mut raw = Raw::connect(server.addr(), "localhost").await;
    let features = raw.read_until("</stream:features>").await.unwrap();
    if !features.contains("PLAIN") {
        // Fixed accounts still offer PLAIN; open mode too.
        panic!("PLAIN not offered: {features}");
    }
    raw.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
    ))
    .await;
    let answer = raw.read_until("</failure>").await.expect("failure");
    assert!(answer.contains("not-authorized"), "{answer}");
}

#[tokio::test]
async fn same_resource_replaces_the_old_session() {
    init_tracing();
    let server = common::server().await;
    let mut old = Raw::login(server.addr(), "carol", "pw", "desk").await;
    let mut new = client(&server, "carol@localhost/desk", "pw").await;
    assert_eq!(new.bound_jid().unwrap().to_string(), "carol@localhost/desk");
    // The old stream gets a conflict stream error and is closed.
    let ended = old.read_to_close().await;
    assert!(ended.contains("<conflict"), "{ended}");
    // The new session owns the resource: a message to it arrives there.
    let mut sender = client(&server, "dave@localhost", "pw").await;
    send(
        &mut sender,
        common::chat("carol@localhost/desk", "to the new one"),
    )
    .await;
    let got = next_message("message on the new session", &mut new).await;
    assert_eq!(common::body(&got), "to the new one");
}

#[tokio::test]
async fn plaintext_is_refused_off_loopback() {
    let result = Server::builder()
        .bind("0.0.0.0:0")
        .plaintext()
        .start()
        .await;
    assert!(matches!(result, Err(ServerError::Config(_))), "{result:?}");
}

#[tokio::test]
async fn wrong_domain_is_refused() {
    init_tracing();
    let server = common::server().await;
    let mut raw = Raw::connect(server.addr(), "example.org").await;
    let answer = raw.read_to_close().await;
    assert!(answer.contains("host-unknown"), "{answer}");
}

#[tokio::test]
async fn stanza_before_authentication_is_refused() {
    init_tracing();
    let server = common::server().await;
    let mut raw = Raw::connect(server.addr(), "localhost").await;
    raw.read_until("</stream:features>").await.unwrap();
    raw.send("<message to='x@localhost'><body>hi</body></message>")
        .await;
    let answer = raw.read_to_close().await;
    assert!(answer.contains("not-authorized"), "{answer}");
}

#[tokio::test]
async fn shutdown_closes_connections() {
    init_tracing();
    let server = common::server().await;
    let mut raw = Raw::login(server.addr(), "frank", "pw", "r").await;
    let addr = server.addr();
    within("shutdown", server.shutdown()).await;
    raw.read_to_close().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn restart_keeps_accounts_and_port_and_drops_sessions() {
    init_tracing();
    let mut server = within("start", Server::builder().account("ann", "pw").start())
        .await
        .unwrap();
    server.register("ben", "pw2").unwrap();
    assert!(server.register("Not Valid", "x").is_err());
    let addr = server.addr();
    let mut raw = Raw::login(addr, "ben", "pw2", "r").await;
    assert_eq!(server.session_count(), 1);
    within("restart", server.restart()).await.unwrap();
    assert_eq!(server.addr(), addr);
    assert_eq!(server.session_count(), 0);
    raw.read_to_close().await;
    // Same port, same accounts.
    let _again = Raw::login(addr, "ben", "pw2", "r").await;
    let _ann = client(&server, "ann@localhost/a", "pw").await;
    assert_eq!(server.session_count(), 2);
}
