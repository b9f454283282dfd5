//! NATS, the broker users pick for a plain event bus and request/reply:
//! `nats-server` as a child process and the async-nats client.
//!
//! Every publisher, subscriber, caller and responder gets its own
//! connection, as the XMPP systems do. The client keeps async-nats's
//! defaults except the subscription buffer ([`SUBSCRIPTION_CAPACITY`]).
//! Defaults that matter for a fair comparison:
//!
//! - core NATS publish has no acknowledgement: [`Publisher::publish`]
//!   returns once the message is queued in the client, and
//!   [`Publisher::flush`] once it has been written to the socket;
//! - the client pings the server every 60 s (async-nats's default
//!   `ping_interval`), the server pings idle clients every 2 min: that is
//!   what an idle client costs;
//! - `no_echo` stays off; it changes nothing here since publishers and
//!   subscribers never share a connection;
//! - no TLS, no auth, no JetStream: messages live in memory only, which
//!   makes NATS a ceiling rather than a like-for-like rival of persistent
//!   pubsub.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::{Client, ConnectOptions, Event};
use async_trait::async_trait;
use futures::StreamExt as _;

use super::system::{BenchEvent, Caller, EventSystem, Publisher, RpcSystem, Subscriber};

/// What to run to get `nats-server` on Debian and Ubuntu.
pub const NATS_INSTALL_HINT: &str = "apt-get install -y nats-server";

/// Messages a subscription buffers in the client before async-nats drops
/// them as a slow consumer (its default is 65,536). Large enough that a
/// 50,000-event burst to a subscriber that reads slowly loses nothing; the
/// buffer only allocates what it holds.
pub const SUBSCRIPTION_CAPACITY: usize = 1 << 20;

/// The subject the echo responder serves.
pub const ECHO_SUBJECT: &str = "bench.echo";

/// The server's settings beyond the command line. Its defaults would cut
/// off a subscriber that falls behind a burst: 64 MiB pending per
/// connection and a 10 s write deadline (2.9's defaults). 16 subscribers of
/// 50,000 events of ~250 bytes on the wire need 12.5 MB each, so this is a
/// safety margin, not a change of behaviour at the sizes the bench uses.
const SERVER_CONFIG: &str = "\
# Written by `xbus-bench`: lift what would throttle a benchmark.
max_pending: 1073741824
write_deadline: \"60s\"
";

/// How long [`NatsServer::start`] waits for the port to accept.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at a free port before giving up (another process may take the
/// port between its probe and the server's bind).
const START_ATTEMPTS: usize = 3;

#[cfg_attr(not(test), allow(dead_code))] // read by the tests
/// A `nats-server` child process on a free loopback port, no auth, no
/// JetStream. Killed (and waited for) on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    addr: SocketAddr,
    version: String,
    files: TempFiles,
}

