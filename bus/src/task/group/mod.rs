//! The task's side of consumer groups: membership from presence, the
//! leader's claim, dispatch and settlement, the follower's jobs, and the
//! group's progress on the server. The rules are in [`crate::group`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Presence;

use super::Task;
use crate::consume::{ConsumeOptions, Handed, Settle};
use crate::error::ConsumeError;
use crate::group::GroupKey;
use crate::group::fence::{Fence, Leadership, elect};
use crate::group::ledger::Ledger;
use crate::group::state::{self, GroupState, NS};
use crate::pubsub::Incoming;

mod claim;
mod follow;
mod lead;
mod report;
mod takeover;

/// How long a member that joins (or whose session was reset) waits for
/// the other members' presence before it takes part in elections.
const JOIN_GRACE: Duration = Duration::from_millis(500);

/// How often a leader looks at deadlines and dispatches.
pub(super) const GROUP_TICK: Duration = Duration::from_millis(50);
/// A leader writes its progress at most this often (and on stepping down).
const SAVE_EVERY: Duration = Duration::from_millis(50);
/// A job refused because the instance's buffer is full is tried again
/// after this.
const BUSY_RETRY: Duration = Duration::from_millis(100);
/// Items a group's state node keeps: each leader saves its progress as an
/// item of its own ([`state_item`]), so that a late save of an old leader
/// (a stanza resent when its session resumed, or a leader that has not
/// heard of the new one yet) cannot overwrite a newer leader's. A new
/// leader reads them all and merges them.
const STATE_ITEMS: usize = 4;

/// The id of the item under which the leader `leader` saves its progress
/// at `epoch`: `state-EPOCH-HASH`, HASH being the [`state::done_hash`] of
/// the leader's full JID.
fn state_item(epoch: u64, leader: &str) -> String {
    format!("state-{epoch}-{:012x}", state::done_hash(leader))
}
/// How long a claim waits for the members' answers before it reads the
/// group's state anyway (a dead leader never answers).
const CLAIM_WAIT: Duration = Duration::from_secs(1);
/// After a member refused our claim (it follows a newer one): when the
/// election runs again.
const RECLAIM_AFTER: Duration = Duration::from_millis(200);

/// Every group this bus knows of.
#[derive(Default)]
pub(super) struct Groups {
    local: HashMap<GroupKey, LocalGroup>,
    /// Members of each group, from our account's presence.
    members: HashMap<GroupKey, BTreeSet<String>>,
    /// Members that announced `lead='false'` (foreign clients that take
    /// jobs but do not implement leading): never elected.
    workers_only: HashMap<GroupKey, HashSet<String>>,
    /// Dead-letter topics whose node this bus created (or found).
    dead_letter_nodes: HashSet<String>,
}

/// A group this bus consumes.
struct LocalGroup {
    options: ConsumeOptions,
    /// No election before then: the presence of the other members is on
    /// its way after we join (ejabberd sends it after answering what we
    /// sent next).
    elect_after: Option<Instant>,
    tx: mpsc::Sender<Handed>,
    /// Where the consumer learns of losses.
    notices: mpsc::Sender<crate::consume::GroupError>,
    fence: Fence,
    /// The highest epoch a member told us it follows.
    epoch_hint: u64,
    leadership: Leadership,
    /// While claiming: the claim announced, and who has yet to answer.
    claiming: Option<Claiming>,
    leading: Option<Leading>,
    /// Items this instance acked or termed lately, newest last: reported
    /// to each new leader it follows.
    recent: VecDeque<(String, Instant)>,
    /// The claim (leader, epoch) last reported to.
    reported_to: Option<(String, u64)>,
    /// Reports received while claiming: done for the leadership to come.
    reported: HashSet<String>,
}

/// A claim on its way: announced to the members, waiting for their
/// answers (or [`CLAIM_WAIT`]) before the group's state is read.
struct Claiming {
    epoch: u64,
    waiting: HashSet<String>,
    until: Instant,
    /// The state and stored items are being read.
    reading: bool,
}

