//! What the slixmpp interop tests share (`slixmpp_events.rs`,
//! `slixmpp_rpc.rs`): the Rust-side types, the JSON lines the peer prints,
//! and [`Peer`], which runs `integration-tests/slixmpp/xbus_peer.py`. Each
//! test file includes it with `#[path]` and uses part of it.
#![allow(dead_code, unused_imports)]

pub use std::path::PathBuf;
pub use std::process::Stdio;
pub use std::time::{Duration, Instant};

pub use super::common::{STEP, bus, next, within};
pub use serde::de::DeserializeOwned;
pub use serde::{Deserialize, Serialize};
pub use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
pub use tokio::process::{Child, ChildStdout, Command};
pub use tokio::task::JoinHandle;
pub use xbus::{
    Context, DecodeError, DeliveryError, Encoding, Event, Headers, RawPayload, Request,
    RequestError, RpcError,
};
pub use xbus_integration_tests::{Account, ServerKind, XmppServer};

// --- The server: the one place to switch to the server matrix. ---

pub fn start_server(kind: ServerKind) -> super::common::Server {
    python(); // fails first, with the command, when the venv is missing
    super::common::start(kind)
}

// --- Types on the Rust side ---

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "orders.created")]
pub struct OrderCreated {
    pub id: u64,
    pub customer: String,
    pub total_cents: u64,
    pub lines: Vec<String>,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "stock.changed", encoding = "json", version = 3)]
pub struct StockChanged {
    pub sku: String,
    pub delta: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "user.event")]
pub enum UserEvent {
    Signup { name: String },
    Deleted(u64),
    Purged,
}

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "inventory.check", response = StockLevel)]
pub struct CheckStock {
    pub sku: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StockLevel {
    pub sku: String,
    pub available: u32,
    pub caller: String,
}

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "inventory.reserve", response = Reserved, encoding = "json", version = 2)]
pub struct Reserve {
    pub sku: String,
    pub quantity: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Reserved {
    pub reservation: String,
    pub trace: Option<String>,
}

/// The method the Python peer serves (JSON).
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "py.sum", response = Sum, encoding = "json")]
pub struct PySum {
    pub values: Vec<i64>,
}

/// The same handler in the peer, as MessagePack version 2.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "py.sum_packed", response = Sum, version = 2)]
pub struct PySumPacked {
    pub values: Vec<i64>,
}

/// A method the peer does not serve.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "py.missing", response = Sum, encoding = "json")]
pub struct PyMissing {
    pub values: Vec<i64>,
}

