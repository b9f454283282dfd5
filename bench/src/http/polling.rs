//! Events over a REST log that consumers poll: the pattern xbus's pubsub
//! replaces when services only speak HTTP.
//!
//! The server keeps, per topic, the last [`LOG_CAPACITY`] events as the
//! JSON bodies they were posted with, numbered from 1:
//!
//! - `POST /topics/{topic}/events` with a JSON body stores it and answers
//!   `201 {"seq": N}`;
//! - `GET /topics/{topic}/events?after=N&limit=L` answers
//!   `{"head": H, "events": [{"seq": S, "event": {...}}, ...]}` with the
//!   events after `N` still in the log, at most `L` (at most [`PAGE_LIMIT`]);
//! - `GET /topics/{topic}/head` answers `{"head": H}`, the last number
//!   given (0 for a topic without events).
//!
//! A subscriber asks for the head when created, then on every tick of its
//! interval asks for the events after the last one it saw, and asks again
//! at once while pages come back full (a consumer that fell behind catches
//! up without waiting for a tick per page).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::{ServerTask, http_client, path_segment};
use crate::system::{BenchEvent, EventSystem, Publisher, Subscriber};

/// Events kept per topic; older ones are dropped. About 250 bytes each
/// (the JSON of a [`BenchEvent`]), so a topic holds at most ~50 MB.
pub const LOG_CAPACITY: usize = 200_000;

/// The most events one `GET` returns, and what a subscriber asks for.
pub const PAGE_LIMIT: usize = 1000;

/// Events a subscriber holds that `next()` has not taken yet; when full,
/// its poller waits (back-pressure instead of unbounded memory).
const QUEUE_CAPACITY: usize = 65_536;

/// Events over HTTP polling: an in-process REST event log and pollers
/// that ask it for new events every `interval`.
#[derive(Debug)]
pub struct Polling {
    interval: Duration,
    server: ServerTask,
    requests: Arc<AtomicU64>,
}

impl Polling {
    /// Starts the log server on `127.0.0.1` and a free port; its
    /// subscribers poll every `interval` (not zero).
    pub async fn start(interval: Duration) -> anyhow::Result<Polling> {
        if interval.is_zero() {
            bail!("the polling interval must not be zero");
        }
        let log = Arc::new(Log::default());
        let router = Router::new()
            .route("/topics/{topic}/events", post(append).get(page))
            .route("/topics/{topic}/head", get(head))
            .with_state(log);
        Ok(Polling {
            interval,
            server: ServerTask::start(router).await?,
            requests: Arc::default(),
        })
    }

    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    /// How often subscribers poll.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    /// HTTP requests the subscribers and idle clients of this system have
    /// made so far (publishers' are not counted).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A poller of `topic` on the server at `addr`, starting after the
    /// current head.
    async fn poller(&self, addr: SocketAddr, topic: &str) -> anyhow::Result<PollSubscriber> {
        let poller = Poller {
            client: http_client()?,
            events_url: format!("http://{addr}/topics/{}/events", path_segment(topic)),
            requests: Arc::clone(&self.requests),
        };
        let head_url = format!("http://{addr}/topics/{}/head", path_segment(topic));
        poller.requests.fetch_add(1, Ordering::Relaxed);
        let head: Head = poller
            .client
            .get(&head_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {head_url}"))?
            .json()
            .await
            .with_context(|| format!("decode the answer of GET {head_url}"))?;
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let events_url = poller.events_url.clone();
        let task = tokio::spawn(poller.run(head.head, self.interval, sender));
        Ok(PollSubscriber {
            receiver,
            events_url,
            _task: AbortOnDrop(task),
        })
    }
}

#[async_trait]
impl EventSystem for Polling {
    /// `poll-100ms`, `poll-1s`.
    fn name(&self) -> String {
        if self.interval.subsec_nanos() == 0 {
            format!("poll-{}s", self.interval.as_secs())
        } else {
            format!("poll-{}ms", self.interval.as_millis())
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        Ok(Box::new(HttpPublisher {
            client: http_client()?,
            base: format!("http://{}/topics/", self.server.addr),
        }))
    }

    async fn subscriber(&self, topic: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        Ok(Box::new(self.poller(self.server.addr, topic).await?))
    }

    async fn idle_client(
        &self,
        via: SocketAddr,
        topic: &str,
    ) -> anyhow::Result<Box<dyn Send + Sync>> {
        Ok(Box::new(self.poller(via, topic).await?))
    }
}

// ---- the server ----

/// The topics' logs.
#[derive(Debug, Default)]
struct Log {
    topics: Mutex<HashMap<String, TopicLog>>,
}

/// One topic: the JSON bodies of its last events.
#[derive(Debug)]
struct TopicLog {
    /// Number of `entries[0]` (1 while nothing has been dropped).
    first: u64,
    entries: VecDeque<Bytes>,
}

impl Default for TopicLog {
    fn default() -> TopicLog {
        TopicLog {
            first: 1,
            entries: VecDeque::new(),
        }
    }
}

impl TopicLog {
    /// The last number given, 0 if none.
    fn head(&self) -> u64 {
        self.first - 1 + self.entries.len() as u64
    }

    /// Stores `event`; returns its number.
    fn append(&mut self, event: Bytes) -> u64 {
        self.entries.push_back(event);
        if self.entries.len() > LOG_CAPACITY {
            self.entries.pop_front();
            self.first += 1;
        }
        self.head()
    }

