//! `xbus reply`: a method served from the command line, called by
//! `xbus req` and by typed library buses.

use std::future::IntoFuture as _;

use serde::{Deserialize, Serialize};
use serde_json::json;
use xbus::{Request, RequestError};

use crate::common::{Running, User, json_lines, matrix, run, within, xbus};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Answer {
    ok: bool,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "test.echo", response = Answer)]
struct Echo {
    n: u32,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "test.echo", response = Answer, encoding = "json")]
struct EchoJson {
    n: u32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Got {
    got: serde_json::Value,
    method: String,
    caller: String,
    encoding: String,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "test.cmd", response = Got, encoding = "json")]
struct Cmd {
    fail: bool,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "test.other", response = ())]
struct Other {}

/// Starts `xbus reply ARGS` as `user` and waits for its
/// `serving METHOD as INSTANCE` line; returns it and the instance.
async fn reply(user: &User, args: &[&str]) -> (Running, String) {
    let mut all = vec!["reply"];
    all.extend_from_slice(args);
    let mut running = Running::spawn(user.xbus(&all));
    let notice = running.stderr_line().await;
    let instance = notice
        .strip_prefix(&format!("serving {} as ", args[0]))
        .unwrap_or_else(|| panic!("not `serving METHOD as INSTANCE`: {notice:?}"))
        .to_owned();
    assert!(instance.starts_with(user.jid()), "{notice}");
    (running, instance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_answers_every_call_with_the_fixed_json() {
    matrix(async |kind| {
        let (responder, caller) = (User::new(kind), User::new(kind));
        let (replier, instance) =
            reply(&responder, &["test.echo", r#"{"ok":true}"#, "--count", "4"]).await;

        let out = run(caller.xbus(&["req", responder.jid(), "test.echo", r#"{"n":1}"#])).await;
        assert_eq!(json_lines(out.ok()), [json!({"ok": true})]);
        let json = ["--encoding", "json", "--header", "trace=t1"];
        let mut args = vec!["req", &instance, "test.echo", r#"{"n":2}"#];
        args.extend_from_slice(&json);
        let out = run(caller.xbus(&args)).await;
        assert_eq!(json_lines(out.ok()), [json!({"ok": true})]);

        // Typed callers decode it, in either encoding.
        let bus = caller.bus("typed").await;
        let answer = within(
            "a msgpack call",
            bus.request(responder.jid(), Echo { n: 3 }).into_future(),
        )
        .await;
        assert_eq!(answer.expect("msgpack answer"), Answer { ok: true });
        let answer = within(
            "a JSON call",
            bus.request(&instance, EchoJson { n: 4 }).into_future(),
        )
        .await;
        assert_eq!(answer.expect("JSON answer"), Answer { ok: true });
        bus.close().await.expect("close the caller");

        let out = replier.finish().await;
        let lines = json_lines(out.ok());
        assert_eq!(lines.len(), 4, "{out:?}");
        let encodings: Vec<_> = lines.iter().map(|l| l["encoding"].clone()).collect();
        assert_eq!(encodings, ["msgpack", "json", "msgpack", "json"]);
        for (n, line) in (1..).zip(&lines) {
            assert_eq!(line["method"], json!("test.echo"), "{line}");
            assert_eq!(line["request"], json!({ "n": n }), "{line}");
            assert_eq!(line["response"], json!({"ok": true}), "{line}");
            assert_eq!(line["version"], json!(1), "{line}");
            let from = line["caller"].as_str().unwrap_or_default();
            assert!(from.starts_with(caller.jid()), "{line}");
        }
        assert_eq!(lines[1]["headers"]["trace"], json!("t1"));
    })
    .await;
}

/// Echoes the request and its metadata, or fails on `{"fail":true}`.
const SCRIPT: &str = r#"req=$(cat)
case "$req" in *'"fail":true'*) echo "refusing $req" >&2; exit 3;; esac
printf '{"got":%s,"method":"%s","caller":"%s","encoding":"%s"}' "$req" "$XBUS_METHOD" "$XBUS_CALLER" "$XBUS_ENCODING""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_runs_a_command_per_call_and_reports_its_failures() {
    matrix(async |kind| {
        let (responder, caller) = (User::new(kind), User::new(kind));
        let (replier, instance) = reply(
            &responder,
            &["test.cmd", "--command", SCRIPT, "--count", "3"],
        )
        .await;

        let out = run(caller.xbus(&["req", &instance, "test.cmd", r#"{"fail":false}"#])).await;
        let answer = &json_lines(out.ok())[0];
        assert_eq!(answer["got"], json!({"fail": false}), "{answer}");
        assert_eq!(answer["method"], json!("test.cmd"), "{answer}");
        assert_eq!(answer["encoding"], json!("msgpack"), "{answer}");
        let from = answer["caller"].as_str().unwrap_or_default();
        assert!(from.starts_with(caller.jid()), "{answer}");

        // A failing command: an application error, and the replier goes on.
        let bus = caller.bus("typed").await;
        let failed = within(
            "a failing call",
            bus.request(&instance, Cmd { fail: true }).into_future(),
        )
        .await;
        match failed {
            Err(RequestError::Remote { error, .. }) => {
                assert_eq!(error.code, "command_failed", "{error:?}");
                assert!(error.message.contains("exited with status 3"), "{error:?}");
                assert!(error.message.contains("refusing"), "{error:?}");
            }
            other => panic!("expected a remote error, got {other:?}"),
        }
        let answer = within(
            "a call after",
            bus.request(&instance, Cmd { fail: false }).into_future(),
        )
        .await;
        let answer = answer.expect("the replier still serves");
        assert_eq!(answer.got, json!({"fail": false}));
        assert_eq!(answer.encoding, "json");
        bus.close().await.expect("close the caller");

        let out = replier.finish().await;
        let lines = json_lines(out.ok());
        assert_eq!(lines.len(), 3, "{out:?}");
        assert_eq!(
            lines[1]["error"]["code"],
            json!("command_failed"),
            "{out:?}"
        );
        assert!(lines[1].get("response").is_none(), "{out:?}");
        assert_eq!(
            lines[2]["response"]["got"],
            json!({"fail": false}),
            "{out:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_refuses_other_methods_and_versions_and_stops_on_sigterm() {
    matrix(async |kind| {
        let (responder, caller) = (User::new(kind), User::new(kind));
        let (replier, instance) = reply(&responder, &["test.echo", "{}", "--version", "2"]).await;
        let bus = caller.bus("typed").await;
        let other = within(
            "an unknown method",
            bus.request(&instance, Other {}).into_future(),
        )
        .await;
        assert!(
            matches!(other, Err(RequestError::UnknownMethod { .. })),
            "{other:?}"
        );
        // Echo is version 1; this replier serves version 2.
        let old = within(
            "an old version",
            bus.request(&instance, Echo { n: 1 }).into_future(),
        )
        .await;
        match old {
            Err(RequestError::Rejected { reason, .. }) => {
                assert!(reason.contains("version 1"), "{reason}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        let out = run(caller.xbus(&["req", &instance, "test.echo", "{}", "--version", "2"])).await;
        assert_eq!(json_lines(out.ok()), [json!({})]);
        bus.close().await.expect("close the caller");

        crate::signal(replier.pid(), libc::SIGTERM);
        let out = replier.finish().await;
        assert_eq!(json_lines(out.ok()).len(), 1, "{out:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_rejects_a_bad_answer_before_connecting() {
    let unreachable = ["--jid=a@localhost", "--password=pw", "--server=127.0.0.1:1"];
    let out = run(xbus(
        &[&["reply", "m.x", "{oops"][..], &unreachable[..]].concat(),
    ))
    .await;
    out.error(&["xbus: invalid JSON: "]);
    let out = run(xbus(
        &[&["reply", "no method", "{}"][..], &unreachable[..]].concat(),
    ))
    .await;
    out.error(&["xbus: invalid method name \"no method\""]);
    // An answer, or a command: one of them.
    let out = run(xbus(&[&["reply", "m.x"][..], &unreachable[..]].concat())).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    let both = ["reply", "m.x", "{}", "--command", "cat"];
    let out = run(xbus(&[&both[..], &unreachable[..]].concat())).await;
    assert_eq!(out.code, Some(2), "{out:?}");
}

/// A foreign client's calls checked against a real xbus responder: the
/// slixmpp peer (`integration-tests/slixmpp/xbus_peer.py`, written from
/// docs/PROTOCOL.md) finds `xbus reply`'s instance by presence and calls it
/// in both encodings; an unknown method gets §5.1's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slixmpp_client_calls_xbus_reply() {
    matrix(async |kind| {
        let (responder, caller) = (User::new(kind), User::new(kind));
        let answer = r#"{"sum":6,"count":3,"caller":"mock"}"#;
        let (replier, _instance) = reply(&responder, &["py.mock", answer, "--count", "2"]).await;
        let job = json!({
            "host": caller.addr.ip().to_string(),
            "port": caller.addr.port(),
            "jid": caller.jid(),
            "password": caller.account.password,
            "tls": "plaintext",
            "pubsub": crate::common::server(kind).pubsub_service(),
            "timeout": 10,
            "scenario": "call",
            "service": responder.jid(),
            "calls": [
                // First: the replier closes once it served --count calls.
                {"method": "py.other", "encoding": "json", "version": 1, "request": {}},
                {"method": "py.mock", "encoding": "json", "version": 1,
                 "request": {"values": [1, 2, 3]}},
                {"method": "py.mock", "encoding": "msgpack", "version": 1,
                 "request": {"values": [4]}},
            ],
        });
        let out = crate::common::slixmpp_peer(&job.to_string()).await;
        let lines = json_lines(&out);
        let kinds: Vec<&str> = lines.iter().filter_map(|l| l["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            ["instance", "error", "response", "response", "done"],
            "{out}"
        );
        for (line, encoding) in lines[2..4].iter().zip(["json", "msgpack"]) {
            assert_eq!(line["encoding"], json!(encoding), "{line}");
            assert_eq!(
                line["response"],
                serde_json::from_str::<serde_json::Value>(answer).unwrap()
            );
        }
        assert_eq!(lines[1]["condition"], json!("feature-not-implemented"));
        assert_eq!(lines[1]["unknown_method"], json!("py.other"));
        let served = json_lines(replier.finish().await.ok());
        assert_eq!(served.len(), 2);
        assert_eq!(served[0]["request"], json!({"values": [1, 2, 3]}));
    })
    .await;
}
