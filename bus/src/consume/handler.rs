//! The handler form of a consumer: a function per event, acked on `Ok`,
//! nak'ed on `Err` or on a panic.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::{FutureExt as _, StreamExt as _};
use tracing::warn;

use super::{Consumer, Job, Verdict};
use crate::event::Event;
use crate::headers::Headers;
use crate::trace::ReceiveSpan;

/// What a handler learns about its event besides the event itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobMeta {
    /// The event's pubsub item id on the topic.
    pub item_id: String,
    /// Its XEP-0131 headers.
    pub headers: Headers,
    /// Who published it, as the pubsub service stamped it.
    pub publisher: Option<String>,
    /// Which delivery of the event this is: 1 for the first.
    pub attempt: u32,
}

impl<E: Event> Consumer<E> {
    /// Runs `handler` on each of this instance's jobs, up to the group's
    /// `max_in_flight` at once, until the bus is closed: `Ok` acks the
    /// event, `Err` naks it with the error's text as the reason (it comes
    /// again after the backoff, and is dead-lettered with that reason
    /// after the last delivery), and a panic naks it too. The consumer's
    /// notices ([`GroupError`](super::GroupError)) are logged as warnings.
    ///
    /// ```no_run
    /// # async fn run(bus: xbus::Bus) -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(xbus::Event, serde::Serialize, serde::Deserialize)]
    /// # #[event(topic = "orders.created")]
    /// # struct OrderCreated { id: u64 }
    /// let billing = bus.consume::<OrderCreated>("billing", xbus::ConsumeOptions::new()).await?;
    /// billing
    ///     .handle(|order, meta| async move {
    ///         println!("billing order {} (delivery {})", order.id, meta.attempt);
    ///         Ok::<_, std::io::Error>(())
    ///     })
    ///     .await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn handle<F, Fut, T, Er>(self, handler: F)
    where
        F: Fn(E, JobMeta) -> Fut,
        Fut: Future<Output = Result<T, Er>>,
        Er: Display,
    {
        let limit = self.raw.max_in_flight;
        let handler = &handler;
        self.for_each_concurrent(limit, |job| async move {
            let job = match job {
                Ok(job) => job,
                Err(notice) => {
                    warn!(%notice, "consumer group notice");
                    return;
                }
            };
            settle(job, handler).await;
        })
        .await;
    }
}

/// Runs `handler` on one job and settles it by the outcome.
async fn settle<E, F, Fut, T, Er>(job: Job<E>, handler: &F)
where
    F: Fn(E, JobMeta) -> Fut,
    Fut: Future<Output = Result<T, Er>>,
    Er: Display,
{
    let Job {
        event,
        item_id,
        headers,
        publisher,
        attempt,
        mut settle,
        span,
    } = job;
    let meta = JobMeta {
        item_id: item_id.clone(),
        headers,
        publisher,
        attempt,
    };
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(event, meta))) {
        Ok(future) => AssertUnwindSafe(in_span(future, span)).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    let verdict = match outcome {
        Ok(Ok(_)) => Verdict::Ack,
        Ok(Err(error)) => Verdict::Nak {
            delay: None,
            reason: error.to_string(),
        },
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            warn!(
                item = item_id,
                panic = text,
                "a consumer-group handler panicked; the event is nak'ed"
            );
            Verdict::Nak {
                delay: None,
                reason: format!("the handler panicked: {text}"),
            }
        }
    };
    if let Err(error) = settle.send(verdict) {
        warn!(item = item_id, %error, "settling a handled event");
    }
}

/// Runs the handler's future in the job's span (feature `otel`), so that
/// the handler's own spans join the publisher's trace.
#[cfg(feature = "otel")]
fn in_span<F: Future>(future: F, span: ReceiveSpan) -> impl Future<Output = F::Output> {
    tracing::Instrument::instrument(future, span.0)
}

#[cfg(not(feature = "otel"))]
fn in_span<F: Future>(future: F, _span: ReceiveSpan) -> F {
    future
}
