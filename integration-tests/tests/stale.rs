//! Pubsub subscriptions that killed processes leave behind.
//!
//! xbus subscribes each session's full JID, so a process killed with
//! `SIGKILL` leaves its subscription on the server; Prosody and ejabberd
//! keep it after the session is gone, and go on fanning events out to it.
//! A bus that connects lists its account's subscriptions, pings the other
//! resources that hold one, and removes those the server says have no
//! session. A session the server keeps for a resumption is not touched:
//! its process may only be cut off, and would lose its events.
//!
//! The servers keep a killed process's session for minutes (XEP-0198
//! hibernation); the test ends it the way a restarted process with the same
//! resource would, by binding that resource and closing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::{IqRequest, IqResponse};
use xbus::RawPayload;
use xbus_integration_tests::{Account, ServerKind, XmppServer};

const TOPIC: &str = "fault.stale";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";

/// The full JIDs subscribed to [`TOPIC`], as its owner sees them
/// (XEP-0060 §8.8.1), asked on a fresh connection ([`pubsub_query`]).
async fn subscribers(server: &dyn XmppServer, owner: &Account) -> Vec<String> {
    let answer = pubsub_query(server, owner, "owner subscriptions query", || {
        let query: Element =
            format!("<pubsub xmlns='{OWNER}'><subscriptions node='{TOPIC}'/></pubsub>")
                .parse()
                .expect("query");
        IqRequest::Get(query)
    })
    .await;
    let listing = match answer {
        IqResponse::Result(Some(listing)) => listing,
        other => panic!("{}owner subscriptions of {TOPIC}: {other:?}", tag()),
    };
    let mut jids: Vec<String> = listing
        .get_child("subscriptions", OWNER)
        .into_iter()
        .flat_map(|list| list.children())
        .filter(|sub| sub.attr("subscription") == Some("subscribed"))
        .filter_map(|sub| sub.attr("jid").map(str::to_owned))
        .collect();
    jids.sort();
    jids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connecting_bus_removes_the_subscriptions_of_its_accounts_dead_sessions() {
    matrix(async |kind: ServerKind| {
        let server = start(kind);
        let account = server.account().expect("register account");
        let jid = |resource: &str| format!("{}/{resource}", account.jid);

        // A live session of the account, subscribed: it must keep its
        // subscription through everything below. Subscribing first makes
        // the account the node's owner, so the test can list subscribers.
        let alive = instance(&*server, &account, "alive").await;
        let mut alive_events = within("alive subscribes", alive.subscribe_raw(TOPIC))
            .await
            .expect("alive subscribes");

        // A process of the account subscribes, and is killed.
        let mut doomed = spawn_instance(&*server, &account, "doomed", &["subscribe", TOPIC]);
        doomed.ready(STEP).await;
        doomed.kill();
        assert_eq!(
            subscribers(&*server, &account).await,
            vec![jid("alive"), jid("doomed")],
            "{}both subscriptions right after the kill",
            tag()
        );

        // While the server keeps the killed session for a resumption, a
        // new bus leaves its subscription alone: the ping goes unanswered.
        let early = instance(&*server, &account, "early").await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            subscribers(&*server, &account).await,
            vec![jid("alive"), jid("doomed")],
            "{}a hibernating session keeps its subscription",
            tag()
        );
        let early_stats = within("early stats", early.stats()).await.expect("stats");
        assert_eq!(early_stats.stale_subscriptions_removed, 0);
        within("early closes", early.close()).await.expect("close");

        // The session ends: a process binds the resource and goes away,
        // as a restarted one that crashed again would.
        let replacement = instance(&*server, &account, "doomed").await;
        within("replacement closes", replacement.close())
            .await
            .expect("close");
        let left = subscribers(&*server, &account).await;
        eprintln!("{}after the dead session ended: {left:?}", tag());

        // A bus that connects now removes the leftover.
        let fresh = instance(&*server, &account, "fresh").await;
        let started = Instant::now();
        let mut now = left.clone();
        while now.contains(&jid("doomed")) && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            now = subscribers(&*server, &account).await;
        }
        assert_eq!(
            now,
            vec![jid("alive")],
            "{}the dead session's subscription is removed, the live one's stays",
            tag()
        );
        let stats = within("fresh stats", fresh.stats()).await.expect("stats");
        let expected = u64::from(left.contains(&jid("doomed")));
        assert_eq!(
            stats.stale_subscriptions_removed,
            expected,
            "{}removed by the fresh bus",
            tag()
        );
        eprintln!(
            "{}leftover gone {:?} after the fresh bus connected (removed by it: {})",
            tag(),
            started.elapsed(),
            stats.stale_subscriptions_removed
        );

        // The live subscription still delivers.
        let publisher = bus(&*server).await;
        let payload = RawPayload {
            topic: TOPIC.to_owned(),
            encoding: xbus::Encoding::Json,
            version: 1,
            data: b"{}".to_vec(),
            headers: Default::default(),
        };
        within("publish", publisher.publish_raw(payload))
            .await
            .expect("publish");
        next("alive gets the event", &mut alive_events)
            .await
            .expect("event");
        for bus in [&fresh, &alive, &publisher] {
            within("close", bus.close()).await.expect("close");
        }
    })
    .await;
}
