//! The bounded buffer between the connection task and one subscription or
//! inbox, with its overflow policy.
//!
//! One producer (the task) and one consumer (the stream the user polls).
//! [`BufferPolicy::BackPressure`] makes the producer wait for room;
//! [`BufferPolicy::DropOldest`] never waits: it drops the oldest buffered
//! item and counts it. Either way the buffer never holds more than its
//! capacity, so a consumer that stops reading costs a bounded amount of
//! memory.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// What a subscription's buffer does when it is full and another event
/// arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BufferPolicy {
    /// The connection task waits until the consumer makes room. Nothing is
    /// lost, but while it waits the whole connection waits: other
    /// subscriptions, calls and pings too, and the server buffers (or
    /// drops the session, after which the bus fetches the gap from the
    /// topic's history). The default: for consumers that keep up.
    #[default]
    BackPressure,
    /// The oldest buffered event is dropped to make room, and counted
    /// ([`Subscription::dropped`](crate::Subscription::dropped)). The
    /// connection never waits for this consumer: for dashboards, caches and
    /// other consumers that only need recent events.
    DropOldest,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    policy: BufferPolicy,
    dropped: u64,
    consumer: Option<Waker>,
    consumer_gone: bool,
    producer_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when room is made or the consumer goes away.
    room: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().expect("lock poisoned")
    }
}

/// A new buffer holding at most `capacity` items (at least one).
pub(crate) fn channel<T>(capacity: usize, policy: BufferPolicy) -> (Producer<T>, Consumer<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            policy,
            dropped: 0,
            consumer: None,
            consumer_gone: false,
            producer_gone: false,
        }),
        room: Notify::new(),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

/// The connection task's end.
pub(crate) struct Producer<T> {
    shared: Arc<Shared<T>>,
}

/// The consumer is gone; the item was not buffered.
#[derive(Debug)]
pub(crate) struct Gone;

/// What [`Producer::push`] did with an item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Buffered.
    Queued,
    /// Buffered, and the oldest item was dropped to make room.
    DroppedOldest,
}

impl<T> Producer<T> {
    /// Buffers `item`, waiting for room under back-pressure.
    pub(crate) async fn push(&self, item: T) -> Result<Pushed, Gone> {
        loop {
            let mut notified = pin!(self.shared.room.notified());
            // Registered before the check, so a pop in between still wakes us.
            notified.as_mut().enable();
            if self.has_room()? {
                break;
            }
            notified.await;
        }
        let (pushed, consumer) = {
            let mut state = self.shared.lock();
            let mut pushed = Pushed::Queued;
            if state.items.len() >= state.capacity {
                // Only drop-oldest gets here full: the producer is alone.
                state.items.pop_front();
                state.dropped += 1;
                pushed = Pushed::DroppedOldest;
            }
            state.items.push_back(item);
            (pushed, state.consumer.take())
        };
        if let Some(consumer) = consumer {
            consumer.wake();
        }
        Ok(pushed)
    }

    /// Whether an item can be pushed now without waiting.
    fn has_room(&self) -> Result<bool, Gone> {
        let state = self.shared.lock();
        if state.consumer_gone {
            return Err(Gone);
        }
        Ok(state.items.len() < state.capacity || state.policy == BufferPolicy::DropOldest)
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.producer_gone = true;
            state.consumer.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The stream's end.
pub(crate) struct Consumer<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Consumer")
            .field("buffered", &state.items.len())
            .field("capacity", &state.capacity)
            .field("policy", &state.policy)
            .field("dropped", &state.dropped)
            .finish()
    }
}

impl<T> Consumer<T> {
    /// The next item; `None` once the producer is gone and the buffer is
    /// empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(item) = state.items.pop_front() {
            drop(state);
            self.shared.room.notify_one();
            return Poll::Ready(Some(item));
        }
        if state.producer_gone {
            return Poll::Ready(None);
        }
        state.consumer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// How many items the drop-oldest policy dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// How many items are buffered now.
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().items.len()
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.consumer_gone = true;
            state.items.clear();
        }
        self.shared.room.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    async fn recv<T>(consumer: &mut Consumer<T>) -> Option<T> {
        poll_fn(|cx| consumer.poll_recv(cx)).await
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_and_counts() {
        let (tx, mut rx) = channel(3, BufferPolicy::DropOldest);
        for n in 0..10 {
            tx.push(n).await.unwrap();
        }
        assert_eq!(rx.len(), 3);
        assert_eq!(rx.dropped(), 7);
        assert_eq!(recv(&mut rx).await, Some(7));
        assert_eq!(recv(&mut rx).await, Some(8));
        assert_eq!(recv(&mut rx).await, Some(9));
        drop(tx);
        assert_eq!(recv(&mut rx).await, None);
    }

    #[tokio::test]
    async fn back_pressure_waits_for_room() {
        let (tx, mut rx) = channel(2, BufferPolicy::BackPressure);
        tx.push(1).await.unwrap();
        tx.push(2).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), tx.push(3)).await;
        assert!(third.is_err(), "a full buffer makes the producer wait");
        let producer = tokio::spawn(async move {
            tx.push(3).await.unwrap();
            tx.push(4).await.unwrap();
        });
        let mut got = Vec::new();
        for _ in 0..4 {
            let item = tokio::time::timeout(Duration::from_secs(5), recv(&mut rx))
                .await
                .unwrap();
            got.push(item.unwrap());
        }
        assert_eq!(got, [1, 2, 3, 4]);
        assert_eq!(rx.dropped(), 0);
        tokio::time::timeout(Duration::from_secs(5), producer)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_gone_consumer_releases_a_waiting_producer() {
        let (tx, rx) = channel(1, BufferPolicy::BackPressure);
        tx.push(1).await.unwrap();
        let waiting = tokio::spawn(async move { tx.push(2).await });
        tokio::task::yield_now().await;
        drop(rx);
        let result = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(result.is_err());
    }
}
