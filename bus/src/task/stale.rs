//! Leftover pubsub subscriptions of this account's dead sessions.
//!
//! xbus subscribes each session's full JID, so a process killed with
//! `SIGKILL` leaves its subscriptions behind, and the server keeps fanning
//! events out to them. After each login the bus lists its account's
//! subscriptions (XEP-0060 §5.6), pings every other resource that holds
//! one (XEP-0199), and unsubscribes (§6.2) those the server answers for
//! with "no such session", unless the resource came back within
//! [`CONFIRM`] (its presence arrived): then the subscription may be the
//! one it just renewed. A resource that does not answer at all is a
//! session the server keeps for a resumption (a process that died, or one
//! whose network is cut): it is left alone and checked again later, with a
//! growing pause, until the server has ended it.
//!
//! The embedded server, Prosody and ejabberd all list every full JID of
//! the account in the §5.6 answer and let a session of the account remove
//! another's subscription (`integration-tests/tests/stale.rs`). A server
//! that refuses either only costs the listing IQ: nothing is removed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::StanzaError;

use super::Task;
use super::iq::PendingIq;
use crate::pubsub;

/// Most other resources checked after one listing; the rest wait for the
/// next round.
const MAX_CHECKED: usize = 32;
/// Most unsubscriptions sent for one dead resource in one round.
const MAX_REMOVED: usize = 256;
/// How long a leftover resource has to answer its ping.
pub(super) const STALE_PING: Duration = Duration::from_secs(5);
/// How long a resource the server says has no session must stay away
/// before its subscriptions are removed: a new session of it announces its
/// presence before it subscribes again, so a presence seen within this
/// time means its subscriptions may be fresh ones.
const CONFIRM: Duration = Duration::from_secs(1);
/// The first pause before listing again, when a resource did not answer
/// or more were left than one round checks; it doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(30);
/// The longest pause: beyond every default resumption window (Prosody's
/// 600 s, ejabberd's 300 s, the embedded server's 60 s).
const MAX_PAUSE: Duration = Duration::from_secs(600);

/// The leftover checks of this account's other sessions.
#[derive(Debug, Default)]
pub(super) struct StaleRounds {
    /// The next listing, if one is due.
    next: Option<Instant>,
    /// The pause after the next unresolved round.
    pause: Option<Duration>,
    /// The other resources being checked, with their subscriptions.
    checking: HashMap<FullJid, Checking>,
}

/// One other resource being checked.
#[derive(Debug)]
struct Checking {
    nodes: Vec<String>,
    /// When the server said it has no session.
    gone_at: Option<Instant>,
}

impl StaleRounds {
    /// Schedules another round: something was left unresolved.
    fn again(&mut self) {
        if self.next.is_some() {
            return;
        }
        let pause = self.pause.unwrap_or(FIRST_PAUSE);
        self.next = Some(Instant::now() + pause);
        self.pause = Some((pause * 2).min(MAX_PAUSE));
    }

    /// Whether a scheduled round is due now.
    fn due(&self) -> bool {
        self.next.is_some_and(|at| Instant::now() >= at)
    }

    /// Available presence from `jid`, a resource of this account: it has a
    /// session, whatever a ping said before.
    pub(super) fn present(&mut self, jid: &FullJid) {
        if self.checking.remove(jid).is_some() {
            debug!(%jid, "the other session is back; its subscriptions stay");
        }
    }

    /// A new session: the checks of the old one are void.
    pub(super) fn reset(&mut self) {
        self.checking.clear();
    }

    /// The resources that have stayed away for [`CONFIRM`], taken out.
    fn confirmed_dead(&mut self) -> Vec<(FullJid, Vec<String>)> {
        let dead: Vec<FullJid> = self
            .checking
            .iter()
            .filter(|(_, c)| c.gone_at.is_some_and(|at| at.elapsed() >= CONFIRM))
            .map(|(jid, _)| jid.clone())
            .collect();
        dead.into_iter()
            .filter_map(|jid| self.checking.remove(&jid).map(|c| (jid, c.nodes)))
            .collect()
    }
}

impl Task {
    /// Lists this account's pubsub subscriptions (XEP-0060 §5.6).
    pub(super) async fn list_own_subscriptions(&mut self) {
        self.stale.next = None;
        let to = self.pubsub.clone();
        let query = Element::builder("pubsub", ns::PUBSUB)
            .append(Element::builder("subscriptions", ns::PUBSUB))
            .build();
        self.send_iq(to.clone(), false, query, PendingIq::StaleList { to })
            .await;
    }

    /// Runs a scheduled round once it is due and the connection is up,
    /// and removes what a round found dead (every second).
    pub(super) async fn stale_tick(&mut self) {
        if self.stale.due() && self.lost_at.is_none() {
            self.list_own_subscriptions().await;
        }
        self.remove_stale().await;
    }

    /// The listing: pings each other resource of this account that holds
    /// subscriptions.
    pub(super) async fn on_own_subscriptions(
        &mut self,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        let listing = match answer {
            Ok(Some(listing)) => listing,
            Ok(None) => return,
            Err(error) => {
                debug!(error = %pubsub::server_error(&error), "the pubsub service does not list our subscriptions");
                return;
            }
        };
        let own = self.bound();
        let others = leftovers(&listing, &own);
        if others.len() > MAX_CHECKED {
            self.stale.again();
        }
        let checked: Vec<(FullJid, Vec<String>)> = others
            .into_iter()
            .filter(|(jid, _)| !self.stale.checking.contains_key(jid))
            .take(MAX_CHECKED.saturating_sub(self.stale.checking.len()))
            .collect();
        if checked.is_empty() && self.stale.next.is_none() {
            self.stale.pause = None;
        }
        for (jid, nodes) in checked {
            debug!(%jid, subscriptions = nodes.len(), "another session of this account holds subscriptions; pinging it");
            let ping = Element::builder("ping", ns::PING).build();
            let pending = PendingIq::StaleCheck {
                to: jid.clone(),
                sent: Instant::now(),
            };
            let checking = Checking {
                nodes,
                gone_at: None,
            };
            self.stale.checking.insert(jid.clone(), checking);
            self.send_iq(Jid::from(jid), false, ping, pending).await;
        }
    }

