//! The reconnect policy handed to tokio-xmpp's
//! [`StanzaStream`](tokio_xmpp::stanzastream::StanzaStream), and the way out
//! of a refused XEP-0198 resumption.
//!
//! # Refused resumptions
//!
//! After the server crashed or restarted without `<system-shutdown/>`, the
//! stanza stream still holds the XEP-0198 state of the lost session and sends
//! `<resume previd='…'/>` on every new connection. Prosody and ejabberd both
//! refuse it with
//! `<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='…xmpp-stanzas'/></failed>`
//! (ejabberd adds a `<text/>`), without the `h` attribute: XEP-0198 makes it
//! optional, but xmpp-parsers 0.23 requires it (`sm::Failed::h` is an
//! `#[xml(attribute)]` without `default`). tokio-xmpp 6 thus never sees a
//! `<failed/>`: it sees an invalid nonza, reports it as a hard I/O error, and
//! keeps the XEP-0198 state for the next attempt. The connection is closed and
//! the next one asks to resume the same session, every ~70 ms, forever.
//!
//! tokio-xmpp does drop that state, and binds a fresh session (emitting
//! `StreamEvent::Reset`, which the connection task answers by restoring
//! presence, subscriptions and the roster), when a new connection no longer
//! offers stream management. So when the connections handed over keep dying
//! at once, before they could have been in use, the reconnector hides `<sm/>`
//! from the next connection's features. That one session runs without
//! XEP-0198 (the connection task learns this from the `Reset` features); the
//! connection after it offers stream management again. Quick losses also back
//! off, so that a server which drops every new stream is not hammered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_xmpp::stanzastream::Connection;
use tracing::{debug, info, warn};

use crate::login::Login;
use crate::status::{ConnectionEvent, StatusSender};

/// A connection lost sooner than this after it was handed over counts as a
/// quick loss: it died during stream negotiation (refused resumption), or
/// right after.
const QUICK_LOSS: Duration = Duration::from_secs(10);

/// After this many quick losses in a row, the next connection hides stream
/// management, so that tokio-xmpp binds a fresh session instead of asking to
/// resume the lost one again. Two, so that one connection lost while resuming
/// does not cost a session that could still have been resumed.
const FRESH_AFTER: u32 = 2;

/// Back-off bounds, for failed connection attempts and for quick losses.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// What to do for the connection tokio-xmpp asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// Wait this long before connecting.
    delay: Duration,
    /// Hide stream management from the connection's features.
    fresh_session: bool,
}

/// Remembers when the last connection was handed over, and how many in a row
/// were lost quickly.
#[derive(Debug, Default)]
struct Policy {
    /// When the current connection was handed over, until it is
    /// established.
    handed_over: Option<Instant>,
    quick_losses: u32,
    /// The resumed session does not answer: the next connection starts a
    /// fresh one.
    resumed_dead: bool,
}

impl Policy {
    /// tokio-xmpp asks for a new connection at `now`: the last one was lost.
    fn on_lost(&mut self, now: Instant) -> Plan {
        match self.handed_over.take() {
            Some(at) if now.saturating_duration_since(at) < QUICK_LOSS => {
                self.quick_losses = self.quick_losses.saturating_add(1);
            }
            _ => self.quick_losses = 0,
        }
        let delay = match self.quick_losses {
            0 => Duration::ZERO,
            n => backoff(n),
        };
        Plan {
            delay,
            fresh_session: self.quick_losses >= FRESH_AFTER
                || std::mem::take(&mut self.resumed_dead),
        }
    }

    /// A connection was handed to tokio-xmpp at `now`.
    fn on_handed_over(&mut self, now: Instant) {
        self.handed_over = Some(now);
    }

    /// The connection handed over last resumed its session or bound a new
    /// one: whenever it is lost, that is a network failure, not a refused
    /// resumption, and the next connection may resume at once.
    fn on_established(&mut self) {
        self.handed_over = None;
        self.quick_losses = 0;
    }
}

/// Tells the reconnect policy when a connection is in use: the connection
/// task calls [`established`](Self::established) on every `Resumed` and
/// `Reset` from the stanza stream.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    policy: Arc<Mutex<Policy>>,
    /// `true` once the bus is closing; dropped with the connection task.
    closing: watch::Sender<bool>,
}

impl Health {
    /// The connection handed over last is established.
    pub(crate) fn established(&self) {
        self.policy.lock().expect("lock poisoned").on_established();
    }

    /// A resumed session did not answer a ping in time (see
    /// [`RESUME_PROBE`]), or did after all (`dead == false`): when the
    /// connection is lost, start a fresh session instead of resuming it
    /// once more.
    pub(crate) fn resumed_dead(&self, dead: bool) {
        self.policy.lock().expect("lock poisoned").resumed_dead = dead;
    }

