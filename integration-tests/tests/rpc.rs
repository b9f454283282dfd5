//! Typed RPC over IQ against every server of the matrix: round trips, load spreading
//! over instances, error kinds, timeouts, concurrency.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{init_tracing, instance, instances, matrix, raw_client, raw_iq, start, within};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::{IqRequest, IqResponse};
use xbus::{Bus, Context, Handler, Headers, Request, RequestError, RpcError};

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "inventory.check", response = StockLevel)]
struct CheckStock {
    sku: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct StockLevel {
    sku: String,
    available: u32,
    /// The resource of the instance that answered.
    instance: String,
}

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(response = Reserved, encoding = "json", version = 2)]
struct Reserve {
    sku: String,
    quantity: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reserved {
    reservation: String,
    caller: String,
    trace: Option<String>,
}

/// Sleeps for the given milliseconds, then answers.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "test.sleep", response = String)]
struct Sleep {
    millis: u64,
}

/// Answers with an application error or a panic, on request.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "test.fail", response = u32)]
enum Fail {
    App,
    Panic,
    Fine,
}

/// The inventory service in trait form.
struct Inventory {
    reserved: AtomicUsize,
}

#[xbus::async_trait]
impl Handler<Reserve> for Inventory {
    async fn handle(&self, req: Reserve, ctx: Context) -> Result<Reserved, RpcError> {
        if req.quantity == 0 {
            return Err(RpcError::new("bad_quantity", "cannot reserve nothing"));
        }
        let n = self.reserved.fetch_add(1, Ordering::SeqCst);
        Ok(Reserved {
            reservation: format!("{}-{n}", req.sku),
            caller: ctx.from().to_string(),
            trace: ctx.headers().get("trace").map(str::to_owned),
        })
    }
}

/// Serves `inventory.check` on `bus`, answering with its resource.
async fn serve_check(bus: &Bus) {
    let me = bus.jid().resource().to_string();
    within(
        "serve check",
        bus.serve(move |req: CheckStock, _ctx: Context| {
            let me = me.clone();
            async move {
                Ok(StockLevel {
                    available: req.sku.len() as u32,
                    sku: req.sku,
                    instance: me,
                })
            }
        }),
    )
    .await
    .unwrap();
}

async fn serve_sleep(bus: &Bus) {
    within(
        "serve sleep",
        bus.serve(|req: Sleep, ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(req.millis)).await;
            Ok(ctx.from().to_string())
        }),
    )
    .await
    .unwrap();
}

fn check(sku: &str) -> CheckStock {
    CheckStock { sku: sku.into() }
}

