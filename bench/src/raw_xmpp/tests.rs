//! The xbus and raw XMPP drivers against Prosody and ejabberd: events
//! arrive complete and in order, calls echo, idle clients connect.
//!
//! The ignored `throughput_*` tests measure both drivers side by side
//! (`BENCH_N` events, default 10,000, with `BENCH_WINDOW` in flight,
//! default 256, `BENCH_ROUNDS` rounds, default 2): events per second, and
//! client and server CPU per event (getrusage, `/proc`):
//!
//! ```text
//! cargo test -p xbus-bench --release --bin xbus-bench raw_xmpp::tests::throughput -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use std::net::SocketAddr;

use tokio::sync::oneshot;

use super::client::RawClient;
use super::{RawPublisher, RawSubscriber, RawXmppSystem, SUBSCRIPTION_CAPACITY};
use crate::servers::{self, Account, XmppTarget};
use crate::system::{BenchEvent, EventSystem, Publisher, RpcSystem, Subscriber};
use crate::xmpp::{self, XbusSystem};

/// Bound on every await of a test.
const STEP: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {STEP:?}"))
}

/// Starts `name`; a server that is not installed fails the test with the
/// command that installs it (never a skip). Always `Some`.
fn start(name: &'static str) -> Option<Arc<XmppTarget>> {
    let (ok, notes) = servers::available(&[name.to_owned()]);
    assert!(!ok.is_empty(), "{notes:?}");
    Some(servers::start(name).expect("start the server"))
}

/// 200 events: the first alone (it creates the node), the rest with 64 in
/// flight; the subscriber sees each exactly once, the first first. (Publishes
/// in flight together may reach the connection in any order.)
async fn each_event_arrives_once(system: &dyn EventSystem, topic: &str) {
    let mut subscriber = bounded("subscriber", system.subscriber(topic))
        .await
        .unwrap();
    let publisher = bounded("publisher", system.publisher()).await.unwrap();
    let events: Vec<BenchEvent> = (0..200).map(BenchEvent::new).collect();
    bounded("first publish", publisher.publish(topic, &events[0]))
        .await
        .unwrap();
    let publishing = futures::stream::iter(&events[1..])
        .map(|event| publisher.publish(topic, event))
        .buffered(64)
        .collect::<Vec<_>>();
    let receiving = async {
        let mut got = Vec::new();
        for _ in 0..events.len() {
            got.push(bounded("next event", subscriber.next()).await.unwrap());
        }
        got
    };
    let (published, got) =
        bounded("200 events", futures::future::join(publishing, receiving)).await;
    for result in published {
        result.unwrap();
    }
    assert_eq!(got[0], events[0], "{}", system.name());
    let mut got = got;
    got.sort_by_key(|e| e.seq);
    assert_eq!(got, events, "{}", system.name());
}

