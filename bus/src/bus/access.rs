//! Changing a topic's access lists at runtime, as the topic's owner
//! (XEP-0060 §8.9, "Manage Affiliations").

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use xmpp_parsers::minidom::Element;

use super::{Bus, IqError};
use crate::access::AccessNotApplied;
use crate::access::{self, Affiliation, TopicAccess};
use crate::error::{ConsumeError, ServerError};
use crate::event::{Event, Persistence, TopicError, validate_topic};

/// Changing a topic's lists failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The topic is not a valid node name.
    #[error(transparent)]
    InvalidTopic(#[from] TopicError),
    /// An account is not a bare JID.
    #[error("invalid account {jid:?}: give an account's bare JID, e.g. billing@example.org")]
    InvalidAccount {
        /// What was given.
        jid: String,
    },
    /// This account does not own the topic: only its owner (the account
    /// that created it; on Prosody, also the pubsub component's admins)
    /// changes its lists.
    #[error(
        "this account may not change the access lists of {topic:?} ({error}): only the topic's \
         owner may, the account whose bus created it (docs/DEPLOYMENT.md, \"Topic access\")"
    )]
    NotOwner {
        /// The topic.
        topic: String,
        /// The server's error.
        #[source]
        error: ServerError,
    },
    /// The server refused the change for another reason (e.g.
    /// `item-not-found`: no such topic yet).
    #[error("the server refused to change the access lists of {topic:?}: {error}")]
    Rejected {
        /// The topic.
        topic: String,
        /// The server's error.
        #[source]
        error: ServerError,
    },
    /// The server did not answer in time.
    #[error("no answer about the access lists of {topic:?} within {after:?}")]
    TimedOut {
        /// The topic.
        topic: String,
        /// How long the bus waited.
        after: Duration,
    },
    /// The bus is closed.
    #[error("the bus is closed")]
    Closed,
}

/// The access lists of one topic, changed as its owner: from
/// [`Bus::topic_access`].
///
/// Each change is one request to the pubsub service and takes effect at
/// once for new publishes, subscriptions and item fetches. An account has
/// one affiliation per topic: [`allow_publisher`](Self::allow_publisher)
/// replaces [`allow_subscriber`](Self::allow_subscriber) and the other way
/// round, and [`revoke`](Self::revoke) removes either.
#[derive(Debug)]
pub struct TopicAccessLists<'a> {
    bus: &'a Bus,
    topic: String,
}

impl Bus {
    /// Remembers the access that `E`'s derive asks for, merged with the
    /// config's, for when this bus creates the topic. Free for an open
    /// event type (the check is on a constant).
    pub(crate) fn note_access<E: Event>(&self) {
        if E::ACCESS.is_open() {
            return;
        }
        let mut derived = self.inner.derived_access.lock().expect("lock poisoned");
        if !derived.contains_key(E::TOPIC) {
            let config = self.inner.config.topic_access.get(E::TOPIC);
            let access = E::ACCESS.merged_into(config.map(|a| &**a));
            derived.insert(E::TOPIC.to_owned(), Arc::new(access));
        }
    }

    /// Creates `topic` now if this bus restricts it, so that a consumer
    /// group's own create (which knows no access) finds it there and does
    /// not make it open.
    pub(crate) async fn ensure_restricted_node(&self, topic: &str) -> Result<(), ConsumeError> {
        if self.access_for(topic).is_none_or(|a| a.is_open()) {
            return Ok(());
        }
        let after = self.inner.config.publish_timeout;
        let deadline = Instant::now() + after;
        self.ensure_node(topic, Persistence::Persistent, deadline)
            .await
            .map_err(|e| match e {
                IqError::Server(error) => AccessNotApplied {
                    topic: topic.to_owned(),
                    error,
                }
                .into(),
                IqError::TimedOut => ConsumeError::TimedOut {
                    topic: topic.to_owned(),
                    after,
                },
                IqError::Closed => ConsumeError::Closed,
            })
    }

