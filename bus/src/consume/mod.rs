//! Durable consumer groups: [`Bus::consume`], its [`ConsumeOptions`], and
//! the [`Job`]s it yields.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::bus::Bus;
use crate::codec::RawPayload;
use crate::command::{Command, Dropped};
use crate::error::{ConsumeError, DecodeError, DeliveryError};
use crate::event::{Event, validate_topic};
use crate::headers::Headers;
use crate::pubsub::Incoming;
use crate::subscription::DropGuard;
use crate::trace::ReceiveSpan;

mod handler;
mod options;

pub use handler::JobMeta;
pub use options::{ConsumeOptions, StartAt};

/// Notices a consumer may hold unread; more are dropped (each is also
/// logged and counted).
const NOTICES: usize = 8;

/// Headers a dead-lettered event carries besides its own. Its encoding,
/// version and data are the original event's; to decode it as its type,
/// set the payload's `topic` back to the [`TOPIC`](dead_letter_headers::TOPIC)
/// header first.
pub mod dead_letter_headers {
    /// The item id the event had on its topic.
    pub const ITEM: &str = "xbus-dead-item";
    /// The group that gave up on it.
    pub const GROUP: &str = "xbus-dead-group";
    /// The topic it was published to (the payload's `topic` is the
    /// dead-letter topic's).
    pub const TOPIC: &str = "xbus-dead-topic";
    /// How many deliveries were made.
    pub const ATTEMPTS: &str = "xbus-dead-attempts";
    /// Why the last delivery failed.
    pub const ERROR: &str = "xbus-dead-error";
}

/// How a job is settled, as the connection task hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ack,
    Nak {
        delay: Option<Duration>,
        reason: String,
    },
    Term {
        reason: String,
    },
    Progress,
}

/// A settlement on its way to the connection task.
#[derive(Debug)]
pub(crate) struct Settle {
    pub group: crate::group::GroupKey,
    pub item: String,
    /// Which delivery this job is: the leader's epoch and the route back.
    pub route: JobRoute,
    pub verdict: Verdict,
}

/// Where a job's settlement goes.
#[derive(Debug, Clone)]
pub(crate) enum JobRoute {
    /// From this bus's own leader (epoch).
    Local { epoch: u64 },
    /// From a leader elsewhere: the IQ to answer.
    Remote {
        leader: xmpp_parsers::jid::Jid,
        id: String,
    },
}

/// What the connection task hands a [`Consumer`].
#[derive(Debug)]
pub(crate) struct Handed {
    pub incoming: Incoming,
    pub item: String,
    pub attempt: u32,
    pub deadline: Instant,
    pub route: JobRoute,
}

/// One event of a group, held by this instance until it is settled.
///
/// Settle it with [`ack`](Job::ack), [`nak`](Job::nak) or
/// [`term`](Job::term). **A job dropped unsettled is a nak without delay**
/// (its backoff applies): the event goes to an instance again, and counts
/// as a delivery.
#[derive(Debug)]
#[non_exhaustive]
pub struct Job<E> {
    /// The event.
    pub event: E,
    /// Its pubsub item id on the topic.
    pub item_id: String,
    /// Its XEP-0131 headers.
    pub headers: Headers,
    /// Who published it, as the pubsub service stamped it.
    pub publisher: Option<String>,
    /// Which delivery of the event this is: 1 for the first.
    pub attempt: u32,
    settle: Settler,
    span: ReceiveSpan,
}

/// Why a settlement may not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The ack wait had passed: the event may have gone to another
    /// instance already. The settlement is still sent (a late ack still
    /// finishes the event if nobody else has).
    #[error("the ack wait of item {item} passed {late:?} ago; it may be handled elsewhere too")]
    Late {
        /// The item.
        item: String,
        /// How long ago the ack wait passed.
        late: Duration,
    },
    /// The bus is closed: nothing was sent, and the event goes to another
    /// instance after its ack wait.
    #[error("the bus is closed; item {item} was not settled")]
    Closed {
        /// The item.
        item: String,
    },
}

/// Sends a job's settlement once.
#[derive(Debug)]
struct Settler {
    group: crate::group::GroupKey,
    item: String,
    route: JobRoute,
    deadline: Instant,
    ack_wait: Duration,
    tx: mpsc::UnboundedSender<Box<Settle>>,
    settled: bool,
}

impl Settler {
    fn send(&mut self, verdict: Verdict) -> Result<(), AckError> {
        let done = !matches!(verdict, Verdict::Progress);
        if self.settled {
            return Ok(());
        }
        self.settled = done;
        let settle = Settle {
            group: self.group.clone(),
            item: self.item.clone(),
            route: self.route.clone(),
            verdict,
        };
        if self.tx.send(Box::new(settle)).is_err() {
            return Err(AckError::Closed {
                item: self.item.clone(),
            });
        }
        let now = Instant::now();
        if done && now > self.deadline {
            return Err(AckError::Late {
                item: self.item.clone(),
                late: now - self.deadline,
            });
        }
        Ok(())
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.send(Verdict::Nak {
                delay: None,
                reason: "the job was dropped unsettled".into(),
            });
        }
    }
}

