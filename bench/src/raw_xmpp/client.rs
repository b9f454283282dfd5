//! One raw XMPP connection: login, a connection task that owns the
//! tokio-xmpp stanza stream, and a handle whose `&self` methods can have
//! many IQs in flight.
//!
//! The handle sends [`Command`]s over a bounded channel; the task sends the
//! stanzas, keeps the pending IQs (id → `oneshot`), routes pubsub
//! notifications to the subscribers of their node and, when asked to,
//! answers `bench.echo` calls itself. Nothing else: no reconnect (a lost
//! connection ends the task, and every pending IQ fails), no presence
//! table, no handler tasks.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::{SinkExt, StreamExt};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio_xmpp::Stanza;
use tokio_xmpp::connect::AsyncReadAndWrite;
use tokio_xmpp::parsers::{ns, sasl};
use tokio_xmpp::stanzastream::{Connection, Event, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::{
    ReadError, StreamHeader, Timeouts, XmppStream, XmppStreamElement, initiate_stream,
};
use xbus::{RawPayload, Request as _};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::stanzas::{
    NS_PING, NS_PUBSUB_EVENT, NS_XBUS, body, create, describe, echo, publish, read_text, subscribe,
    unavailable,
};
use crate::servers::Account;
use crate::system::BenchEvent;

/// The stanza stream's queue depth in each direction: xbus's.
const QUEUE_DEPTH: usize = 256;
/// Commands that may wait for the connection task.
const COMMAND_CAPACITY: usize = 1024;
/// Largest payload accepted on delivery (xbus's default `max_payload`).
pub(super) const MAX_PAYLOAD: usize = 1024 * 1024;
/// `pubsub#max_items` of the nodes created (xbus's default).
const MAX_ITEMS: u32 = 1000;
/// How long one IQ (publish, call, subscribe) may take; xbus's default
/// publish and request timeouts.
const IQ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long login and resource binding may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read and response timeouts of the XML stream: xbus's.
const TIMEOUTS: Timeouts = Timeouts {
    read_timeout: Duration::from_secs(10),
    response_timeout: Duration::from_secs(5),
};

type BoxIo = Box<dyn AsyncReadAndWrite + Send + 'static>;

/// The answer to an IQ: the result's payload, or the error.
type IqAnswer = Result<Option<Element>, StanzaError>;

/// Deliveries of one node, to a subscriber.
pub(super) type Deliveries = mpsc::Receiver<anyhow::Result<RawPayload>>;

/// What a handle asks of the connection task.
enum Command {
    /// Send the IQ `stanza` (whose id is `id`) and hand its answer to
    /// `reply`. Boxed here already: the stanza stream takes it boxed.
    Iq {
        id: String,
        stanza: Box<Stanza>,
        reply: oneshot::Sender<IqAnswer>,
    },
    /// Deliver the notifications of `node` to `tx`.
    Route {
        node: String,
        tx: mpsc::Sender<anyhow::Result<RawPayload>>,
    },
}

/// A connected, logged-in raw client; dropping it ends the connection.
pub(super) struct RawClient {
    commands: mpsc::Sender<Command>,
    jid: FullJid,
    pubsub: Jid,
    next_id: AtomicU64,
    /// Per node: set once this client has created (or found) it.
    nodes: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
}

impl RawClient {
    /// Logs in to `addr` as `account`, binds a resource, sends initial
    /// presence and starts the connection task. With `echo`, the task
    /// answers `bench.echo` calls.
    pub(super) async fn connect(
        addr: SocketAddr,
        account: &Account,
        pubsub: &str,
        echo: bool,
    ) -> anyhow::Result<RawClient> {
        let jid: BareJid = account
            .jid
            .parse()
            .with_context(|| format!("account JID {:?}", account.jid))?;
        let pubsub: Jid = pubsub
            .parse()
            .with_context(|| format!("pubsub JID {pubsub:?}"))?;
        let (stream, bound) = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let first = login(addr, &jid, &account.password).await?;
            let connector = reconnector(first, addr, jid.clone(), account.password.clone());
            let mut stream = StanzaStream::new(connector, QUEUE_DEPTH);
            while let Some(event) = stream.next().await {
                if let Event::Stream(StreamEvent::Reset { bound_jid, .. }) = event {
                    let bound = FullJid::try_from(bound_jid)
                        .map_err(|jid| anyhow::anyhow!("the server bound a bare JID {jid}"))?;
                    return Ok((stream, bound));
                }
            }
            bail!("the stream ended during resource binding")
        })
        .await
        .with_context(|| format!("log in as {jid} at {addr}: timed out"))??;
        // Prosody and ejabberd deliver IQs and notifications to the full JID
        // without it (checked), but xbus sends it, so the raw session looks
        // the same to the server (e.g. for presence broadcasts).
        stream.send(Box::new(Presence::available().into())).await;
        let (commands, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let task = Task {
            stream,
            commands: commands_rx,
            pending: HashMap::new(),
            routes: HashMap::new(),
            pubsub: pubsub.clone(),
            echo,
        };
        tokio::spawn(task.run());
        Ok(RawClient {
            commands,
            jid: bound,
            pubsub,
            next_id: AtomicU64::new(1),
            nodes: Mutex::new(HashMap::new()),
        })
    }

    /// The session's full JID.
    pub(super) fn jid(&self) -> &FullJid {
        &self.jid
    }

    /// Sends an IQ `set` carrying `payload` to `to` and waits (up to
    /// [`IQ_TIMEOUT`]) for its answer; a stanza error is an error.
    async fn set(&self, to: Jid, payload: Element) -> anyhow::Result<Option<Element>> {
        self.exchange(to, payload)
            .await?
            .map_err(|error| anyhow::anyhow!("{}", describe(&error)))
    }

    /// Sends an IQ `set` and waits for its answer, result or error; `Err`
    /// only when no answer came (timeout, connection closed).
    async fn exchange(&self, to: Jid, payload: Element) -> anyhow::Result<IqAnswer> {
        let id = format!("r{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let iq = Iq::Set {
            from: None,
            to: Some(to),
            id: id.clone(),
            payload,
        };
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.commands
                .send(Command::Iq {
                    id,
                    stanza: Box::new(iq.into()),
                    reply,
                })
                .await
                .map_err(|_| anyhow::anyhow!("the connection is closed"))?;
            answer
                .await
                .map_err(|_| anyhow::anyhow!("the connection closed before the answer"))
        };
        tokio::time::timeout(IQ_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {IQ_TIMEOUT:?}"))?
    }

    /// Creates `node` with persistent items, once per client, with xbus's
    /// request (`docs/PROTOCOL.md` §3.1). `conflict` (it exists) is fine;
    /// other refusals are left for the publish or subscribe to report, as
    /// xbus does.
    async fn ensure_node(&self, node: &str) -> anyhow::Result<()> {
        let cell = self
            .nodes
            .lock()
            .expect("lock poisoned")
            .entry(node.to_owned())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            self.exchange(self.pubsub.clone(), create(node, MAX_ITEMS))
                .await
                .map(|_| ())
        })
        .await
        .map(|_| ())
    }

    /// Publishes `event` to `topic` as xbus does (`docs/PROTOCOL.md`
    /// §3.2) and waits for the service's result.
    pub(super) async fn publish(&self, topic: &str, event: &BenchEvent) -> anyhow::Result<()> {
        self.ensure_node(topic).await?;
        let mut payload = RawPayload::encode(event)?;
        payload.topic = topic.to_owned();
        let item_id = format!("{:032x}", rand::random::<u128>());
        self.set(
            self.pubsub.clone(),
            publish(topic, &item_id, payload.to_element()),
        )
        .await
        .with_context(|| format!("publish to {topic}"))?;
        Ok(())
    }

    /// Subscribes this session's full JID to `topic` (`docs/PROTOCOL.md`
    /// §3.3); events published after this returns reach the receiver.
    pub(super) async fn subscribe(
        &self,
        topic: &str,
        capacity: usize,
    ) -> anyhow::Result<Deliveries> {
        self.ensure_node(topic).await?;
        let (tx, rx) = mpsc::channel(capacity);
        self.commands
            .send(Command::Route {
                node: topic.to_owned(),
                tx,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the connection is closed"))?;
        self.set(self.pubsub.clone(), subscribe(topic, &self.jid.to_string()))
            .await
            .with_context(|| format!("subscribe to {topic}"))?;
        Ok(rx)
    }

    /// Calls `bench.echo` on `to` with the element xbus sends
    /// (`docs/PROTOCOL.md` §5) and decodes the response.
    pub(super) async fn call(
        &self,
        to: &FullJid,
        request: &BenchEvent,
    ) -> anyhow::Result<BenchEvent> {
        let data = rmp_serde::to_vec_named(request)?;
        let timeout_ms = IQ_TIMEOUT.as_millis().to_string();
        let element = body(
            "request",
            &[
                ("method", BenchEvent::METHOD),
                ("timeout", &timeout_ms),
                ("encoding", BenchEvent::ENCODING.as_str()),
                ("version", &BenchEvent::VERSION.to_string()),
            ],
            &data,
        );
        let answer = self
            .set(Jid::from(to.clone()), element)
            .await
            .with_context(|| format!("call {to}"))?;
        let response = answer
            .filter(|r| r.is("response", NS_XBUS))
            .context("a result without <response/>")?;
        if response.attr("encoding") != Some(BenchEvent::ENCODING.as_str()) {
            bail!(
                "a response in another encoding: {:?}",
                response.attr("encoding")
            );
        }
        let data = read_text(&response)?;
        Ok(rmp_serde::from_slice(&data)?)
    }
}

/// The connector handed to the stanza stream: `first`, then, when the
/// connection is lost, a new login every 100 ms to 5 s until one succeeds
/// or the stream is dropped. (tokio-xmpp panics when a connector gives up;
/// a session that is not resumed is not restored: the raw client has no
/// recovery.)
fn reconnector(
    first: Connection,
    addr: SocketAddr,
    jid: BareJid,
    password: String,
) -> Box<dyn FnMut(Option<String>, oneshot::Sender<Connection>) + Send> {
    let mut first = Some(first);
    Box::new(move |_, slot| {
        if let Some(connection) = first.take() {
            let _ = slot.send(connection);
            return;
        }
        let (jid, password) = (jid.clone(), password.clone());
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            while !slot.is_closed() {
                if let Ok(connection) = login(addr, &jid, &password).await {
                    let _ = slot.send(connection);
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    })
}

/// Opens a plaintext stream to `addr` with `TCP_NODELAY` (as xbus does:
/// tokio-xmpp's own TCP connector leaves Nagle on, which costs up to
/// 40 ms per stanza on loopback), authenticates with SASL PLAIN and
/// restarts the stream, ready for resource binding.
///
/// tokio-xmpp's `Client` cannot be given such a stream (a custom
/// `ServerConnector` needs the `sasl` crate's types, which this crate does
/// not depend on), so the raw client drives tokio-xmpp's `StanzaStream`,
/// the layer under `Client` and the one xbus uses: resource binding and
/// XEP-0198 are tokio-xmpp's, as for xbus.
async fn login(addr: SocketAddr, jid: &BareJid, password: &str) -> anyhow::Result<Connection> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let io: BoxIo = Box::new(BufStream::new(tcp));
    let header = || StreamHeader {
        to: Some(Cow::Owned(jid.domain().to_string())),
        from: None,
        id: None,
    };
    let pending = initiate_stream(io, ns::JABBER_CLIENT, header(), TIMEOUTS).await?;
    let (features, mut stream): (_, XmppStream<BoxIo>) = pending.recv_features().await?;
    if !features.sasl_mechanisms.contains("PLAIN") {
        bail!(
            "the server does not offer SASL PLAIN (offers {:?})",
            features.sasl_mechanisms
        );
    }
    let username = jid.node().map(|n| n.as_str()).unwrap_or_default();
    let mut data = Vec::with_capacity(username.len() + password.len() + 2);
    data.push(0);
    data.extend_from_slice(username.as_bytes());
    data.push(0);
    data.extend_from_slice(password.as_bytes());
    stream
        .send(&XmppStreamElement::Sasl(sasl::Nonza::Auth(sasl::Auth {
            mechanism: sasl::Mechanism::Plain,
            data,
        })))
        .await?;
    loop {
        match stream
            .next()
            .await
            .map(|r| r.and_then(|el| el.into_read_error()))
        {
            Some(Ok(XmppStreamElement::Sasl(sasl::Nonza::Success(_)))) => break,
            Some(Ok(XmppStreamElement::Sasl(sasl::Nonza::Failure(failure)))) => {
                bail!("SASL failure: {:?}", failure.defined_condition)
            }
            Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(e)) => bail!("during SASL: {e}"),
            None => bail!("the stream closed during SASL"),
        }
    }
    let pending = stream.initiate_reset().send_header(header()).await?;
    let (features, stream) = pending.recv_features().await?;
    Ok(Connection {
        stream,
        features,
        identity: Jid::from(jid.clone()),
    })
}

/// The connection task's state.
struct Task {
    stream: StanzaStream,
    commands: mpsc::Receiver<Command>,
    pending: HashMap<String, oneshot::Sender<IqAnswer>>,
    routes: HashMap<String, mpsc::Sender<anyhow::Result<RawPayload>>>,
    pubsub: Jid,
    echo: bool,
}

/// Pending IQs beyond this are swept of callers that gave up.
const SWEEP_AT: usize = 4096;

impl Task {
    async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.stream.next() => match event {
                    Some(Event::Stanza(stanza)) => self.on_stanza(stanza).await,
                    Some(Event::Stream(_)) => {}
                    None => break,
                },
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
            }
        }
        // Pending IQs fail when their senders drop with the task.
        self.stream.close().await;
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Iq { id, stanza, reply } => {
                if self.pending.len() >= SWEEP_AT {
                    self.pending.retain(|_, reply| !reply.is_closed());
                }
                self.pending.insert(id, reply);
                self.stream.send(stanza).await;
            }
            Command::Route { node, tx } => {
                self.routes.insert(node, tx);
            }
        }
    }

    async fn on_stanza(&mut self, stanza: Stanza) {
        match stanza {
            Stanza::Iq(Iq::Result { id, payload, .. }) => {
                if let Some(reply) = self.pending.remove(&id) {
                    let _ = reply.send(Ok(payload));
                }
            }
            Stanza::Iq(Iq::Error { id, error, .. }) => {
                if let Some(reply) = self.pending.remove(&id) {
                    let _ = reply.send(Err(error));
                }
            }
            Stanza::Iq(Iq::Set {
                from, id, payload, ..
            }) => {
                let answer = if self.echo && payload.is("request", NS_XBUS) {
                    echo(&payload).map_err(|reason| {
                        StanzaError::new(
                            ErrorType::Modify,
                            DefinedCondition::BadRequest,
                            "en",
                            reason,
                        )
                    })
                } else {
                    Err(unavailable())
                };
                self.answer(from, id, answer).await;
            }
            Stanza::Iq(Iq::Get {
                from, id, payload, ..
            }) => {
                let answer = if payload.is("ping", NS_PING) {
                    Ok(None)
                } else {
                    Err(unavailable())
                };
                self.answer(from, id, answer).await;
            }
            Stanza::Message(message) => self.on_message(message).await,
            Stanza::Presence(_) => {}
        }
    }

    async fn answer(&mut self, to: Option<Jid>, id: String, answer: IqAnswer) {
        let iq = match answer {
            Ok(payload) => Iq::Result {
                from: None,
                to,
                id,
                payload,
            },
            Err(error) => Iq::Error {
                from: None,
                to,
                id,
                error,
                payload: None,
            },
        };
        self.stream.send(Box::new(iq.into())).await;
    }

    /// Routes the items of a pubsub notification to the node's subscriber.
    async fn on_message(&mut self, message: Message) {
        if message.from.as_ref() != Some(&self.pubsub) {
            return;
        }
        let Some(event) = message
            .payloads
            .iter()
            .find(|p| p.is("event", NS_PUBSUB_EVENT))
        else {
            return;
        };
        for items in event.children().filter(|c| c.is("items", NS_PUBSUB_EVENT)) {
            let Some(node) = items.attr("node") else {
                continue;
            };
            let Some(tx) = self.routes.get(node) else {
                continue;
            };
            let mut gone = false;
            for item in items.children().filter(|c| c.is("item", NS_PUBSUB_EVENT)) {
                let payload = match item.get_child("payload", NS_XBUS) {
                    Some(elem) => {
                        RawPayload::from_element(elem, MAX_PAYLOAD).map_err(anyhow::Error::from)
                    }
                    None => Err(anyhow::anyhow!("an item without xbus payload")),
                };
                // Back-pressure, as xbus's subscriptions by default.
                if tx.send(payload).await.is_err() {
                    gone = true;
                    break;
                }
            }
            if gone {
                self.routes.remove(node);
            }
        }
    }
}
