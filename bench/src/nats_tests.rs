//! Tests of the NATS system against a real `nats-server` (which must be
//! installed: a missing server fails with the install command).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;

use super::*;

const STEP: Duration = Duration::from_secs(10);

fn start() -> NatsSystem {
    match NatsSystem::start() {
        Ok(system) => system,
        Err(error) => panic!("{error:#}"),
    }
}

async fn bounded<T>(what: &str, future: impl Future<Output = anyhow::Result<T>>) -> T {
    match timeout(STEP, future).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what}: {error:#}"),
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

#[test]
fn server_starts_reports_its_version_and_stops() {
    let server = match NatsServer::start() {
        Ok(server) => server,
        Err(error) => panic!("{error:#}"),
    };
    assert!(server.version().starts_with('2'), "{}", server.version());
    assert!(server.pid() > 0);
    assert!(server.log().contains("Server is ready"), "{}", server.log());
    let addr = server.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(server);
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn missing_binary_error_names_the_install_command() {
    let error = find_binary_in([std::path::PathBuf::from("/nonexistent")]).unwrap_err();
    assert!(
        format!("{error:#}").contains(NATS_INSTALL_HINT),
        "{error:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_events_reach_two_subscribers_in_order() {
    let system = start();
    let mut first = bounded("subscriber", system.subscriber("bench.order")).await;
    let mut second = bounded("subscriber", system.subscriber("bench.order")).await;
    let publisher = bounded("publisher", system.publisher()).await;
    for seq in 0..1000 {
        bounded(
            "publish",
            publisher.publish("bench.order", &BenchEvent::new(seq)),
        )
        .await;
    }
    bounded("flush", publisher.flush()).await;
    for subscriber in [&mut first, &mut second] {
        for seq in 0..1000 {
            let event = bounded("next", subscriber.next()).await;
            assert_eq!(event.seq, seq);
            assert_eq!(event.body.len(), crate::system::BODY_LEN);
        }
    }
    assert_eq!(system.slow_consumers(), 0);
    assert_eq!(system.disconnects(), 0);
    assert_eq!(EventSystem::name(&system), "nats");
    assert_eq!(EventSystem::addr(&system), system.server().addr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_echoes_sequential_and_sixteen_concurrent() {
    let system = start();
    let _responder = bounded("responder", system.responder()).await;
    let caller: Arc<dyn Caller> = Arc::from(bounded("caller", system.caller()).await);
    for seq in 0..100 {
        let request = BenchEvent::new(seq);
        let answer = bounded("call", caller.call(&request)).await;
        assert_eq!(answer, request);
    }
    let tasks: Vec<_> = (0..16u64)
        .map(|worker| {
            let caller = Arc::clone(&caller);
            tokio::spawn(async move {
                for i in 0..100 {
                    let request = BenchEvent::new(worker * 1000 + i);
                    let answer = bounded("call", caller.call(&request)).await;
                    assert_eq!(answer, request);
                }
            })
        })
        .collect();
    for task in tasks {
        timeout(STEP * 3, task)
            .await
            .expect("16 concurrent callers finish")
            .expect("caller task");
    }
    assert_eq!(RpcSystem::name(&system), "nats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connects_through_the_given_address() {
    let system = start();
    let idle = bounded(
        "idle client",
        system.idle_client(EventSystem::addr(&system), "bench.idle"),
    )
    .await;
    drop(idle);
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = unused.local_addr().expect("addr");
    drop(unused);
    let result = timeout(STEP, system.idle_client(closed, "bench.idle")).await;
    assert!(matches!(result, Ok(Err(_))), "a closed port must fail");
}
