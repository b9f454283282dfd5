//! Typed RPC over IQ against every server of the matrix: round trips,
//! error kinds, timeouts, concurrency. Load spreading over instances is in
//! `rpc_spread.rs`.

mod common;
#[path = "common/rpc.rs"]
mod rpc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{init_tracing, instance, instances, matrix, raw_client, raw_iq, start, within};
use rpc::{Sleep, StockLevel, check, serve_check, serve_sleep};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::{IqRequest, IqResponse};
use xbus::{Bus, Context, Handler, Headers, Request, RequestError, RpcError};

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

/// Past the `timeout` a request announced, the callee does not abort: its
/// handler runs on and its answer is sent late (PROTOCOL.md section 5.2);
/// the caller drops it. A raw client that keeps waiting gets it.
#[tokio::test]
async fn the_callee_answers_after_the_deadline() {
    matrix(async |kind| {
        let server = start(kind);
        let (_, buses) = instances(&server, 1).await;
        serve_sleep(&buses[0]).await;
        let mut raw = raw_client(&server, &server.account().unwrap()).await;
        // {"millis": 400}, announcing a timeout of 100 ms.
        let late = "<request xmlns='urn:xbus:0' method='test.sleep' encoding='msgpack' \
                    version='1' timeout='100'>gaZtaWxsaXPNAZA=</request>";
        let started = Instant::now();
        let to = buses[0].jid().to_string();
        let answer = raw_iq(&mut raw, &to, IqRequest::Set(late.parse().unwrap())).await;
        let elapsed = started.elapsed();
        let IqResponse::Result(Some(response)) = answer else {
            panic!("[{kind}] expected a late result, got {answer:?}");
        };
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(response.is("response", "urn:xbus:0"), "{response:?}");
        eprintln!(
            "[{kind}] answered after {elapsed:?}: {}",
            String::from(&response)
        );
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