/// `py.sum` in a version the peer does not serve.
#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "py.sum", response = Sum, encoding = "json", version = 9)]
pub struct PySumV9 {
    pub values: Vec<i64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Sum {
    pub sum: i64,
    pub count: u32,
    pub caller: String,
}

/// The item's `publisher` is the account's JID (section 3.4: Prosody gives
/// the bare JID; the document leaves the form to the server).
pub fn assert_publisher(publisher: Option<&str>, bare: &str) {
    let publisher = publisher.expect("the server exposes the publisher");
    assert!(
        publisher == bare || publisher.starts_with(&format!("{bare}/")),
        "publisher {publisher:?} is not {bare}"
    );
}

// --- What the peer prints (Serialize only for `Json<T>`'s bounds) ---

#[derive(Serialize, Deserialize, Debug)]
pub struct Kind {
    pub kind: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Ready {
    pub jid: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Published {
    pub topic: String,
    pub item_id: String,
    pub encoding: String,
    pub acked_item_id: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Subscribed {
    pub topic: String,
    pub jid: String,
    pub subscription: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Received<T> {
    pub via: String,
    pub from: String,
    pub message_type: Option<String>,
    pub topic: String,
    pub item_id: Option<String>,
    pub publisher: Option<String>,
    pub encoding: String,
    pub version: u32,
    pub event: T,
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Instance {
    pub jid: String,
    pub status: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Response<T> {
    pub method: String,
    pub encoding: String,
    pub version: u32,
    pub response: T,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct CallError {
    pub method: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub condition: Option<String>,
    pub text: Option<String>,
    pub failure_code: Option<String>,
    pub unknown_method: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Served {
    pub method: String,
    pub from: String,
    pub outcome: String,
}

/// JSON through xbus's own JSON codec (serde_json), so that this test needs
/// no dependency of its own for the peer's JSON lines.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Json<T>(pub T);

impl<T: Serialize + DeserializeOwned + Send + 'static> Event for Json<T> {
    const TOPIC: &'static str = "slixmpp.peer";
    const ENCODING: Encoding = Encoding::Json;
    const VERSION: u32 = 0;
}

pub fn from_json<T: Serialize + DeserializeOwned + Send + 'static>(text: &str) -> T {
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

pub fn to_json<T: Serialize + DeserializeOwned + Send + 'static>(value: T) -> String {
    let raw = RawPayload::encode(&Json(value)).expect("encode JSON");
    String::from_utf8(raw.data).expect("JSON is UTF-8")
}

// --- The peer process ---

/// `target/slixmpp-venv/bin/python` at the repository root, or
/// `XBUS_SLIXMPP_PYTHON`; panics with the command that creates it.
pub fn python() -> PathBuf {
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

pub fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slixmpp/xbus_peer.py")
}

/// The consumer-group member (`xbus_group.py`, which imports `xbus_peer.py`).
pub fn group_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slixmpp/xbus_group.py")
}

/// How the peer reaches the server.
#[derive(Clone, Copy)]
pub enum Tls {
    /// Plaintext on loopback, SASL in the clear.
    Plaintext,
    /// STARTTLS, verifying the server against the test CA.
    StartTls,
}

#[derive(Serialize, Deserialize)]
pub struct Login {
    pub host: String,
    pub port: u16,
    pub jid: String,
    pub password: String,
    pub tls: String,
    pub ca_file: Option<String>,
    pub pubsub: String,
    pub timeout: u64,
}

/// A running `xbus_peer.py`, killed when dropped.
pub struct Peer {
    pub name: String,
    pub child: Child,
    pub lines: Lines<BufReader<ChildStdout>>,
    pub stderr: Option<JoinHandle<String>>,
    pub started: Instant,
}

impl Peer {
    /// Starts the peer as `account` with the scenario `scenario` (a JSON
    /// object whose fields are added to the login's).
    pub async fn start(
        server: &dyn XmppServer,
        account: &Account,
        tls: Tls,
        scenario: &str,
    ) -> Peer {
        Peer::spawn(server, &account.jid, account, tls, scenario, peer_script()).await
    }

    /// Starts `xbus_group.py`, a consumer-group member, as
    /// `account`/`resource`; `scenario` holds its group fields.
    pub async fn start_member(
        server: &dyn XmppServer,
        account: &Account,
        resource: &str,
        scenario: &str,
    ) -> Peer {
        let jid = format!("{}/{resource}", account.jid);
        Peer::spawn(
            server,
            &jid,
            account,
            Tls::Plaintext,
            scenario,
            group_script(),
        )
        .await
    }

    async fn spawn(
        server: &dyn XmppServer,
        jid: &str,
        account: &Account,
        tls: Tls,
        scenario: &str,
        script: PathBuf,
    ) -> Peer {
        let login = to_json(Login {
            host: server.addr().ip().to_string(),
            port: server.addr().port(),
            jid: jid.to_owned(),
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
            .arg(script)
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
            name: format!("slixmpp peer {jid}"),
            child,
            lines: BufReader::new(stdout).lines(),
            stderr: Some(stderr),
            started: Instant::now(),
        }
    }

    /// What the peer wrote on stderr (waits briefly for it to exit).
    pub async fn stderr(&mut self) -> String {
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
    pub async fn expect<T: Serialize + DeserializeOwned + Send + 'static>(
        &mut self,
        kind: &str,
    ) -> T {
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
    pub async fn finish(mut self) -> Duration {
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
