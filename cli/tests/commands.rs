//! The `xbus` binary against the embedded server and Prosody: every
//! subcommand, and the errors a user meets.

mod common;
mod reply;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use xbus::{BusConfig, Context, Request, RpcError};

use common::{Running, User, json_lines, matrix, run, within, xbus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_and_sub_round_trip_in_both_encodings() {
    matrix(async |kind| {
        let (publisher, subscriber) = (User::new(kind), User::new(kind));
        let topic = format!("cli.round-trip.{kind}");
        let mut sub = Running::spawn(subscriber.xbus(&["sub", &topic, "--count", "2"]));
        assert_eq!(sub.stderr_line().await, format!("subscribed to {topic}"));

        let first = run(publisher.xbus(&["pub", &topic, r#"{"id":7,"tags":["a"]}"#])).await;
        let second = run(publisher.xbus(&[
            "pub",
            &topic,
            r#"{"id":8}"#,
            "--encoding",
            "json",
            "--version",
            "2",
            "--header",
            "trace=abc",
        ]))
        .await;
        let ids = [first.ok().trim(), second.ok().trim()];
        for id in ids {
            assert!(!id.is_empty() && !id.contains('\n'), "one item id: {id:?}");
        }

        let out = sub.finish().await;
        let lines = json_lines(out.ok());
        assert_eq!(lines.len(), 2, "{out:?}");
        assert_eq!(lines[0]["topic"], json!(topic));
        assert_eq!(lines[0]["item_id"], json!(ids[0]));
        assert_eq!(lines[0]["encoding"], json!("msgpack"));
        assert_eq!(lines[0]["version"], json!(1));
        assert_eq!(lines[0]["event"], json!({"id": 7, "tags": ["a"]}));
        let publisher_jid = lines[0]["publisher"].as_str().unwrap_or_default();
        assert!(publisher_jid.starts_with(publisher.jid()), "{lines:?}");
        assert_eq!(lines[1]["item_id"], json!(ids[1]));
        assert_eq!(lines[1]["encoding"], json!("json"));
        assert_eq!(lines[1]["version"], json!(2));
        assert_eq!(lines[1]["headers"]["trace"], json!("abc"));
        assert_eq!(lines[1]["event"], json!({"id": 8}));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_replays_the_last_stored_events() {
    matrix(async |kind| {
        let user = User::new(kind);
        let topic = format!("cli.replay.{kind}");
        for n in 1..=3 {
            run(user.xbus(&["pub", &topic, &format!(r#"{{"n":{n}}}"#)]))
                .await
                .ok();
        }
        let out = run(user.xbus(&["sub", &topic, "--replay", "2", "--count", "2"])).await;
        let events: Vec<_> = json_lines(out.ok())
            .into_iter()
            .map(|l| l["event"].clone())
            .collect();
        assert_eq!(events, [json!({"n": 2}), json!({"n": 3})]);

        // Fewer events than --count within --timeout: an error.
        let out = run(user.xbus(&["sub", &topic, "--count", "1", "--timeout", "0.5"])).await;
        out.error(&["timed out", "0 of 1"]);
    })
    .await;
}

/// An item whose payload names another topic than its node is reported on
/// stderr and printed as no event (docs/PROTOCOL.md §2); the next is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_reports_an_item_whose_topic_is_not_its_node() {
    matrix(async |kind| {
        let user = User::new(kind);
        let topic = format!("cli.mismatch.{kind}");
        let mut sub = Running::spawn(user.xbus(&["sub", &topic, "--count", "1"]));
        assert_eq!(sub.stderr_line().await, format!("subscribed to {topic}"));
        // {"n":1}, saying topic other.topic, published on `topic`.
        let publish = format!(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{topic}'>\
             <item id='mismatch'><payload xmlns='urn:xbus:0' topic='other.topic' \
             encoding='json' version='1'>eyJuIjoxfQ==</payload></item></publish></pubsub>"
        );
        raw_set(&user, &common::server(kind).pubsub_service(), &publish).await;
        run(user.xbus(&["pub", &topic, r#"{"n":2}"#])).await.ok();
        let out = sub.finish().await;
        let lines = json_lines(out.ok());
        assert_eq!(lines.len(), 1, "{out:?}");
        assert_eq!(lines[0]["event"], json!({"n": 2}));
        let error =
            format!("payload says topic \"other.topic\" but was published on node \"{topic}\"");
        assert!(out.stderr.contains(&error), "{out:?}");
        assert!(out.stderr.contains("mismatch"), "the item id: {out:?}");
    })
    .await;
}

/// Sends `<iq type='set'>` with `xml` to `to` from a raw tokio-xmpp client
/// logged in as `user` (no xbus), and expects a result.
async fn raw_set(user: &User, to: &str, xml: &str) {
    use xbus_integration_tests::raw;
    let mut client = raw::raw_client(user.addr, &user.account).await;
    let request = tokio_xmpp::IqRequest::Set(xml.parse().expect("valid XML"));
    let answer = raw::raw_iq_within(&mut client, to, request, Duration::from_secs(10)).await;
    assert!(
        matches!(answer, Some(tokio_xmpp::IqResponse::Result(_))),
        "{answer:?}"
    );
}

#[derive(Serialize, Deserialize)]
struct Text {
    text: String,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "text.upper", response = Text)]
struct Upper {
    text: String,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "text.shout", response = Text, encoding = "json")]
struct Shout {
    text: String,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "text.slow", response = ())]
struct Slow {
    ms: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn req_calls_a_responder_and_reports_its_errors() {
    matrix(async |kind| {
        let (responder, caller) = (User::new(kind), User::new(kind));
        // A draining instance first: a call to the service must still find r1.
        let drainer = responder.bus("r0").await;
        within("drain", drainer.set_status("draining"))
            .await
            .expect("drain");
        let bus = responder.bus("r1").await;
        bus.serve(|req: Upper, _ctx: Context| async move {
            match req.text.is_empty() {
                true => Err(RpcError::new("empty_text", "nothing to upper-case")),
                false => Ok(Text {
                    text: req.text.to_uppercase(),
                }),
            }
        })
        .await
        .expect("serve text.upper");
        bus.serve(|req: Shout, _ctx: Context| async move {
            Ok(Text {
                text: format!("{}!", req.text.to_uppercase()),
            })
        })
        .await
        .expect("serve text.shout");
        bus.serve(|req: Slow, _ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(req.ms)).await;
            Ok(())
        })
        .await
        .expect("serve text.slow");
        let service = responder.jid();
        let instance = bus.jid().to_string();

        let out = run(caller.xbus(&["req", service, "text.upper", r#"{"text":"hi"}"#])).await;
        assert_eq!(json_lines(out.ok()), [json!({"text": "HI"})]);
        let out = run(caller.xbus(&[
            "req",
            &instance,
            "text.shout",
            r#"{"text":"hi"}"#,
            "--encoding",
            "json",
        ]))
        .await;
        assert_eq!(json_lines(out.ok()), [json!({"text": "HI!"})]);

        let out = run(caller.xbus(&["req", &instance, "text.upper", r#"{"text":""}"#])).await;
        out.error(&["empty_text", "nothing to upper-case"]);
        let slow = r#"{"ms":5000}"#;
        let out =
            run(caller.xbus(&["req", &instance, "text.slow", slow, "--timeout", "0.5"])).await;
        out.error(&["text.slow", "no answer within"]);
        bus.close().await.expect("close the responder");
        drainer.close().await.expect("close the draining instance");
    })
    .await;
}

/// The `INSTANCE STATUS` rows of a `services` table.
fn rows(table: &str) -> Vec<(String, String)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_lists_the_instances_of_a_service() {
    matrix(async |kind| {
        let (service, watcher) = (User::new(kind), User::new(kind));
        let first = service.bus("i1").await;
        let second = service.bus("i2").await;
        within("set a status", second.set_status("draining"))
            .await
            .expect("draining");
        let jid = |resource: &str| format!("{}/{resource}", service.jid());

        let out = run(watcher.xbus(&["services", service.jid(), "--once"])).await;
        let table = out.ok();
        assert!(table.starts_with("INSTANCE"), "{table}");
        let expected = [(jid("i1"), "ready".into()), (jid("i2"), "draining".into())];
        assert_eq!(rows(table), expected, "{table}");

        // Live: a table at start, another one when an instance comes online.
        let mut live = Running::spawn(watcher.xbus(&["services", service.jid()]));
        let header = live.stdout_line().await;
        assert!(
            header.starts_with("INSTANCE") && header.ends_with("SINCE"),
            "{header}"
        );
        let third = service.bus("i3").await;
        loop {
            let line = live.stdout_line().await;
            if line.starts_with(&jid("i3")) {
                assert!(line.contains("ready"), "{line}");
                break;
            }
        }
        drop(live);
        for bus in [first, second, third] {
            bus.close().await.expect("close an instance");
        }
    })
    .await;
}

/// The address in `listening on ADDR ...`, as the benchmark reads it.
fn listening(line: &str) -> SocketAddr {
    line.strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("not `listening on ADDR`: {line:?}"))
}

/// Sends `signal` to the process `pid`.
fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid");
    // SAFETY: kill(2) with a pid this test started and still waits for.
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill({pid}, {signal})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_serves_open_accounts_and_stops_on_sigterm() {
    let mut server = Running::spawn(xbus(&["server", "--bind", "127.0.0.1:0"]));
    let addr = listening(&server.stdout_line().await);
    let config = |jid: &str| {
        BusConfig::builder(jid, "any password")
            .server(addr.to_string())
            .allow_plaintext()
            .build()
            .expect("valid config")
    };
    let bus = within("connect", xbus::Bus::connect(config("newcomer@localhost")))
        .await
        .expect("an open account logs in");
    let mut sub = within("subscribe", bus.subscribe_raw("cli.server"))
        .await
        .expect("subscribe");
    let publisher = format!("--jid=other@localhost --password=pw --server={addr} --tls=plaintext");
    let mut args = vec!["pub", "cli.server", r#"{"ok":true}"#];
    args.extend(publisher.split(' '));
    run(xbus(&args)).await.ok();
    let delivery = within("a delivery", futures::StreamExt::next(&mut sub))
        .await
        .expect("stream open")
        .expect("a valid delivery");
    assert_eq!(delivery.payload.topic, "cli.server");
    bus.close().await.expect("close");

    signal(server.pid(), libc::SIGTERM);
    let out = server.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_fixed_users_and_tls() {
    let mut server = Running::spawn(xbus(&[
        "server",
        "--bind",
        "127.0.0.1:0",
        "--user",
        "alice:secret",
        "--tls",
    ]));
    let addr = listening(&server.stdout_line().await);
    let ca = server.stdout_line().await;
    let ca = ca.strip_prefix("CA certificate: ").expect("the CA line");
    let config = BusConfig::builder("alice@localhost", "secret")
        .server(addr.to_string())
        .ca_file(ca)
        .build()
        .expect("valid config");
    let bus = within("connect over STARTTLS", xbus::Bus::connect(config))
        .await
        .expect("alice logs in over STARTTLS");
    bus.close().await.expect("close");

    let server_flag = format!("--server={addr}");
    let tls_flag = format!("--tls={ca}");
    let login = |password: &'static str| {
        let mut command = xbus(&["pub", "cli.tls", "{}", &server_flag, &tls_flag]);
        command.env("XBUS_JID", "alice@localhost");
        command.env("XBUS_PASSWORD", password);
        command
    };
    run(login("secret")).await.ok();
    run(login("wrong"))
        .await
        .error(&["login failed", "alice@localhost"]);
    // The password from a mounted secret, and not from both places.
    let dir = tempfile::tempdir().expect("temporary directory");
    let secret = dir.path().join("password");
    std::fs::write(&secret, "secret\n").expect("write the secret");
    let mut from_file = xbus(&["pub", "cli.tls", "{}", &server_flag, &tls_flag]);
    from_file.env("XBUS_JID", "alice@localhost");
    from_file.env("XBUS_PASSWORD_FILE", &secret);
    run(from_file).await.ok();
    let mut both = login("secret");
    both.env("XBUS_PASSWORD_FILE", &secret);
    run(both).await.error(&["XBUS_PASSWORD_FILE", "give one"]);

    signal(server.pid(), libc::SIGINT);
    let out = server.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_and_exit_1() {
    let out = run(xbus(&[
        "pub",
        "t",
        "{oops",
        "--jid=a@localhost",
        "--password=pw",
    ]))
    .await;
    out.error(&["xbus: invalid JSON: "]);
    let out = run(xbus(&["pub", "t", "{}", "--password=pw"])).await;
    out.error(&["--jid", "XBUS_JID"]);
    let out = run(xbus(&["pub", "t", "{}", "--jid=a@localhost"])).await;
    out.error(&["--password", "XBUS_PASSWORD"]);
    let unreachable = ["--jid=a@localhost", "--password=pw", "--server=127.0.0.1:1"];
    let out = run(xbus(&[&["pub", "t", "{}"][..], &unreachable[..]].concat())).await;
    out.error(&["xbus: cannot connect to 127.0.0.1:1: connection refused"]);
    let out = run(xbus(&[
        "pub",
        "t",
        "{}",
        "--jid=a@localhost",
        "--password=pw",
        "--server=x",
    ]))
    .await;
    out.error(&["--server/XBUS_SERVER"]);
    // A usage error stays clap's.
    assert_eq!(run(xbus(&["pub"])).await.code, Some(2));

    matrix(async |kind| {
        let user = User::new(kind);
        let mut wrong = user.xbus(&["sub", "t"]);
        wrong.env("XBUS_PASSWORD", "not the password");
        run(wrong).await.error(&["xbus: login failed", user.jid()]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_prints_each_job_and_acks_or_naks_it() {
    matrix(async |kind| {
        let (publisher, worker) = (User::new(kind), User::new(kind));
        // Acked: each event once, attempt 1.
        let topic = format!("cli.consume.{kind}");
        let mut consume =
            Running::spawn(worker.xbus(&["consume", &topic, "--group", "billing", "--count", "2"]));
        assert_eq!(
            consume.stderr_line().await,
            format!("consuming {topic} in group billing")
        );
        for id in [1, 2] {
            run(publisher.xbus(&["pub", &topic, &format!(r#"{{"id":{id}}}"#)]))
                .await
                .ok();
        }
        let out = consume.finish().await;
        let lines = json_lines(out.ok());
        assert_eq!(lines.len(), 2, "{out:?}");
        assert_eq!(lines[0]["event"], json!({"id": 1}));
        assert_eq!(lines[1]["event"], json!({"id": 2}));
        assert!(lines.iter().all(|l| l["attempt"] == json!(1)), "{lines:?}");
        // Nak'ed: the same event again, attempt 2 (after the 1 s backoff).
        let topic = format!("cli.consume-nak.{kind}");
        let mut consume = Running::spawn(worker.xbus(&[
            "consume", &topic, "--group", "billing", "--nak", "--count", "2",
        ]));
        consume.stderr_line().await;
        run(publisher.xbus(&["pub", &topic, r#"{"id":9}"#]))
            .await
            .ok();
        let out = consume.finish().await;
        let lines = json_lines(out.ok());
        assert_eq!(lines.len(), 2, "{out:?}");
        assert_eq!(lines[0]["item_id"], lines[1]["item_id"]);
        assert_eq!(lines[0]["attempt"], json!(1));
        assert_eq!(lines[1]["attempt"], json!(2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_xbus_bench_or_says_how_to() {
    // Not installed: the error says how to run the benchmark.
    let empty = tempfile::tempdir().expect("a temporary directory");
    let mut bench = xbus(&["bench", "--quick", "--systems", "mock"]);
    bench.env("PATH", empty.path());
    run(bench).await.error(&[
        "`xbus-bench`",
        "cargo run --release -p xbus-bench -- --quick --systems mock",
        "cargo install --path bench",
    ]);

    // Installed on PATH: it runs with every option, help included, and
    // `xbus` exits as it does.
    let fake = empty.path().join("xbus-bench");
    std::fs::write(&fake, "#!/bin/sh\necho \"xbus-bench $*\"\nexit 3\n").expect("write a fake");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make the fake executable");
    let mut bench = xbus(&["bench", "--help", "--out", "x"]);
    bench.env("PATH", empty.path());
    let out = run(bench).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stdout, "xbus-bench --help --out x\n", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_create_sets_a_topic_up_for_its_publishers() {
    matrix(async |kind| {
        let (admin, publisher) = (User::new(kind), User::new(kind));
        let topic = format!("cli.setup.{kind}");
        // `xbus topic create TOPIC --publisher PUBLISHER OPTIONS...`.
        let create = async |options: &[&str]| {
            let mut args = vec!["topic", "create", &topic, "--publisher", publisher.jid()];
            args.extend_from_slice(options);
            run(admin.xbus(&args)).await
        };
        let out = create(&["--max-items", "50"]).await;
        assert_eq!(out.ok(), "", "{out:?}");
        let id = run(publisher.xbus(&["pub", &topic, r#"{"id":1}"#])).await;
        assert!(!id.ok().trim().is_empty(), "{id:?}");
        let bad = run(admin.xbus(&["topic", "create", &topic, "--publisher", "nobody"])).await;
        assert_eq!(bad.code, Some(1), "{bad:?}");
        assert!(bad.stderr.contains("bare JID"), "{bad:?}");

        // Restricted, on the topic that exists: only the publisher
        // publishes, only the reader (and the publisher) subscribes.
        let (reader, outsider) = (User::plain(kind), User::plain(kind));
        let out = create(&["--publishers-only", "--subscriber", reader.jid()]).await;
        assert_eq!(out.ok(), "", "{out:?}");
        let id = run(publisher.xbus(&["pub", &topic, r#"{"id":1}"#])).await;
        assert!(!id.ok().trim().is_empty(), "{id:?}");
        let replayed = run(reader.xbus(&["sub", &topic, "--replay", "1", "--count", "1"])).await;
        assert!(replayed.ok().contains(r#""id":1"#), "{replayed:?}");
        let refused = run(outsider.xbus(&["pub", &topic, r#"{"id":2}"#])).await;
        assert_eq!(refused.code, Some(1), "{refused:?}");
        assert!(refused.stderr.contains("allow_publisher"), "{refused:?}");
        let refused = run(outsider.xbus(&["sub", &topic, "--replay", "1", "--count", "1"])).await;
        assert_eq!(refused.code, Some(1), "{refused:?}");
        assert!(refused.stderr.contains("allow_subscriber"), "{refused:?}");
    })
    .await;
}
