//! The leader's side of a group: dispatching, settling, dead-lettering
//! and saving progress (taking over is in `takeover`).

use tokio::time::Instant;
use tracing::{info, warn};
use xmpp_parsers::iq::{IqHeader, IqPayload};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::consume::{Handed, JobRoute, Verdict};
use crate::error::DecodeError;
use crate::event::Persistence;
use crate::group::GroupKey;
use crate::group::fence::Leadership;
use crate::group::ledger::{Dead, Delivery};
use crate::group::wire::{self, JobOffer, Outcome};
use crate::pubsub::{self, Incoming};
use crate::task::Task;
use crate::task::iq::PendingIq;

use super::*;

/// A delivery whose stored payload does not parse: the delivery, the
/// topic, the publisher, and why (with the raw XML).
type Unreadable = (
    Delivery<String>,
    String,
    Option<String>,
    (DecodeError, String),
);

impl Task {
    /// A live event on `topic`: each group we lead on it gets it.
    pub(in crate::task) fn offer_to_groups(&mut self, item: &Incoming) {
        let Some(id) = item.item_id.clone() else {
            return;
        };
        let now = Instant::now();
        for (key, group) in &mut self.groups.local {
            if key.topic != item.topic {
                continue;
            }
            if let Some(leading) = group.leading.as_mut() {
                match leading.early.as_mut() {
                    Some(early) => early.push(item.clone()),
                    None => leading.offer(id.clone(), item.clone(), 0, now),
                }
            }
        }
    }