/// What a leader keeps.
struct Leading {
    epoch: u64,
    ledger: Ledger<String>,
    /// The events of pending items.
    events: HashMap<String, Incoming>,
    /// Item ids in stored order from the first one not done, for the
    /// group's progress.
    seen: VecDeque<String>,
    /// The newest done item forgotten from the trail: it and all before
    /// it are done.
    below: Option<String>,
    /// Done items before `seen`, in the order handed out, newest last:
    /// their ids stay known for a while (a publisher may repeat an item
    /// after a reset, and the saved progress names the last
    /// [`state::DONE_WINDOW`]), then go.
    trail: VecDeque<String>,
    /// How many done ids the trail keeps.
    trail_cap: usize,
    /// Until the stored items are read: live items that came meanwhile.
    early: Option<Vec<Incoming>>,
    /// The states as read (one per leader that saved lately), until the
    /// stored items are.
    read: Option<(Vec<GroupState>, bool)>,
    /// The done hashes of the states read: an event that comes again live
    /// (a publisher repeating what the server may have lost) is done if
    /// an earlier leader saw it done.
    finished: HashSet<u64>,
    /// The states are being read again before the first job goes out.
    catching_up: bool,
    dirty: bool,
    saved_at: Option<Instant>,
    /// Saves on their way: a periodic save waits until none is, so that a
    /// slow server is not flooded with states it would only overwrite.
    saving: u32,
    /// Events settled since the last save was sent.
    unsaved: usize,
    /// Events settled that the saves on their way cover.
    unconfirmed: usize,
    /// The bus is closing: no more jobs go out.
    closing: bool,
}

impl Groups {
    /// What this bus keeps for `key` while it leads the group.
    fn leading_mut(&mut self, key: &GroupKey) -> Option<&mut Leading> {
        self.local.get_mut(key).and_then(|g| g.leading.as_mut())
    }

    /// The bus is closing: the groups it leads hand out no more jobs.
    pub fn closing(&mut self) {
        for leading in self.local.values_mut().filter_map(|g| g.leading.as_mut()) {
            leading.closing = true;
        }
    }

    /// Whether no group this bus leads has a job out.
    pub fn settled(&self) -> bool {
        self.local
            .values()
            .filter_map(|g| g.leading.as_ref())
            .all(|l| l.ledger.holders().is_empty())
    }

    /// Whether every group this bus leads has its progress saved: nothing
    /// changed since the last save, and the server confirmed it.
    pub fn saved(&self) -> bool {
        self.local
            .values()
            .filter_map(|g| g.leading.as_ref())
            .all(|l| l.saving == 0 && (!l.dirty || l.early.is_some()))
    }

    /// Whether this bus consumes any group.
    pub fn any(&self) -> bool {
        !self.local.is_empty()
    }

    /// What the groups we lead now have counted.
    pub fn counts(&self) -> crate::group::ledger::Counts {
        let mut total = crate::group::ledger::Counts::default();
        for leading in self.local.values().filter_map(|g| g.leading.as_ref()) {
            total.add(leading.ledger.counts());
        }
        total
    }

    /// The `<group/>` elements our presence carries.
    fn announced(&self) -> Vec<Element> {
        self.local
            .keys()
            .map(|key| {
                Element::builder("group", NS)
                    .attr(crate::codec::name("name"), key.group.as_str())
                    .attr(crate::codec::name("topic"), key.topic.as_str())
                    .build()
            })
            .collect()
    }
}

/// The groups an available presence announces, each with whether the
/// member may lead it (`lead='false'` says it may not; anything else, or
/// no attribute, that it may).
fn groups_in(presence: &Presence) -> Vec<(GroupKey, bool)> {
    presence
        .payloads
        .iter()
        .filter(|p| p.is("group", NS))
        .filter_map(|p| {
            let key = GroupKey::new(p.attr("topic")?, p.attr("name")?);
            Some((key, !matches!(p.attr("lead"), Some("false" | "0"))))
        })
        .take(64)
        .collect()
}

impl Task {
    /// Our presence: the instance status, and the groups we consume.
    pub(super) fn announcement(&self) -> Presence {
        let mut presence = self.directory.announcement();
        presence.payloads.extend(self.groups.announced());
        presence
    }

    /// [`Command::Consume`](crate::command::Command::Consume).
    pub(super) async fn join_group(
        &mut self,
        key: GroupKey,
        options: ConsumeOptions,
        tx: mpsc::Sender<Handed>,
        notices: mpsc::Sender<crate::consume::GroupError>,
    ) -> Result<mpsc::UnboundedSender<Box<Settle>>, ConsumeError> {
        if self.groups.local.contains_key(&key) {
            return Err(ConsumeError::AlreadyConsuming {
                topic: key.topic,
                group: key.group,
            });
        }
        info!(
            group = key.group,
            topic = key.topic,
            "joining consumer group"
        );
        let group = LocalGroup {
            options,
            elect_after: Some(Instant::now() + JOIN_GRACE),
            tx,
            notices,
            fence: Fence::default(),
            epoch_hint: 0,
            leadership: Leadership::Follow,
            claiming: None,
            leading: None,
            recent: VecDeque::new(),
            reported_to: None,
            reported: HashSet::new(),
        };
        self.groups.local.insert(key.clone(), group);
        let me = self.bound().to_string();
        self.groups
            .members
            .entry(key.clone())
            .or_default()
            .insert(me);
        let presence = self.announcement();
        self.send(presence.into()).await;
        // The election comes after JOIN_GRACE, from the group tick.
        Ok(self.settle_tx.clone())
    }