    /// At most `limit` events after number `after`, with their numbers.
    fn after(&self, after: u64, limit: usize) -> Vec<(u64, Bytes)> {
        let start = after.saturating_add(1).max(self.first);
        let skip = usize::try_from(start - self.first).unwrap_or(usize::MAX);
        self.entries
            .iter()
            .skip(skip)
            .take(limit)
            .zip(start..)
            .map(|(event, seq)| (seq, event.clone()))
            .collect()
    }
}

impl Log {
    fn with_topic<T>(&self, topic: String, f: impl FnOnce(&mut TopicLog) -> T) -> T {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        f(topics.entry(topic).or_default())
    }
}

/// `POST /topics/{topic}/events`.
async fn append(State(log): State<Arc<Log>>, Path(topic): Path<String>, body: Bytes) -> Response {
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return (StatusCode::BAD_REQUEST, "the body must be one JSON value").into_response();
    }
    let seq = log.with_topic(topic, |topic| topic.append(body));
    (StatusCode::CREATED, Json(Appended { seq })).into_response()
}

/// The query of `GET /topics/{topic}/events`.
#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

/// `GET /topics/{topic}/events?after=N&limit=L`: the stored bodies are
/// spliced into the answer as they are.
async fn page(
    State(log): State<Arc<Log>>,
    Path(topic): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(PAGE_LIMIT).min(PAGE_LIMIT);
    let (head, events) = log.with_topic(topic, |topic| {
        (topic.head(), topic.after(query.after, limit))
    });
    let size: usize = events.iter().map(|(_, event)| event.len() + 32).sum();
    let mut body = Vec::with_capacity(size + 48);
    body.extend_from_slice(format!("{{\"head\":{head},\"events\":[").as_bytes());
    for (i, (seq, event)) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(format!("{{\"seq\":{seq},\"event\":").as_bytes());
        body.extend_from_slice(event);
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /topics/{topic}/head`.
async fn head(State(log): State<Arc<Log>>, Path(topic): Path<String>) -> Json<Head> {
    Json(Head {
        head: log.with_topic(topic, |topic| topic.head()),
    })
}

/// The answer to a `POST`.
#[derive(Debug, Serialize, Deserialize)]
struct Appended {
    seq: u64,
}

/// The answer to `GET .../head`.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    head: u64,
}

/// The answer to `GET .../events`, as a subscriber reads it.
#[derive(Debug, Deserialize)]
struct Page {
    events: Vec<Entry>,
}

/// One event of a [`Page`].
#[derive(Debug, Deserialize)]
struct Entry {
    seq: u64,
    event: BenchEvent,
}

// ---- the clients ----

/// Posts events, one request each, with its own connection pool.
struct HttpPublisher {
    client: reqwest::Client,
    /// `http://ADDR/topics/`.
    base: String,
}

#[async_trait]
impl Publisher for HttpPublisher {
    async fn publish(&self, topic: &str, event: &BenchEvent) -> anyhow::Result<()> {
        let url = format!("{}{}/events", self.base, path_segment(topic));
        let answer: Appended = self
            .client
            .post(&url)
            .json(event)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("POST {url}"))?
            .json()
            .await
            .with_context(|| format!("decode the answer of POST {url}"))?;
        if answer.seq == 0 {
            bail!("POST {url}: the server numbered the event 0");
        }
        Ok(())
    }
}

/// The polling side of a subscriber, moved into its task.
struct Poller {
    client: reqwest::Client,
    /// `http://ADDR/topics/TOPIC/events`.
    events_url: String,
    requests: Arc<AtomicU64>,
}

impl Poller {
    /// Polls every `interval` for the events after `after` and queues them
    /// into `sender`, until the subscriber is dropped or a request fails
    /// (the error is queued for `next()`).
    async fn run(
        self,
        mut after: u64,
        interval: Duration,
        sender: mpsc::Sender<anyhow::Result<BenchEvent>>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            loop {
                let page = match self.fetch(after).await {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                let full = page.events.len() >= PAGE_LIMIT;
                for entry in page.events {
                    after = entry.seq;
                    if sender.send(Ok(entry.event)).await.is_err() {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
        }
    }

    /// One `GET`.
    async fn fetch(&self, after: u64) -> anyhow::Result<Page> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}?after={after}&limit={PAGE_LIMIT}", self.events_url);
        self.client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .with_context(|| format!("decode the answer of GET {url}"))
    }
}

/// A subscriber: the queue its poller task fills. Dropping it stops the
/// task.
struct PollSubscriber {
    receiver: mpsc::Receiver<anyhow::Result<BenchEvent>>,
    /// `http://ADDR/topics/TOPIC/events`, for errors.
    events_url: String,
    _task: AbortOnDrop,
}

#[async_trait]
impl Subscriber for PollSubscriber {
    async fn next(&mut self) -> anyhow::Result<BenchEvent> {
        match self.receiver.recv().await {
            Some(event) => event,
            None => bail!("the poller of {} stopped", self.events_url),
        }
    }
}

/// Aborts the poller task on drop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_numbers_from_one_and_drops_the_oldest() {
        let mut log = TopicLog::default();
        assert_eq!(log.head(), 0);
        assert!(log.after(0, 10).is_empty());
        for i in 0..LOG_CAPACITY + 5 {
            assert_eq!(log.append(Bytes::from(i.to_string())), i as u64 + 1);
        }
        assert_eq!(log.entries.len(), LOG_CAPACITY);
        assert_eq!(log.first, 6);
        let page = log.after(0, 2);
        assert_eq!(page[0], (6, Bytes::from("5")));
        assert_eq!(page[1].0, 7);
        let last = log.after(log.head() - 1, 10);
        assert_eq!(last.len(), 1);
        assert!(log.after(log.head(), 10).is_empty());
        assert!(log.after(u64::MAX, 10).is_empty());
    }
}