#[tokio::test]
async fn typed_request_response_round_trip() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (service, buses) = instances(&server, 1).await;
        let callee = &buses[0];
        serve_check(callee).await;
        within(
            "serve reserve",
            callee.serve::<Reserve, _>(Inventory {
                reserved: AtomicUsize::new(0),
            }),
        )
        .await
        .unwrap();
        // A second handler for one method is refused.
        let again = callee
            .serve(|_: Reserve, _: Context| async { Err(RpcError::new("x", "y")) })
            .await;
        assert!(
            matches!(again, Err(xbus::ServeError::AlreadyServed { method }) if method == "reserve")
        );

        let caller = common::bus(&server).await;
        // By service name (bare JID) and by instance (full JID).
        let level = within("call service", caller.request(&service.jid, check("A12")))
            .await
            .unwrap();
        assert_eq!(
            level,
            StockLevel {
                sku: "A12".into(),
                available: 3,
                instance: "i1".into()
            }
        );
        let by_instance = within(
            "call instance",
            caller.request(&callee.jid().to_string(), check("B")),
        )
        .await
        .unwrap();
        assert_eq!(by_instance.available, 1);

        // The trait handler sees the caller's full JID and the headers.
        let mut headers = Headers::new();
        headers.insert("trace", "t-42");
        let reserved = within(
            "reserve",
            caller
                .request(
                    &service.jid,
                    Reserve {
                        sku: "A1".into(),
                        quantity: 2,
                    },
                )
                .headers(headers),
        )
        .await
        .unwrap();
        assert_eq!(reserved.reservation, "A1-0");
        assert_eq!(reserved.caller, caller.jid().to_string());
        assert_eq!(reserved.trace.as_deref(), Some("t-42"));

        // The handler's application error comes back as Remote, code and message.
        let error = within(
            "reserve nothing",
            caller.request(
                &service.jid,
                Reserve {
                    sku: "A1".into(),
                    quantity: 0,
                },
            ),
        )
        .await
        .unwrap_err();
        match error {
            RequestError::Remote { error, from, .. } => {
                assert_eq!(
                    error,
                    RpcError::new("bad_quantity", "cannot reserve nothing")
                );
                assert_eq!(from, callee.jid().to_string());
            }
            other => panic!("expected Remote, got {other:?}"),
        }
    })
    .await;
}

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
async fn errors_are_answered_as_specified_and_the_service_keeps_serving() {
    matrix(async |kind| {
    init_tracing();
    let server = start(kind);
    let account = server.account().unwrap();
    let callee = instance(&server, &account, "svc").await;
    within(
        "serve fail",
        callee.serve(|req: Fail, _: Context| async move {
            match req {
                Fail::App => Err(RpcError::new("nope", "asked to fail")),
                Fail::Panic => panic!("asked to panic"),
                Fail::Fine => Ok(7),
            }
        }),
    )
    .await
    .unwrap();
    let caller = common::bus(&server).await;
    let to = callee.jid().to_string();

    let unknown = within("unknown method", caller.request(&to, check("A")))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, RequestError::UnknownMethod { method, .. } if method == "inventory.check"),
        "{unknown:?}"
    );
    assert!(unknown.to_string().contains("inventory.check"), "{unknown}");

    let app = within("app error", caller.request(&to, Fail::App))
        .await
        .unwrap_err();
    assert!(
        matches!(&app, RequestError::Remote { error, .. } if error.code == "nope"),
        "{app:?}"
    );

    let panicked = within("panic", caller.request(&to, Fail::Panic))
        .await
        .unwrap_err();
    assert!(
        matches!(&panicked, RequestError::HandlerFailed { reason, .. } if reason.contains("asked to panic")),
        "{panicked:?}"
    );
    assert_eq!(
        within("fine", caller.request(&to, Fail::Fine))
            .await
            .unwrap(),
        7
    );

    // A raw client sends what a bus never would.
    let raw_account = server.account().unwrap();
    let mut raw = raw_client(&server, &raw_account).await;
    let cases = [
        // Not base64.
        "<request xmlns='urn:xbus:0' method='test.fail' encoding='msgpack' version='1'>%%%</request>",
        // Valid base64, but JSON where msgpack is declared.
        "<request xmlns='urn:xbus:0' method='test.fail' encoding='json' version='1'>IkFwcCI=</request>",
        // Another schema version.
        "<request xmlns='urn:xbus:0' method='test.fail' encoding='msgpack' version='9'>o0FwcA==</request>",
        // msgpack, but not a Fail.
        "<request xmlns='urn:xbus:0' method='test.fail' encoding='msgpack' version='1'>kwECAw==</request>",
    ];
    for xml in cases {
        let element: Element = xml.parse().unwrap();
        let answer = raw_iq(&mut raw, &to, IqRequest::Set(element)).await;
        let IqResponse::Error(error) = answer else {
            panic!("{xml}: expected an error, got {answer:?}");
        };
        let error = Element::from(error);
        let xml_error = String::from(&error);
        assert!(xml_error.contains("bad-request"), "{xml}: {xml_error}");
        assert!(
            xml_error.contains("<text"),
            "{xml}: no reason in {xml_error}"
        );
    }
    // A valid call that announces an absurd timeout is served normally.
    let huge = "<request xmlns='urn:xbus:0' method='test.fail' encoding='msgpack' version='1' timeout='18446744073709551615'>pEZpbmU=</request>";
    let answer = raw_iq(&mut raw, &to, IqRequest::Set(huge.parse().unwrap())).await;
    assert!(matches!(answer, IqResponse::Result(Some(_))), "{answer:?}");
    // Still serving.
    assert_eq!(
        within("fine again", caller.request(&to, Fail::Fine))
            .await
            .unwrap(),
        7
    );
    })
    .await;
}

