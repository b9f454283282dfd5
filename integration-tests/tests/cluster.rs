//! Node loss on an ejabberd cluster: one node of two is killed with
//! `SIGKILL` (the real Erlang VM) while clients use it, and clients move
//! to the survivor.
//!
//! These tests run on an [`EjabberdCluster`] whatever `XBUS_TEST_SERVERS`
//! says: a node loss needs a cluster. Each prints its figures with
//! `--nocapture` (`cluster N: ...` lines).

#[path = "common/calls.rs"]
mod calls;
mod common;
#[path = "common/publish_run.rs"]
mod publish_run;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use calls::{call_continuously, spawn_calls};
use common::*;
use futures::StreamExt;
use publish_run::{EVENTS, Ended, Run, end_run, run_to_a_quarter, subscribe_all};
use xbus::{Bus, BusConfig, ConnectionEvent, InstanceEvent, Liveness, Watch};
use xbus_integration_tests::EjabberdCluster;

/// The detection window of the dead-instance issue.
const WINDOW: Duration = Duration::from_secs(2);

fn start_cluster() -> EjabberdCluster {
    init_tracing();
    EjabberdCluster::start().unwrap_or_else(|e| panic!("start the ejabberd cluster: {e}"))
}

/// A plaintext-on-loopback config for `account` on `servers`
/// (comma-separated).
fn on(servers: &str, account: &Account) -> xbus::BusConfigBuilder {
    BusConfig::builder(account.jid.clone(), account.password.clone())
        .server(servers)
        .allow_plaintext()
}