    /// The bus is closing or gone: no more reconnect attempts. tokio-xmpp's
    /// worker waits for the connection an attempt hands over and does not
    /// close the slot when the bus drops its stream meanwhile, so without
    /// this a bus dropped while its server was down kept trying forever.
    /// An attempt under way, or its back-off, ends at once (see
    /// [`end_stream`]).
    pub(crate) fn closed(&self) {
        self.closing.send_replace(true);
    }
}

/// How long a resumed session may take to answer the ping the connection
/// task sends right after the resumption.
///
/// Prosody 0.12.3 can resume a session whose stanza processing is stuck:
/// when the connection dropped while it was working through a batch of the
/// client's stanzas, the resumed session answers `<resumed/>`, re-sends
/// what it had queued, and then never processes another stanza from the
/// client (seen in the fault tests: no `Received` line in its debug log
/// after the resumption, on that session or any later resumption of it).
/// Nothing is lost, since the client still holds every unacknowledged
/// stanza, but the session is useless. So a resumed session that does not
/// answer this probe is replaced by a fresh one once the stream gives up on
/// the connection (the read timeouts in `login.rs`).
pub(crate) const RESUME_PROBE: Duration = Duration::from_secs(5);

/// The delay before attempt `n` (from 1): doubling from [`FIRST_DELAY`],
/// capped at [`MAX_DELAY`].
fn backoff(n: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(MAX_DELAY)
}

/// `delay` with ±25 % jitter, so that many buses do not reconnect in step.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random::<f64>() * 0.5 + 0.75)
}

/// Gives `connection` to tokio-xmpp and notes when.
fn hand_over(policy: &Mutex<Policy>, slot: oneshot::Sender<Connection>, connection: Connection) {
    policy
        .lock()
        .expect("lock poisoned")
        .on_handed_over(Instant::now());
    let _ = slot.send(connection);
}

