//! Building what your handlers receive, for unit tests of your own code.
//!
//! [`Delivery`], [`Context`], [`Job`] and [`JobMeta`] are
//! `#[non_exhaustive]` or keep private fields, so that xbus can add to
//! them without breaking your code; so you cannot write them as struct
//! literals. This module builds them, with no bus and no server:
//!
//! ```
//! use std::time::Duration;
//! use xbus::testing;
//!
//! # #[derive(Debug, PartialEq)]
//! # struct OrderCreated { id: u64 }
//! // A subscriber's handler gets a Delivery; its fields are public.
//! let mut delivery = testing::delivery(OrderCreated { id: 7 }, "orders.created");
//! delivery.item_id = Some("a1".into());
//!
//! // A request handler gets a Context.
//! let ctx = testing::context("orders@localhost/o1".parse()?, "inventory.check")
//!     .timeout(Duration::from_secs(2))
//!     .build();
//! assert_eq!(ctx.method(), "inventory.check");
//!
//! // A consumer-group job, and what the code under test did with it.
//! let (job, settled) = testing::job(OrderCreated { id: 7 }, "a1");
//! job.ack()?;
//! assert_eq!(settled.last(), Some(testing::Settled::Acked));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use xmpp_parsers::jid::FullJid;

use crate::consume::{Job, JobMeta, Settle, Verdict};
use crate::headers::Headers;
use crate::serve::Context;
use crate::subscription::Delivery;

/// A [`Delivery`] of `event` on `topic`, with no item id, publisher or
/// headers; set those fields as the test needs.
pub fn delivery<E>(event: E, topic: impl Into<String>) -> Delivery<E> {
    Delivery {
        event,
        item_id: None,
        topic: topic.into(),
        publisher: None,
        headers: Headers::new(),
        span: Default::default(),
    }
}

/// A [`JobMeta`] for item `item_id`, first delivery, no headers or
/// publisher; set those fields as the test needs.
pub fn job_meta(item_id: impl Into<String>) -> JobMeta {
    JobMeta {
        item_id: item_id.into(),
        headers: Headers::new(),
        publisher: None,
        attempt: 1,
    }
}

/// Starts a [`Context`] for a call of `method` from `from`: no headers,
/// 30 s left.
pub fn context(from: FullJid, method: impl Into<String>) -> ContextBuilder {
    ContextBuilder {
        from,
        method: method.into(),
        headers: Headers::new(),
        timeout: Duration::from_secs(30),
    }
}

/// Builds a [`Context`]; see [`context`].
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    from: FullJid,
    method: String,
    headers: Headers,
    timeout: Duration,
}

impl ContextBuilder {
    /// The headers the caller sent.
    pub fn headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// The time left from now until the caller gives up.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The context.
    pub fn build(self) -> Context {
        Context {
            from: self.from,
            method: self.method,
            headers: self.headers,
            deadline: Instant::now() + self.timeout,
        }
    }
}

/// A consumer-group [`Job`] of `event` (item `item_id`, first delivery,
/// ack wait 30 s) on no bus, and the [`Settlements`] it sends. Its public
/// fields (`attempt`, `headers`, `publisher`) can be set as the test
/// needs.
pub fn job<E>(event: E, item_id: impl Into<String>) -> (Job<E>, Settlements) {
    let (job, rx) = Job::detached(event, item_id.into(), Duration::from_secs(30));
    (
        job,
        Settlements {
            rx,
            seen: Vec::new(),
        },
    )
}

/// What a test [`job`] was settled with, in order.
#[derive(Debug)]
pub struct Settlements {
    rx: mpsc::UnboundedReceiver<Box<Settle>>,
    seen: Vec<Settled>,
}

impl Settlements {
    /// Every settlement so far, `in_progress()` calls included.
    pub fn all(&mut self) -> &[Settled] {
        while let Ok(settle) = self.rx.try_recv() {
            self.seen.push(Settled::from(settle.verdict));
        }
        &self.seen
    }

    /// The last settlement, if any.
    pub fn last(mut self) -> Option<Settled> {
        self.all();
        self.seen.pop()
    }
}

/// One settlement of a test [`job`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settled {
    /// `ack()`.
    Acked,
    /// `nak(..)`, `nak_because(..)`, or the job dropped unsettled.
    Nacked {
        /// The delay asked for (`None`: the backoff).
        delay: Option<Duration>,
        /// The reason the dead-letter topic would record.
        reason: String,
    },
    /// `term(reason)`.
    Termed {
        /// The reason.
        reason: String,
    },
    /// `in_progress()`.
    InProgress,
}

impl From<Verdict> for Settled {
    fn from(verdict: Verdict) -> Settled {
        match verdict {
            Verdict::Ack => Settled::Acked,
            Verdict::Nak { delay, reason } => Settled::Nacked { delay, reason },
            Verdict::Term { reason } => Settled::Termed { reason },
            Verdict::Progress => Settled::InProgress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_job_reports_how_it_was_settled() {
        let (mut job, mut settled) = job("event", "i1");
        job.in_progress().expect("in time");
        job.term("poison").expect("in time");
        assert_eq!(
            settled.all(),
            &[
                Settled::InProgress,
                Settled::Termed {
                    reason: "poison".into()
                }
            ]
        );
        let (job, settled) = super::job(1u8, "i2");
        drop(job);
        assert!(matches!(
            settled.last(),
            Some(Settled::Nacked { delay: None, .. })
        ));
    }

    #[test]
    fn a_test_context_has_the_time_left_it_was_given() {
        let ctx = context("a@b/c".parse().expect("a full JID"), "m")
            .timeout(Duration::from_secs(5))
            .build();
        assert_eq!(ctx.from().to_string(), "a@b/c");
        assert!(ctx.remaining() <= Duration::from_secs(5));
        assert!(ctx.remaining() > Duration::from_secs(4));
    }
}