async fn connect(config: xbus::BusConfigBuilder) -> Bus {
    within("connect", Bus::connect(config.build().expect("config")))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// Which node of `cluster` `bus` is on.
fn node_of(cluster: &EjabberdCluster, bus: &Bus) -> usize {
    (0..cluster.len())
        .find(|&n| cluster.node_addr(n).to_string() == bus.server())
        .unwrap_or_else(|| panic!("{} is no node of the cluster", bus.server()))
}

/// The status events of `bus`, each with when it came (since `zero`).
fn record_status(
    bus: &Bus,
    zero: Instant,
) -> Arc<std::sync::Mutex<Vec<(Duration, ConnectionEvent)>>> {
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let mut status = bus.status();
    tokio::spawn(async move {
        while let Some(event) = status.next().await {
            sink.lock().unwrap().push((zero.elapsed(), event));
        }
    });
    events
}

/// Cluster test 1: the publisher's node is killed during a 10,000-event
/// run and restarted later. The publisher moves to the other node; every
/// publish that returned `Ok` reaches the subscriber on the other node
/// exactly once.
#[tokio::test]
async fn node_killed_mid_run_the_publisher_moves_and_nothing_confirmed_is_lost() {
    let mut cluster = start_cluster();
    let accounts = [cluster.account().unwrap(), cluster.account().unwrap()];
    let publisher = connect(
        on(&cluster.addresses(), &accounts[0])
            .max_items(EVENTS)
            .publish_timeout(Duration::from_secs(60)),
    )
    .await;
    let dead = node_of(&cluster, &publisher);
    let survivor = 1 - dead;
    let subscriber =
        connect(on(&cluster.node_addr(survivor).to_string(), &accounts[1]).max_items(EVENTS)).await;
    let got = subscribe_all(&subscriber).await;
    let Run {
        publishing,
        confirmed,
        started,
    } = run_to_a_quarter(&publisher).await;
    let at_kill = confirmed.load(Ordering::SeqCst);
    let killed = Instant::now();
    let status = record_status(&publisher, killed);
    cluster.kill_node(dead);
    // The publisher moves on by itself; the node comes back later.
    within("the publisher moves to the survivor", async {
        while publisher.server() != cluster.node_addr(survivor).to_string() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart_node(dead).expect("restart the killed node");
        cluster
    });
    let cluster = tokio::time::timeout(Duration::from_secs(90), cluster)
        .await
        .expect("the node restarts within 90 s")
        .unwrap();
    let restarted = killed.elapsed();

    let Ended {
        published,
        published_at,
        complete,
        deadline,
        tally,
    } = end_run(publishing, &got).await;
    let events = status.lock().unwrap().clone();
    let first = |wanted: fn(&ConnectionEvent) -> bool| {
        events.iter().find(|(_, e)| wanted(e)).map(|(at, _)| *at)
    };
    let lost_connection = first(|e| matches!(e, ConnectionEvent::Reconnecting { .. }));
    let moved = first(|e| matches!(e, ConnectionEvent::FailedOver { .. }));
    let back = first(|e| matches!(e, ConnectionEvent::SessionReset | ConnectionEvent::Resumed));
    let stats = within("stats", publisher.stats()).await.unwrap();
    eprintln!(
        "cluster 1: {} of {EVENTS} publishes confirmed ({at_kill} before the kill), publish errors {:?}; \
         delivered {} distinct on the other node, lost {}, duplicated {}; \
         publisher after the kill: connection lost at {lost_connection:?}, failed over at {moved:?}, \
         session back at {back:?}; status {:?}; node restarted {restarted:?} after the kill; \
         run {:.1} s; publisher session resets {}",
        published.ok.len(),
        published.errors,
        tally.delivered,
        tally.lost.len(),
        tally.duplicated.len(),
        events
            .iter()
            .map(|(at, e)| format!("{e} at {at:?}"))
            .collect::<Vec<_>>(),
        published_at.duration_since(started).as_secs_f64(),
        stats.session_resets,
    );
    assert!(
        tally.lost.is_empty(),
        "confirmed and never delivered: {:?}",
        &tally.lost[..tally.lost.len().min(50)]
    );
    assert!(
        tally.duplicated.is_empty(),
        "delivered twice: {:?}",
        tally.duplicated
    );
    assert!(complete <= deadline);
    assert!(moved.is_some(), "no FailedOver event: {events:?}");
    assert_eq!(publisher.server(), cluster.node_addr(survivor).to_string());
    for bus in [&publisher, &subscriber] {
        within("close", bus.close()).await.unwrap();
    }
    drop(cluster);
}

/// Spawns an `xbus_instance serve` process of `account` named `resource`
/// on node `n` alone (it cannot fail over: it dies with its node, as far
/// as callers can tell).
async fn instance_on(
    cluster: &EjabberdCluster,
    n: usize,
    account: &Account,
    resource: &str,
) -> (InstanceProcess, String) {
    let mut settings = InstanceSettings::new(cluster, account, resource);
    settings.server = cluster.node_addr(n).to_string();
    let mut process = InstanceProcess::spawn(INSTANCE_BIN, &settings, &["serve"])
        .unwrap_or_else(|e| panic!("spawn {INSTANCE_BIN}: {e}"));
    let jid = process.ready(STEP).await;
    (process, jid)
}

/// Waits until `watch` has seen each of `jids` online.
async fn all_online(watch: &mut Watch, jids: &[&str]) {
    let mut online = BTreeSet::new();
    while !jids.iter().all(|j| online.contains(*j)) {
        if let InstanceEvent::Online(i) = next("instances online", watch).await {
            online.insert(i.jid.to_string());
        }
    }
}

/// Cluster test 2: instances of one service on both nodes; the node of one
/// of them is killed. After the detection window every call goes to the
/// survivor.
#[tokio::test]
async fn rpc_goes_to_the_surviving_node_instances_within_the_window() {
    let mut cluster = start_cluster();
    let service = cluster.account().unwrap();
    let (_on_dead, dead_jid) = instance_on(&cluster, 0, &service, "i1").await;
    let (_on_survivor, survivor_jid) = instance_on(&cluster, 1, &service, "i2").await;
    let caller_account = cluster.account().unwrap();
    let caller = connect(on(&cluster.node_addr(1).to_string(), &caller_account)).await;
    let mut watch = within("watch", caller.watch(&service.jid)).await.unwrap();
    all_online(&mut watch, &[&dead_jid, &survivor_jid]).await;
    let warm = call_continuously(
        &caller,
        &service.jid,
        Instant::now(),
        Duration::from_millis(500),
        Duration::from_secs(1),
    )
    .await;
    let warm_by: BTreeSet<&str> = warm
        .iter()
        .filter_map(|o| o.result.as_deref().ok())
        .collect();
    assert!(
        warm.iter().all(|o| o.result.is_ok()),
        "warm-up failed: {warm:?}"
    );
    assert_eq!(
        warm_by,
        BTreeSet::from(["i1", "i2"]),
        "both instances answer"
    );

    let killed = Instant::now();
    let calls = spawn_calls(
        &caller,
        &service.jid,
        killed,
        Duration::from_secs(6),
        Duration::from_secs(1),
    );
    cluster.kill_node(0);
    let outcomes = tokio::time::timeout(Duration::from_secs(30), calls)
        .await
        .expect("the calls end")
        .unwrap();
    let failed: Vec<_> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let mut answered: BTreeMap<&str, usize> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.started >= WINDOW) {
        *answered
            .entry(o.result.as_deref().unwrap_or("error"))
            .or_default() += 1;
    }
    eprintln!(
        "cluster 2: {} calls in 6 s from the node kill, {} failed (last one started {:?} after it); \
         after the {WINDOW:?} window: {answered:?}",
        outcomes.len(),
        failed.len(),
        failed.iter().map(|o| o.started).max(),
    );
    for o in &outcomes {
        if o.started >= WINDOW {
            assert_eq!(
                o.result.as_deref(),
                Ok("i2"),
                "a call {:?} after the kill did not go to the survivor",
                o.started
            );
        }
    }
    within("close", caller.close()).await.unwrap();
}

