//! Interoperability with a third-party client, calls both ways: slixmpp (Python), driven by
//! `integration-tests/slixmpp/xbus_peer.py`, which was written from
//! `docs/PROTOCOL.md` alone. On the other side are ordinary xbus buses.
//!
//! The peer runs in the venv that `scripts/slixmpp-venv.sh` creates
//! (`target/slixmpp-venv/bin/python`, or `XBUS_SLIXMPP_PYTHON`); without it
//! these tests fail with that command, they never skip. The peer takes a
//! JSON job on stdin and prints JSON lines, which the tests read in order.

mod common;
#[path = "common/slixmpp.rs"]
mod slixmpp;

use slixmpp::*;

/// slixmpp finds a Rust service's instance by presence and calls it:
/// MessagePack and JSON, an application error, an unknown method and a
/// request of the wrong version.
#[tokio::test]
async fn slixmpp_calls_a_rust_service() {
    common::matrix(async |kind| {
        let server = start_server(kind);
        let service = server.account().expect("account");
        let inventory = common::instance(&server, &service, "inv-1").await;
        within(
            "serve check",
            inventory.serve(|req: CheckStock, ctx: Context| async move {
                if req.sku == "Z9" {
                    return Err(RpcError::new(
                        "unknown_sku",
                        format!("no such SKU: {}", req.sku),
                    ));
                }
                Ok(StockLevel {
                    available: req.sku.len() as u32 * 10,
                    sku: req.sku,
                    caller: ctx.from().to_string(),
                })
            }),
        )
        .await
        .unwrap();
        within(
            "serve reserve",
            inventory.serve(|req: Reserve, ctx: Context| async move {
                Ok(Reserved {
                    reservation: format!("{}x{}", req.sku, req.quantity),
                    trace: ctx.headers().get("trace").map(str::to_owned),
                })
            }),
        )
        .await
        .unwrap();

        let python = server.account().expect("account");
        let scenario = format!(
            r#"{{"scenario": "call", "service": "{}", "calls": [
            {{"method": "inventory.check", "encoding": "msgpack", "version": 1,
              "timeout_ms": 5000, "request": {{"sku": "A1"}}}},
            {{"method": "inventory.check", "encoding": "msgpack", "version": 1,
              "request": {{"sku": "Z9"}}}},
            {{"method": "inventory.reserve", "encoding": "json", "version": 2,
              "request": {{"sku": "B2", "quantity": 3}}, "headers": {{"trace": "tr-9"}}}},
            {{"method": "inventory.nothing", "encoding": "json", "version": 1,
              "request": {{}}}},
            {{"method": "inventory.reserve", "encoding": "json", "version": 1,
              "request": {{"sku": "B2", "quantity": 3}}}}
        ]}}"#,
            service.jid
        );
        let mut peer = Peer::start(&server, &python, Tls::Plaintext, &scenario).await;

        let instance: Instance = peer.expect("instance").await;
        assert_eq!(instance.jid, format!("{}/inv-1", service.jid));
        assert_eq!(instance.status, "ready");

        let checked: Response<StockLevel> = peer.expect("response").await;
        assert_eq!(
            (
                checked.method.as_str(),
                checked.encoding.as_str(),
                checked.version
            ),
            ("inventory.check", "msgpack", 1)
        );
        assert_eq!(checked.response.sku, "A1");
        assert_eq!(checked.response.available, 20);
        assert!(
            checked
                .response
                .caller
                .starts_with(&format!("{}/", python.jid)),
            "the handler's ctx.from() is the peer's full JID: {}",
            checked.response.caller
        );

        let failed: CallError = peer.expect("error").await;
        assert_eq!(
            failed,
            CallError {
                method: "inventory.check".into(),
                kind: "cancel".into(),
                condition: Some("undefined-condition".into()),
                text: Some("no such SKU: Z9".into()),
                failure_code: Some("unknown_sku".into()),
                unknown_method: None,
            }
        );

        let reserved: Response<Reserved> = peer.expect("response").await;
        assert_eq!((reserved.encoding.as_str(), reserved.version), ("json", 2));
        assert_eq!(
            reserved.response,
            Reserved {
                reservation: "B2x3".into(),
                trace: Some("tr-9".into())
            }
        );

        let unknown: CallError = peer.expect("error").await;
        assert_eq!(unknown.kind, "cancel");
        assert_eq!(
            unknown.condition.as_deref(),
            Some("feature-not-implemented")
        );
        assert_eq!(unknown.unknown_method.as_deref(), Some("inventory.nothing"));

        let wrong_version: CallError = peer.expect("error").await;
        assert_eq!(wrong_version.kind, "modify");
        assert_eq!(wrong_version.condition.as_deref(), Some("bad-request"));
        assert!(wrong_version.text.is_some(), "{wrong_version:?}");

        let took = peer.finish().await;
        eprintln!("slixmpp call scenario (presence + 5 calls) took {took:?}");
        within("close", inventory.close()).await.unwrap();
    })
    .await;
}

