//! The session's life: what a resumption and a reset mean for the task.

use tokio::time::Instant;
use tokio_xmpp::stanzastream::StreamEvent;
use tracing::{debug, info};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::Task;
use super::iq::{PendingIq, iq};
use crate::command::CallFailure;
use crate::status::ConnectionEvent;

impl Task {
    pub(super) async fn on_stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Reset {
                bound_jid,
                features,
            } => {
                self.health.established();
                self.counters.session_resets += 1;
                self.status.report(ConnectionEvent::SessionReset);
                info!(jid = %bound_jid, "new session bound; restoring presence, subscriptions and unconfirmed publishes");
                if let Ok(full) = bound_jid.try_into_full() {
                    *self.shared.bound.write().expect("lock poisoned") = full;
                }
                self.stream_management = features.stream_management.is_some();
                let announce = self.directory.announcement();
                self.send(announce.into()).await;
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
                self.fetch_roster().await;
                self.resubscribe_all().await;
                self.resend_after_reset().await;
            }
            StreamEvent::Suspended => debug!("XMPP connection lost"),
            StreamEvent::Resumed => {
                self.health.established();
                self.status.report(ConnectionEvent::Resumed);
                self.probe_resumed_session().await;
            }
        }
    }

    /// Pings the server to learn whether a resumed session works (see
    /// [`RESUME_PROBE`]).
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
        let again: Vec<(String, Jid, bool, Element)> = self
            .pending
            .iter()
            .filter_map(|(id, pending)| match pending {
                PendingIq::Caller {
                    to,
                    reply,
                    resend: Some((set, payload)),
                } if !reply.is_closed() => Some((id.clone(), to.clone(), *set, payload.clone())),
                _ => None,
            })
            .collect();
        if !again.is_empty() {
            info!(iqs = again.len(), "re-sending unconfirmed publishes");
        }
        for (id, to, set, payload) in again {
            self.send(iq(id, to, set, payload)).await;
        }
    }
}