impl<E> Job<E> {
    /// The `job` span (feature `otel`): a child of the publisher's
    /// `publish` span when the event carried a `traceparent` header (a
    /// group hands out the publisher's headers unchanged). It ends when the
    /// job and every clone of the span are dropped; run the handling in it
    /// (`work(job.event).instrument(job.span().clone())`) to make the
    /// handling part of the trace. [`Consumer::handle`] does that itself.
    #[cfg(feature = "otel")]
    pub fn span(&self) -> &tracing::Span {
        &self.span.0
    }

    /// A job on no bus, for [`crate::testing`]: its settlement goes to
    /// the receiver.
    pub(crate) fn detached(
        event: E,
        item_id: String,
        ack_wait: Duration,
    ) -> (Job<E>, mpsc::UnboundedReceiver<Box<Settle>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let settle = Settler {
            group: crate::group::GroupKey::new("testing", "testing"),
            item: item_id.clone(),
            route: JobRoute::Local { epoch: 0 },
            deadline: Instant::now() + ack_wait,
            ack_wait,
            tx,
            settled: false,
        };
        let job = Job {
            event,
            item_id,
            headers: Headers::new(),
            publisher: None,
            attempt: 1,
            settle,
            span: ReceiveSpan::default(),
        };
        (job, rx)
    }

    /// Done: the event is not delivered again.
    pub fn ack(mut self) -> Result<(), AckError> {
        self.settle.send(Verdict::Ack)
    }

    /// Failed this time: deliver it again after `delay`, or after the
    /// backoff for this attempt if `None`. After the last allowed delivery
    /// it goes to the dead-letter topic instead.
    pub fn nak(mut self, delay: Option<Duration>) -> Result<(), AckError> {
        self.settle.send(Verdict::Nak {
            delay,
            reason: "nak".into(),
        })
    }

    /// Like [`nak`](Self::nak), with the reason the dead-letter topic
    /// records if this was the last delivery.
    pub fn nak_because(
        mut self,
        delay: Option<Duration>,
        reason: impl Into<String>,
    ) -> Result<(), AckError> {
        self.settle.send(Verdict::Nak {
            delay,
            reason: reason.into(),
        })
    }

    /// Still working: the ack wait starts again from now.
    pub fn in_progress(&mut self) -> Result<(), AckError> {
        self.settle.deadline = Instant::now() + self.settle.ack_wait;
        self.settle.send(Verdict::Progress)
    }

    /// Can never succeed: the event goes to the dead-letter topic at once,
    /// with `reason`.
    pub fn term(mut self, reason: impl Into<String>) -> Result<(), AckError> {
        self.settle.send(Verdict::Term {
            reason: reason.into(),
        })
    }
}

/// What a [`Consumer`] yields besides jobs: never silent.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// An event that does not decode as the consumer's type. It was
    /// termed at once (it would fail on every instance): dead-lettered if
    /// it is an xbus payload, only termed if it is no readable payload at
    /// all (then the leader reports it, whichever member it was for).
    #[error(transparent)]
    Undecodable(#[from] DeliveryError),
    /// The topic dropped events before the group handled them: more were
    /// published than it keeps (`max_items`) while the group was behind.
    /// Reported by the instance that took the group's leadership and found
    /// it; the group goes on with the events the topic still stores.
    #[error(
        "group {group:?} on {topic:?} lost events: the last it finished, item {last_known}, is no longer stored (oldest stored: {oldest_stored:?})"
    )]
    Lost {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
        /// The last item the group knows it finished.
        last_known: String,
        /// The oldest item the topic still stores.
        oldest_stored: Option<String>,
    },
}

/// A stream of [`Job`]s: this instance's share of a group's events.
///
/// Besides jobs it yields [`GroupError`]s: an event that does not decode
/// as `E` (termed at once), and events the topic lost before the
/// group handled them. The stream ends when the bus is closed. Dropping it
/// leaves the group: the jobs it held go to the other instances.
#[derive(Debug)]
pub struct Consumer<E> {
    raw: RawConsumer,
    _event: PhantomData<fn() -> E>,
}

impl<E> Consumer<E> {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.raw.topic
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.raw.group
    }
}

impl<E: Event> Stream for Consumer<E> {
    type Item = Result<Job<E>, GroupError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.raw.poll_job(cx, RawPayload::decode::<E>)
    }
}