    /// A consumer was dropped: leave the group.
    pub(super) async fn leave_group(&mut self, key: &GroupKey) {
        self.step_down(key).await;
        self.groups.local.remove(key);
        let me = self.bound().to_string();
        if let Some(members) = self.groups.members.get_mut(key) {
            members.remove(&me);
        }
        let presence = self.announcement();
        self.send(presence.into()).await;
    }

    /// Presence from another resource of our account: its groups.
    pub(super) async fn member_presence(&mut self, from: &FullJid, available: Option<&Presence>) {
        let jid = from.to_string();
        let announced = available.map(groups_in).unwrap_or_default();
        for (key, may_lead) in &announced {
            let workers = self.groups.workers_only.entry(key.clone()).or_default();
            if *may_lead {
                workers.remove(&jid);
            } else {
                workers.insert(jid.clone());
            }
        }
        let joined: HashSet<GroupKey> = announced.into_iter().map(|(key, _)| key).collect();
        let mut changed = Vec::new();
        for (key, members) in self.groups.members.iter_mut() {
            if !joined.contains(key) && members.remove(&jid) {
                changed.push(key.clone());
            }
        }
        for key in joined {
            if self
                .groups
                .members
                .entry(key.clone())
                .or_default()
                .insert(jid.clone())
            {
                changed.push(key);
            }
        }
        // Bounded: only groups someone announced, and those we consume.
        self.groups
            .members
            .retain(|key, members| !members.is_empty() || self.groups.local.contains_key(key));
        let members = &self.groups.members;
        self.groups.workers_only.retain(|key, workers| {
            workers.retain(|w| members.get(key).is_some_and(|m| m.contains(w)));
            !workers.is_empty()
        });
        let now = Instant::now();
        for key in changed {
            let gone = !self
                .groups
                .members
                .get(&key)
                .is_some_and(|m| m.contains(&jid));
            if gone && let Some(leading) = self.groups.leading_mut(&key) {
                let dead = leading.ledger.worker_gone(&jid, now);
                leading.dirty = true;
                self.bury(&key, dead).await;
            }
            self.elect(&key).await;
        }
    }

    /// Decides who leads `key` after its members changed, and acts on it.
    async fn elect(&mut self, key: &GroupKey) {
        let me = self.bound().to_string();
        let mut live = self.live_members(key);
        if let Some(workers) = self.groups.workers_only.get(key) {
            live.retain(|m| !workers.contains(m));
        }
        let Some(group) = self.groups.local.get_mut(key) else {
            return;
        };
        if group.elect_after.is_some_and(|at| Instant::now() < at) {
            return;
        }
        group.elect_after = None;
        let elected = elect(group.fence.leader(), live.iter().map(String::as_str));
        let before = group.leadership.clone();
        let after = before.members_changed(&me, elected);
        group.leadership = after.clone();
        match (before, after) {
            (Leadership::Follow, Leadership::Claim) => self.claim(key).await,
            (Leadership::Lead { .. } | Leadership::Claim, Leadership::Follow) => {
                self.step_down(key).await
            }
            _ => {}
        }
    }

    /// The members of `key` that are alive: announced in presence, and
    /// not unresponsive to liveness pings (this bus always is).
    pub(super) fn live_members(&self, key: &GroupKey) -> Vec<String> {
        let me = self.bound().to_string();
        let online: HashSet<String> = self
            .directory
            .list(&self.directory.own)
            .into_iter()
            .map(|i| i.jid.to_string())
            .collect();
        self.groups
            .members
            .get(key)
            .into_iter()
            .flatten()
            .filter(|m| **m == me || online.contains(*m))
            .cloned()
            .collect()
    }

    /// Members came, went, stopped or started answering: the groups we
    /// lead take back what the dead ones held, and every group re-elects.
    pub(super) async fn members_changed(&mut self) {
        let now = Instant::now();
        let keys: Vec<GroupKey> = self.groups.local.keys().cloned().collect();
        for key in keys {
            let live: HashSet<String> = self.live_members(&key).into_iter().collect();
            if let Some(leading) = self.groups.leading_mut(&key) {
                let holders = leading.ledger.holders();
                let mut dead = Vec::new();
                for holder in holders.iter().filter(|h| !live.contains(*h)) {
                    dead.extend(leading.ledger.worker_gone(holder, now));
                    leading.dirty = true;
                }
                self.bury(&key, dead).await;
            }
            self.elect(&key).await;
        }
    }

    /// Saves every group we lead now (before closing).
    pub(super) async fn flush_groups(&mut self) {
        let keys: Vec<GroupKey> = self.groups.local.keys().cloned().collect();
        for key in keys {
            self.save_group(&key, true).await;
        }
    }

