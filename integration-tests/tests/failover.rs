//! Several servers in one config: the bus takes the first that answers and
//! moves to another when its server goes away (the single-server side of
//! it; `cluster.rs` kills real nodes of an ejabberd cluster).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{init_tracing, matrix, next, start, within};
use serde::{Deserialize, Serialize};
use xbus::{Bus, BusConfig, ConnectError, ConnectionEvent, Event};
use xbus_integration_tests::CutProxy;

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(topic = "failover.ticks")]
struct Tick(u32);

/// An address nothing listens on.
fn dead_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn a_dead_server_in_the_list_is_skipped() {
    matrix(async |kind| {
        let server = start(kind);
        let live = server.addr().to_string();
        // The first server tried is random: a few buses meet both orders.
        for _ in 0..4 {
            let account = server.account().unwrap();
            let config = BusConfig::builder(account.jid, account.password)
                .servers([dead_address().to_string(), live.clone()])
                .allow_plaintext()
                .build()
                .unwrap();
            let bus = within("connect", Bus::connect(config))
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            assert_eq!(bus.server(), live);
            within("close", bus.close()).await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn no_server_answering_names_each_of_them() {
    init_tracing();
    let (a, b) = (dead_address().to_string(), dead_address().to_string());
    let config = BusConfig::builder("a@localhost", "pw")
        .server(format!("{a},{b}"))
        .allow_plaintext()
        .build()
        .unwrap();
    let started = Instant::now();
    let error = within("connect", Bus::connect(config)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let ConnectError::NoServer { failures } = &error else {
        panic!("expected NoServer, got {error}");
    };
    assert_eq!(failures.len(), 2, "{error}");
    let text = error.to_string();
    assert!(text.contains(&a) && text.contains(&b), "{text}");
}

#[tokio::test]
async fn a_bus_moves_to_the_next_server_when_its_own_goes_away() {
    matrix(async |kind| {
        let server = start(kind);
        // Two ways to one server: the bus cannot tell them from two nodes.
        let proxies = [
            CutProxy::start(server.addr()).unwrap(),
            CutProxy::start(server.addr()).unwrap(),
        ];
        let addresses = proxies.each_ref().map(|p| p.addr().to_string());
        let account = server.account().unwrap();
        let config = BusConfig::builder(account.jid, account.password)
            .servers(addresses.clone())
            .allow_plaintext()
            .build()
            .unwrap();
        let bus = within("connect", Bus::connect(config)).await.unwrap();
        let subscriber = common::bus(&*server).await;
        let mut ticks = within("subscribe", subscriber.subscribe::<Tick>())
            .await
            .unwrap();
        let mut status = bus.status();
        assert_eq!(
            next("status", &mut status).await,
            ConnectionEvent::Connected
        );
        let on = addresses.iter().position(|a| *a == bus.server()).unwrap();
        let other = 1 - on;
        // The bus's server goes away and stays away.
        proxies[on].set_refusing(true);
        proxies[on].cut();
        let moved = within("fail over", async {
            loop {
                if let ConnectionEvent::FailedOver { from, to } = next("status", &mut status).await
                {
                    return (from, to);
                }
            }
        })
        .await;
        assert_eq!(moved, (addresses[on].clone(), addresses[other].clone()));
        assert_eq!(bus.server(), addresses[other]);
        within("publish after failing over", bus.publish(&Tick(1)))
            .await
            .unwrap();
        assert_eq!(next("tick", &mut ticks).await.unwrap().event, Tick(1));
        within("close", bus.close()).await.unwrap();
        within("close", subscriber.close()).await.unwrap();
    })
    .await;
}
