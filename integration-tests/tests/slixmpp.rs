//! Interoperability with a third-party client: slixmpp (Python), driven by
//! `integration-tests/slixmpp/xbus_peer.py`, which was written from
//! `docs/PROTOCOL.md` alone. On the other side are ordinary xbus buses.
//!
//! The peer runs in the venv that `scripts/slixmpp-venv.sh` creates
//! (`target/slixmpp-venv/bin/python`, or `XBUS_SLIXMPP_PYTHON`); without it
//! these tests fail with that command, they never skip. The peer takes a
//! JSON job on stdin and prints JSON lines, which the tests read in order.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{STEP, bus, next, within};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use xbus::{Context, Encoding, Event, Headers, RawPayload, Request, RequestError, RpcError};
use xbus_integration_tests::{Account, ServerKind, XmppServer};

// --- The server: the one place to switch to the server matrix. ---

fn start_server(kind: ServerKind) -> common::Server {
    python(); // fails first, with the command, when the venv is missing
    common::start(kind)
}

// --- Types on the Rust side ---

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "orders.created")]
struct OrderCreated {
    id: u64,
    customer: String,
    total_cents: u64,
    lines: Vec<String>,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "stock.changed", encoding = "json", version = 3)]
struct StockChanged {
    sku: String,
    delta: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "user.event")]
enum UserEvent {
    Signup { name: String },
    Deleted(u64),
    Purged,
}

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "inventory.check", response = StockLevel)]
struct CheckStock {
    sku: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct StockLevel {
    sku: String,
    available: u32,
    caller: String,
}

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "inventory.reserve", response = Reserved, encoding = "json", version = 2)]
struct Reserve {
    sku: String,
    quantity: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reserved {
    reservation: String,
    trace: Option<String>,
}

/// The method the Python peer serves (JSON).
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "py.sum", response = Sum, encoding = "json")]
struct PySum {
    values: Vec<i64>,
}

/// The same handler in the peer, as MessagePack version 2.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "py.sum_packed", response = Sum, version = 2)]
struct PySumPacked {
    values: Vec<i64>,
}

/// A method the peer does not serve.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "py.missing", response = Sum, encoding = "json")]
struct PyMissing {
    values: Vec<i64>,
}

