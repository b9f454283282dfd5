//! Taking over a group: the group's saved states and the topic's stored
//! items are read and merged into the new leader's ledger, and the
//! states once more before the first job goes out.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::time::Instant;
use tracing::{info, warn};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::consume::StartAt;
use crate::group::GroupKey;
use crate::group::fence::{Claim, Leadership};
use crate::group::ledger::{Ledger, Rules};
use crate::group::state::{self, GroupState, NS};
use crate::pubsub;
use crate::task::Task;
use crate::task::iq::PendingIq;

use super::*;

impl Task {
    /// The group's stored state, while claiming.
    pub(in crate::task) async fn on_group_state(
        &mut self,
        key: GroupKey,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        let me = self.bound().to_string();
        let Some(group) = self.groups.local.get_mut(&key) else {
            return;
        };
        let reading = group.claiming.as_ref().is_some_and(|c| c.reading);
        if group.leadership != Leadership::Claim || !reading {
            return;
        }
        let states = stored_states(&key, answer);
        let fresh = states.is_empty();
        let stored_epoch = states.iter().map(|s| s.epoch).max().unwrap_or(0);
        let claimed = group.claiming.take().map_or(0, |c| c.epoch);
        group.leadership = group.leadership.state_read(stored_epoch, claimed);
        let Leadership::Lead { epoch } = group.leadership else {
            return;
        };
        if epoch > claimed {
            // The stored epoch was higher than the one announced: jobs
            // carry this one, which the members will take as newer.
            let _ = group.fence.admit(&Claim { epoch, leader: me });
        }
        let rules = Rules {
            ack_wait: group.options.ack_wait,
            backoff: group.options.backoff.clone(),
            max_deliver: group.options.max_deliver,
            max_in_flight: group.options.max_in_flight,
        };
        group.leading = Some(Leading {
            epoch,
            ledger: Ledger::new(rules, Vec::new()),
            events: HashMap::new(),
            seen: VecDeque::new(),
            below: None,
            trail: VecDeque::new(),
            trail_cap: self.max_items.saturating_mul(2).max(state::DONE_WINDOW),
            early: Some(Vec::new()),
            read: Some((states, fresh)),
            finished: HashSet::new(),
            catching_up: false,
            dirty: true,
            saved_at: None,
            saving: 0,
            unsaved: 0,
            unconfirmed: 0,
            closing: false,
        });
        let to = self.pubsub.clone();
        let pending = PendingIq::GroupStored {
            to: to.clone(),
            key: key.clone(),
        };
        let fetch = pubsub::items(&key.topic, self.max_items);
        self.send_iq(to, false, fetch, pending).await;
    }

