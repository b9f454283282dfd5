//! Glue between the harness (servers, accounts) and xbus, shared by the
//! integration tests.
//!
//! # The server matrix
//!
//! Every test that needs a server runs its body once per server named in
//! `XBUS_TEST_SERVERS` (default `embedded,prosody,ejabberd,ejabberd-cluster`, see
//! [`ServerKind::from_env`]), one server after the other:
//!
//! ```ignore
//! #[tokio::test]
//! async fn round_trip() {
//!     matrix(async |kind| {
//!         let (_server, publisher, subscriber) = two_buses(kind).await;
//!         ...
//!     })
//!     .await;
//! }
//! ```
//!
//! * A failure names the server: every panic of [`within`] and [`next`]
//!   starts with `[ejabberd]` (or the kind at hand), and [`matrix`] ends
//!   with one panic that lists each failing server with its message, after
//!   running the body on the other servers too.
//! * Nothing passes without running: an unknown name or an empty list in
//!   `XBUS_TEST_SERVERS` fails every test at once, and each run prints
//!   `=== on KIND` and `=== KIND: passed in ...` (see them with
//!   `--nocapture`).
//! * A new kind of server needs no change here: it is one more
//!   [`ServerKind`] (one line in the harness) and one more name in the list.
#![allow(dead_code)]

use std::cell::Cell;
use std::future::IntoFuture;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use xbus::{Bus, BusConfig};
pub use xbus_integration_tests::{Account, ServerKind, XmppServer};

/// A running test server of any kind.
pub type Server = Box<dyn XmppServer>;

/// Upper bound for any single await in these tests.
pub const STEP: Duration = Duration::from_secs(10);

thread_local! {
    /// The server kind whose run is in progress on this thread (tests run
    /// on a current-thread runtime, so tasks they spawn see it too).
    static CURRENT: Cell<Option<ServerKind>> = const { Cell::new(None) };
}

/// `"[kind] "` while [`matrix`] runs a body, else `""`.
pub fn tag() -> String {
    CURRENT
        .get()
        .map(|kind| format!("[{kind}] "))
        .unwrap_or_default()
}

/// The servers this test run covers: `XBUS_TEST_SERVERS`, or
/// `embedded,prosody,ejabberd,ejabberd-cluster` if unset. Panics on an unknown name or an empty list.
pub fn servers() -> Vec<ServerKind> {
    ServerKind::from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `test` once for each of [`servers`], one after the other, and
/// panics at the end if it failed on any, naming each failing server.
pub async fn matrix<F: AsyncFn(ServerKind)>(test: F) {
    init_tracing();
    let mut failures = Vec::new();
    let kinds = servers();
    for &kind in &kinds {
        eprintln!("=== on {kind}");
        let started = Instant::now();
        CURRENT.set(Some(kind));
        let outcome = AssertUnwindSafe(test(kind)).catch_unwind().await;
        CURRENT.set(None);
        match outcome {
            Ok(()) => eprintln!("=== {kind}: passed in {:?}", started.elapsed()),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "(no message)".to_owned());
                eprintln!("=== {kind}: FAILED after {:?}", started.elapsed());
                failures.push(format!("on {kind}: {message}"));
            }
        }
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    assert!(
        failures.is_empty(),
        "failed on {} of {} servers ({}):\n{}",
        failures.len(),
        kinds.len(),
        names.join(","),
        failures.join("\n")
    );
}

/// Awaits `future`, failing the test after `STEP` with `what` (and the
/// server kind) in the message.
pub async fn within<F: IntoFuture>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future.into_future()).await {
        Ok(value) => value,
        Err(_) => panic!("{}timed out after {STEP:?}: {what}", tag()),
    }
}

/// The next item of a stream, bounded by `STEP`.
pub async fn next<S: Stream + Unpin>(what: &str, stream: &mut S) -> S::Item {
    within(what, stream.next())
        .await
        .unwrap_or_else(|| panic!("{}stream ended: {what}", tag()))
}