    /// Every tick while leading: deadlines, dispatch, saving.
    pub(in crate::task) async fn group_tick(&mut self) {
        // Members are probed like instances in use: a dead leader or member
        // is noticed within the liveness window, not the server's
        // resumption window.
        let own = self.directory.own.clone();
        self.directory.touch(&own);
        let now = Instant::now();
        let due: Vec<GroupKey> = self
            .groups
            .local
            .iter()
            .filter(|(_, g)| g.elect_after.is_some_and(|at| now >= at))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.elect(&key).await;
        }
        let claims_due: Vec<GroupKey> = self
            .groups
            .local
            .iter()
            .filter(|(_, g)| {
                g.claiming
                    .as_ref()
                    .is_some_and(|c| !c.reading && now >= c.until)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in claims_due {
            self.claim_answered(&key).await;
        }
        let keys: Vec<GroupKey> = self.groups.local.keys().cloned().collect();
        for key in keys {
            let dead = match self.groups.leading_mut(&key) {
                Some(leading) if leading.early.is_none() => leading.ledger.expire(now),
                _ => continue,
            };
            self.bury(&key, dead).await;
            self.dispatch(&key).await;
            self.save_group(&key, false).await;
        }
    }

    /// Hands out what is ready.
    pub(super) async fn dispatch(&mut self, key: &GroupKey) {
        if self.lost_at.is_some() {
            return;
        }
        let me = self.bound().to_string();
        let workers = self.live_members(key);
        let Some(group) = self.groups.local.get_mut(key) else {
            return;
        };
        let Some(leading) = group.leading.as_mut() else {
            return;
        };
        if leading.early.is_some() || leading.catching_up || leading.closing {
            return;
        }
        // No more settled ahead of the saved progress than can be out at
        // once: a takeover hands out again at most twice what is in flight.
        let budget = workers.len().max(1) * group.options.max_in_flight.max(1);
        if leading.ahead() >= budget {
            if leading.saving == 0 {
                self.save_group(key, true).await;
            }
            return;
        }
        let now = Instant::now();
        let deliveries = leading.ledger.dispatch(&workers, now);
        if !deliveries.is_empty() {
            leading.dirty = true;
        }
        let again = deliveries.iter().filter(|d| d.attempt > 1).count();
        crate::meter::group(&key.topic, &key.group, again as u64, 0);
        let epoch = leading.epoch;
        let ack_wait = group.options.ack_wait;
        let mut remote = Vec::new();
        for d in deliveries {
            let Some(incoming) = leading.events.get(&d.item).cloned() else {
                continue;
            };
            if d.worker == me {
                let handed = Handed {
                    incoming,
                    item: d.item.clone(),
                    attempt: d.attempt,
                    deadline: now + ack_wait,
                    route: JobRoute::Local { epoch },
                };
                if group.tx.try_send(handed).is_err() {
                    let reason = "this instance's job buffer is full".to_owned();
                    leading
                        .ledger
                        .nak(&d.item, &me, Some(BUSY_RETRY), reason, now);
                }
            } else {
                remote.push((d, incoming));
            }
        }
        let mut unreadable = Vec::new();
        for (d, incoming) in remote {
            let payload = match incoming.payload {
                Ok(payload) => payload,
                Err(bad) => {
                    unreadable.push((d, incoming.topic, incoming.from, bad));
                    continue;
                }
            };
            let Ok(to) = d.worker.parse::<FullJid>() else {
                continue;
            };
            let offer = JobOffer {
                group: key.group.clone(),
                item: d.item.clone(),
                attempt: d.attempt,
                epoch,
                ack_wait,
                publisher: incoming.from,
                payload,
            };
            let pending = PendingIq::GroupJob {
                to: to.clone(),
                key: key.clone(),
                item: d.item,
                sent: now,
            };
            self.directory.call_started(&to);
            self.send_iq(Jid::from(to), true, offer.to_element(), pending)
                .await;
        }
        self.term_unreadable(key, unreadable).await;
    }

    /// Items whose stored payload does not parse (not an xbus payload, or
    /// its `topic` is not the node): no member could take them, so they
    /// are termed at once rather than sent, and this instance's consumer
    /// hears of each as [`GroupError::Undecodable`](crate::consume::GroupError).
    async fn term_unreadable(&mut self, key: &GroupKey, unreadable: Vec<Unreadable>) {
        let mut dead = Vec::new();
        for (d, topic, from, (reason, raw)) in unreadable {
            let Some(group) = self.groups.local.get_mut(key) else {
                return;
            };
            warn!(group = key.group, item = d.item, %reason, "an item no member can read: termed");
            let notice = crate::error::DeliveryError::new(
                reason.clone(),
                topic,
                Some(d.item.clone()),
                from,
                raw,
            );
            let _ = group.notices.try_send(notice.into());
            if let Some(leading) = group.leading.as_mut() {
                leading.unsaved += 1;
                leading.dirty = true;
                dead.extend(leading.ledger.term(
                    &d.item,
                    &d.worker,
                    format!("undecodable: {reason}"),
                ));
            }
        }
        self.bury(key, dead).await;
    }

    /// An instance's answer to a job.
    pub(in crate::task) async fn on_job_answer(
        &mut self,
        to: FullJid,
        key: GroupKey,
        item: String,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        self.directory.call_ended(&to);
        let worker = to.to_string();
        let verdict = match wire::outcome(&answer) {
            Outcome::Settled(verdict) => verdict,
            Outcome::StaleEpoch { epoch } => {
                let Some(group) = self.groups.local.get_mut(&key) else {
                    return;
                };
                group.leadership = group.leadership.refused(epoch);
                if group.leadership == Leadership::Follow {
                    info!(
                        group = key.group,
                        epoch, "an instance follows a newer leader; stepping down"
                    );
                    self.step_down(&key).await;
                }
                return;
            }
            Outcome::Failed { gone: true, .. } => {
                let now = Instant::now();
                let Some(leading) = self.groups.leading_mut(&key) else {
                    return;
                };
                let dead = leading.ledger.worker_gone(&worker, now);
                leading.dirty = true;
                self.bury(&key, dead).await;
                return;
            }
            Outcome::Failed {
                gone: false,
                reason,
            } => Verdict::Nak {
                delay: None,
                reason,
            },
        };
        self.settle_as_leader(&key, &item, &worker, verdict).await;
    }

    /// Applies a verdict on `item` by `worker` to the ledger.
    pub(super) async fn settle_as_leader(
        &mut self,
        key: &GroupKey,
        item: &str,
        worker: &String,
        verdict: Verdict,
    ) {
        let now = Instant::now();
        let Some(leading) = self.groups.leading_mut(key) else {
            return;
        };
        if !matches!(verdict, Verdict::Progress) {
            leading.unsaved += 1;
        }
        let dead = match verdict {
            Verdict::Ack => {
                if leading.ledger.ack(item) {
                    leading.events.remove(item);
                }
                None
            }
            Verdict::Nak { delay, reason } => leading.ledger.nak(item, worker, delay, reason, now),
            Verdict::Term { reason } => leading.ledger.term(item, worker, reason),
            Verdict::Progress => {
                leading.ledger.in_progress(item, worker, now);
                None
            }
        };
        leading.dirty = true;
        self.bury(key, dead.into_iter().collect()).await;
        self.dispatch(key).await;
    }

    /// Publishes dead events to the dead-letter topic.
    pub(super) async fn bury(&mut self, key: &GroupKey, dead: Vec<Dead>) {
        if dead.is_empty() {
            return;
        }
        let Some(group) = self.groups.local.get_mut(key) else {
            return;
        };
        let topic = group.options.dead_letter_topic(&key.topic);
        let Some(leading) = group.leading.as_mut() else {
            return;
        };
        crate::meter::group(&key.topic, &key.group, 0, dead.len() as u64);
        let mut publishes = Vec::new();
        for d in dead {
            warn!(group = key.group, item = d.item, attempts = d.attempts, error = d.last_error, %topic, "dead-lettering an event");
            let Some(incoming) = leading.events.remove(&d.item) else {
                continue;
            };
            let Ok(mut payload) = incoming.payload else {
                continue;
            };
            use crate::consume::dead_letter_headers as h;
            payload.headers.insert(h::ITEM, d.item.clone());
            payload.headers.insert(h::GROUP, key.group.clone());
            payload.headers.insert(h::TOPIC, key.topic.clone());
            payload.headers.insert(h::ATTEMPTS, d.attempts.to_string());
            payload.headers.insert(h::ERROR, d.last_error.clone());
            payload.topic = topic.clone();
            publishes.push(pubsub::publish(&topic, &d.item, payload.to_element()));
        }
        leading.dirty = true;
        let to = self.pubsub.clone();
        if self.groups.dead_letter_nodes.insert(topic.clone()) {
            let create = pubsub::create(
                &topic,
                u32::try_from(self.max_items).unwrap_or(u32::MAX),
                Persistence::Persistent,
                None,
            );
            let pending = PendingIq::Fire {
                to: to.clone(),
                what: "create dead-letter node",
            };
            self.send_iq(to.clone(), true, create, pending).await;
        }
        for publish in publishes {
            let pending = PendingIq::Fire {
                to: to.clone(),
                what: "dead-letter publish",
            };
            self.send_iq(to.clone(), true, publish, pending).await;
        }
    }

    /// Writes the group's progress if it changed (at most every
    /// [`SAVE_EVERY`], unless `now`).
    pub(super) async fn save_group(&mut self, key: &GroupKey, now: bool) {
        let _ = self.save_group_then(key, now, None).await;
    }

    /// [`save_group`](Self::save_group), then answers the claim `then`
    /// once the server confirms the save; `then` comes back if nothing
    /// needed saving.
    pub(super) async fn save_group_then(
        &mut self,
        key: &GroupKey,
        now: bool,
        then: Option<IqHeader>,
    ) -> Option<IqHeader> {
        let Some(leading) = self.groups.leading_mut(key) else {
            return then;
        };
        if !leading.dirty || leading.early.is_some() {
            return then;
        }
        if !now && leading.saved_at.is_some_and(|at| at.elapsed() < SAVE_EVERY) {
            return then;
        }
        if leading.saving > 0 && !now {
            return then;
        }
        leading.saving += 1;
        leading.unconfirmed += leading.unsaved;
        leading.unsaved = 0;
        leading.dirty = false;
        leading.saved_at = Some(Instant::now());
        let state = leading.state();
        tracing::debug!(
            group = key.group,
            epoch = state.epoch,
            high = ?state.high,
            pending = state.pending.len(),
            "saving the group's progress"
        );
        let item = state_item(state.epoch, &self.bound().to_string());
        let publish = pubsub::publish(&key.state_node(), &item, state.to_element());
        let to = self.pubsub.clone();
        let pending = PendingIq::GroupSave {
            to: to.clone(),
            key: key.clone(),
            then,
        };
        self.send_iq(to, true, publish, pending).await;
        None
    }

    /// After a session reset: saves again the progress of the groups we
    /// led (see [`reset_groups`](Self::reset_groups)), each under the item
    /// it was saved under, before any new leader reads it.
    pub(in crate::task) async fn resave_groups(&mut self, saves: Vec<(GroupKey, String, Element)>) {
        for (key, item, state) in saves {
            tracing::debug!(
                group = key.group,
                item,
                "saving the group's progress again after a reset"
            );
            let publish = pubsub::publish(&key.state_node(), &item, state);
            let to = self.pubsub.clone();
            let pending = PendingIq::Fire {
                to: to.clone(),
                what: "save the group's progress again after a reset",
            };
            self.send_iq(to, true, publish, pending).await;
        }
    }

    /// The server's answer to a save of the group's progress.
    pub(in crate::task) async fn on_group_saved(
        &mut self,
        key: GroupKey,
        then: Option<IqHeader>,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        if let Some(leading) = self.groups.leading_mut(&key) {
            leading.saving = leading.saving.saturating_sub(1);
            if answer.is_err() {
                // Not saved: what it covered counts as ahead until a later
                // save is confirmed.
                leading.dirty = true;
            } else if leading.saving == 0 {
                leading.unconfirmed = 0;
            }
        }
        match answer {
            Err(error) => {
                warn!(group = key.group, topic = key.topic, error = %pubsub::server_error(&error), "the group's progress was not saved")
            }
            Ok(_) => tracing::debug!(group = key.group, "the group's progress is saved"),
        }
        if let Some(header) = then {
            self.answer_iq(header, IqPayload::Result(None)).await;
        }
        // Dispatch may have waited for this save; the next one may be due.
        self.save_group(&key, false).await;
        self.dispatch(&key).await;
    }

    /// Stops leading `key`: its progress is saved first.
    pub(super) async fn step_down(&mut self, key: &GroupKey) {
        let leading = self
            .groups
            .local
            .get(key)
            .is_some_and(|g| g.leading.as_ref().is_some_and(|l| l.early.is_none()));
        if leading {
            self.save_group(key, true).await;
        }
        let Some(group) = self.groups.local.get_mut(key) else {
            return;
        };
        group.leadership = Leadership::Follow;
        group.claiming = None;
        group.reported.clear();
        if let Some(leading) = group.leading.take() {
            info!(
                group = key.group,
                topic = key.topic,
                "no longer leading the group"
            );
            self.counters.add_group(leading.ledger.counts());
            self.group_interest(&key.topic, -1).await;
        }
    }
}
