//! What members tell a new leader: the events they settled lately, which
//! an old leader may have died (or lost its connection) before saving.
//! Without it, a takeover would hand out again everything acked since the
//! last save that reached the server.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;
use xmpp_parsers::iq::{IqHeader, IqPayload};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use crate::group::GroupKey;
use crate::group::fence::Leadership;
use crate::group::wire;
use crate::task::Task;
use crate::task::iq::PendingIq;

/// How long a member remembers what it settled, for a new leader.
const RECENT_WINDOW: Duration = Duration::from_secs(30);
/// How many of the events it settled a member remembers (per group), for
/// a new leader; reported in [`wire::MAX_REPORT`]s. About 80 bytes each.
/// A state a crashed server lost entirely (a group begun just before the
/// crash) leaves the new leader with only these.
pub(super) const RECENT_MAX: usize = 4 * wire::MAX_REPORT;

/// Adds `items` (oldest first) to a group's recent settlements, those not
/// there yet.
pub(super) fn remember_all(
    recent: &mut VecDeque<(String, Instant)>,
    items: impl IntoIterator<Item = String>,
) {
    let known: HashSet<String> = recent.iter().map(|(item, _)| item.clone()).collect();
    let now = Instant::now();
    recent.extend(
        items
            .into_iter()
            .filter(|item| !known.contains(item))
            .map(|item| (item, now)),
    );
    forget_old(recent);
}

/// Forgets the recent settlements past [`RECENT_MAX`] or [`RECENT_WINDOW`].
fn forget_old(recent: &mut VecDeque<(String, Instant)>) {
    while recent.len() > RECENT_MAX
        || recent
            .front()
            .is_some_and(|(_, at)| at.elapsed() > RECENT_WINDOW)
    {
        recent.pop_front();
    }
}

impl Task {
    /// This instance acked or termed `item` of `key`.
    pub(super) fn remember_settled(&mut self, key: &GroupKey, item: &str) {
        let Some(group) = self.groups.local.get_mut(key) else {
            return;
        };
        group.recent.push_back((item.to_owned(), Instant::now()));
        forget_old(&mut group.recent);
    }

    /// Sends each leader followed since the last report what this
    /// instance settled lately.
    pub(super) async fn report_to_new_leaders(&mut self) {
        let me = self.bound().to_string();
        let mut reports = Vec::new();
        for (key, group) in &mut self.groups.local {
            let Some(leader) = group.fence.leader() else {
                continue;
            };
            let claim = (leader.to_owned(), group.fence.epoch());
            if leader == me || group.reported_to.as_ref() == Some(&claim) {
                continue;
            }
            let items: Vec<&str> = group
                .recent
                .iter()
                .filter(|(_, at)| at.elapsed() <= RECENT_WINDOW)
                .map(|(item, _)| item.as_str())
                .collect();
            // An empty report too, as ever: the leader learns it is followed.
            for chunk in items
                .chunks(wire::MAX_REPORT)
                .chain(items.is_empty().then_some(&[][..]))
            {
                let report = wire::report(&key.group, &key.topic, chunk.iter().copied());
                reports.push((claim.0.clone(), report));
            }
            group.reported_to = Some(claim);
        }
        for (leader, report) in reports {
            self.send_report(&leader, report).await;
        }
    }

    /// A settlement of `item` answered `route_leader`'s job; if a newer
    /// leader is followed now, it learns of the settlement too.
    pub(super) async fn forward_settlement(
        &mut self,
        key: &GroupKey,
        item: &str,
        route_leader: &Jid,
    ) {
        let me = self.bound().to_string();
        let Some(leader) = self
            .groups
            .local
            .get(key)
            .and_then(|g| g.fence.leader())
            .map(str::to_owned)
        else {
            return;
        };
        if leader == route_leader.to_string() {
            return;
        }
        if leader == me {
            self.apply_report(key, [item.to_owned()]);
            return;
        }
        let report = wire::report(&key.group, &key.topic, [item]);
        self.send_report(&leader, report).await;
    }

    async fn send_report(&mut self, leader: &str, report: Element) {
        let Ok(to) = leader.parse::<Jid>() else {
            return;
        };
        let pending = PendingIq::Fire {
            to: to.clone(),
            what: "report settled events to the leader",
        };
        self.send_iq(to, true, report, pending).await;
    }

    /// A member's `<settled/>` report.
    pub(in crate::task) async fn on_report(&mut self, header: IqHeader, request: Element) {
        let own = self.bound().to_bare();
        let from_own = header.from.as_ref().is_some_and(|f| f.to_bare() == own);
        if let (true, Ok((group, topic, items))) = (from_own, wire::read_report(&request)) {
            let key = GroupKey::new(topic, group);
            let items: Vec<String> = items.into_iter().map(str::to_owned).collect();
            debug!(group = key.group, from = ?header.from, items = items.len(), "settled events reported");
            self.apply_report(&key, items);
        }
        self.answer_iq(header, IqPayload::Result(None)).await;
    }

    /// Marks reported items done: now if leading, else for the leadership
    /// being claimed.
    fn apply_report(&mut self, key: &GroupKey, items: impl IntoIterator<Item = String>) {
        let Some(group) = self.groups.local.get_mut(key) else {
            return;
        };
        let taking_over = group.leadership == Leadership::Claim || group.leading.is_some();
        match group.leading.as_mut() {
            Some(leading) if leading.early.is_none() => {
                for item in items {
                    if leading.ledger.done_elsewhere(&item) {
                        leading.events.remove(&item);
                    }
                }
                leading.dirty = true;
            }
            _ if taking_over => {
                let room = wire::MAX_REPORT * 16;
                for item in items {
                    if group.reported.len() < room {
                        group.reported.insert(item);
                    }
                }
            }
            _ => {}
        }
    }
}
