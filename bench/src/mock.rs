//! An in-process system for the scenarios' tests and for
//! `xbus-bench --systems mock` (hidden): events go through tokio channels
//! (a consumer group's instances share one), calls through an mpsc queue to
//! an echo task, and the idle client pings a TCP echo server every second
//! through the relay. The runs do not give it the consumer-group scenario:
//! only its tests do.
//!
//! A [`Fault`] makes it misbehave the ways the scenarios must notice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::system::{
    BenchEvent, Caller, EventSystem, GroupSystem, Publisher, RpcSystem, Subscriber,
};

/// What the idle client sends every [`Mock::with_ping_every`] period.
pub const PING: &[u8; 10] = b"ping-xbus\n";

/// How the mock misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// It works.
    #[default]
    None,
    /// The event with this `seq` is acknowledged but never delivered.
    #[cfg_attr(not(test), allow(dead_code, reason = "only the tests break the mock"))]
    Drop(u64),
    /// The event with this `seq` is delivered twice.
    #[cfg_attr(not(test), allow(dead_code, reason = "only the tests break the mock"))]
    Duplicate(u64),
    /// Publishes and calls never complete.
    Stall,
}

type Call = (BenchEvent, oneshot::Sender<BenchEvent>);
type Topics = HashMap<String, Vec<mpsc::UnboundedSender<BenchEvent>>>;

/// The mock system.
pub struct Mock {
    fault: Fault,
    ping_every: Duration,
    topics: Arc<Mutex<Topics>>,
    responder: Arc<Mutex<Option<mpsc::Sender<Call>>>>,
    echo: EchoServer,
}

impl Mock {
    /// A mock with `fault`, its idle client pinging once a second.
    pub async fn start(fault: Fault) -> anyhow::Result<Mock> {
        Ok(Mock {
            fault,
            ping_every: Duration::from_secs(1),
            topics: Arc::default(),
            responder: Arc::default(),
            echo: EchoServer::start().await.context("start the echo server")?,
        })
    }

    /// The idle client pings every `period` instead.
    #[cfg_attr(not(test), allow(dead_code, reason = "the tests ping faster"))]
    pub fn with_ping_every(mut self, period: Duration) -> Mock {
        self.ping_every = period;
        self
    }

    /// An idle connection straight to the echo server, pinging like the
    /// idle client (the idle-memory scenario holds many).
    pub async fn idle_connection(&self) -> anyhow::Result<AbortOnDrop> {
        self.idle_client_to(self.echo.addr()).await
    }

    async fn idle_client_to(&self, addr: SocketAddr) -> anyhow::Result<AbortOnDrop> {
        let mut stream = TcpStream::connect(addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        let period = self.ping_every;
        Ok(AbortOnDrop(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let mut back = [0u8; PING.len()];
            loop {
                ticks.tick().await;
                if stream.write_all(PING).await.is_err()
                    || stream.read_exact(&mut back).await.is_err()
                {
                    return;
                }
            }
        })))
    }
}

#[async_trait]
impl EventSystem for Mock {
    fn name(&self) -> String {
        "mock".to_owned()
    }

    fn addr(&self) -> SocketAddr {
        self.echo.addr()
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        Ok(Box::new(MockPublisher {
            fault: self.fault,
            topics: self.topics.clone(),
        }))
    }

    async fn subscriber(&self, topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.topics)
            .entry(topic.to_owned())
            .or_default()
            .push(tx);
        Ok(Box::new(MockSubscriber(rx)))
    }

    async fn idle_client(
        &self,
        via: SocketAddr,
        _topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>> {
        Ok(Box::new(self.idle_client_to(via).await?))
    }
}

#[async_trait]
impl GroupSystem for Mock {
    /// Instances that take turns at one queue of the topic's events.
    async fn group(
        &self,
        topic: &str,
        instances: usize,
    ) -> anyhow::Result<Vec<Box<dyn Subscriber>>> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.topics)
            .entry(topic.to_owned())
            .or_default()
            .push(tx);
        let queue = Arc::new(tokio::sync::Mutex::new(rx));
        Ok((0..instances)
            .map(|_| Box::new(MockInstance(queue.clone())) as Box<dyn Subscriber>)
            .collect())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct MockPublisher {
    fault: Fault,
    topics: Arc<Mutex<Topics>>,
}

#[async_trait]
impl Publisher for MockPublisher {
    async fn publish(&self, topic: &str, event: &BenchEvent) -> anyhow::Result<()> {
        let copies = match self.fault {
            Fault::Stall => std::future::pending().await,
            Fault::Drop(seq) if seq == event.seq => 0,
            Fault::Duplicate(seq) if seq == event.seq => 2,
            _ => 1,
        };
        let mut topics = lock(&self.topics);
        if let Some(subscribers) = topics.get_mut(topic) {
            subscribers.retain(|tx| (0..copies).all(|_| tx.send(event.clone()).is_ok()));
        }
        Ok(())
    }
}

struct MockSubscriber(mpsc::UnboundedReceiver<BenchEvent>);

#[async_trait]
impl Subscriber for MockSubscriber {
    async fn next(&mut self) -> anyhow::Result<BenchEvent> {
        self.0.recv().await.ok_or_else(|| anyhow!("mock: closed"))
    }
}

/// An instance of a mock consumer group.
struct MockInstance(Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<BenchEvent>>>);

#[async_trait]
impl Subscriber for MockInstance {
    async fn next(&mut self) -> anyhow::Result<BenchEvent> {
        let event = self.0.lock().await.recv().await;
        event.ok_or_else(|| anyhow!("mock: closed"))
    }
}

#[async_trait]
impl RpcSystem for Mock {
    fn name(&self) -> String {
        "mock".to_owned()
    }

    async fn responder(&self) -> anyhow::Result<Box<dyn Send + Sync>> {
        let (tx, mut rx) = mpsc::channel::<Call>(1024);
        *lock(&self.responder) = Some(tx);
        Ok(Box::new(AbortOnDrop(tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(request);
            }
        }))))
    }

    async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        let queue = lock(&self.responder)
            .clone()
            .context("mock: no responder")?;
        Ok(Box::new(MockCaller {
            fault: self.fault,
            queue,
        }))
    }
}

struct MockCaller {
    fault: Fault,
    queue: mpsc::Sender<Call>,
}

#[async_trait]
impl Caller for MockCaller {
    async fn call(&self, request: &BenchEvent) -> anyhow::Result<BenchEvent> {
        if self.fault == Fault::Stall {
            std::future::pending::<()>().await;
        }
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((request.clone(), tx))
            .await
            .map_err(|_| anyhow!("mock: the responder is gone"))?;
        rx.await.map_err(|_| anyhow!("mock: no answer"))
    }
}

/// Aborts its task when dropped.
pub struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A TCP server on `127.0.0.1` that writes back what it reads; stops
/// (with its connections) when dropped.
pub struct EchoServer {
    addr: SocketAddr,
    _task: AbortOnDrop,
}

impl EchoServer {
    /// Starts it on a free port.
    pub async fn start() -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            connections.spawn(echo(stream));
                        }
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(EchoServer {
            addr,
            _task: AbortOnDrop(task),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn echo(mut stream: TcpStream) {
    let (mut read, mut write) = stream.split();
    let _ = tokio::io::copy(&mut read, &mut write).await;
}