/// 50 calls one after the other, then 50 with 16 in flight; each answer
/// is the request.
async fn calls_echo(system: &dyn RpcSystem) {
    let _responder = bounded("responder", system.responder()).await.unwrap();
    let caller = bounded("caller", system.caller()).await.unwrap();
    for seq in 0..50 {
        let request = BenchEvent::new(seq);
        let answer = bounded("call", caller.call(&request)).await.unwrap();
        assert_eq!(answer, request, "{}", system.name());
    }
    let answers = bounded(
        "concurrent calls",
        futures::stream::iter(50..100)
            .map(|seq| {
                let caller = &caller;
                async move {
                    let request = BenchEvent::new(seq);
                    (caller.call(&request).await, request)
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(answers.len(), 50);
    for (answer, request) in answers {
        assert_eq!(answer.unwrap(), request, "{}", system.name());
    }
}

async fn both_drivers(target: Arc<XmppTarget>) {
    let xbus = XbusSystem::new(target.clone());
    let raw = RawXmppSystem::new(target);
    each_event_arrives_once(&xbus, "bench.test.xbus").await;
    each_event_arrives_once(&raw, "bench.test.raw").await;
    calls_echo(&xbus).await;
    calls_echo(&raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_on_prosody() {
    let Some(target) = start("prosody") else {
        return;
    };
    both_drivers(target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_on_ejabberd() {
    let Some(target) = start("ejabberd") else {
        return;
    };
    both_drivers(target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_connect() {
    let Some(target) = start("prosody") else {
        return;
    };
    let xbus = XbusSystem::new(target.clone());
    let raw = RawXmppSystem::new(target.clone());
    let _a = bounded("xbus idle", xbus.idle_client(target.addr(), "bench.idle"))
        .await
        .unwrap();
    let _b = bounded("raw idle", raw.idle_client(target.addr(), "bench.idle"))
        .await
        .unwrap();
    // Logins cost CPU (SCRAM), most of all in a debug build: a few here,
    // the 1,000 of the memory scenario run on the embedded server.
    let started = Instant::now();
    let buses = bounded("idle buses", crate::xmpp::connect_idle_buses(&target, 12))
        .await
        .unwrap();
    assert_eq!(buses.len(), 12);
    eprintln!("12 idle buses connected in {:?}", started.elapsed());
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.unsigned_abs())
            + Duration::from_micros(t.tv_usec.unsigned_abs())
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time (user + system) in a `/proc/.../stat` file.
fn stat_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    Some(Duration::from_millis(ticks * 1000 / hz))
}

/// Where the server's CPU time is read.
#[derive(Clone, Copy)]
enum ServerCpu {
    /// A server process.
    Process(Option<u32>),
    /// The thread of this process that runs the embedded server.
    Thread(i32),
}

impl ServerCpu {
    fn read(self) -> Option<Duration> {
        match self {
            ServerCpu::Process(pid) => stat_cpu(&format!("/proc/{}/stat", pid?)),
            ServerCpu::Thread(tid) => stat_cpu(&format!("/proc/self/task/{tid}/stat")),
        }
    }
}

/// One measurement: events per second, client and server CPU per event.
struct Measured {
    rate: f64,
    client: Duration,
    server: Duration,
}

/// `n` publishes with `window` in flight and a subscriber receiving them.
async fn throughput(
    publisher: Box<dyn Publisher>,
    mut subscriber: Box<dyn Subscriber>,
    server: ServerCpu,
    topic: &str,
    n: u64,
    window: usize,
) -> Measured {
    // Warm up: creates the node on the publisher's side.
    publisher.publish(topic, &BenchEvent::new(0)).await.unwrap();
    subscriber.next().await.unwrap();
    let cpu = cpu_time();
    let server_cpu = server.read();
    let started = Instant::now();
    let publisher = &publisher;
    let publishing = futures::stream::iter(1..=n)
        .map(|seq| async move { publisher.publish(topic, &BenchEvent::new(seq)).await })
        .buffer_unordered(window)
        .for_each(|result| {
            result.unwrap();
            futures::future::ready(())
        });
    let receiving = async {
        for _ in 0..n {
            subscriber.next().await.unwrap();
        }
    };
    tokio::time::timeout(
        Duration::from_secs(300),
        futures::future::join(publishing, receiving),
    )
    .await
    .expect("throughput run within 300 s");
    let elapsed = started.elapsed();
    let server_time = match (server_cpu, server.read()) {
        (Some(before), Some(after)) => after - before,
        _ => Duration::ZERO,
    };
    let mut client = cpu_time() - cpu;
    if let ServerCpu::Thread(_) = server {
        // The embedded server's thread is part of this process.
        client = client.saturating_sub(server_time);
    }
    let per = |d: Duration| d / u32::try_from(n).unwrap_or(u32::MAX);
    Measured {
        rate: n as f64 / elapsed.as_secs_f64(),
        client: per(client),
        server: per(server_time),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn print(server: &str, round: u32, name: &str, m: &Measured) {
    println!(
        "{server} round {round} {name:10}: {:8.0} events/s, client CPU {:6.1} µs/event, server CPU {:6.1} µs/event",
        m.rate,
        m.client.as_secs_f64() * 1e6,
        m.server.as_secs_f64() * 1e6,
    );
}

/// Raw and xbus, in turns, on a harness server.
async fn compare(server: &'static str) {
    let Some(target) = start(server) else {
        return;
    };
    let xbus = XbusSystem::new(target.clone());
    let raw = RawXmppSystem::new(target.clone());
    let n = env_or("BENCH_N", 10_000);
    let window = env_or("BENCH_WINDOW", 256);
    for round in 0..env_or("BENCH_ROUNDS", 2) {
        for (name, system) in [("raw", &raw as &dyn EventSystem), ("xbus", &xbus)] {
            let topic = format!("bench.tp.{name}.{round}");
            let subscriber = system.subscriber(&topic).await.unwrap();
            let publisher = system.publisher().await.unwrap();
            let cpu = ServerCpu::Process(target.pids.first().copied());
            let m = throughput(publisher, subscriber, cpu, &topic, n, window).await;
            print(server, round, name, &m);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture, preferably --release"]
async fn throughput_prosody() {
    compare("prosody").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture, preferably --release"]
async fn throughput_ejabberd() {
    compare("ejabberd").await;
}

/// The embedded server on a thread of its own (one-threaded runtime), so
/// that its CPU time can be told apart from the clients'. Returns its
/// address and thread id; it stops when `stop` is dropped.
fn embedded_server(stop: oneshot::Receiver<()>) -> (SocketAddr, i32) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let server = xbus_server::Server::builder()
                .bind("127.0.0.1:0")
                .start()
                .await
                .expect("start the embedded server");
            tx.send((server.addr(), tid)).expect("report the address");
            let _ = stop.await;
            drop(server);
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the embedded server starts")
}

/// Raw and xbus on the embedded server (in this process, open accounts):
/// `BENCH_N` events (10,000), `BENCH_WINDOW` in flight (256),
/// `BENCH_ROUNDS` rounds (2), `BENCH_PAIRS` (all four).
///
/// the server is fastest here, so the clients' cost shows most. Besides
/// raw→raw and xbus→xbus it runs the mixed pairs (xbus publisher and raw
/// subscriber, and the reverse), which tell the publishing side's cost from
/// the subscribing side's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture, preferably --release"]
async fn throughput_embedded() {
    let (_stop, stop) = oneshot::channel();
    let (addr, tid) = embedded_server(stop);
    let n = env_or("BENCH_N", 10_000);
    let window = env_or("BENCH_WINDOW", 256);
    let mut next = 0;
    let mut account = || {
        next += 1;
        Account {
            jid: format!("bench{next}@localhost"),
            password: "bench".into(),
        }
    };
    // Which pairs: `rr` raw→raw, `xx` xbus→xbus, `xr`, `rx` (publisher
    // first).
    let pairs: Vec<(bool, bool)> = env_or("BENCH_PAIRS", "rr,xx,xr,rx".to_owned())
        .split(',')
        .map(|pair| (pair.starts_with('x'), pair.ends_with('x')))
        .collect();
    for round in 0..env_or("BENCH_ROUNDS", 2) {
        for &(publisher_kind, subscriber_kind) in &pairs {
            let topic = format!("bench.tp.{round}.{publisher_kind}.{subscriber_kind}");
            let subscriber = embedded_subscriber(subscriber_kind, addr, account(), &topic).await;
            let publisher = embedded_publisher(publisher_kind, addr, account()).await;
            let m = throughput(
                publisher,
                subscriber,
                ServerCpu::Thread(tid),
                &topic,
                n,
                window,
            )
            .await;
            let kind = |xbus: bool| if xbus { "xbus" } else { "raw" };
            let name = format!("{}→{}", kind(publisher_kind), kind(subscriber_kind));
            print("embedded", round, &name, &m);
        }
    }
}

const EMBEDDED_PUBSUB: &str = "pubsub.localhost";

async fn embedded_publisher(xbus: bool, addr: SocketAddr, account: Account) -> Box<dyn Publisher> {
    if xbus {
        let config = xmpp::bench_config(EMBEDDED_PUBSUB, &account, addr).unwrap();
        xmpp::publisher(xbus::Bus::connect(config).await.unwrap())
    } else {
        let client = RawClient::connect(addr, &account, EMBEDDED_PUBSUB, false)
            .await
            .unwrap();
        Box::new(RawPublisher { client })
    }
}

async fn embedded_subscriber(
    xbus: bool,
    addr: SocketAddr,
    account: Account,
    topic: &str,
) -> Box<dyn Subscriber> {
    if xbus {
        let config = xmpp::bench_config(EMBEDDED_PUBSUB, &account, addr).unwrap();
        xmpp::subscriber(xbus::Bus::connect(config).await.unwrap(), topic)
            .await
            .unwrap()
    } else {
        let client = RawClient::connect(addr, &account, EMBEDDED_PUBSUB, false)
            .await
            .unwrap();
        let deliveries = client
            .subscribe(topic, SUBSCRIPTION_CAPACITY)
            .await
            .unwrap();
        Box::new(RawSubscriber {
            deliveries,
            _client: client,
        })
    }
}