    /// The ping's answer: "no such session" starts the [`CONFIRM`] wait;
    /// any other answer proves the resource alive.
    pub(super) fn on_stale_check(
        &mut self,
        to: FullJid,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        match answer {
            Err(error) if crate::rpc::is_unavailable(&error) => {
                if let Some(checking) = self.stale.checking.get_mut(&to) {
                    checking.gone_at = Some(Instant::now());
                }
            }
            _ => {
                debug!(%to, "the other session answers; its subscriptions stay");
                self.stale.checking.remove(&to);
            }
        }
    }

    /// Unsubscribes the resources that stayed away for [`CONFIRM`] (runs
    /// every second).
    pub(super) async fn remove_stale(&mut self) {
        if self.lost_at.is_some() {
            return;
        }
        for (dead, nodes) in self.stale.confirmed_dead() {
            info!(jid = %dead, subscriptions = nodes.len(), "removing the subscriptions of a session that no longer exists");
            if nodes.len() > MAX_REMOVED {
                self.stale.again();
            }
            let jid = dead.to_string();
            for node in nodes.into_iter().take(MAX_REMOVED) {
                let payload = pubsub::unsubscribe(&node, &jid);
                let to = self.pubsub.clone();
                let pending = PendingIq::StaleRemove {
                    to: to.clone(),
                    node,
                };
                self.send_iq(to, true, payload, pending).await;
            }
        }
    }

    /// The answer to one unsubscription.
    pub(super) fn on_stale_removed(
        &mut self,
        node: &str,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        match answer {
            Ok(_) => self.counters.stale_subscriptions_removed += 1,
            Err(error) => {
                debug!(node, error = %pubsub::server_error(&error), "the server refused to remove a leftover subscription")
            }
        }
    }

    /// A leftover resource's ping went unanswered: try again later.
    pub(super) fn stale_unanswered(&mut self, to: &FullJid) {
        self.stale.checking.remove(to);
        debug!(%to, "the other session does not answer (the server keeps it for a resumption); checking again later");
        self.stale.again();
    }
}

/// The subscriptions in a §5.6 listing that belong to other full JIDs of
/// `own`'s account, by JID.
fn leftovers(listing: &Element, own: &FullJid) -> BTreeMap<FullJid, Vec<String>> {
    let mut others: BTreeMap<FullJid, Vec<String>> = BTreeMap::new();
    let Some(list) = listing.get_child("subscriptions", ns::PUBSUB) else {
        return others;
    };
    for sub in list.children().filter(|c| c.is("subscription", ns::PUBSUB)) {
        let (Some(node), Some(jid)) = (sub.attr("node"), sub.attr("jid")) else {
            continue;
        };
        if sub.attr("subscription").is_some_and(|s| s != "subscribed") {
            continue;
        }
        let Ok(Ok(full)) = Jid::new(jid).map(Jid::try_into_full) else {
            continue;
        };
        if full == *own || full.to_bare() != own.to_bare() {
            continue;
        }
        others.entry(full).or_default().push(node.to_owned());
    }
    others
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(subs: &[(&str, &str, &str)]) -> Element {
        let mut xml = format!("<pubsub xmlns='{}'><subscriptions>", ns::PUBSUB);
        for (node, jid, state) in subs {
            xml += &format!("<subscription node='{node}' jid='{jid}' subscription='{state}'/>");
        }
        xml += "</subscriptions></pubsub>";
        xml.parse().unwrap()
    }

    #[test]
    fn leftovers_are_other_full_jids_of_the_account() {
        let own = FullJid::new("svc@example.org/live").unwrap();
        let listing = listing(&[
            ("a", "svc@example.org/live", "subscribed"),
            ("a", "svc@example.org/dead", "subscribed"),
            ("b", "svc@example.org/dead", "subscribed"),
            ("c", "svc@example.org", "subscribed"),
            ("d", "other@example.org/x", "subscribed"),
            ("e", "svc@example.org/pending", "pending"),
            ("f", "not a jid@@", "subscribed"),
        ]);
        let found = leftovers(&listing, &own);
        let dead = FullJid::new("svc@example.org/dead").unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[&dead], vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn presence_within_the_wait_keeps_the_subscriptions() {
        let mut rounds = StaleRounds::default();
        let back = FullJid::new("svc@example.org/back").unwrap();
        let dead = FullJid::new("svc@example.org/dead").unwrap();
        for jid in [&back, &dead] {
            let gone_at = Some(Instant::now() - CONFIRM);
            let nodes = vec!["a".to_owned()];
            rounds
                .checking
                .insert(jid.clone(), Checking { nodes, gone_at });
        }
        rounds.present(&back);
        assert_eq!(rounds.confirmed_dead(), vec![(dead, vec!["a".to_owned()])]);
        assert!(rounds.checking.is_empty());
    }

    #[test]
    fn rounds_back_off_up_to_the_longest_pause() {
        let mut rounds = StaleRounds::default();
        let mut pauses = Vec::new();
        for _ in 0..7 {
            rounds.next = None;
            rounds.again();
            pauses.push(rounds.pause.unwrap());
        }
        assert_eq!(pauses[0], FIRST_PAUSE * 2);
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
    }
}
