//! Typed RPC over several instances of a service, against every server of
//! the matrix: calls spread evenly, move off an instance that closes, and
//! are retried once elsewhere when an instance has just gone.

mod common;
#[path = "common/rpc.rs"]
mod rpc;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{init_tracing, instances, matrix, raw_client, start, within};
use rpc::{Sleep, check, serve_check, serve_sleep};
use tokio::time::Instant;
use tokio_xmpp::minidom::Element;
use xbus::Bus;

/// Sends `calls` calls one after the other and counts the answering instances.
async fn spread(caller: &Bus, service: &str, calls: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for n in 0..calls {
        let level = within("call", caller.request(service, check(&format!("s{n}"))))
            .await
            .unwrap_or_else(|e| panic!("call {n}: {e}"));
        *counts.entry(level.instance).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn three_instances_share_the_calls() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (service, buses) = instances(&server, 3).await;
        for bus in &buses {
            serve_check(bus).await;
        }
        let caller = common::bus(&server).await;
        // Judge the spread once the caller knows all three: after the
        // subscription is approved, each instance's presence comes when it
        // comes (ejabberd: each session sends its own, tens of ms apart
        // under load), and calls meanwhile go to the instances known.
        within("all three seen", async {
            while caller.instances(&service.jid).await.unwrap().len() < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let counts = spread(&caller, &service.jid, 300).await;
        eprintln!("calls per instance: {counts:?}");
        assert_eq!(counts.len(), 3, "{counts:?}");
        for (instance, count) in &counts {
            assert!(
                (80..=120).contains(count),
                "{instance} got {count} of 300 calls: {counts:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn closing_an_instance_mid_run_moves_its_calls_to_the_others() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (service, buses) = instances(&server, 3).await;
        for bus in &buses {
            serve_sleep(bus).await;
        }
        let caller = common::bus(&server).await;
        let closed_jid = buses[1].jid().to_string();
        let completed = Arc::new(AtomicUsize::new(0));
        let closed_at: Arc<tokio::sync::OnceCell<Instant>> = Arc::default();
        // Eight workers call continuously; each call takes about 5 ms.
        let mut workers = Vec::new();
        for _ in 0..8 {
            let caller = caller.clone();
            let service = service.jid.clone();
            let completed = completed.clone();
            let closed_at = closed_at.clone();
            workers.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                for _ in 0..40 {
                    let started = Instant::now();
                    let result =
                        within("call", caller.request(&service, Sleep { millis: 5 })).await;
                    completed.fetch_add(1, Ordering::SeqCst);
                    let after_close = closed_at.get().is_some_and(|at| started > *at);
                    if let Err(e) = result {
                        failures.push((after_close, e.to_string()));
                    }
                }
                failures
            }));
        }
        // Close the second instance once a third of the calls are done.
        within("a third done", async {
            while completed.load(Ordering::SeqCst) < 100 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        within("close instance", buses[1].close()).await.unwrap();
        closed_at.set(Instant::now()).unwrap();
        let mut failures = Vec::new();
        for worker in workers {
            failures.extend(within("worker", worker).await.unwrap());
        }
        eprintln!("failures: {failures:?}");
        // Calls started after close() returned all succeeded; before, at most
        // the eight that were in flight may have failed.
        assert!(
            failures.iter().all(|(after_close, _)| !after_close),
            "calls after the close failed: {failures:?}"
        );
        assert!(failures.len() <= 8, "{failures:?}");
        // The closed instance is gone from the caller's view.
        let online = within("instances", caller.instances(&service.jid))
            .await
            .unwrap();
        assert_eq!(online.len(), 2, "{online:?}");
        assert!(online.iter().all(|i| i.jid.to_string() != closed_jid));
    })
    .await;
}

#[tokio::test]
async fn a_call_to_an_instance_that_just_left_is_retried_once_elsewhere() {
    matrix(async |kind| {
        use futures::StreamExt;
        use tokio_xmpp::parsers::iq::{Iq, IqPayload};
        use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
        use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
        use tokio_xmpp::{Event as XmppEvent, Stanza};

        init_tracing();
        let server = start(kind);
        let (service, buses) = instances(&server, 1).await;
        serve_check(&buses[0]).await;
        // A "ghost" instance: it announces itself like a bus, then answers
        // every call as the server does for a session that has just gone.
        let ghost_account = xbus_integration_tests::Account {
            jid: format!("{}/ghost", service.jid),
            password: service.password.clone(),
        };
        let mut ghost = raw_client(&server, &ghost_account).await;
        let instance = Element::builder("instance", "urn:xbus:0")
            .attr(
                tokio_xmpp::minidom::rxml::NcName::try_from("status").unwrap(),
                "ready",
            )
            .build();
        let presence = Presence::new(PresenceType::None).with_payloads(vec![instance]);
        within("ghost presence", ghost.send_stanza(presence.into()))
            .await
            .unwrap();
        let calls_to_ghost = Arc::new(AtomicUsize::new(0));
        let counter = calls_to_ghost.clone();
        let ghost_task = tokio::spawn(async move {
            while let Some(event) = ghost.next().await {
                let XmppEvent::Stanza(Stanza::Iq(iq)) = event else {
                    continue;
                };
                let (header, payload) = iq.split();
                if let IqPayload::Set(element) = payload {
                    // Only xbus calls count: ejabberd also pushes roster
                    // changes to every resource (even one that never asked for
                    // the roster), which are IQ sets too.
                    if element.is("request", "urn:xbus:0") {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let error = StanzaError::new(
                        ErrorType::Cancel,
                        DefinedCondition::ServiceUnavailable,
                        "en",
                        "gone",
                    );
                    let reply = Iq::assemble(
                        tokio_xmpp::parsers::iq::IqHeader {
                            from: None,
                            to: header.from,
                            id: header.id,
                        },
                        IqPayload::Error(error),
                    );
                    let _ = ghost.send_stanza(reply.into()).await;
                }
            }
        });

        let caller = common::bus(&server).await;
        let online = within("both instances seen", async {
            loop {
                let online = caller.instances(&service.jid).await.unwrap();
                if online.len() == 2 {
                    return online;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        eprintln!("instances: {online:?}");
        for n in 0..10 {
            let level = within(
                "call",
                caller.request(&service.jid, check(&format!("r{n}"))),
            )
            .await
            .unwrap_or_else(|e| panic!("call {n}: {e}"));
            assert_eq!(level.instance, "i1");
        }
        // The ghost was tried once, then dropped from the caller's table.
        assert_eq!(calls_to_ghost.load(Ordering::SeqCst), 1);
        let online = within("instances", caller.instances(&service.jid))
            .await
            .unwrap();
        assert_eq!(online.len(), 1, "{online:?}");
        ghost_task.abort();
    })
    .await;
}
