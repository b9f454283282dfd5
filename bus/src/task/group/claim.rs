//! Taking over a group: the claim announced to the other members before
//! the group's state is read, their answers, and a member's side of
//! another member's claim. Announcing first stops the old leader (it
//! saves its progress, then answers) and fences its jobs off at every
//! member, so the state read afterwards is the latest and no event is
//! handed out by two leaders.

use std::collections::HashSet;

use tokio::time::Instant;
use tracing::info;
use xmpp_parsers::iq::{IqHeader, IqPayload};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::event::Persistence;
use crate::group::GroupKey;
use crate::group::fence::{Claim, Leadership};
use crate::group::wire::{self, Outcome};
use crate::pubsub;
use crate::task::Task;
use crate::task::iq::PendingIq;

use super::*;

impl Task {
    /// Starts claiming `key`: announces the claim to the other live
    /// members; the state is read once they have answered, or after
    /// [`CLAIM_WAIT`].
    pub(super) async fn claim(&mut self, key: &GroupKey) {
        let me = self.bound().to_string();
        let others: HashSet<String> = self
            .live_members(key)
            .into_iter()
            .filter(|m| *m != me)
            .collect();
        let Some(group) = self.groups.local.get_mut(key) else {
            return;
        };
        let epoch = group.fence.epoch().max(group.epoch_hint) + 1;
        let _ = group.fence.admit(&Claim {
            epoch,
            leader: me.clone(),
        });
        info!(
            group = key.group,
            topic = key.topic,
            epoch,
            members = others.len(),
            "claiming the group's leadership"
        );
        // What we settled for the old leader is done for us too.
        let recent: Vec<String> = group.recent.iter().map(|(i, _)| i.clone()).collect();
        group.reported.extend(recent);
        let now = Instant::now();
        group.claiming = Some(Claiming {
            epoch,
            waiting: others.clone(),
            until: now + CLAIM_WAIT,
            reading: false,
        });
        for member in others {
            let Ok(to) = member.parse::<FullJid>() else {
                continue;
            };
            let pending = PendingIq::GroupClaim {
                to: to.clone(),
                key: key.clone(),
                epoch,
                sent: now,
            };
            let claim = wire::claim(&key.group, &key.topic, epoch);
            self.send_iq(Jid::from(to), true, claim, pending).await;
        }
        self.claim_answered(key).await;
    }

    /// A member's answer to our claim of `epoch`.
    pub(in crate::task) async fn on_claim_answer(
        &mut self,
        to: FullJid,
        key: GroupKey,
        epoch: u64,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        let Some(group) = self.groups.local.get_mut(&key) else {
            return;
        };
        let Some(claiming) = group.claiming.as_mut() else {
            return;
        };
        if claiming.epoch != epoch || claiming.reading {
            return;
        }
        claiming.waiting.remove(&to.to_string());
        if let Outcome::StaleEpoch { epoch: followed } = wire::outcome(&answer) {
            info!(
                group = key.group,
                followed,
                member = %to,
                "a member follows a newer claim; claiming again shortly"
            );
            group.epoch_hint = group.epoch_hint.max(followed);
            group.elect_after = Some(Instant::now() + RECLAIM_AFTER);
            self.step_down(&key).await;
            return;
        }
        self.claim_answered(&key).await;
    }

    /// Reads the group's state and stored items once every member has
    /// answered the claim or the wait is over.
    pub(super) async fn claim_answered(&mut self, key: &GroupKey) {
        let Some(claiming) = self
            .groups
            .local
            .get_mut(key)
            .and_then(|g| g.claiming.as_mut())
        else {
            return;
        };
        let waiting = !claiming.waiting.is_empty() && Instant::now() < claiming.until;
        if claiming.reading || waiting {
            return;
        }
        claiming.reading = true;
        self.read_group(key).await;
    }