/// When each of `jids` left `watch`'s view (unresponsive or offline), and
/// how: up to `limit` after `zero`.
async fn departures(
    watch: &mut Watch,
    jids: &[String],
    zero: Instant,
    limit: Duration,
) -> BTreeMap<String, (Duration, &'static str)> {
    let mut seen = BTreeMap::new();
    let _ = tokio::time::timeout(limit, async {
        while seen.len() < jids.len() {
            let Some(event) = watch.next().await else {
                return;
            };
            let (jid, how) = match &event {
                InstanceEvent::Unresponsive(jid) => (jid.to_string(), "unresponsive"),
                InstanceEvent::Offline(jid) => (jid.to_string(), "offline"),
                _ => continue,
            };
            if jids.contains(&jid) {
                seen.entry(jid).or_insert((zero.elapsed(), how));
            }
        }
    })
    .await;
    seen
}

/// Cluster test 3: a caller on the surviving node sees the dead node's
/// instances leave. One caller with xbus's liveness probes (the default),
/// one with them off, which sees only what ejabberd says.
#[tokio::test]
async fn the_dead_nodes_instances_leave_a_watch_on_the_survivor() {
    let mut cluster = start_cluster();
    let service = cluster.account().unwrap();
    let mut processes = Vec::new();
    let mut dead = Vec::new();
    for resource in ["i1", "i2"] {
        let (process, jid) = instance_on(&cluster, 0, &service, resource).await;
        processes.push(process);
        dead.push(jid);
    }
    let (survivor_process, survivor_jid) = instance_on(&cluster, 1, &service, "i3").await;
    processes.push(survivor_process);
    let survivor = cluster.node_addr(1).to_string();
    let probing = connect(on(&survivor, &cluster.account().unwrap())).await;
    let silent =
        connect(on(&survivor, &cluster.account().unwrap()).liveness(Liveness::disabled())).await;
    let mut probing_watch = within("watch", probing.watch(&service.jid)).await.unwrap();
    let mut silent_watch = within("watch", silent.watch(&service.jid)).await.unwrap();
    let all: Vec<&str> = dead
        .iter()
        .map(String::as_str)
        .chain([survivor_jid.as_str()])
        .collect();
    all_online(&mut probing_watch, &all).await;
    all_online(&mut silent_watch, &all).await;

    let killed = Instant::now();
    cluster.kill_node(0);
    let with_probes = departures(&mut probing_watch, &dead, killed, Duration::from_secs(10)).await;
    let listed = within(
        "instances() on the survivor",
        probing.instances(&service.jid),
    )
    .await
    .unwrap();
    // ejabberd alone: how long until it says so, if it does.
    const SERVER_LIMIT: Duration = Duration::from_secs(20);
    let from_server = departures(&mut silent_watch, &dead, killed, SERVER_LIMIT).await;
    eprintln!(
        "cluster 3: after the node kill, with xbus's probes: {with_probes:?}; \
         from ejabberd alone (probes off, up to {SERVER_LIMIT:?}): {from_server:?}; \
         instances() listed {:?}",
        listed.iter().map(|i| i.jid.to_string()).collect::<Vec<_>>()
    );
    for jid in &dead {
        let (at, _) = with_probes
            .get(jid)
            .unwrap_or_else(|| panic!("{jid} never left the watch: {with_probes:?}"));
        assert!(*at < WINDOW, "{jid} left after {at:?}, beyond {WINDOW:?}");
    }
    assert_eq!(
        listed.iter().map(|i| i.jid.to_string()).collect::<Vec<_>>(),
        [survivor_jid.as_str()],
        "only the survivor's instance is listed"
    );
    for bus in [&probing, &silent] {
        within("close", bus.close()).await.unwrap();
    }
}
