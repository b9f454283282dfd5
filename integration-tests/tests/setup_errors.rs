//! The set-up mistakes a new deployment makes give errors that name the
//! fix and the section of docs/DEPLOYMENT.md that explains it: a pubsub
//! service that is not there (all servers), and on Prosody 0.12 an account
//! that is not an admin of the pubsub component, which may neither create
//! nor publish to a topic.

mod common;

use std::process::Command;

use common::*;
use serde::{Deserialize, Serialize};
use xbus::{Bus, Event, PublishError, SubscribeError};
use xbus_integration_tests::{Account, XmppServer};

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "setup.orders")]
struct Order {
    id: u64,
}

/// A bus of `account` whose publishes and subscriptions go to `pubsub`.
async fn bus_to(server: &dyn XmppServer, account: &Account, pubsub: &str) -> Bus {
    let config = config(server, account)
        .pubsub_service(pubsub)
        .build()
        .expect("valid config");
    within("connect", Bus::connect(config))
        .await
        .unwrap_or_else(|e| panic!("{}connect: {e}", tag()))
}

#[tokio::test]
async fn a_missing_pubsub_service_is_named_with_the_fix() {
    matrix(async |kind| {
        let server = start(kind);
        let account = server.account().expect("register account");
        let bus = bus_to(&*server, &account, "nopubsub.localhost").await;
        let error = within("publish", bus.publish(&Order { id: 1 }))
            .await
            .expect_err("no pubsub service there");
        let text = error.to_string();
        eprintln!("{}publish: {text}", tag());
        assert!(
            matches!(error, PublishError::Rejected { .. }),
            "{}{error:?}",
            tag()
        );
        for needle in ["no pubsub service", "XBUS_PUBSUB", "docs/DEPLOYMENT.md"] {
            assert!(text.contains(needle), "{}{needle:?} in: {text}", tag());
        }
        let error = within("subscribe", bus.subscribe::<Order>())
            .await
            .expect_err("no pubsub service there");
        let text = error.to_string();
        eprintln!("{}subscribe: {text}", tag());
        assert!(
            matches!(error, SubscribeError::Rejected { .. }),
            "{}{error:?}",
            tag()
        );
        assert!(text.contains("no pubsub service"), "{}{text}", tag());
        bus.close().await.expect("close");
    })
    .await;
}

/// An account outside the harness's pool, which the config makes admins
/// of the pubsub component: a plain service account.
fn outsider(server: &xbus_integration_tests::Prosody, user: &str) -> Account {
    let password = format!("{user}-password");
    let status = Command::new("prosodyctl")
        .arg("--config")
        .arg(server.config_path())
        .args(["register", user, "localhost", &password])
        .status()
        .expect("run prosodyctl");
    assert!(status.success(), "prosodyctl register: {status}");
    Account {
        jid: format!("{user}@localhost"),
        password,
    }
}

#[tokio::test]
async fn a_prosody_account_that_is_not_a_pubsub_admin_is_told_so() {
    let server = prosody();
    let account = outsider(&server, "outsider");
    let bus = bus_to(&server, &account, "pubsub.localhost").await;
    let error = within("publish", bus.publish(&Order { id: 1 }))
        .await
        .expect_err("a non-admin may not create the topic");
    let text = error.to_string();
    eprintln!("[prosody] publish: {text}");
    for needle in [
        "forbidden",
        "`admins`",
        "Who may create topics",
        "docs/DEPLOYMENT.md",
    ] {
        assert!(text.contains(needle), "{needle:?} in: {text}");
    }
    bus.close().await.expect("close");
}

/// Publishes one order as `publisher` and checks that `subscriber` gets it.
async fn publish_reaches(publisher: &Bus, subscriber: &Bus) {
    let mut orders = within("subscribe", subscriber.subscribe::<Order>())
        .await
        .expect("a plain account subscribes to the topic");
    within("publish", publisher.publish(&Order { id: 7 }))
        .await
        .unwrap_or_else(|e| panic!("{}a named publisher publishes: {e}", tag()));
    let delivery = next("the order", &mut orders).await.expect("stream open");
    assert_eq!(delivery.event.id, 7);
}