    /// The access this bus gives `topic` when it creates it: from the event
    /// type's derive (merged with the config), or from the config.
    pub(super) fn access_for(&self, topic: &str) -> Option<Arc<TopicAccess>> {
        let derived = self.inner.derived_access.lock().expect("lock poisoned");
        derived
            .get(topic)
            .or_else(|| self.inner.config.topic_access.get(topic))
            .cloned()
    }

    /// The access lists of `topic`, to change as its owner (the account
    /// whose bus created it with
    /// [`topic_access`](crate::BusConfigBuilder::topic_access)).
    pub fn topic_access(&self, topic: impl Into<String>) -> TopicAccessLists<'_> {
        TopicAccessLists {
            bus: self,
            topic: topic.into(),
        }
    }
}

impl TopicAccessLists<'_> {
    /// Lets `jid` (an account's bare JID) publish to the topic, and
    /// subscribe to it under a whitelist: the `publisher` affiliation.
    pub async fn allow_publisher(&self, jid: &str) -> Result<(), AccessError> {
        self.set(jid, Affiliation::Publisher).await.map(drop)
    }

    /// Lets `jid` subscribe to the topic and read its stored events under
    /// a whitelist: the `member` affiliation.
    pub async fn allow_subscriber(&self, jid: &str) -> Result<(), AccessError> {
        self.set(jid, Affiliation::Member).await.map(drop)
    }

    /// Takes `jid` off both lists (the affiliation `none`): it may no longer
    /// publish to a topic with a publisher list, nor subscribe to or read a
    /// whitelisted one. Then ends the subscriptions it holds (as the owner,
    /// XEP-0060 §8.8.2): Prosody and ejabberd keep notifying an existing
    /// subscription whatever the affiliation becomes.
    pub async fn revoke(&self, jid: &str) -> Result<(), AccessError> {
        let bare = self.set(jid, Affiliation::None).await?;
        let deadline = self.deadline();
        let list = self
            .request(false, access::subscriptions(&self.topic, &[]), deadline)
            .await?;
        let theirs: Vec<String> = list
            .as_ref()
            .map(access::subscribed_jids)
            .unwrap_or_default()
            .into_iter()
            .filter(|subscribed| access::bare_account(subscribed).as_deref() == Some(&bare))
            .collect();
        if !theirs.is_empty() {
            let payload = access::subscriptions(&self.topic, &theirs);
            self.request(true, payload, deadline).await?;
        }
        Ok(())
    }

    /// Sets the affiliation of `jid`'s account; returns the account.
    async fn set(&self, jid: &str, affiliation: Affiliation) -> Result<String, AccessError> {
        validate_topic(&self.topic)?;
        let bare = access::bare_account(jid).ok_or_else(|| AccessError::InvalidAccount {
            jid: jid.to_owned(),
        })?;
        let payload = access::set_affiliations(&self.topic, &[(bare.clone(), affiliation)]);
        self.request(true, payload, self.deadline()).await?;
        Ok(bare)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.bus.inner.config.publish_timeout
    }

    /// An owner request about the topic, its refusals as [`AccessError`]s.
    async fn request(
        &self,
        set: bool,
        payload: Element,
        deadline: Instant,
    ) -> Result<Option<Element>, AccessError> {
        let topic = &self.topic;
        match self.bus.pubsub_iq(set, payload, None, deadline).await {
            Ok(answer) => Ok(answer),
            Err(IqError::Server(error)) if error.is_access_refusal() => {
                Err(AccessError::NotOwner {
                    topic: topic.clone(),
                    error,
                })
            }
            Err(IqError::Server(error)) => Err(AccessError::Rejected {
                topic: topic.clone(),
                error,
            }),
            Err(IqError::TimedOut) => Err(AccessError::TimedOut {
                topic: topic.clone(),
                after: self.bus.inner.config.publish_timeout,
            }),
            Err(IqError::Closed) => Err(AccessError::Closed),
        }
    }
}