/// `py.sum` in a version the peer does not serve.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "py.sum", response = Sum, encoding = "json", version = 9)]
struct PySumV9 {
    values: Vec<i64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Sum {
    sum: i64,
    count: u32,
    caller: String,
}

/// The item's `publisher` is the account's JID (section 3.4: Prosody gives
/// the bare JID; the document leaves the form to the server).
fn assert_publisher(publisher: Option<&str>, bare: &str) {
    let publisher = publisher.expect("the server exposes the publisher");
    assert!(
        publisher == bare || publisher.starts_with(&format!("{bare}/")),
        "publisher {publisher:?} is not {bare}"
    );
}

// --- What the peer prints (Serialize only for `Json<T>`'s bounds) ---

#[derive(Serialize, Deserialize, Debug)]
struct Kind {
    kind: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Ready {
    jid: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Published {
    topic: String,
    item_id: String,
    encoding: String,
    acked_item_id: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Subscribed {
    topic: String,
    jid: String,
    subscription: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Received<T> {
    via: String,
    from: String,
    message_type: Option<String>,
    topic: String,
    item_id: Option<String>,
    publisher: Option<String>,
    encoding: String,
    version: u32,
    event: T,
    headers: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Instance {
    jid: String,
    status: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Response<T> {
    method: String,
    encoding: String,
    version: u32,
    response: T,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct CallError {
    method: String,
    #[serde(rename = "type")]
    kind: String,
    condition: Option<String>,
    text: Option<String>,
    failure_code: Option<String>,
    unknown_method: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Served {
    method: String,
    from: String,
    outcome: String,
}

/// JSON through xbus's own JSON codec (serde_json), so that this test needs
/// no dependency of its own for the peer's JSON lines.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct Json<T>(T);

impl<T: Serialize + DeserializeOwned + Send + 'static> Event for Json<T> {
    const TOPIC: &'static str = "slixmpp.peer";
    const ENCODING: Encoding = Encoding::Json;
    const VERSION: u32 = 0;
}

fn from_json<T: Serialize + DeserializeOwned + Send + 'static>(text: &str) -> T {
    let raw = RawPayload {
        topic: Json::<T>::TOPIC.into(),
        encoding: Encoding::Json,
        version: 0,
        data: text.as_bytes().to_vec(),
        headers: Headers::new(),
    };
    match raw.decode::<Json<T>>() {
        Ok(Json(value)) => value,
        Err(error) => panic!(
            "peer line does not decode as {}: {error}\n{text}",
            std::any::type_name::<T>()
        ),
    }
}

fn to_json<T: Serialize + DeserializeOwned + Send + 'static>(value: T) -> String {
    let raw = RawPayload::encode(&Json(value)).expect("encode JSON");
    String::from_utf8(raw.data).expect("JSON is UTF-8")
}

// --- The peer process ---

/// `target/slixmpp-venv/bin/python` at the repository root, or
/// `XBUS_SLIXMPP_PYTHON`; panics with the command that creates it.
fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = match std::env::var_os("XBUS_SLIXMPP_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => root.join("target/slixmpp-venv/bin/python"),
    };
    assert!(
        python.exists(),
        "the slixmpp interoperability test needs its Python venv, and {} does not exist. \
         Create it with: scripts/slixmpp-venv.sh (from the repository root; it installs \
         the pinned slixmpp and msgpack from PyPI), or set XBUS_SLIXMPP_PYTHON to a python \
         that has them",
        python.display()
    );
    python
}

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slixmpp/xbus_peer.py")
}

/// How the peer reaches the server.
#[derive(Clone, Copy)]
enum Tls {
    /// Plaintext on loopback, SASL in the clear.
    Plaintext,
    /// STARTTLS, verifying the server against the test CA.
    StartTls,
}

#[derive(Serialize, Deserialize)]
struct Login {
    host: String,
    port: u16,
    jid: String,
    password: String,
    tls: String,
    ca_file: Option<String>,
    pubsub: String,
    timeout: u64,
}

/// A running `xbus_peer.py`, killed when dropped.
struct Peer {
    name: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
    started: Instant,
}

impl Peer {
    /// Starts the peer as `account` with the scenario `scenario` (a JSON
    /// object whose fields are added to the login's).
    async fn start(server: &dyn XmppServer, account: &Account, tls: Tls, scenario: &str) -> Peer {
        let login = to_json(Login {
            host: server.addr().ip().to_string(),
            port: server.addr().port(),
            jid: account.jid.clone(),
            password: account.password.clone(),
            tls: match tls {
                Tls::Plaintext => "plaintext".into(),
                Tls::StartTls => "starttls".into(),
            },
            ca_file: match tls {
                Tls::Plaintext => None,
                Tls::StartTls => Some(server.ca_file().display().to_string()),
            },
            pubsub: server.pubsub_service(),
            timeout: STEP.as_secs(),
        });
        let scenario = scenario.trim();
        assert!(scenario.starts_with('{') && scenario.ends_with('}'));
        let job = format!("{},{}", login.strip_suffix('}').unwrap(), &scenario[1..]);
        let mut child = Command::new(python())
            .arg(peer_script())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the slixmpp peer");
        let mut stdin = child.stdin.take().expect("stdin");
        within("write the job", stdin.write_all(job.as_bytes()))
            .await
            .expect("write the job");
        drop(stdin);
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Peer {
            name: format!("slixmpp peer {}", account.jid),
            child,
            lines: BufReader::new(stdout).lines(),
            stderr: Some(stderr),
            started: Instant::now(),
        }
    }

    /// What the peer wrote on stderr (waits briefly for it to exit).
    async fn stderr(&mut self) -> String {
        let _ = tokio::time::timeout(Duration::from_secs(3), self.child.wait()).await;
        let _ = self.child.start_kill();
        match self.stderr.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .map(|text| text.unwrap_or_default())
                .unwrap_or_else(|_| "(stderr not closed)".into()),
            None => String::new(),
        }
    }

    /// The next line, which must be of kind `kind`, decoded as `T`.
    async fn expect<T: Serialize + DeserializeOwned + Send + 'static>(&mut self, kind: &str) -> T {
        let what = format!("{}: a {kind:?} line", self.name);
        let line = match tokio::time::timeout(STEP, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                let stderr = self.stderr().await;
                panic!("{what}: the peer ended its output\n--- stderr ---\n{stderr}")
            }
            Ok(Err(error)) => panic!("{what}: reading stdout: {error}"),
            Err(_) => {
                let stderr = self.stderr().await;
                panic!("{what}: nothing within {STEP:?}\n--- stderr ---\n{stderr}")
            }
        };
        let found = from_json::<Kind>(&line).kind;
        if found != kind {
            let stderr = self.stderr().await;
            panic!("{what}, got:\n{line}\n--- stderr ---\n{stderr}");
        }
        from_json(&line)
    }

