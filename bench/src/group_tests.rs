//! The consumer-group scenario: on the mock (counts, a lost or duplicated
//! event) and with xbus on the embedded server in this process (a real
//! group of 3, each instance handling a share).

use std::sync::Arc;
use std::time::Duration;

use super::group::{self, Merged};
use super::mock::{Fault, Mock};
use super::results::Outcome;
use super::scenario::{Ctx, Progress, bounded};
use super::servers;
use super::system::{BenchEvent, EventSystem, GroupSystem, Subscriber};
use super::xmpp::XbusSystem;

/// Short waits: the mock delivers at once.
fn ctx() -> Ctx {
    Ctx {
        server_pids: Vec::new(),
        progress: Arc::new(Progress::default()),
        settle: Duration::from_millis(150),
        grace: Duration::from_millis(300),
    }
}

/// Every test is bounded, whatever goes wrong (a real group first elects
/// its leader).
const LIMIT: Duration = Duration::from_secs(60);

async fn on_mock(fault: Fault, events: u64) -> Outcome {
    let mock = Mock::start(fault).await.unwrap();
    let ctx = ctx();
    bounded(
        LIMIT,
        &ctx.progress,
        group::group(&mock, 3, events, 64, &ctx),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_handles_each_event_once() {
    let outcome = on_mock(Fault::None, 1000).await;
    let Outcome::Measured(m) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(m.count, 1000);
    assert!(m.seconds > 0.0 && m.per_second > 0.0, "{m:?}");
    assert!((m.per_second * m.seconds - 1000.0).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_loses_or_repeats_an_event_fails() {
    let Outcome::Failed { error } = on_mock(Fault::Drop(17), 100).await else {
        panic!("a lost event must fail the row")
    };
    assert!(
        error.contains("99 deliveries of 100 events: 1 missing (first: seq 17)"),
        "{error}"
    );
    let Outcome::Failed { error } = on_mock(Fault::Duplicate(5), 100).await else {
        panic!("a duplicate must fail the row")
    };
    assert!(
        error.contains("1 extra deliveries (first: seq 5)"),
        "{error}"
    );
}

/// xbus on the embedded server, started in this process.
async fn embedded() -> (xbus_server::Server, XbusSystem) {
    let server = xbus_server::Server::builder()
        .bind("127.0.0.1:0")
        .start()
        .await
        .expect("start the embedded server");
    let target = servers::embedded_at(server.addr());
    (server, XbusSystem::new(Arc::new(target)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_3_with_xbus_on_the_embedded_server() {
    let (_server, system) = embedded().await;
    let ctx = ctx();
    let outcome = bounded(
        LIMIT,
        &ctx.progress,
        group::group(&system, 3, 500, 64, &ctx),
    )
    .await;
    let Outcome::Measured(m) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(m.count, 500);
    assert_eq!((ctx.progress.done(), ctx.progress.total()), (500, 500));
}

/// The three buses of one account share the jobs: each handles some, and
/// together they handle every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_xbus_instance_takes_a_share() {
    let (_server, system) = embedded().await;
    let topic = "bench.test.group";
    let members = system.group(topic, 3).await.unwrap();
    let mut merged = Merged::spawn(members);
    let publisher = system.publisher().await.unwrap();
    let run = async {
        for seq in 0..300 {
            publisher
                .publish(topic, &BenchEvent::new(seq))
                .await
                .unwrap();
        }
        let mut seen = vec![0u32; 300];
        for _ in 0..300 {
            let event = merged.next().await.unwrap();
            seen[usize::try_from(event.seq).unwrap()] += 1;
        }
        seen
    };
    let seen = tokio::time::timeout(LIMIT, run)
        .await
        .expect("within the limit");
    assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    let shares = merged.shares().get();
    assert_eq!(shares.iter().sum::<u64>(), 300, "{shares:?}");
    assert!(shares.iter().all(|&n| n > 0), "{shares:?}");
}