impl NatsServer {
    /// Starts `nats-server` on `127.0.0.1` and a free port, and waits (at
    /// most 10 s) until it accepts connections.
    ///
    /// Fails with the install command in the message when the binary is
    /// missing.
    pub fn start() -> anyhow::Result<NatsServer> {
        let binary = find_binary()?;
        let version = server_version(&binary)?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match start_once(&binary) {
                Ok((child, addr, files)) => {
                    return Ok(NatsServer {
                        child,
                        addr,
                        version,
                        files,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    /// The client address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id, for its CPU time and memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    /// The server's version as `nats-server --version` prints it, e.g.
    /// `2.9.10`.
    pub fn version(&self) -> &str {
        &self.version
    }

    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    /// The server's log so far (its stderr), for error messages.
    pub fn log(&self) -> String {
        self.files.log_tail()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config file and the log of one server, removed on drop.
#[derive(Debug)]
struct TempFiles {
    config: PathBuf,
    log: PathBuf,
}

impl TempFiles {
    fn create(port: u16) -> anyhow::Result<TempFiles> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let stem = format!("xbus-bench-nats-{}-{port}-{nanos}", std::process::id());
        let dir = std::env::temp_dir();
        let files = TempFiles {
            config: dir.join(format!("{stem}.conf")),
            log: dir.join(format!("{stem}.log")),
        };
        std::fs::write(&files.config, SERVER_CONFIG)
            .with_context(|| format!("write {}", files.config.display()))?;
        Ok(files)
    }

    /// The last 2,000 bytes of the log.
    fn log_tail(&self) -> String {
        let Ok(mut file) = File::open(&self.log) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(2000)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `nats-server` in `PATH`, or in the sbin directories Debian installs it
/// to (not in a normal user's `PATH`).
fn find_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/local/bin"];
    find_binary_in(std::env::split_paths(&path).chain(extra.iter().map(PathBuf::from)))
}

/// `nats-server` in the first of `dirs` that has it.
fn find_binary_in(dirs: impl IntoIterator<Item = PathBuf>) -> anyhow::Result<PathBuf> {
    dirs.into_iter()
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "nats-server not found in PATH or /usr/sbin: install it with `{NATS_INSTALL_HINT}`"
            )
        })
}

/// `nats-server --version` prints `nats-server: v2.9.10`; returns `2.9.10`.
fn server_version(binary: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run `{} --version`", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let text = if text.trim().is_empty() {
        String::from_utf8_lossy(&output.stderr)
    } else {
        text
    };
    let version = text
        .split_whitespace()
        .last()
        .map(|word| word.trim_start_matches('v').to_owned())
        .unwrap_or_default();
    if version.is_empty() {
        bail!("`{} --version` printed nothing", binary.display());
    }
    Ok(version)
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn start_once(binary: &Path) -> anyhow::Result<(Child, SocketAddr, TempFiles)> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let files = TempFiles::create(port)?;
    let log =
        File::create(&files.log).with_context(|| format!("create {}", files.log.display()))?;
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(&files.config)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("wait for nats-server")? {
            bail!(
                "nats-server on {addr} exited at start ({status}):\n{}",
                files.log_tail()
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok((child, addr, files));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "nats-server did not accept connections on {addr} within {START_TIMEOUT:?}:\n{}",
                files.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// NATS as an [`EventSystem`] and an [`RpcSystem`]: core publish/subscribe
/// and request/reply on its own `nats-server`.
#[derive(Debug)]
pub struct NatsSystem {
    server: NatsServer,
    counters: Arc<Counters>,
}

/// Client events worth a line in the report: a benchmark that lost
/// messages must say so.
#[derive(Debug, Default)]
struct Counters {
    slow_consumers: AtomicU64,
    disconnects: AtomicU64,
}

impl NatsSystem {
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    /// Starts a `nats-server` ([`NatsServer::start`]) for this system.
    pub fn start() -> anyhow::Result<NatsSystem> {
        Ok(NatsSystem::new(NatsServer::start()?))
    }

    /// The system on `server`.
    pub fn new(server: NatsServer) -> NatsSystem {
        NatsSystem {
            server,
            counters: Arc::default(),
        }
    }

    /// The server, for its pid and version.
    pub fn server(&self) -> &NatsServer {
        &self.server
    }

    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    /// How many times a client of this system dropped messages of a
    /// subscription whose buffer was full (0 in a valid run).
    pub fn slow_consumers(&self) -> u64 {
        self.counters.slow_consumers.load(Ordering::Relaxed)
    }

    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    /// How many times a client of this system lost its connection (the
    /// server cuts off a slow consumer that way).
    pub fn disconnects(&self) -> u64 {
        self.counters.disconnects.load(Ordering::Relaxed)
    }

    /// A new connection to `addr`.
    async fn connect(&self, addr: SocketAddr) -> anyhow::Result<Client> {
        let counters = Arc::clone(&self.counters);
        ConnectOptions::new()
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .event_callback(move |event| {
                match event {
                    Event::SlowConsumer(_) => {
                        counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Disconnected => {
                        counters.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                async {}
            })
            .connect(format!("nats://{addr}"))
            .await
            .with_context(|| format!("connect to nats-server at {addr}"))
    }

    /// A connection to `addr` subscribed to `subject`, returned once the
    /// server has the subscription.
    async fn subscribe(
        &self,
        addr: SocketAddr,
        subject: &str,
    ) -> anyhow::Result<(Client, async_nats::Subscriber)> {
        let client = self.connect(addr).await?;
        let subscription = client
            .subscribe(subject.to_owned())
            .await
            .with_context(|| format!("subscribe to {subject}"))?;
        round_trip(&client).await?;
        Ok((client, subscription))
    }
}

/// Returns once the server has processed everything `client` sent before.
///
/// `Client::flush` only waits for the socket write, so a publish on another
/// connection could still overtake a new subscription. This publishes to a
/// fresh inbox the client subscribes to and waits for the message to come
/// back: the server handles one connection's commands in order.
async fn round_trip(client: &Client) -> anyhow::Result<()> {
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .context("subscribe to a sync inbox")?;
    client
        .publish(inbox, Vec::new().into())
        .await
        .context("publish to the sync inbox")?;
    match tokio::time::timeout(Duration::from_secs(10), echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => bail!("connection to nats-server closed"),
        Err(_) => bail!("nats-server did not answer within 10 s"),
    }
}

fn encode(event: &BenchEvent) -> anyhow::Result<Vec<u8>> {
    rmp_serde::to_vec_named(event).context("encode a BenchEvent as MessagePack")
}

fn decode(payload: &[u8]) -> anyhow::Result<BenchEvent> {
    rmp_serde::from_slice(payload).context("decode a BenchEvent from MessagePack")
}

#[async_trait]
impl EventSystem for NatsSystem {
    fn name(&self) -> String {
        "nats".to_owned()
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let client = self.connect(self.server.addr()).await?;
        Ok(Box::new(NatsPublisher { client }))
    }

    async fn subscriber(&self, topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        let (client, subscription) = self.subscribe(self.server.addr(), topic).await?;
        Ok(Box::new(NatsSubscriber {
            _client: client,
            subscription,
        }))
    }

    async fn idle_client(
        &self,
        via: SocketAddr,
        topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>> {
        let (client, subscription) = self.subscribe(via, topic).await?;
        Ok(Box::new(NatsSubscriber {
            _client: client,
            subscription,
        }))
    }
}

/// A connection that publishes with core NATS `PUB` (no acknowledgement).
struct NatsPublisher {
    client: Client,
}

#[async_trait]
impl Publisher for NatsPublisher {
    async fn publish(&self, topic: &str, event: &BenchEvent) -> anyhow::Result<()> {
        let payload = encode(event)?;
        self.client
            .publish(topic.to_owned(), payload.into())
            .await
            .with_context(|| format!("publish to {topic}"))
    }

    async fn flush(&self) -> anyhow::Result<()> {
        self.client.flush().await.context("flush to nats-server")
    }
}

/// A connection with one subscription.
struct NatsSubscriber {
    _client: Client,
    subscription: async_nats::Subscriber,
}

#[async_trait]
impl Subscriber for NatsSubscriber {
    async fn next(&mut self) -> anyhow::Result<BenchEvent> {
        match self.subscription.next().await {
            Some(message) => decode(&message.payload),
            None => bail!("NATS subscription closed"),
        }
    }
}

#[async_trait]
impl RpcSystem for NatsSystem {
    fn name(&self) -> String {
        "nats".to_owned()
    }

    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>> {
        let (client, mut subscription) = self.subscribe(self.server.addr(), ECHO_SUBJECT).await?;
        let task = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let Some(reply) = message.reply else {
                    continue;
                };
                if client.publish(reply, message.payload).await.is_err() {
                    break;
                }
            }
        });
        Ok(Box::new(AbortOnDrop(task)))
    }

    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        let client = self.connect(self.server.addr()).await?;
        Ok(Box::new(NatsCaller { client }))
    }
}

/// Stops the responder's task (and so closes its connection) on drop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection that calls with NATS request/reply (async-nats's shared
/// reply inbox, its default 10 s timeout).
struct NatsCaller {
    client: Client,
}

#[async_trait]
impl Caller for NatsCaller {
    async fn call(&self, request: &BenchEvent) -> anyhow::Result<BenchEvent> {
        let payload = encode(request)?;
        let answer = self
            .client
            .request(ECHO_SUBJECT, payload.into())
            .await
            .with_context(|| format!("request {ECHO_SUBJECT}"))?;
        decode(&answer.payload)
    }
}

#[cfg(test)]
#[path = "nats_tests.rs"]
mod tests;