    /// Waits for the `done` line and a successful exit.
    async fn finish(mut self) -> Duration {
        self.expect::<Kind>("done").await;
        let status = within("peer exit", self.child.wait())
            .await
            .expect("wait for the peer");
        if !status.success() {
            let stderr = self.stderr().await;
            panic!(
                "{} exited with {status}\n--- stderr ---\n{stderr}",
                self.name
            );
        }
        self.started.elapsed()
    }
}

// --- The tests ---

/// slixmpp publishes (MessagePack and JSON, with a header, and enums) what
/// typed Rust subscribers receive; over STARTTLS with the test CA.
#[tokio::test]
async fn rust_subscribers_receive_what_slixmpp_publishes() {
    common::matrix(async |kind| {
    let server = start_server(kind);
    let subscriber = bus(&server).await;
    let mut orders = within("subscribe", subscriber.subscribe::<OrderCreated>())
        .await
        .unwrap();
    let mut stock = within("subscribe", subscriber.subscribe::<StockChanged>())
        .await
        .unwrap();
    let mut users = within("subscribe", subscriber.subscribe::<UserEvent>())
        .await
        .unwrap();

    let python = server.account().expect("account");
    let mut peer = Peer::start(
        &server,
        &python,
        Tls::StartTls,
        r#"{"scenario": "publish", "items": [
            {"topic": "orders.created", "encoding": "msgpack", "version": 1,
             "event": {"id": 7, "customer": "ada", "total_cents": 1299, "lines": ["A1", "B2"]}},
            {"topic": "orders.created", "encoding": "msgpack", "version": 1, "wrap_base64": true,
             "event": {"id": 8, "customer": "a customer with a long name, for several lines of base64",
                       "total_cents": 18446744073709551615, "lines": ["C3", "D4", "E5", "F6"]}},
            {"topic": "stock.changed", "encoding": "json", "version": 3,
             "event": {"sku": "C3", "delta": -4}, "headers": {"trace-id": "abc123"}},
            {"topic": "user.event", "encoding": "msgpack", "version": 1,
             "event": {"Signup": {"name": "grace"}}},
            {"topic": "user.event", "encoding": "msgpack", "version": 1, "event": {"Deleted": 9}},
            {"topic": "user.event", "encoding": "msgpack", "version": 1, "event": "Purged"}
        ]}"#,
    )
    .await;
    let mut published = Vec::new();
    for (topic, items) in [
        ("orders.created", 2),
        ("stock.changed", 1),
        ("user.event", 3),
    ] {
        // The Rust subscriber created the node already (section 3.1).
        let node: NodeLine = peer.expect("node").await;
        assert_eq!(
            (node.topic.as_str(), node.outcome.as_deref()),
            (topic, Some("conflict"))
        );
        for _ in 0..items {
            let item: Published = peer.expect("published").await;
            assert_eq!(item.topic, topic);
            // The result IQ names the item, or nothing (section 3.2).
            assert!(
                item.acked_item_id.is_none() || item.acked_item_id == Some(item.item_id.clone())
            );
            published.push(item);
        }
    }
    let took = peer.finish().await;
    assert_eq!(
        published
            .iter()
            .map(|p| p.encoding.as_str())
            .collect::<Vec<_>>(),
        [
            "msgpack", "msgpack", "json", "msgpack", "msgpack", "msgpack"
        ]
    );

    let order = next("order", &mut orders).await.expect("order decodes");
    assert_eq!(
        order.event,
        OrderCreated {
            id: 7,
            customer: "ada".into(),
            total_cents: 1299,
            lines: vec!["A1".into(), "B2".into()],
        }
    );
    assert_eq!(order.topic, "orders.created");
    assert_eq!(
        order.item_id.as_deref(),
        Some(published[0].item_id.as_str())
    );
    assert_publisher(order.publisher.as_deref(), &python.jid);
    // Line-wrapped, indented base64 as in section 2's example; u64::MAX.
    let wrapped = next("wrapped order", &mut orders)
        .await
        .expect("wrapped base64 decodes");
    assert_eq!(
        wrapped.event,
        OrderCreated {
            id: 8,
            customer: "a customer with a long name, for several lines of base64".into(),
            total_cents: u64::MAX,
            lines: vec!["C3".into(), "D4".into(), "E5".into(), "F6".into()],
        }
    );
    assert_eq!(
        wrapped.item_id.as_deref(),
        Some(published[1].item_id.as_str())
    );

    let change = next("stock", &mut stock).await.expect("stock decodes");
    assert_eq!(
        change.event,
        StockChanged {
            sku: "C3".into(),
            delta: -4
        }
    );
    assert_eq!(
        change.item_id.as_deref(),
        Some(published[2].item_id.as_str())
    );
    assert_publisher(change.publisher.as_deref(), &python.jid);
    assert_eq!(change.headers.get("trace-id"), Some("abc123"));

    let mut got = Vec::new();
    for item in &published[3..] {
        let user = next("user", &mut users).await.expect("user event decodes");
        assert_eq!(user.item_id.as_deref(), Some(item.item_id.as_str()));
        got.push(user.event);
    }
    assert_eq!(
        got,
        [
            UserEvent::Signup {
                name: "grace".into()
            },
            UserEvent::Deleted(9),
            UserEvent::Purged
        ]
    );
    eprintln!("slixmpp publish scenario (6 items) took {took:?}");
    within("close", subscriber.close()).await.unwrap();
    })
    .await;
}