/// Starts a server of `kind` for one test.
pub fn start(kind: ServerKind) -> Server {
    kind.start()
        .unwrap_or_else(|e| panic!("[{kind}] start the server: {e}"))
}

/// Starts a Prosody, for tests not on the matrix yet (`slixmpp_*.rs`).
pub fn prosody() -> xbus_integration_tests::Prosody {
    xbus_integration_tests::Prosody::start().expect("start prosody")
}

/// A plaintext-on-loopback config for `account`.
pub fn config(server: &dyn XmppServer, account: &Account) -> xbus::BusConfigBuilder {
    BusConfig::builder(account.jid.clone(), account.password.clone())
        .server(server.addr().to_string())
        .allow_plaintext()
}

/// A fresh account and a bus connected as it.
pub async fn bus(server: &dyn XmppServer) -> Bus {
    let account = server.account().expect("register account");
    let config = config(server, &account).build().expect("valid config");
    within("connect", Bus::connect(config))
        .await
        .unwrap_or_else(|e| panic!("{}connect: {e}", tag()))
}

/// A raw tokio-xmpp client (no xbus) logged in as `account`: for injecting
/// what a well-behaved bus would never send.
pub async fn raw_client(server: &dyn XmppServer, account: &Account) -> tokio_xmpp::Client {
    xbus_integration_tests::raw::raw_client(server.addr(), account).await
}

/// Installs a tracing subscriber once (RUST_LOG decides what is shown).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Sends an IQ from a raw client and waits for its answer, polling the
/// client's stream meanwhile (its answers arrive through it).
pub async fn raw_iq(
    client: &mut tokio_xmpp::Client,
    to: &str,
    request: tokio_xmpp::IqRequest,
) -> tokio_xmpp::IqResponse {
    raw_iq_within(client, to, request, STEP)
        .await
        .unwrap_or_else(|| panic!("{}timed out after {STEP:?}: raw iq answer", tag()))
}

pub use xbus_integration_tests::raw::raw_iq_within;

/// Asks the server's pubsub service `request` (built by `request` for each
/// try) as `account`, each try on a fresh raw connection, and returns the
/// answer. Such a query went unanswered for 10 s a few times in many runs
/// (on the embedded server under heavy load, on the ejabberd cluster in
/// CI), so an unanswered one is asked again, up to three times: it is the
/// test's view of the server, not xbus behaviour.
pub async fn pubsub_query(
    server: &dyn XmppServer,
    account: &Account,
    what: &str,
    request: impl Fn() -> tokio_xmpp::IqRequest,
) -> tokio_xmpp::IqResponse {
    let to = server.pubsub_service();
    for attempt in 1..=3 {
        let mut raw = raw_client(server, account).await;
        if let Some(answer) = raw_iq_within(&mut raw, &to, request(), STEP).await {
            return answer;
        }
        eprintln!(
            "{}{what}: unanswered after {STEP:?} (attempt {attempt} of 3)",
            tag()
        );
    }
    panic!("{}{what}: no answer in three tries", tag())
}

/// A server of `kind` and two buses on it (tracing initialised): the usual
/// start.
pub async fn two_buses(kind: ServerKind) -> (Server, Bus, Bus) {
    init_tracing();
    let server = start(kind);
    let first = bus(&*server).await;
    let second = bus(&*server).await;
    (server, first, second)
}

/// A bus connected as `account` with the resource `resource`: one
/// instance of the service `account`.
pub async fn instance(server: &dyn XmppServer, account: &Account, resource: &str) -> Bus {
    let config = BusConfig::builder(
        format!("{}/{resource}", account.jid),
        account.password.clone(),
    )
    .server(server.addr().to_string())
    .allow_plaintext()
    .build()
    .expect("valid config");
    within("connect instance", Bus::connect(config))
        .await
        .expect("connect instance")
}

