//! Connecting: credentials, TLS, and failures that must come back fast.

mod common;

use std::time::{Duration, Instant};

use common::{config, init_tracing, matrix, next, start, within};
use serde::{Deserialize, Serialize};
use xbus::{Bus, BusConfig, ConnectError, Event, Tls};

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
struct Ping(u32);

const FAST: Duration = Duration::from_secs(5);

#[tokio::test]
async fn wrong_password_fails_within_5_s() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let account = server.account().unwrap();
        let config = BusConfig::builder(account.jid.clone(), "not-the-password")
            .server(server.addr().to_string())
            .allow_plaintext()
            .build()
            .unwrap();
        let started = Instant::now();
        let error = within("connect", Bus::connect(config)).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(error, ConnectError::Auth { .. }), "{error}");
        assert!(error.to_string().contains(&account.jid), "{error}");
        assert!(took < FAST, "took {took:?}");
    })
    .await;
}

#[tokio::test]
async fn unreachable_server_fails_within_5_s() {
    init_tracing();
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = BusConfig::builder("a@localhost", "pw")
        .server(format!("127.0.0.1:{port}"))
        .allow_plaintext()
        .build()
        .unwrap();
    let started = Instant::now();
    let error = within("connect", Bus::connect(config)).await.unwrap_err();
    assert!(matches!(error, ConnectError::Unreachable { .. }), "{error}");
    assert!(started.elapsed() < FAST);
}

#[tokio::test]
async fn unknown_host_fails_within_5_s() {
    init_tracing();
    let config = BusConfig::builder("a@localhost", "pw")
        .server("no-such-host.invalid:5222")
        .allow_plaintext()
        .build()
        .unwrap();
    let started = Instant::now();
    let error = within("connect", Bus::connect(config)).await.unwrap_err();
    assert!(matches!(error, ConnectError::UnknownHost { .. }), "{error}");
    assert!(started.elapsed() < FAST);
}

#[tokio::test]
async fn silent_server_times_out_within_the_connect_timeout() {
    init_tracing();
    // Accepts TCP but never speaks XMPP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = BusConfig::builder("a@localhost", "pw")
        .server(addr.to_string())
        .allow_plaintext()
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = within("connect", Bus::connect(config)).await.unwrap_err();
    assert!(matches!(error, ConnectError::TimedOut { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn starttls_with_a_custom_ca_works_end_to_end() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (a, b) = (server.account().unwrap(), server.account().unwrap());
        let tls = |account: &xbus_integration_tests::Account| {
            BusConfig::builder(account.jid.clone(), account.password.clone())
                .server(server.addr().to_string())
                .ca_file(server.ca_file())
                .build()
                .unwrap()
        };
        let publisher = within("connect tls", Bus::connect(tls(&a))).await.unwrap();
        let subscriber = within("connect tls", Bus::connect(tls(&b))).await.unwrap();
        let mut pings = within("subscribe", subscriber.subscribe::<Ping>())
            .await
            .unwrap();
        within("publish", publisher.publish(&Ping(1)))
            .await
            .unwrap();
        assert_eq!(next("ping", &mut pings).await.unwrap().event, Ping(1));
    })
    .await;
}

#[tokio::test]
async fn starttls_rejects_a_certificate_it_cannot_verify() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let account = server.account().unwrap();
        // Default TLS: system roots, which do not know the test CA.
        let config = config(&server, &account)
            .tls(Tls::Required)
            .build()
            .unwrap();
        let started = Instant::now();
        let error = within("connect", Bus::connect(config)).await.unwrap_err();
        assert!(matches!(error, ConnectError::Tls { .. }), "{error}");
        // The error says how to trust the server's CA.
        let text = error.to_string();
        for needle in ["UnknownIssuer", "XBUS_TLS", "docs/DEPLOYMENT.md"] {
            assert!(text.contains(needle), "{needle:?} in: {text}");
        }
        assert!(started.elapsed() < FAST);
    })
    .await;
}

#[tokio::test]
async fn a_plain_self_signed_certificate_is_refused_with_how_to_make_a_ca() {
    // What a new user makes first: one self-signed certificate, which
    // `openssl req -x509` marks as a CA.
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let openssl = xbus_integration_tests::require_binary(
        "openssl",
        xbus_integration_tests::OPENSSL_INSTALL_HINT,
    );
    let status = std::process::Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,DNS:pubsub.localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req -x509: {status}");
    let server = xbus_server::Server::builder()
        .tls_pem(
            std::fs::read(&cert).expect("certificate"),
            std::fs::read(&key).expect("key"),
        )
        .start()
        .await
        .expect("start the embedded server");
    let config = BusConfig::builder("user@localhost", "pw")
        .server(server.addr().to_string())
        .ca_file(&cert)
        .build()
        .unwrap();
    let error = within("connect", Bus::connect(config)).await.unwrap_err();
    let text = error.to_string();
    eprintln!("[embedded] {text}");
    assert!(matches!(error, ConnectError::Tls { .. }), "{error:?}");
    for needle in [
        "CaUsedAsEndEntity",
        "make a CA and a server certificate signed by it",
        "docs/DEPLOYMENT.md",
    ] {
        assert!(text.contains(needle), "{needle:?} in: {text}");
    }
}

#[tokio::test]
async fn from_env_connects() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let account = server.account().unwrap();
        let vars = [
            ("XBUS_JID", account.jid.clone()),
            ("XBUS_PASSWORD", account.password.clone()),
            ("XBUS_SERVER", server.addr().to_string()),
            ("XBUS_TLS", server.ca_file().display().to_string()),
        ];
        let config = BusConfig::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        let bus = within("connect", Bus::connect(config)).await.unwrap();
        assert_eq!(bus.jid().to_bare().to_string(), account.jid);
        within("close", bus.close()).await.unwrap();
    })
    .await;
}
