//! Topics and inboxes: server subscriptions shared by local subscriptions,
//! the fan-out of notifications and direct events, and recovery: history
//! fetched after a session reset or for a replay, duplicates dropped by
//! item id.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, warn};
use xmpp_parsers::message::Message;

use super::{PendingIq, Task};
use crate::command::IqOutcome;
use crate::dedup::Window;
use crate::error::SubscribeError;
use crate::pubsub::{self, Incoming, Received};
use crate::queue::{Gone, Producer, Pushed};
use crate::stats::Counters;

/// Live items a subscription holds while it catches up, at most. One
/// server round trip's worth; beyond it the oldest are dropped and
/// counted as overflowed.
const CATCH_UP_LIMIT: usize = 10_000;

/// How long a fetch of stored items may take; after it, the catching-up
/// subscriptions go live without them (and a warning says so).
pub(super) const HISTORY_TIMEOUT: Duration = Duration::from_secs(30);

/// The local side of one topic.
#[derive(Default)]
pub(super) struct Topic {
    /// The server confirmed the subscription.
    active: bool,
    subs: Vec<LocalSub>,
    /// Subscribers waiting for the server's answer.
    waiting: Vec<(u64, oneshot::Sender<Result<u64, SubscribeError>>)>,
    /// Consumer groups this bus leads on the topic: they need the server
    /// subscription too.
    pub(super) groups: usize,
    /// The server keeps none of the topic's items: nothing to fetch after
    /// a session reset.
    transient: bool,
}

impl Topic {
    /// Whether nothing local needs the server subscription any more.
    fn unused(&self) -> bool {
        self.subs.is_empty() && self.waiting.is_empty() && self.groups == 0
    }
}

/// One local subscription.
struct LocalSub {
    id: u64,
    /// The topic, for the metrics of its dropped events.
    topic: String,
    tx: Producer<Incoming>,
    /// Ids of the items delivered lately.
    seen: Window,
    /// Set while stored items are to be delivered before live ones.
    catch_up: Option<CatchUp>,
}

/// A subscription waiting for stored items (a replay, or the gap after a
/// session reset); live items wait behind them.
struct CatchUp {
    /// Deliver only the last this many fetched items (a replay); `None`:
    /// every fetched item not delivered yet (a gap).
    last: Option<usize>,
    /// Live items that arrived meanwhile.
    live: VecDeque<Incoming>,
    /// The fetch is sent.
    fetching: bool,
}

impl LocalSub {
    /// Hands `item` over unless it is a duplicate. `Err` if the consumer
    /// is gone.
    async fn deliver(&mut self, item: Incoming, counters: &mut Counters) -> Result<(), Gone> {
        if let Some(id) = &item.item_id
            && !self.seen.insert(id)
        {
            counters.duplicates_dropped += 1;
            return Ok(());
        }
        if self.tx.push(item).await? == Pushed::DroppedOldest {
            counters.overflowed += 1;
            crate::meter::dropped(&self.topic);
        }
        Ok(())
    }
}

impl Task {
    pub(super) async fn add_subscription(
        &mut self,
        topic: String,
        tx: Producer<Incoming>,
        replay: usize,
        transient: bool,
        reply: oneshot::Sender<Result<u64, SubscribeError>>,
    ) {
        let id = self.next_id();
        let sub = LocalSub {
            id,
            topic: topic.clone(),
            tx,
            seen: Window::new(self.max_items),
            catch_up: (replay > 0).then(|| CatchUp {
                last: Some(replay),
                live: VecDeque::new(),
                fetching: false,
            }),
        };
        let entry = self.topics.entry(topic.clone()).or_default();
        entry.transient |= transient;
        entry.subs.push(sub);
        if entry.active {
            let _ = reply.send(Ok(id));
            self.fetch_history(&topic).await;
        } else {
            entry.waiting.push((id, reply));
            if entry.waiting.len() == 1 {
                self.subscribe_on_server(topic).await;
            }
        }
    }

