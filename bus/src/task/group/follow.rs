//! An instance's side of a group: jobs from a leader, and settlements.

use tokio::time::Instant;
use tracing::debug;
use xmpp_parsers::iq::{IqHeader, IqPayload};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::consume::{Handed, JobRoute, Settle, Verdict};
use crate::group::GroupKey;
use crate::group::fence::Claim;
use crate::group::wire::{self, JobOffer};
use crate::pubsub::Incoming;
use crate::task::Task;
use crate::task::iq::PendingIq;

use super::*;

impl Task {
    /// A settlement from this bus's own consumer, or answering a remote
    /// leader's job.
    pub(in crate::task) async fn on_settle(&mut self, settle: Settle) {
        let done = matches!(settle.verdict, Verdict::Ack | Verdict::Term { .. });
        if done {
            self.remember_settled(&settle.group, &settle.item);
        }
        match settle.route {
            JobRoute::Local { epoch } => {
                let current = self
                    .groups
                    .local
                    .get(&settle.group)
                    .and_then(|g| g.leading.as_ref())
                    .map(|l| l.epoch);
                if current != Some(epoch) {
                    debug!(
                        item = settle.item,
                        "settlement for a leadership that ended; ignored"
                    );
                    return;
                }
                let me = self.bound().to_string();
                self.settle_as_leader(&settle.group, &settle.item, &me, settle.verdict)
                    .await;
            }
            JobRoute::Remote { leader, id } => {
                if done {
                    self.forward_settlement(&settle.group, &settle.item, &leader)
                        .await;
                }
                let header = IqHeader {
                    from: Some(leader.clone()),
                    to: None,
                    id,
                };
                let response = match settle.verdict {
                    Verdict::Ack => IqPayload::Result(None),
                    Verdict::Nak { delay, reason } => {
                        IqPayload::Error(wire::nak_error(delay, &reason))
                    }
                    Verdict::Term { reason } => IqPayload::Error(wire::term_error(&reason)),
                    Verdict::Progress => {
                        let progress = wire::progress(&settle.group.group, &settle.item);
                        let pending = PendingIq::Fire {
                            to: leader.clone(),
                            what: "job progress",
                        };
                        self.send_iq(leader, true, progress, pending).await;
                        return;
                    }
                };
                self.answer_iq(header, response).await;
            }
        }
    }

    /// A job from a leader (or from one that thinks it leads).
    pub(in crate::task) async fn on_job(&mut self, header: IqHeader, request: Element) {
        let from = header.from.clone();
        let response = self.take_job(from.as_ref(), &header.id, &request);
        self.report_to_new_leaders().await;
        if let Some(response) = response {
            self.answer_iq(header, response).await;
        }
        self.yield_to_newer_claims().await;
    }

    /// Hands a job to the consumer; `Some` answers it at once (refused).
    pub(super) fn take_job(
        &mut self,
        from: Option<&Jid>,
        id: &str,
        request: &Element,
    ) -> Option<IqPayload> {
        let own = self.bound().to_bare();
        let Some(leader) = from.filter(|f| f.to_bare() == own) else {
            return Some(IqPayload::Error(StanzaError::new(
                xmpp_parsers::stanza_error::ErrorType::Auth,
                xmpp_parsers::stanza_error::DefinedCondition::Forbidden,
                "en",
                "jobs come from instances of the same service only",
            )));
        };
        let offer = match JobOffer::from_element(request, self.max_payload) {
            Ok(offer) => offer,
            Err(error) => return Some(IqPayload::Error(wire::nak_error(None, &error.to_string()))),
        };
        let key = GroupKey::new(&offer.payload.topic, &offer.group);
        let Some(group) = self.groups.local.get_mut(&key) else {
            return Some(IqPayload::Error(StanzaError::new(
                xmpp_parsers::stanza_error::ErrorType::Cancel,
                xmpp_parsers::stanza_error::DefinedCondition::ServiceUnavailable,
                "en",
                format!("not consuming group {} on {}", key.group, key.topic),
            )));
        };
        let claim = Claim {
            epoch: offer.epoch,
            leader: leader.to_string(),
        };
        if let Err(current) = group.fence.admit(&claim) {
            return Some(IqPayload::Error(wire::stale_epoch_error(current)));
        }
        let handed = Handed {
            incoming: Incoming {
                topic: offer.payload.topic.clone(),
                item_id: Some(offer.item.clone()),
                from: offer.publisher.clone(),
                headers: offer.payload.headers.clone(),
                payload: Ok(offer.payload),
            },
            item: offer.item,
            attempt: offer.attempt,
            deadline: Instant::now() + offer.ack_wait,
            route: JobRoute::Remote {
                leader: leader.clone(),
                id: id.to_owned(),
            },
        };
        match group.tx.try_send(handed) {
            Ok(()) => None,
            Err(_) => Some(IqPayload::Error(wire::nak_error(
                Some(BUSY_RETRY),
                "this instance's job buffer is full",
            ))),
        }
    }

    /// A follower still works on a job of ours.
    pub(in crate::task) fn on_progress(
        &mut self,
        from: Option<&Jid>,
        request: &Element,
    ) -> IqPayload {
        if let (Some(from), Some((group, item))) = (from, wire::read_progress(request)) {
            let now = Instant::now();
            let worker = from.to_string();
            for (key, local) in &mut self.groups.local {
                if key.group == group
                    && let Some(leading) = local.leading.as_mut()
                {
                    leading.ledger.in_progress(item, &worker, now);
                }
            }
        }
        IqPayload::Result(None)
    }
}
