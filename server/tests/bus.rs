//! xbus itself on the embedded server: events to a service, RPC across two
//! buses, presence watch, STARTTLS with the generated certificate.

mod common;

use std::time::Duration;

use common::{init_tracing, within};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use xbus::{Bus, BusConfig, Context, Event, InstanceEvent, Request, RequestError};
use xbus_server::Server;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "stock.changed", encoding = "json")]
struct StockChanged {
    sku: String,
    delta: i64,
}

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "inventory.check", response = u32)]
struct CheckStock {
    sku: String,
}

async fn bus(server: &Server, jid: &str) -> Bus {
    let config = BusConfig::builder(jid, "pw")
        .server(server.addr().to_string())
        .allow_plaintext()
        .build()
        .expect("valid config");
    within("connect", Bus::connect(config))
        .await
        .expect("connect")
}

async fn next<S: futures::Stream + Unpin>(what: &str, stream: &mut S) -> S::Item {
    within(what, stream.next())
        .await
        .unwrap_or_else(|| panic!("stream ended: {what}"))
}

#[tokio::test]
async fn send_and_inbox_full_and_bare() {
    init_tracing();
    let server = common::server().await;
    let sender = bus(&server, "shop@localhost/s1").await;
    let receiver = bus(&server, "inventory@localhost/i1").await;
    let mut inbox = within("inbox", receiver.inbox::<StockChanged>())
        .await
        .unwrap();
    let event = StockChanged {
        sku: "A1".into(),
        delta: -1,
    };
    within("send bare", sender.send("inventory@localhost", &event))
        .await
        .unwrap();
    let got = next("bare delivery", &mut inbox).await.expect("decodes");
    assert_eq!(got.event, event);
    within(
        "send full",
        sender.send(&receiver.jid().to_string(), &event),
    )
    .await
    .unwrap();
    assert_eq!(
        next("full delivery", &mut inbox).await.unwrap().event,
        event
    );
    within("close", sender.close()).await.unwrap();
    within("close", receiver.close()).await.unwrap();
}

#[tokio::test]
async fn rpc_between_two_buses() {
    init_tracing();
    let server = common::server().await;
    let service = bus(&server, "inventory@localhost/i1").await;
    within(
        "serve",
        service.serve(|req: CheckStock, _ctx: Context| async move { Ok(req.sku.len() as u32) }),
    )
    .await
    .unwrap();
    let caller = bus(&server, "shop@localhost/s1").await;
    let answer = within(
        "request full",
        caller
            .request(&service.jid().to_string(), CheckStock { sku: "ABC".into() })
            .timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(answer, 3);
    let answer = within(
        "request bare",
        caller
            .request("inventory@localhost", CheckStock { sku: "ABCD".into() })
            .timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(answer, 4);
    // An instance that is not there: fails fast, not after the timeout.
    let started = tokio::time::Instant::now();
    let error = within(
        "request absent",
        caller
            .request("inventory@localhost/gone", CheckStock { sku: "x".into() })
            .timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "{error:?}");
    assert!(!matches!(error, RequestError::TimedOut { .. }), "{error:?}");
}

#[tokio::test]
async fn watch_sees_instances_come_and_go() {
    init_tracing();
    let server = common::server().await;
    let watcher = bus(&server, "shop@localhost/w").await;
    let mut watch = within("watch", watcher.watch("inventory@localhost"))
        .await
        .unwrap();
    let instance = bus(&server, "inventory@localhost/i1").await;
    match next("online", &mut watch).await {
        InstanceEvent::Online(i) => assert_eq!(i.jid, instance.jid()),
        other => panic!("expected Online, got {other:?}"),
    }
    let listed = within("instances", watcher.instances("inventory@localhost"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    within("close instance", instance.close()).await.unwrap();
    match next("offline", &mut watch).await {
        InstanceEvent::Offline(jid) => assert_eq!(jid.to_string(), "inventory@localhost/i1"),
        other => panic!("expected Offline, got {other:?}"),
    }
}

#[tokio::test]
async fn starttls_with_the_generated_certificate() {
    init_tracing();
    let server = within("start", Server::builder().tls_generated().start())
        .await
        .unwrap();
    let ca = server.ca_file().expect("CA file").to_path_buf();
    assert!(server.ca_pem().unwrap().contains("BEGIN CERTIFICATE"));
    let config = |jid: &str| {
        BusConfig::builder(jid, "pw")
            .server(server.addr().to_string())
            .ca_file(ca.clone())
            .build()
            .expect("valid config")
    };
    let a = within("connect over TLS", Bus::connect(config("a@localhost/x")))
        .await
        .unwrap();
    let b = within("connect over TLS", Bus::connect(config("b@localhost/y")))
        .await
        .unwrap();
    let mut inbox = within("inbox", b.inbox::<StockChanged>()).await.unwrap();
    let event = StockChanged {
        sku: "T".into(),
        delta: 1,
    };
    within("send", a.send(&b.jid().to_string(), &event))
        .await
        .unwrap();
    assert_eq!(next("over TLS", &mut inbox).await.unwrap().event, event);
    // Without the CA the certificate is refused.
    let untrusted = BusConfig::builder("c@localhost/z", "pw")
        .server(server.addr().to_string())
        .connect_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    assert!(within("untrusted", Bus::connect(untrusted)).await.is_err());
}

#[tokio::test]
async fn publish_and_subscribe_through_the_pubsub_service() {
    init_tracing();
    let server = common::server().await;
    let publisher = bus(&server, "orders@localhost/p").await;
    let subscriber = bus(&server, "billing@localhost/s").await;
    let mut deliveries = within("subscribe", subscriber.subscribe::<StockChanged>())
        .await
        .expect("subscribe");
    for delta in 1..=3 {
        let event = StockChanged {
            sku: "P".into(),
            delta,
        };
        within("publish", publisher.publish(&event))
            .await
            .expect("publish");
    }
    for delta in 1..=3 {
        let got = next("delivery", &mut deliveries).await.expect("decodes");
        assert_eq!(got.event.delta, delta);
    }
}

#[tokio::test]
async fn starttls_with_a_given_pem_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    init_tracing();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let server = within(
        "start",
        Server::builder()
            .tls_pem(leaf.pem(), key.serialize_pem())
            .start(),
    )
    .await
    .unwrap();
    assert!(server.ca_file().is_none());
    let dir = std::env::temp_dir().join(format!("xbus-server-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let config = BusConfig::builder("pem@localhost/x", "pw")
        .server(server.addr().to_string())
        .ca_file(ca_path.clone())
        .build()
        .unwrap();
    let bus = within("connect over TLS", Bus::connect(config))
        .await
        .unwrap();
    within("close", bus.close()).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // Garbage PEM is a start error, not a panic.
    let bad = Server::builder().tls_pem("nope", "nope").start().await;
    assert!(
        matches!(bad, Err(xbus_server::ServerError::Tls(_))),
        "{bad:?}"
    );
}