    async fn subscribe_on_server(&mut self, topic: String) {
        let jid = self.bound().to_string();
        let to = self.pubsub.clone();
        let payload = pubsub::subscribe(&topic, &jid);
        self.send_iq(
            to.clone(),
            true,
            payload,
            PendingIq::Subscribe { to, topic },
        )
        .await;
    }

    /// After a session reset: the server forgot our subscriptions, and
    /// items may have been published while the old session was dying.
    /// Every subscription catches up once the server confirms it again,
    /// except on a transient topic, which keeps nothing to catch up from.
    pub(super) async fn resubscribe_all(&mut self) {
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        for topic in topics {
            if let Some(entry) = self.topics.get_mut(&topic) {
                entry.active = false;
                if entry.transient {
                    self.subscribe_on_server(topic).await;
                    continue;
                }
                for sub in &mut entry.subs {
                    match &mut sub.catch_up {
                        // A replay whose fetch was lost: fetch again.
                        Some(catch_up) => catch_up.fetching = false,
                        None => {
                            sub.catch_up = Some(CatchUp {
                                last: None,
                                live: VecDeque::new(),
                                fetching: false,
                            })
                        }
                    }
                }
            }
            self.subscribe_on_server(topic).await;
        }
    }

    /// Asks for the stored items that the catching-up subscriptions of
    /// `topic` need, unless asked already.
    async fn fetch_history(&mut self, topic: &str) {
        let max_items = self.max_items;
        let Some(entry) = self.topics.get_mut(topic) else {
            return;
        };
        let mut subs = Vec::new();
        let mut max = 0;
        for sub in &mut entry.subs {
            if let Some(catch_up) = &mut sub.catch_up
                && !catch_up.fetching
            {
                catch_up.fetching = true;
                subs.push(sub.id);
                max = max.max(catch_up.last.unwrap_or(max_items));
            }
        }
        if subs.is_empty() {
            return;
        }
        debug!(
            topic,
            max,
            subscriptions = subs.len(),
            "fetching stored items"
        );
        let to = self.pubsub.clone();
        let payload = pubsub::items(topic, max);
        let pending = PendingIq::History {
            to: to.clone(),
            topic: topic.to_owned(),
            subs,
            sent: Instant::now(),
        };
        self.send_iq(to, false, payload, pending).await;
    }

    /// The answer to a fetch of stored items.
    pub(super) async fn on_history(&mut self, topic: String, subs: Vec<u64>, answer: IqOutcome) {
        let items = match &answer {
            Ok(Some(result)) => pubsub::fetched_items(result, self.max_payload),
            Ok(None) => Vec::new(),
            Err(error) if error.is_access_refusal() => {
                warn!(topic, %error, "the server refused this account the topic's stored items (topic access); none are delivered: ask the topic's owner to add the account to its subscribers (docs/DEPLOYMENT.md, \"Topic access\")");
                Vec::new()
            }
            Err(error) => {
                warn!(topic, %error, "stored items could not be fetched; events published while disconnected may be missing");
                Vec::new()
            }
        };
        self.catch_up(topic, subs, items).await;
    }