/// A Rust bus calls a method served by slixmpp, found by presence (the
/// peer announces an instance per section 6: with `<instance/>` alone, the
/// minimum, except on the embedded server, where `<status/>` and
/// `<priority/>` come too, so both forms are exercised).
#[tokio::test]
async fn rust_calls_a_slixmpp_service() {
    common::matrix(async |kind| {
    let server = start_server(kind);
    let python = server.account().expect("account");
    let presence = match kind {
        ServerKind::Embedded => "full",
        _ => "minimal",
    };
    let scenario = format!(
        r#"{{"scenario": "serve", "calls": 5, "presence": "{presence}", "methods": {{
            "py.sum": {{"encoding": "json", "version": 1}},
            "py.sum_packed": {{"encoding": "msgpack", "version": 2}}}}}}"#
    );
    let mut peer = Peer::start(&server, &python, Tls::Plaintext, &scenario).await;
    let ready: Ready = peer.expect("ready").await;
    assert!(
        ready.jid.starts_with(&format!("{}/", python.jid)),
        "{}",
        ready.jid
    );

    let caller = bus(&server).await;
    let me = caller.jid().to_string();
    let sum = within(
        "py.sum",
        caller
            .request(
                &python.jid,
                PySum {
                    values: vec![1, 2, 39],
                },
            )
            .timeout(Duration::from_secs(5)),
    )
    .await
    .expect("py.sum answers");
    assert_eq!(
        sum,
        Sum {
            sum: 42,
            count: 3,
            caller: me.clone()
        }
    );
    let served: Served = peer.expect("served").await;
    assert_eq!(
        (
            served.method.as_str(),
            served.from.as_str(),
            served.outcome.as_str()
        ),
        ("py.sum", me.as_str(), "response")
    );

    let packed = within(
        "py.sum_packed",
        caller.request(
            &python.jid,
            PySumPacked {
                values: vec![-5, 5, 7],
            },
        ),
    )
    .await
    .expect("py.sum_packed answers");
    assert_eq!((packed.sum, packed.count), (7, 3));
    let served: Served = peer.expect("served").await;
    assert_eq!(served.method, "py.sum_packed");

    let error = within(
        "py.sum of nothing",
        caller.request(&python.jid, PySum { values: vec![] }),
    )
    .await
    .expect_err("an application error");
    match error {
        RequestError::Remote {
            method,
            from,
            error,
        } => {
            assert_eq!(method, "py.sum");
            assert_eq!(from, ready.jid);
            assert_eq!(error, RpcError::new("empty", "nothing to add"));
        }
        other => panic!("expected RequestError::Remote, got {other:?}"),
    }
    let served: Served = peer.expect("served").await;
    assert_eq!(served.outcome, "failure");

    let error = within(
        "py.missing",
        caller.request(&python.jid, PyMissing { values: vec![1] }),
    )
    .await
    .expect_err("no such method");
    assert!(
        matches!(&error, RequestError::UnknownMethod { method, from } if method == "py.missing" && *from == ready.jid),
        "{error:?}"
    );
    let served: Served = peer.expect("served").await;
    assert_eq!(
        (served.method.as_str(), served.outcome.as_str()),
        ("py.missing", "unknown-method")
    );

    let error = within(
        "py.sum version 9",
        caller.request(&python.jid, PySumV9 { values: vec![1] }),
    )
    .await
    .expect_err("wrong version");
    match &error {
        RequestError::Rejected { method, reason, .. } => {
            assert_eq!(method, "py.sum");
            assert!(reason.contains("version 9"), "{reason}");
        }
        other => panic!("expected RequestError::Rejected, got {other:?}"),
    }
    let served: Served = peer.expect("served").await;
    assert_eq!(served.outcome, "bad-request");

    let took = peer.finish().await;
    eprintln!("slixmpp serve scenario (5 calls) took {took:?}");
    within("close", caller.close()).await.unwrap();
    })
    .await;
}

/// The peer itself fails fast and clearly: a wrong password is a `failed`
/// line and a non-zero exit, not a hang.
#[tokio::test]
async fn the_peer_reports_a_failed_login() {
    common::matrix(async |kind| {
        let server = start_server(kind);
        let mut account = server.account().expect("account");
        account.password.push_str("-wrong");
        let mut peer = Peer::start(
            &server,
            &account,
            Tls::Plaintext,
            r#"{"scenario": "receive", "count": 1}"#,
        )
        .await;
        let failed: Failed = peer.expect("failed").await;
        assert!(
            failed.reason.contains("authentication failed"),
            "{}",
            failed.reason
        );
        let status = within("peer exit", peer.child.wait()).await.unwrap();
        assert_eq!(status.code(), Some(1));
        assert!(peer.started.elapsed() < Duration::from_secs(5));
    })
    .await;
}

#[derive(Serialize, Deserialize, Debug)]
struct Failed {
    reason: String,
}