    /// Subscribes to the topic, then reads the group's state and the
    /// stored items (in that order on the server, so nothing published in
    /// between is missed).
    async fn read_group(&mut self, key: &GroupKey) {
        let to = self.pubsub.clone();
        // The topic may not exist yet: nobody published. Creating it is
        // harmless (`conflict` if it does).
        let max_items = u32::try_from(self.max_items).unwrap_or(u32::MAX);
        let pending = PendingIq::Fire {
            to: to.clone(),
            what: "create the group's topic",
        };
        let create = pubsub::create(&key.topic, max_items, Persistence::Persistent, None);
        self.send_iq(to.clone(), true, create, pending).await;
        self.group_interest(&key.topic, 1).await;
        let node = key.state_node();
        let create = pubsub::create(&node, STATE_ITEMS as u32, Persistence::Persistent, None);
        let pending = PendingIq::Fire {
            to: to.clone(),
            what: "create group state node",
        };
        self.send_iq(to.clone(), true, create, pending).await;
        let pending = PendingIq::GroupState {
            to: to.clone(),
            key: key.clone(),
        };
        self.send_iq(to, false, pubsub::items(&node, STATE_ITEMS), pending)
            .await;
    }

    /// Another member claims a group: take the claim unless a newer one is
    /// followed; a leader saves its progress first and answers once the
    /// save is confirmed.
    pub(in crate::task) async fn on_claim(&mut self, header: IqHeader, request: Element) {
        let own = self.bound().to_bare();
        let claim = match (&header.from, wire::read_claim(&request)) {
            (Some(from), Ok((group, topic, epoch))) if from.to_bare() == own => (
                GroupKey::new(topic, group),
                Claim {
                    epoch,
                    leader: from.to_string(),
                },
            ),
            (_, Err(error)) => {
                let error = refusal(DefinedCondition::BadRequest, error.to_string());
                return self.answer_iq(header, error).await;
            }
            _ => {
                let why = "claims come from instances of the same service only";
                let error = IqPayload::Error(StanzaError::new(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "en",
                    why,
                ));
                return self.answer_iq(header, error).await;
            }
        };
        let (key, claim) = claim;
        let Some(group) = self.groups.local.get_mut(&key) else {
            let why = format!("not consuming group {} on {}", key.group, key.topic);
            let error = refusal(DefinedCondition::ServiceUnavailable, why);
            return self.answer_iq(header, error).await;
        };
        if let Err(current) = group.fence.admit(&claim) {
            let error = IqPayload::Error(wire::stale_epoch_error(current));
            return self.answer_iq(header, error).await;
        }
        let leadership = group.leadership.clone();
        // What we settled lately reaches the claimer before our answer.
        self.report_to_new_leaders().await;
        let pending_answer = match leadership {
            Leadership::Follow => Some(header),
            Leadership::Claim => {
                self.step_down(&key).await;
                Some(header)
            }
            Leadership::Lead { .. } => {
                info!(
                    group = key.group,
                    leader = claim.leader,
                    epoch = claim.epoch,
                    "another member claims the group; saving progress and stepping down"
                );
                let then = self.save_group_then(&key, true, Some(header)).await;
                self.step_down(&key).await;
                then
            }
        };
        if let Some(header) = pending_answer {
            self.answer_iq(header, IqPayload::Result(None)).await;
        }
    }

    /// Stops leading or claiming every group whose followed claim is now
    /// another member's (a job from a newer leader came).
    pub(super) async fn yield_to_newer_claims(&mut self) {
        let me = self.bound().to_string();
        let yielding: Vec<GroupKey> = self
            .groups
            .local
            .iter()
            .filter(|(_, g)| g.leadership != Leadership::Follow)
            .filter(|(_, g)| g.fence.leader().is_some_and(|l| l != me))
            .map(|(k, _)| k.clone())
            .collect();
        for key in yielding {
            info!(
                group = key.group,
                "a newer leader's job came; stepping down"
            );
            self.step_down(&key).await;
        }
    }
}

/// An error answer with `condition` and `text`.
fn refusal(condition: DefinedCondition, text: String) -> IqPayload {
    IqPayload::Error(StanzaError::new(ErrorType::Cancel, condition, "en", text))
}