    /// Fetches of stored items that got no answer in time: their
    /// subscriptions go live without them.
    pub(super) async fn expire_history_fetches(&mut self) {
        let late: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p, PendingIq::History { sent, .. } if sent.elapsed() >= HISTORY_TIMEOUT))
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            if let Some(PendingIq::History { topic, subs, .. }) = self.pending.remove(&id) {
                warn!(topic, after = ?HISTORY_TIMEOUT, "no answer to the fetch of stored items; events published while disconnected may be missing");
                self.catch_up(topic, subs, Vec::new()).await;
            }
        }
    }

    /// Each of the subscriptions `subs` gets the stored `items` it lacks,
    /// then the live items that waited, and goes live.
    async fn catch_up(&mut self, topic: String, subs: Vec<u64>, items: Vec<Incoming>) {
        let malformed = items.iter().filter(|i| i.payload.is_err()).count() as u64;
        let Some(entry) = self.topics.get_mut(&topic) else {
            return;
        };
        let counters = &mut self.counters;
        let mut gone = Vec::new();
        for sub in entry.subs.iter_mut().filter(|s| subs.contains(&s.id)) {
            let Some(catch_up) = sub.catch_up.take() else {
                continue;
            };
            let skip = match catch_up.last {
                Some(last) => items.len().saturating_sub(last),
                None => 0,
            };
            let fetched = items.iter().skip(skip).cloned();
            counters.malformed_events += malformed;
            let before = counters.duplicates_dropped;
            let mut alive = true;
            for item in fetched.chain(catch_up.live) {
                if sub.deliver(item, counters).await.is_err() {
                    alive = false;
                    break;
                }
            }
            debug!(
                topic,
                sub = sub.id,
                stored = items.len() - skip,
                duplicates = counters.duplicates_dropped - before,
                "caught up"
            );
            if !alive {
                gone.push(sub.id);
            }
        }
        entry.subs.retain(|s| !gone.contains(&s.id));
    }

    pub(super) async fn remove_subscription(&mut self, topic: String, id: u64) {
        let Some(entry) = self.topics.get_mut(&topic) else {
            return;
        };
        entry.subs.retain(|s| s.id != id);
        if entry.unused() {
            let was_active = entry.active;
            self.topics.remove(&topic);
            if was_active {
                self.unsubscribe_on_server(&topic).await;
            }
        }
    }

    /// A group this bus leads starts (`+1`) or stops (`-1`) needing the
    /// server subscription to `topic`.
    pub(super) async fn group_interest(&mut self, topic: &str, delta: isize) {
        let entry = self.topics.entry(topic.to_owned()).or_default();
        entry.groups = entry.groups.saturating_add_signed(delta);
        if delta > 0 && !entry.active && entry.waiting.is_empty() {
            self.subscribe_on_server(topic.to_owned()).await;
        } else if entry.unused() {
            let was_active = entry.active;
            self.topics.remove(topic);
            if was_active {
                self.unsubscribe_on_server(topic).await;
            }
        }
    }

    async fn unsubscribe_on_server(&mut self, topic: &str) {
        debug!(topic, "last local subscription dropped; unsubscribing");
        let payload = pubsub::unsubscribe(topic, &self.bound().to_string());
        let to = self.pubsub.clone();
        self.send_iq(
            to.clone(),
            true,
            payload,
            PendingIq::Fire {
                to,
                what: "unsubscribe",
            },
        )
        .await;
    }

    pub(super) async fn on_subscribed(&mut self, topic: String, answer: IqOutcome) {
        let Some(entry) = self.topics.get_mut(&topic) else {
            // Every local subscription went away meanwhile.
            if answer.is_ok() {
                self.unsubscribe_on_server(&topic).await;
            }
            return;
        };
        match answer {
            // The authorize access model: the owner has yet to approve.
            Ok(Some(result)) if pubsub::is_pending(&result) => {
                if !entry.waiting.is_empty() {
                    let pending = |topic| SubscribeError::AwaitingApproval { topic };
                    self.fail_waiting(&topic, pending);
                }
            }
            Ok(_) => {
                entry.active = true;
                for (id, reply) in entry.waiting.drain(..) {
                    let _ = reply.send(Ok(id));
                }
                if entry.unused() {
                    self.topics.remove(&topic);
                    self.unsubscribe_on_server(&topic).await;
                } else if !entry.subs.is_empty() {
                    self.fetch_history(&topic).await;
                }
            }
            Err(error) => {
                if entry.waiting.is_empty() && error.is_access_refusal() {
                    // Access revoked while the session was down: nothing
                    // more may reach the subscriptions, not even what an
                    // old server-side subscription would still send.
                    warn!(topic, %error, "re-subscription after reconnect refused: this account lost access to the topic; its subscriptions end (docs/DEPLOYMENT.md, \"Topic access\")");
                    self.topics.remove(&topic);
                    self.unsubscribe_on_server(&topic).await;
                    return;
                }
                if entry.waiting.is_empty() {
                    warn!(topic, %error, "re-subscription after reconnect refused");
                    return;
                }
                let refused = |topic: String| {
                    let error = error.clone();
                    if error.is_access_refusal() {
                        SubscribeError::Forbidden { topic, error }
                    } else {
                        SubscribeError::Rejected { topic, error }
                    }
                };
                self.fail_waiting(&topic, refused);
            }
        }
    }

    /// Answers the subscriptions waiting for the server's answer on
    /// `topic` with `error` and forgets them.
    fn fail_waiting(&mut self, topic: &str, error: impl Fn(String) -> SubscribeError) {
        let Some(entry) = self.topics.get_mut(topic) else {
            return;
        };
        let waiting: Vec<_> = entry.waiting.drain(..).collect();
        let ids: Vec<u64> = waiting.iter().map(|(id, _)| *id).collect();
        entry.subs.retain(|s| !ids.contains(&s.id));
        if entry.unused() {
            self.topics.remove(topic);
        }
        for (_, reply) in waiting {
            let _ = reply.send(Err(error(topic.to_owned())));
        }
    }

    pub(super) async fn on_message(&mut self, message: Message) {
        match pubsub::read_message(&message, &self.pubsub, self.max_payload) {
            Received::Notification(items) => {
                for item in items {
                    self.deliver_to_topic(item).await;
                }
            }
            Received::Direct(incoming) => {
                let own = self.bound().to_bare();
                let from = message.from.as_ref().map(|from| from.to_bare());
                if from.is_some_and(|from| self.allow.allows_for(&own, &from)) {
                    self.deliver_to_inbox(incoming).await;
                } else {
                    self.counters.refused_messages += 1;
                    crate::meter::refused_message();
                    debug!(from = ?message.from, topic = incoming.topic, "direct event refused: the sender is not allowed");
                }
            }
            Received::Ignored { reason, warn } => {
                self.counters.ignored_stanzas += 1;
                if warn {
                    warn!(from = ?message.from, reason, "message ignored");
                } else {
                    debug!(from = ?message.from, reason, "message ignored");
                }
            }
        }
    }

    async fn deliver_to_topic(&mut self, item: Incoming) {
        self.offer_to_groups(&item);
        let Some(entry) = self.topics.get_mut(&item.topic) else {
            debug!(
                topic = item.topic,
                "notification for a topic without local subscription"
            );
            self.counters.ignored_stanzas += 1;
            return;
        };
        let counters = &mut self.counters;
        if item.payload.is_err() {
            counters.malformed_events += 1;
        }
        let mut gone = Vec::new();
        // The last subscription gets the item itself, the others a copy:
        // a topic usually has one, and the copy cost a few allocations.
        let mut item = Some(item);
        let last = entry.subs.len().saturating_sub(1);
        for (i, sub) in entry.subs.iter_mut().enumerate() {
            let Some(this) = (if i == last { item.take() } else { item.clone() }) else {
                break;
            };
            if let Some(catch_up) = &mut sub.catch_up {
                if catch_up.live.len() >= CATCH_UP_LIMIT {
                    catch_up.live.pop_front();
                    counters.overflowed += 1;
                    crate::meter::dropped(&sub.topic);
                }
                catch_up.live.push_back(this);
            } else if sub.deliver(this, counters).await.is_err() {
                gone.push(sub.id);
            }
        }
        entry.subs.retain(|s| !gone.contains(&s.id));
    }

    async fn deliver_to_inbox(&mut self, item: Incoming) {
        let Some(list) = self.inboxes.get_mut(&item.topic) else {
            debug!(
                topic = item.topic,
                "direct event for a topic without inbox dropped"
            );
            self.counters.ignored_stanzas += 1;
            return;
        };
        if item.payload.is_err() {
            self.counters.malformed_events += 1;
        }
        let mut gone = Vec::new();
        for (id, tx) in list.iter() {
            match tx.push(item.clone()).await {
                Ok(Pushed::Queued) => {}
                Ok(Pushed::DroppedOldest) => {
                    self.counters.overflowed += 1;
                    crate::meter::dropped(&item.topic);
                }
                Err(Gone) => gone.push(*id),
            }
        }
        list.retain(|(id, _)| !gone.contains(id));
    }
}