#[tokio::test]
async fn a_topic_set_up_once_takes_its_publishers_events() {
    matrix(async |kind| {
        let server = start(kind);
        let (admin, publisher) = (bus(&*server).await, bus(&*server).await);
        let jid = publisher.jid().to_bare().to_string();
        within("create topic", admin.create_topic("setup.orders", &[&jid]))
            .await
            .unwrap_or_else(|e| panic!("{}create_topic: {e}", tag()));
        // Again: an existing topic is fine.
        within("create topic", admin.create_topic("setup.orders", &[&jid]))
            .await
            .unwrap_or_else(|e| panic!("{}create_topic again: {e}", tag()));
        let error = within(
            "create topic",
            admin.create_topic("setup.orders", &["not a jid"]),
        )
        .await
        .expect_err("not a JID");
        assert!(error.to_string().contains("bare JID"), "{}{error}", tag());
        publish_reaches(&publisher, &admin).await;
        close_all([&admin, &publisher], Vec::new()).await;
    })
    .await;
}

#[tokio::test]
async fn on_prosody_a_plain_account_publishes_to_a_topic_an_admin_set_up() {
    let server = prosody();
    let admin = bus(&server).await;
    let account = outsider(&server, "orders");
    let publisher = bus_to(&server, &account, "pubsub.localhost").await;
    within(
        "create topic",
        admin.create_topic("setup.orders", &[&account.jid]),
    )
    .await
    .expect("an admin sets the topic up");
    let reader = outsider(&server, "shop");
    let subscriber = bus_to(&server, &reader, "pubsub.localhost").await;
    publish_reaches(&publisher, &subscriber).await;
    close_all([&admin, &publisher, &subscriber], Vec::new()).await;
}

#[tokio::test]
async fn on_prosody_a_plain_accounts_consumer_group_runs_on_nodes_an_admin_set_up() {
    use futures::StreamExt;
    init_tracing();
    let server = prosody();
    let admin = server.account().expect("register account");
    let (orders, billing) = (outsider(&server, "orders"), outsider(&server, "billing"));
    let setup = |max_items: u32| {
        config(&server, &admin)
            .max_items(max_items)
            .build()
            .expect("valid config")
    };
    let topics = within("connect", Bus::connect(setup(1000)))
        .await
        .expect("connect");
    within(
        "create topics",
        topics.create_topic("setup.orders", &[&orders.jid, &billing.jid]),
    )
    .await
    .expect("the topic");
    within(
        "create dead letters",
        topics.create_topic("setup.orders.dead-letter", &[&billing.jid]),
    )
    .await
    .expect("the dead-letter topic");
    let states = within("connect", Bus::connect(setup(4)))
        .await
        .expect("connect");
    within(
        "create group state",
        states.create_topic("xbus.group.billing.setup.orders", &[&billing.jid]),
    )
    .await
    .expect("the group's state node");

    let worker = bus_to(&server, &billing, "pubsub.localhost").await;
    let mut jobs = within(
        "consume",
        worker.consume::<Order>("billing", xbus::ConsumeOptions::new()),
    )
    .await
    .expect("a plain account consumes");
    let publisher = bus_to(&server, &orders, "pubsub.localhost").await;
    for id in 1..=3 {
        within("publish", publisher.publish(&Order { id }))
            .await
            .expect("publish");
    }
    let mut handled = Vec::new();
    while handled.len() < 3 {
        let job = within("a job", jobs.next())
            .await
            .expect("consumer open")
            .expect("a job");
        handled.push(job.event.id);
        job.ack().expect("ack");
    }
    handled.sort_unstable();
    assert_eq!(handled, [1, 2, 3]);
    // The acks reach the leader (this bus) and its progress is saved: no
    // warning, and the counts say 3 acked.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = within("stats", worker.stats()).await.expect("stats");
        if stats.group_acked == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    close_all([&topics, &states, &worker, &publisher], Vec::new()).await;
}
