//! [`ConnectionEvent`]s: what the connection goes through, as a stream
//! ([`Bus::status`](crate::Bus::status)) and in the logs.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tracing::{info, warn};

/// A change in the bus's connection to its server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// Connected and logged in: the first item of every status stream
    /// while the connection is up.
    Connected,
    /// The connection was lost; attempt `attempt` (from 1) to reconnect
    /// is under way. Calls in flight may fail; publishes wait in the
    /// outbox.
    Reconnecting {
        /// Which attempt, from 1, since the connection was lost.
        attempt: u32,
    },
    /// The bus reconnected to another of its configured servers than the
    /// one it was on (see
    /// [`BusConfigBuilder::servers`](crate::BusConfigBuilder::servers)):
    /// `Resumed` or, far more often (a session lives on the node that
    /// died), `SessionReset` follows.
    FailedOver {
        /// `host:port` of the server the bus was on.
        from: String,
        /// `host:port` of the server it is on now.
        to: String,
    },
    /// Reconnected and the session resumed (XEP-0198): nothing was lost,
    /// the server re-sent what this bus had not acknowledged and the
    /// other way round.
    Resumed,
    /// Reconnected with a new session: the old one could not be resumed.
    /// The bus re-announced its presence, re-subscribed every
    /// subscription, fetched the events published meanwhile (as far as
    /// the topics keep them) and re-sent the unconfirmed publishes. Calls
    /// in flight failed with `Disconnected`.
    SessionReset,
    /// The bus was closed; the stream ends after this.
    Closed,
}

impl std::fmt::Display for ConnectionEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionEvent::Connected => f.write_str("connected"),
            ConnectionEvent::Reconnecting { attempt } => {
                write!(f, "reconnecting (attempt {attempt})")
            }
            ConnectionEvent::FailedOver { from, to } => {
                write!(f, "failed over from {from} to {to}")
            }
            ConnectionEvent::Resumed => f.write_str("resumed"),
            ConnectionEvent::SessionReset => f.write_str("session reset"),
            ConnectionEvent::Closed => f.write_str("closed"),
        }
    }
}

/// Where the reconnector and the connection task report events.
#[derive(Debug, Clone)]
pub(crate) struct StatusSender {
    current: Arc<Mutex<ConnectionEvent>>,
    events: broadcast::Sender<ConnectionEvent>,
}

/// How many events a slow status stream may fall behind before it skips.
const BACKLOG: usize = 64;

impl StatusSender {
    pub(crate) fn new() -> StatusSender {
        StatusSender {
            current: Arc::new(Mutex::new(ConnectionEvent::Connected)),
            events: broadcast::channel(BACKLOG).0,
        }
    }

    /// Logs `event` and hands it to every status stream.
    pub(crate) fn report(&self, event: ConnectionEvent) {
        crate::meter::connection(&event);
        match &event {
            ConnectionEvent::Reconnecting { attempt } => {
                warn!(attempt, "connection lost; reconnecting")
            }
            ConnectionEvent::SessionReset => {
                warn!("reconnected with a new session; restoring state")
            }
            ConnectionEvent::FailedOver { from, to } => {
                warn!(from, to, "moved to another server")
            }
            other => info!(event = %other, "connection status"),
        }
        *self.current.lock().expect("lock poisoned") = event.clone();
        let _ = self.events.send(event);
    }

    /// A stream that starts with the current state.
    pub(crate) fn subscribe(&self) -> StatusStream {
        let events = self.events.subscribe();
        let current = self.current.lock().expect("lock poisoned").clone();
        let ended = current == ConnectionEvent::Closed;
        let rest = futures::stream::unfold((events, ended), |(mut events, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match events.recv().await {
                    Ok(event) => {
                        let ended = event == ConnectionEvent::Closed;
                        return Some((event, (events, ended)));
                    }
                    // A slow reader skips what it missed; the next
                    // event tells the state again.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        StatusStream {
            inner: Box::pin(futures::stream::iter([current]).chain(rest)),
        }
    }
}

/// The stream of [`ConnectionEvent`]s from [`Bus::status`](crate::Bus::status).
///
/// It starts with the current state and ends after
/// [`ConnectionEvent::Closed`]. A reader that falls more than 64 events
/// behind skips the oldest.
pub struct StatusStream {
    inner: BoxStream<'static, ConnectionEvent>,
}

impl std::fmt::Debug for StatusStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusStream").finish_non_exhaustive()
    }
}

impl Stream for StatusStream {
    type Item = ConnectionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_with_the_current_state_and_ends_when_closed() {
        let sender = StatusSender::new();
        sender.report(ConnectionEvent::Reconnecting { attempt: 1 });
        let mut stream = sender.subscribe();
        assert_eq!(
            stream.next().await,
            Some(ConnectionEvent::Reconnecting { attempt: 1 })
        );
        sender.report(ConnectionEvent::Resumed);
        sender.report(ConnectionEvent::Closed);
        assert_eq!(stream.next().await, Some(ConnectionEvent::Resumed));
        assert_eq!(stream.next().await, Some(ConnectionEvent::Closed));
        assert_eq!(stream.next().await, None);
        let mut late = sender.subscribe();
        assert_eq!(late.next().await, Some(ConnectionEvent::Closed));
        assert_eq!(late.next().await, None);
    }
}