/// Closes `buses`, then waits for the consumer `tasks`, which end when
/// their bus closes.
pub async fn close_all<'a>(
    buses: impl IntoIterator<Item = &'a Bus>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) {
    for bus in buses {
        within("close", bus.close()).await.expect("close");
    }
    for task in tasks {
        let _ = within("consumer ends", task).await;
    }
}

/// A bus of its own subscribed to `topic` (raw): for watching a group's
/// dead-letter topic.
pub async fn watch_raw(server: &dyn XmppServer, topic: &str) -> (Bus, xbus::RawSubscription) {
    let watcher = bus(server).await;
    let subscription = within("raw subscription", watcher.subscribe_raw(topic))
        .await
        .expect("subscribe");
    (watcher, subscription)
}

/// `count` instances of one fresh service account, named `i1`, `i2`, ...
pub async fn instances(server: &dyn XmppServer, count: usize) -> (Account, Vec<Bus>) {
    let account = server.account().expect("register account");
    let mut buses = Vec::new();
    for n in 1..=count {
        buses.push(instance(server, &account, &format!("i{n}")).await);
    }
    (account, buses)
}

// Not every test uses every one of them.
#[allow(unused_imports)]
pub use xbus_integration_tests::instance::{Echo, Echoed, Job};
#[allow(unused_imports)]
pub use xbus_integration_tests::{InstanceProcess, InstanceSettings};

/// The `xbus_instance` helper binary (a bus in a process of its own).
pub const INSTANCE_BIN: &str = env!("CARGO_BIN_EXE_xbus_instance");

/// Starts `xbus_instance ARGS` as `account` with the resource `resource`
/// on `server` (plaintext on loopback, like [`config`]). Killed on drop.
pub fn spawn_instance(
    server: &dyn XmppServer,
    account: &Account,
    resource: &str,
    args: &[&str],
) -> InstanceProcess {
    let settings = InstanceSettings::new(server, account, resource);
    InstanceProcess::spawn(INSTANCE_BIN, &settings, args)
        .unwrap_or_else(|e| panic!("{}spawn {INSTANCE_BIN}: {e}", tag()))
}

/// An `xbus_instance serve` process for `account`/`resource`, once it
/// printed `ready`; returns it and its full JID.
pub async fn serving_process(
    server: &dyn XmppServer,
    account: &Account,
    resource: &str,
) -> (InstanceProcess, String) {
    let mut process = spawn_instance(server, account, resource, &["serve"]);
    let jid = process.ready(STEP).await;
    (process, jid)
}

/// A bus of `account` and its status stream, read up to `Connected`.
pub async fn bus_with_status(
    server: &dyn XmppServer,
    account: &Account,
) -> (Bus, xbus::StatusStream) {
    let bus = within(
        "connect",
        Bus::connect(config(server, account).build().expect("config")),
    )
    .await
    .expect("connect");
    let mut status = bus.status();
    assert_eq!(
        next("status", &mut status).await,
        xbus::ConnectionEvent::Connected
    );
    (bus, status)
}

/// Ends `bus`'s session from outside: another login with its full JID
/// takes the resource (RFC 6120 §7.7.2.2), so the session cannot be
/// resumed and the bus starts a new one. Returns the status events up to
/// and including `SessionReset`.
pub async fn steal_session(
    server: &dyn XmppServer,
    account: &Account,
    bus: &Bus,
    status: &mut xbus::StatusStream,
) -> Vec<xbus::ConnectionEvent> {
    let mut intruder = account.clone();
    intruder.jid = bus.jid().to_string();
    drop(raw_client(server, &intruder).await);
    let mut events = Vec::new();
    within("reconnect and session reset", async {
        loop {
            let event = next("status", status).await;
            events.push(event.clone());
            if event == xbus::ConnectionEvent::SessionReset {
                return;
            }
        }
    })
    .await;
    events
}