    /// After a session reset: leadership and membership start over.
    ///
    /// What a group we led had done is not dropped with the leadership:
    /// the server may have lost the saves it confirmed last (ejabberd's
    /// Mnesia writes to disk a moment after it answers, so a crash loses
    /// them), and whoever leads next reads what is stored. So the group's
    /// last progress is returned, to be saved again under the same item
    /// ([`resave_groups`](Self::resave_groups)), and the items it saw done
    /// lately join the ones reported to the next leader.
    /// `previous` is the full JID of the session that was lost.
    pub(super) fn reset_groups(&mut self, previous: &str) -> Vec<(GroupKey, String, Element)> {
        let me = self.bound().to_string();
        let mut resave = Vec::new();
        for (key, group) in &mut self.groups.local {
            if let Some(mut leading) = group.leading.take() {
                if leading.early.is_none() {
                    let state = leading.state();
                    let item = state_item(state.epoch, previous);
                    resave.push((key.clone(), item, state.to_element()));
                    report::remember_all(
                        &mut group.recent,
                        leading.done_lately(report::RECENT_MAX),
                    );
                }
                self.counters.add_group(leading.ledger.counts());
                if let Some(topic) = self.topics.get_mut(&key.topic) {
                    topic.groups = topic.groups.saturating_sub(1);
                }
            }
            // The fence stays: epochs only grow, whatever the session.
            group.leadership = Leadership::Follow;
            group.claiming = None;
            group.reported_to = None;
            group.reported.clear();
            group.elect_after = Some(Instant::now() + JOIN_GRACE);
        }
        self.groups.members.clear();
        self.groups.workers_only.clear();
        for key in self.groups.local.keys() {
            self.groups
                .members
                .entry(key.clone())
                .or_default()
                .insert(me.clone());
        }
        resave
    }
}

impl Leading {
    /// Events settled ahead of the last confirmed save: what a new leader
    /// would hand out again if this one died now.
    fn ahead(&self) -> usize {
        self.unsaved + self.unconfirmed
    }

    fn offer(&mut self, id: String, item: Incoming, attempts: u32, now: Instant) {
        if self.finished.contains(&state::done_hash(&id)) && !self.ledger.is_done(&id) {
            // Done under an earlier leader: kept in order, as done.
            self.ledger.done_elsewhere(&id);
            self.seen.push_back(id);
            self.dirty = true;
            return;
        }
        if self.ledger.offer(&id, attempts, now) {
            self.events.insert(id.clone(), item);
            self.seen.push_back(id);
            self.dirty = true;
        }
    }

    /// Moves the done items at the front of `seen` to the trail.
    fn advance_floor(&mut self) {
        while self.seen.front().is_some_and(|i| self.ledger.is_done(i)) {
            let Some(id) = self.seen.pop_front() else {
                break;
            };
            self.trail.push_back(id);
            if self.trail.len() > self.trail_cap
                && let Some(old) = self.trail.pop_front()
            {
                self.ledger.forget_done(&old);
                self.below = Some(old);
            }
        }
    }

    /// The newest `most` items this leader saw done, oldest first.
    fn done_lately(&self, most: usize) -> Vec<String> {
        let done: Vec<&String> = self
            .trail
            .iter()
            .chain(self.seen.iter().filter(|i| self.ledger.is_done(i)))
            .collect();
        let start = done.len().saturating_sub(most);
        done[start..].iter().map(|i| (*i).clone()).collect()
    }

    fn state(&mut self) -> GroupState {
        self.advance_floor();
        let ledger = &self.ledger;
        GroupState {
            epoch: self.epoch,
            ..state::progress_of(
                self.below.as_ref(),
                &self.trail,
                &self.seen,
                |i| ledger.is_done(i),
                |i| ledger.attempts_of(i),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, lead: Option<&str>) -> Element {
        let mut builder = Element::builder("group", NS)
            .attr(crate::codec::name("name"), name)
            .attr(crate::codec::name("topic"), "t.x");
        if let Some(lead) = lead {
            builder = builder.attr(crate::codec::name("lead"), lead);
        }
        builder.build()
    }

    /// `lead='false'` (or `0`) keeps a member out of elections; anything
    /// else, or nothing, lets it lead.
    #[test]
    fn the_lead_attribute_says_who_may_lead() {
        let mut presence = Presence::available();
        presence.payloads = vec![
            group("a", None),
            group("b", Some("false")),
            group("c", Some("0")),
            group("d", Some("true")),
        ];
        let found: Vec<(String, bool)> = groups_in(&presence)
            .into_iter()
            .map(|(key, may_lead)| (key.group, may_lead))
            .collect();
        assert_eq!(
            found,
            [("a", true), ("b", false), ("c", false), ("d", true)].map(|(g, l)| (g.to_owned(), l))
        );
    }
}