/// A [`Consumer`] that does not decode: its jobs carry the
/// [`RawPayload`] (for tools such as `xbus consume`).
#[derive(Debug)]
pub struct RawConsumer {
    topic: String,
    group: String,
    rx: mpsc::Receiver<Handed>,
    notices: mpsc::Receiver<GroupError>,
    settle: mpsc::UnboundedSender<Box<Settle>>,
    ack_wait: Duration,
    max_in_flight: usize,
    key: crate::group::GroupKey,
    _guard: DropGuard,
}

impl RawConsumer {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The next notice or job, its event read by `decode`.
    fn poll_job<T>(
        &mut self,
        cx: &mut Context<'_>,
        decode: impl FnOnce(&RawPayload) -> Result<T, DecodeError>,
    ) -> Poll<Option<Result<Job<T>, GroupError>>> {
        if let Poll::Ready(Some(notice)) = self.notices.poll_recv(cx) {
            return Poll::Ready(Some(Err(notice)));
        }
        let Some(handed) = std::task::ready!(self.rx.poll_recv(cx)) else {
            return Poll::Ready(None);
        };
        let mut settle = Settler {
            group: self.key.clone(),
            item: handed.item.clone(),
            route: handed.route,
            deadline: handed.deadline,
            ack_wait: self.ack_wait,
            tx: self.settle.clone(),
            settled: false,
        };
        let Incoming {
            topic,
            from,
            payload,
            ..
        } = handed.incoming;
        crate::meter::consumed(&topic, Some(&self.key.group));
        let decoded = match payload {
            Ok(raw) => match decode(&raw) {
                Ok(event) => Ok((event, raw.headers)),
                Err(reason) => Err((reason, String::new())),
            },
            Err(bad) => Err(bad),
        };
        Poll::Ready(Some(match decoded {
            Ok((event, headers)) => Ok(Job {
                span: ReceiveSpan::job(
                    &self.key.group,
                    &topic,
                    &handed.item,
                    handed.attempt,
                    &headers,
                ),
                event,
                item_id: handed.item,
                headers,
                publisher: from,
                attempt: handed.attempt,
                settle,
            }),
            Err((reason, raw_xml)) => {
                let _ = settle.send(Verdict::Term {
                    reason: format!("undecodable: {reason}"),
                });
                Err(GroupError::Undecodable(DeliveryError::new(
                    reason,
                    topic,
                    Some(handed.item),
                    from,
                    raw_xml,
                )))
            }
        }))
    }
}

impl Stream for RawConsumer {
    type Item = Result<Job<RawPayload>, GroupError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_job(cx, |raw| Ok(raw.clone()))
    }
}

impl Bus {
    /// Joins the consumer group `group` on `E`'s topic: this instance gets
    /// a share of the topic's events, each event handled by one instance
    /// of the group until it is acked or dead-lettered.
    ///
    /// A group belongs to a service: its instances are the buses of one
    /// account that consume it (the group is named per topic, so one
    /// service may have several). Its progress is kept on the XMPP server,
    /// so an instance that restarts, or a new one, continues where the
    /// group stood. See `docs/RELIABILITY.md`, "Consumer groups".
    pub async fn consume<E: Event>(
        &self,
        group: &str,
        options: ConsumeOptions,
    ) -> Result<Consumer<E>, ConsumeError> {
        if E::PERSISTENCE == crate::event::Persistence::Transient {
            return Err(ConsumeError::TransientTopic {
                topic: E::TOPIC.to_owned(),
            });
        }
        self.note_access::<E>();
        Ok(Consumer {
            raw: self.consume_raw(E::TOPIC, group, options).await?,
            _event: PhantomData,
        })
    }

    /// [`consume`](Self::consume) without decoding, on any topic.
    pub async fn consume_raw(
        &self,
        topic: &str,
        group: &str,
        options: ConsumeOptions,
    ) -> Result<RawConsumer, ConsumeError> {
        validate_topic(topic).map_err(ConsumeError::Topic)?;
        crate::group::validate_group(group)?;
        let dead_letter = options.dead_letter_topic(topic);
        validate_topic(&dead_letter).map_err(ConsumeError::Topic)?;
        self.ensure_restricted_node(topic).await?;
        let key = crate::group::GroupKey::new(topic, group);
        let (tx, rx) = mpsc::channel(options.max_in_flight.max(1));
        let (notify, notices) = mpsc::channel(NOTICES);
        let (reply, answer) = oneshot::channel();
        let ack_wait = options.ack_wait;
        let max_in_flight = options.max_in_flight.max(1);
        self.command(Command::Consume {
            key: key.clone(),
            options,
            tx,
            notices: notify,
            reply,
        })
        .await
        .map_err(|_| ConsumeError::Closed)?;
        let settle = answer.await.map_err(|_| ConsumeError::Closed)??;
        Ok(RawConsumer {
            topic: topic.to_owned(),
            group: group.to_owned(),
            rx,
            notices,
            settle,
            ack_wait,
            max_in_flight,
            _guard: self.guard(Dropped::Group { key: key.clone() }),
            key,
        })
    }
}