    /// The topic's stored items, while claiming: what is left to do.
    pub(in crate::task) async fn on_group_stored(
        &mut self,
        key: GroupKey,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        let max_payload = self.max_payload;
        let Some(leading) = self.groups.leading_mut(&key) else {
            return;
        };
        let Some((mut states, fresh)) = leading.read.take() else {
            return;
        };
        let stored = match &answer {
            Ok(Some(result)) => pubsub::fetched_items(result, max_payload),
            _ => Vec::new(),
        };
        let ids: Vec<String> = stored.iter().filter_map(|i| i.item_id.clone()).collect();
        let start = self.groups.local.get(&key).map(|g| g.options.start.clone());
        if fresh {
            let high = match start {
                Some(StartAt::New) => ids.last().cloned(),
                Some(StartAt::AfterItem(id)) => Some(id),
                _ => None,
            };
            states.push(GroupState {
                floor: high.clone(),
                high,
                ..GroupState::default()
            });
        }
        let reconciled = state::reconcile_all(&states, &ids);
        let finished: HashSet<u64> = states.iter().flat_map(|s| s.done.iter().copied()).collect();
        tracing::debug!(
            group = key.group,
            stored = ids.len(),
            states = states.len(),
            highs = ?states.iter().map(|s| s.high.as_ref().and_then(|h| ids.iter().position(|i| i == h))).collect::<Vec<_>>(),
            pending = reconciled.attempts.len(),
            done = reconciled.done.len(),
            "read the group's progress"
        );
        if let Some(lost) = &reconciled.lost {
            warn!(
                group = key.group,
                topic = key.topic,
                last_known = lost.last_known,
                oldest_stored = ?lost.oldest_stored,
                "events were lost to the group: the topic dropped them (max_items) before the group handled them"
            );
            self.counters.group_events_lost += 1;
            if let Some(group) = self.groups.local.get(&key) {
                let notice = crate::consume::GroupError::Lost {
                    topic: key.topic.clone(),
                    group: key.group.clone(),
                    last_known: lost.last_known.clone(),
                    oldest_stored: lost.oldest_stored.clone(),
                };
                let _ = group.notices.try_send(notice);
            }
        }
        let Some(group) = self.groups.local.get_mut(&key) else {
            return;
        };
        // What members reported settled for earlier leaders is done too.
        let reported = std::mem::take(&mut group.reported);
        tracing::debug!(
            group = key.group,
            reported = reported.len(),
            "reports applied"
        );
        let Some(leading) = group.leading.as_mut() else {
            return;
        };
        leading.finished = finished;
        leading.ledger = Ledger::new(
            leading.ledger.rules().clone(),
            reconciled.done.iter().cloned().chain(reported),
        );
        let now = Instant::now();
        let early = leading.early.take().unwrap_or_default();
        for item in stored {
            let Some(id) = item.item_id.clone() else {
                continue;
            };
            if leading.ledger.is_done(&id) {
                // Kept in order (they move on to the trail), so that the
                // next save still counts them done.
                leading.seen.push_back(id);
                continue;
            }
            let attempts = reconciled.attempts.get(&id).copied().unwrap_or(0);
            leading.offer(id, item, attempts, now);
        }
        for item in early {
            let Some(id) = item.item_id.clone() else {
                continue;
            };
            leading.offer(id, item, 0, now);
        }
        info!(
            group = key.group,
            topic = key.topic,
            epoch = leading.epoch,
            pending = leading.ledger.pending(),
            "leading the group"
        );
        self.counters.group_takeovers += 1;
        leading.catching_up = true;
        self.save_group(&key, true).await;
        // The states once more: a leader that did not hear of our claim
        // (it was not live in our view) may have gone on meanwhile, and
        // reading took a while.
        let to = self.pubsub.clone();
        let pending = PendingIq::GroupCatchUp {
            to: to.clone(),
            key: key.clone(),
        };
        let read = pubsub::items(&key.state_node(), STATE_ITEMS);
        self.send_iq(to, false, read, pending).await;
    }

    /// The states read again after the stored items: what another leader
    /// finished meanwhile is done; then the first jobs go out.
    pub(in crate::task) async fn on_group_catch_up(
        &mut self,
        key: GroupKey,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        let states = stored_states(&key, answer);
        let Some(leading) = self.groups.leading_mut(&key) else {
            return;
        };
        if !leading.catching_up {
            return;
        }
        leading.catching_up = false;
        let order: Vec<String> = leading.seen.iter().cloned().collect();
        let reconciled = state::reconcile_all(&states, &order);
        let mut caught = 0;
        for item in reconciled.done {
            if !leading.ledger.is_done(&item) {
                leading.ledger.done_elsewhere(&item);
                leading.events.remove(&item);
                caught += 1;
            }
        }
        leading
            .finished
            .extend(states.iter().flat_map(|s| s.done.iter().copied()));
        leading.dirty = true;
        tracing::debug!(group = key.group, caught, "read the group's states again");
        self.save_group(&key, true).await;
        self.dispatch(&key).await;
    }
}

/// The group states in an answer to the read of the state node: one per
/// leader that saved lately. An unreadable one is skipped with a warning.
fn stored_states(key: &GroupKey, answer: Result<Option<Element>, StanzaError>) -> Vec<GroupState> {
    let result = match answer {
        Ok(Some(result)) => result,
        Ok(None) => return Vec::new(),
        Err(error) => {
            warn!(group = key.group, error = %pubsub::server_error(&error), "the group's state could not be read");
            return Vec::new();
        }
    };
    let Some(items) = result.get_child("items", pubsub::NS_PUBSUB) else {
        return Vec::new();
    };
    items
        .children()
        .filter(|i| i.is("item", pubsub::NS_PUBSUB))
        .filter_map(|item| item.get_child("group", NS))
        .take(STATE_ITEMS * 4)
        .filter_map(|element| match GroupState::from_element(element) {
            Ok(state) => Some(state),
            Err(error) => {
                warn!(group = key.group, %error, "a stored state of the group is unreadable; skipping it");
                None
            }
        })
        .collect()
}
