//! The session's life: what a resumption and a reset mean for the task.

use std::time::Duration;

use tokio::time::Instant;
use tokio_xmpp::stanzastream::StreamEvent;
use tracing::{debug, info};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::Task;
use super::iq::{PendingIq, iq};
use crate::command::CallFailure;
use crate::pubsub::Repeatable;
use crate::status::ConnectionEvent;

/// Publishes confirmed this long before the connection was lost are sent
/// again after a session reset (see [`Task::republish_recent`]).
const REPUBLISH_WINDOW: Duration = Duration::from_secs(2);

/// A publish the server confirmed lately.
pub(super) struct Confirmed {
    at: Instant,
    to: Jid,
    /// Shares the publisher's payload: cheap to keep and to let go.
    request: Repeatable,
}

impl Task {
    /// Remembers a confirmed publish for [`republish_recent`](Self::republish_recent),
    /// keeping at most the outbox's capacity and nothing older than the window.
    pub(super) fn confirmed(&mut self, to: Jid, request: Repeatable) {
        let now = Instant::now();
        while self.recent.front().is_some_and(|c| {
            now.duration_since(c.at) > REPUBLISH_WINDOW || self.recent.len() >= self.outbox_capacity
        }) {
            self.recent.pop_front();
        }
        self.recent.push_back(Confirmed {
            at: now,
            to,
            request,
        });
    }

    /// After a session reset: sends the publishes confirmed shortly before
    /// the connection was lost once more. A server may confirm an item
    /// before it is durable: ejabberd's Mnesia logs asynchronously, and in
    /// fault test 1 an item confirmed just before a `SIGKILL` was gone after
    /// the restart, with its notification. The same item id makes the
    /// repeat an overwrite, and subscriptions drop the second notification.
    async fn republish_recent(&mut self) {
        let Some(lost_at) = self.lost_at.take() else {
            self.recent.clear();
            return;
        };
        let since = lost_at.checked_sub(REPUBLISH_WINDOW).unwrap_or(lost_at);
        let again: Vec<Confirmed> = self.recent.drain(..).filter(|c| c.at >= since).collect();
        if !again.is_empty() {
            info!(
                publishes = again.len(),
                "re-sending the publishes confirmed just before the connection was lost"
            );
        }
        for c in again {
            let to = c.to.clone();
            let pending = PendingIq::Fire {
                to: to.clone(),
                what: "republish",
            };
            self.send_iq(to, true, c.request.to_element(), pending)
                .await;
        }
    }

    /// Starts a fresh session: the roster request, then initial presence,
    /// in that order (RFC 6121 §2.2 and §4.2). Initial presence makes the
    /// server send the presence of every service this account is subscribed
    /// to, and that presence is only tracked once the roster has named the
    /// service: the server answers the roster request first, as it handles a
    /// session's stanzas in order. The other way round, Prosody and the
    /// embedded server sent the services' presence before the roster, the
    /// bus dropped it as unsolicited, and then believed the roster's "known
    /// service, nobody online": every call of a restarted caller failed with
    /// `NoResponder` until an instance announced itself again.
    ///
    /// Then a ping to our server (see
    /// [`ping_after_presence`](Self::ping_after_presence)), and a look for
    /// subscriptions that dead sessions of this account left behind (see
    /// [`stale`](super::stale)).
    pub(super) async fn start_session(&mut self) {
        self.fetch_roster().await;
        let announce = self.announcement();
        self.send(announce.into()).await;
        self.ping_after_presence().await;
        self.list_own_subscriptions().await;
    }

    pub(super) async fn on_stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Reset {
                bound_jid,
                features,
            } => {
                self.health.established();
                self.counters.session_resets += 1;
                self.shared.status.report(ConnectionEvent::SessionReset);
                info!(jid = %bound_jid, "new session bound; restoring presence, subscriptions and unconfirmed publishes");
                let previous = self.bound().to_string();
                if let Ok(full) = bound_jid.try_into_full() {
                    *self.shared.bound.write().expect("lock poisoned") = full;
                }
                self.stream_management = features.stream_management.is_some();
                // Answers to IQs of the lost session will never come.
                let lost: Vec<String> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| !matches!(p, PendingIq::Caller { .. }))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in lost {
                    if let Some(PendingIq::Call { to, call }) = self.pending.remove(&id) {
                        self.directory.call_ended(&to);
                        call.fail(CallFailure::Disconnected);
                    }
                }
                self.directory.forget_instances().await;
                self.stale.reset();
                let resave = self.reset_groups(&previous);
                self.start_session().await;
                self.resave_groups(resave).await;
                self.resubscribe_all().await;
                self.resend_after_reset().await;
                self.republish_recent().await;
            }
            StreamEvent::Suspended => {
                debug!("XMPP connection lost");
                // The first loss since the session was last in use: later
                // ones are failed attempts to get it back.
                self.lost_at.get_or_insert_with(Instant::now);
            }
            StreamEvent::Resumed => {
                self.health.established();
                self.lost_at = None;
                self.directory.restart_pulses();
                self.shared.status.report(ConnectionEvent::Resumed);
                self.probe_resumed_session().await;
            }
        }
    }

    /// Pings our server right after our presence: the answer comes once
    /// the server has handled the presence (it handles a session's stanzas
    /// in order). Then [`Bus::connect`](crate::Bus::connect) returns.
    pub(super) async fn ping_after_presence(&mut self) {
        let to = Jid::from(self.bound().domain().to_owned());
        let ping = Element::builder("ping", xmpp_parsers::ns::PING).build();
        let pending = PendingIq::Online { to: to.clone() };
        self.send_iq(to, false, ping, pending).await;
    }

    /// Pings the server to learn whether a resumed session works (see
    /// [`RESUME_PROBE`](super::RESUME_PROBE)).
    pub(super) async fn probe_resumed_session(&mut self) {
        let Ok(to) = self.bound().domain().as_str().parse::<Jid>() else {
            return;
        };
        let ping = Element::builder("ping", xmpp_parsers::ns::PING).build();
        let sent = Instant::now();
        self.send_iq(to.clone(), false, ping, PendingIq::Probe { to, sent })
            .await;
    }

    /// After a session reset: sends the IQs that are safe to repeat
    /// (publishes, node creation) again, under their ids. If the old session
    /// delivered one, the server stores the same item id twice, which
    /// overwrites it, and subscriptions drop the second notification.
    pub(super) async fn resend_after_reset(&mut self) {
        let again: Vec<(String, Jid, Repeatable)> = self
            .pending
            .iter()
            .filter_map(|(id, pending)| match pending {
                PendingIq::Caller {
                    to,
                    reply,
                    resend: Some(request),
                } if !reply.is_closed() => Some((id.clone(), to.clone(), request.clone())),
                _ => None,
            })
            .collect();
        if !again.is_empty() {
            info!(iqs = again.len(), "re-sending unconfirmed publishes");
        }
        for (id, to, request) in again {
            self.send(iq(id, to, true, request.to_element())).await;
        }
    }
}