#[tokio::test]
async fn a_slow_handler_times_out_and_leaves_nothing_behind() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (_, buses) = instances(&server, 1).await;
        serve_sleep(&buses[0]).await;
        let caller = common::bus(&server).await;
        let to = buses[0].jid().to_string();
        let started = Instant::now();
        let error = within(
            "slow call",
            caller
                .request(&to, Sleep { millis: 1000 })
                .timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
        let elapsed = started.elapsed();
        eprintln!("timed out after {elapsed:?}");
        assert!(matches!(error, RequestError::TimedOut { .. }), "{error:?}");
        assert!(
            elapsed >= Duration::from_millis(200) && elapsed <= Duration::from_millis(400),
            "{elapsed:?}"
        );
        // The timed-out call's entry is gone at once; the late answer, when it
        // comes, is dropped.
        within("no pending call", async {
            while caller.stats().await.unwrap().pending_iqs > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(caller.stats().await.unwrap().pending_iqs, 0);
        let answer = within("next call", caller.request(&to, Sleep { millis: 1 }))
            .await
            .unwrap();
        assert_eq!(answer, caller.jid().to_string());
    })
    .await;
}

#[tokio::test]
async fn no_responder_comes_back_at_once() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (service, buses) = instances(&server, 1).await;
        serve_check(&buses[0]).await;
        let caller = common::bus(&server).await;
        let mut watch = within("watch", caller.watch(&service.jid)).await.unwrap();
        within("call", caller.request(&service.jid, check("A")))
            .await
            .unwrap();
        let gone = buses[0].jid();
        within("close", buses[0].close()).await.unwrap();
        within("offline", async {
            loop {
                if let xbus::InstanceEvent::Offline(jid) = common::next("watch", &mut watch).await {
                    assert_eq!(jid, gone);
                    return;
                }
            }
        })
        .await;

        // No instance of the service online; an instance that is gone (the
        // server answers service-unavailable); a service never seen and never
        // online (the bus asks for its presence and gives up after the
        // discovery timeout of 1 s, not the request timeout).
        let never = server.account().unwrap();
        let cases = [
            ("service with no instance", service.jid.clone(), 50),
            ("gone instance", gone.to_string(), 50),
            ("never-seen service", never.jid.clone(), 1500),
        ];
        for (what, target, limit_ms) in cases {
            let started = Instant::now();
            let error = within(what, caller.request(&target, check("A")))
                .await
                .unwrap_err();
            let elapsed = started.elapsed();
            eprintln!("{what}: NoResponder after {elapsed:?}");
            assert!(
                matches!(error, RequestError::NoResponder { .. }),
                "{what}: {error:?}"
            );
            assert!(
                elapsed < Duration::from_millis(limit_ms),
                "{what}: {elapsed:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn sixty_four_concurrent_requests_are_all_answered() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (service, buses) = instances(&server, 1).await;
        serve_sleep(&buses[0]).await;
        let caller = common::bus(&server).await;
        // Discover the service first, so all 64 go out at once.
        within("warm up", caller.request(&service.jid, Sleep { millis: 0 }))
            .await
            .unwrap();
        let started = Instant::now();
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let caller = caller.clone();
                let service = service.jid.clone();
                tokio::spawn(async move { caller.request(&service, Sleep { millis: 100 }).await })
            })
            .collect();
        for call in calls {
            let answer = within("concurrent call", call).await.unwrap().unwrap();
            assert_eq!(answer, caller.jid().to_string());
        }
        let elapsed = started.elapsed();
        eprintln!("64 calls of 100 ms each took {elapsed:?}");
        // They ran side by side, not one after the other (64 × 100 ms).
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    })
    .await;
}

#[tokio::test]
async fn calls_beyond_the_handler_limit_are_refused_as_overloaded() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let account = server.account().unwrap();
        let config = common::config(&server, &account)
            .max_concurrent_handlers(2)
            .build()
            .unwrap();
        let callee = within("connect", Bus::connect(config)).await.unwrap();
        serve_sleep(&callee).await;
        let caller = common::bus(&server).await;
        let to = callee.jid().to_string();
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let caller = caller.clone();
                let to = to.clone();
                tokio::spawn(async move { caller.request(&to, Sleep { millis: 300 }).await })
            })
            .collect();
        let mut overloaded = 0;
        let mut answered = 0;
        for call in calls {
            match within("call", call).await.unwrap() {
                Ok(_) => answered += 1,
                Err(RequestError::Overloaded { .. }) => overloaded += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((answered, overloaded), (2, 1));
        assert_eq!(
            within("stats", callee.stats())
                .await
                .unwrap()
                .running_handlers,
            0
        );
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