/// Connects after `plan.delay`, retrying with capped, jittered back-off
/// until an attempt succeeds.
async fn reconnect_until_connected(login: &Login, plan: Plan, status: &StatusSender) -> Connection {
    if !plan.delay.is_zero() {
        tokio::time::sleep(jittered(plan.delay)).await;
    }
    let mut delay = FIRST_DELAY;
    let mut attempt = 0u32;
    let was_on = login.servers().current_address();
    loop {
        attempt = attempt.saturating_add(1);
        status.report(ConnectionEvent::Reconnecting { attempt });
        match tokio::time::timeout(Duration::from_secs(10), login.connect()).await {
            Ok(Ok(mut connection)) => {
                if plan.fresh_session {
                    // tokio-xmpp drops its XEP-0198 state when the server no
                    // longer offers it, and binds anew.
                    connection.features.stream_management = None;
                }
                let server = login.servers().current_address();
                info!(
                    attempt,
                    fresh_session = plan.fresh_session,
                    server,
                    "reconnected"
                );
                if server != was_on {
                    status.report(ConnectionEvent::FailedOver {
                        from: was_on,
                        to: server,
                    });
                }
                return connection;
            }
            Ok(Err(error)) => warn!(attempt, %error, "reconnect failed"),
            Err(_) => warn!(attempt, "reconnect timed out"),
        }
        tokio::time::sleep(jittered(delay)).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// Resolves once the bus is closing, or its connection task is gone.
async fn bus_closing(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

/// Ends the stream of a bus that is gone while it was reconnecting.
///
/// Dropping `slot` would make tokio-xmpp's worker panic ("Backend was unable
/// to handle reconnect request."), on a thread the application does not
/// own. A connection that hangs up at once makes the worker see that its
/// frontend is gone and end the stream instead.
async fn end_stream(login: &Login, slot: oneshot::Sender<Connection>) {
    match login.dead_end().await {
        Ok(connection) => {
            debug!("the bus is gone: ending the stream instead of reconnecting");
            let _ = slot.send(connection);
        }
        // Not expected (in-memory I/O); the worker panics on its own task.
        Err(error) => warn!(%error, "could not end the stream of a closed bus"),
    }
}

/// tokio-xmpp's reconnect callback.
pub(crate) type Reconnect = Box<dyn FnMut(Option<String>, oneshot::Sender<Connection>) + Send>;

/// The reconnect policy handed to tokio-xmpp: the first call gets the
/// connection that [`Bus::connect`](crate::Bus::connect) already made; later
/// calls retry with capped exponential back-off and jitter until one succeeds
/// or the stream is dropped, and start a fresh session when resuming the old
/// one keeps failing (see the module documentation). [`Health`] tells it
/// which connections got established.
pub(crate) fn reconnector(
    login: Login,
    first: Connection,
    status: StatusSender,
) -> (Reconnect, Health) {
    let mut first = Some(first);
    let policy = Arc::new(Mutex::new(Policy::default()));
    let (closing, closing_rx) = watch::channel(false);
    let health = Health {
        policy: policy.clone(),
        closing,
    };
    let reconnect: Reconnect = Box::new(move |_location, mut slot| {
        if let Some(connection) = first.take() {
            hand_over(&policy, slot, connection);
            return;
        }
        let plan = policy
            .lock()
            .expect("lock poisoned")
            .on_lost(Instant::now());
        let login = login.clone();
        let policy = policy.clone();
        let status = status.clone();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            if plan.fresh_session {
                warn!(
                    "the session could not be resumed (refused or unresponsive resumptions); \
                     starting a fresh session"
                );
            }
            let connection = tokio::select! {
                connection = reconnect_until_connected(&login, plan, &status) => Some(connection),
                () = bus_closing(&mut closing) => None,
                () = slot.closed() => return,
            };
            match connection {
                Some(connection) => hand_over(&policy, slot, connection),
                None => end_stream(&login, slot).await,
            }
        });
    });
    (reconnect, health)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::minidom::Element;
    use xmpp_parsers::sm;

    /// The root cause, pinned: if xmpp-parsers starts accepting `<failed/>`
    /// without `h`, tokio-xmpp re-binds by itself and the work-around in
    /// this module only costs a session without XEP-0198 in rare cases.
    #[test]
    fn xmpp_parsers_rejects_the_failed_that_servers_send() {
        let prosody = "<failed xmlns='urn:xmpp:sm:3'>\
            <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>";
        let ejabberd = "<failed xmlns='urn:xmpp:sm:3'>\
            <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
            <text xml:lang='en' xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>\
            Previous session not found</text></failed>";
        for xml in [prosody, ejabberd] {
            let element: Element = xml.parse().unwrap();
            assert!(sm::Failed::try_from(element).is_err(), "{xml}");
        }
        // With `h`, even ejabberd's `<text/>` is fine.
        let with_h = ejabberd.replace("<failed ", "<failed h='3' ");
        let element: Element = with_h.parse().unwrap();
        let failed = sm::Failed::try_from(element).unwrap();
        assert_eq!(failed.h, Some(3));
    }

    #[test]
    fn a_loss_after_a_while_reconnects_at_once_and_resumes() {
        let start = Instant::now();
        let mut policy = Policy::default();
        policy.on_handed_over(start);
        let plan = policy.on_lost(start + Duration::from_secs(60));
        assert_eq!(
            plan,
            Plan {
                delay: Duration::ZERO,
                fresh_session: false
            }
        );
    }

    #[test]
    fn quick_losses_back_off_then_start_a_fresh_session() {
        let mut now = Instant::now();
        let mut policy = Policy::default();
        policy.on_handed_over(now);
        // The server crashed after a long session: resume at once.
        now += Duration::from_secs(600);
        assert!(!policy.on_lost(now).fresh_session);
        // The resumption is refused within milliseconds, again and again.
        let mut plans = Vec::new();
        for _ in 0..4 {
            policy.on_handed_over(now);
            now += Duration::from_millis(70);
            plans.push(policy.on_lost(now));
        }
        assert_eq!(plans[0].delay, FIRST_DELAY);
        assert!(!plans[0].fresh_session, "one quick loss may be bad luck");
        assert_eq!(plans[1].delay, FIRST_DELAY * 2);
        assert!(plans[1].fresh_session);
        assert!(plans[3].fresh_session);
        assert!(plans[3].delay > plans[2].delay);
        // A connection that lived resets everything.
        policy.on_handed_over(now);
        now += QUICK_LOSS;
        assert_eq!(
            policy.on_lost(now),
            Plan {
                delay: Duration::ZERO,
                fresh_session: false
            }
        );
    }

    #[test]
    fn losses_of_established_connections_never_count_as_quick() {
        // Connections cut by the network every few hundred milliseconds,
        // each resumed in between: reconnect at once, keep resuming.
        let mut now = Instant::now();
        let mut policy = Policy::default();
        for _ in 0..20 {
            policy.on_handed_over(now);
            now += Duration::from_millis(20);
            policy.on_established();
            now += Duration::from_millis(200);
            assert_eq!(
                policy.on_lost(now),
                Plan {
                    delay: Duration::ZERO,
                    fresh_session: false
                }
            );
        }
    }

    #[test]
    fn a_dead_resumed_session_is_replaced_by_a_fresh_one() {
        let mut now = Instant::now();
        let mut policy = Policy::default();
        policy.on_handed_over(now);
        policy.on_established();
        policy.resumed_dead = true;
        now += Duration::from_secs(15);
        assert!(policy.on_lost(now).fresh_session);
        policy.on_handed_over(now);
        policy.on_established();
        now += Duration::from_secs(15);
        assert!(!policy.on_lost(now).fresh_session, "once");
    }

    #[test]
    fn a_loss_before_any_hand_over_is_not_quick() {
        let mut policy = Policy::default();
        assert!(!policy.on_lost(Instant::now()).fresh_session);
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(backoff(1), FIRST_DELAY);
        assert_eq!(backoff(2), FIRST_DELAY * 2);
        assert_eq!(backoff(40), MAX_DELAY);
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
    }
}