#[derive(Serialize, Deserialize, Debug)]
struct NodeLine {
    topic: String,
    outcome: Option<String>,
}

/// slixmpp subscribes to topics a Rust bus publishes to, and receives what
/// a Rust bus `send()`s to its bare and its full JID.
#[tokio::test]
async fn slixmpp_receives_what_rust_publishes_and_sends() {
    common::matrix(async |kind| {
        let server = start_server(kind);
        let rust = bus(&server).await;
        let python = server.account().expect("account");
        let mut peer = Peer::start(
            &server,
            &python,
            Tls::Plaintext,
            r#"{"scenario": "receive", "topics": ["orders.created", "stock.changed"], "count": 4}"#,
        )
        .await;
        let mut peer_jid = String::new();
        for topic in ["orders.created", "stock.changed"] {
            let node: NodeLine = peer.expect("node").await;
            assert_eq!(node.topic, topic);
            let subscribed: Subscribed = peer.expect("subscribed").await;
            assert_eq!(subscribed.topic, topic);
            assert_eq!(subscribed.subscription.as_deref(), Some("subscribed"));
            peer_jid = subscribed.jid;
        }
        let ready: Ready = peer.expect("ready").await;
        assert_eq!(ready.jid, peer_jid);
        assert!(
            peer_jid.starts_with(&format!("{}/", python.jid)),
            "{peer_jid}"
        );

        let order = OrderCreated {
            id: 42,
            customer: "linus".into(),
            total_cents: 4200,
            lines: vec!["X".into()],
        };
        let stock = StockChanged {
            sku: "D4".into(),
            delta: 7,
        };
        let mut headers = Headers::new();
        headers.insert("trace-id", "t-1");
        let order_receipt = within("publish", rust.publish(&order)).await.unwrap();
        let stock_receipt = within(
            "publish",
            rust.publish_with_headers(&stock, headers.clone()),
        )
        .await
        .unwrap();
        within("send bare", rust.send(&python.jid, &stock))
            .await
            .unwrap();
        within("send full", rust.send(&peer_jid, &order))
            .await
            .unwrap();

        // Four events; the two routes (pubsub, direct) may interleave.
        let mut lines = Vec::new();
        for _ in 0..4 {
            lines.push(peer.expect::<Received<EventValue>>("event").await);
        }
        for topic in ["orders.created", "stock.changed"] {
            let unsubscribed: Subscribed = peer.expect("unsubscribed").await;
            assert_eq!(unsubscribed.topic, topic);
        }
        let took = peer.finish().await;
        let rust_full = rust.jid().to_string();
        let rust_bare = rust.jid().to_bare().to_string();
        let mut seen = Vec::new();
        for line in lines {
            match (line.via.as_str(), line.topic.as_str()) {
                ("pubsub", "orders.created") => {
                    assert_eq!(line.event, EventValue::Order(order.clone()));
                    assert_eq!((line.encoding.as_str(), line.version), ("msgpack", 1));
                    assert_eq!(
                        line.item_id.as_deref(),
                        Some(order_receipt.item_id.as_str())
                    );
                    assert_publisher(line.publisher.as_deref(), &rust_bare);
                    assert_eq!(line.from, server.pubsub_service());
                    assert_eq!(line.message_type.as_deref(), Some("headline"));
                }
                ("pubsub", "stock.changed") => {
                    assert_eq!(line.event, EventValue::Stock(stock.clone()));
                    assert_eq!((line.encoding.as_str(), line.version), ("json", 3));
                    assert_eq!(
                        line.item_id.as_deref(),
                        Some(stock_receipt.item_id.as_str())
                    );
                    assert_publisher(line.publisher.as_deref(), &rust_bare);
                    assert_eq!(
                        line.headers.get("trace-id").map(String::as_str),
                        Some("t-1")
                    );
                }
                ("message", "stock.changed") => {
                    assert_eq!(line.message_type.as_deref(), Some("normal"));
                    assert_eq!(line.event, EventValue::Stock(stock.clone()));
                    assert_eq!((line.encoding.as_str(), line.version), ("json", 3));
                    assert_eq!(line.from, rust_full);
                }
                ("message", "orders.created") => {
                    assert_eq!(line.event, EventValue::Order(order.clone()));
                    assert_eq!((line.encoding.as_str(), line.version), ("msgpack", 1));
                    assert_eq!(line.from, rust_full);
                }
                other => panic!("unexpected event {other:?}: {line:?}"),
            }
            seen.push(format!("{} {}", line.via, line.topic));
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "message orders.created",
                "message stock.changed",
                "pubsub orders.created",
                "pubsub stock.changed"
            ]
        );
        eprintln!("slixmpp receive scenario (4 events) took {took:?}");
        within("close", rust.close()).await.unwrap();
    })
    .await;
}

/// What the peer decoded, as one of the Rust types.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(untagged)]
enum EventValue {
    Order(OrderCreated),
    Stock(StockChanged),
}

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
/// peer announces an instance per section 6).
#[tokio::test]
async fn rust_calls_a_slixmpp_service() {
    common::matrix(async |kind| {
    let server = start_server(kind);
    let python = server.account().expect("account");
    let mut peer = Peer::start(
        &server,
        &python,
        Tls::Plaintext,
        r#"{"scenario": "serve", "calls": 5, "methods": {
            "py.sum": {"encoding": "json", "version": 1},
            "py.sum_packed": {"encoding": "msgpack", "version": 2}}}"#,
    )
    .await;
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
