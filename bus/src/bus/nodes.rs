//! A topic's node: created once per bus and topic, with the bus's
//! `max_items` or as transient, and read back to warn when the server keeps
//! fewer events than asked.

use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Bus, IqError};
use crate::access::{self, TopicAccess};
use crate::error::TopicSetupError;
use crate::event::{Persistence, validate_topic};
use crate::pubsub::{self, Repeatable};

impl Bus {
    /// Creates the topic's node (persistent or transient), once per bus. An
    /// existing node (`conflict`) is fine; other refusals are left for the
    /// publish or subscribe itself to report (some servers create nodes on
    /// publish, or let only admins create them), except for a topic with
    /// restricted access, whose refusal is returned
    /// ([`IqError::Server`]): an auto-created node would be open.
    pub(super) async fn ensure_node(
        &self,
        topic: &str,
        persistence: Persistence,
        deadline: Instant,
    ) -> Result<(), IqError> {
        let cell = {
            let mut nodes = self.inner.known_nodes.lock().expect("lock poisoned");
            // Every publish comes here: a known node costs a lookup, no
            // allocation and no await.
            match nodes.get(topic) {
                Some(cell) if cell.initialized() => return Ok(()),
                Some(cell) => cell.clone(),
                None => nodes.entry(topic.to_owned()).or_default().clone(),
            }
        };
        // Boxed: the creation's future is large, and inline it would make
        // every publish's future as large.
        Box::pin(self.create_node(&cell, topic, persistence, deadline)).await
    }

    /// Creates the node unless `cell` says it was; concurrent first
    /// publishes to a topic share one create request.
    async fn create_node(
        &self,
        cell: &OnceCell<()>,
        topic: &str,
        persistence: Persistence,
        deadline: Instant,
    ) -> Result<(), IqError> {
        cell.get_or_try_init(|| async {
            let access = self.access_for(topic);
            let request = Repeatable::Create {
                node: topic.to_owned(),
                max_items: self.inner.config.max_items,
                persistence,
                access: access.clone(),
            };
            let asked = self.inner.config.max_items;
            match self.iq(request, deadline).await {
                Ok(_) => {
                    debug!(topic, "node created");
                    if persistence == Persistence::Persistent {
                        self.check_kept(topic, asked, deadline).await;
                    }
                    if let Some(access) = &access {
                        self.set_lists(topic, access, deadline).await;
                    }
                }
                Err(IqError::Server(error)) if error.condition == "conflict" => {
                    if let Some(access) = &access {
                        self.configure_existing(topic, access, deadline).await;
                    }
                }
                // A restricted topic must not be left for the server to
                // create open on the first publish. An account that may
                // not create topics (`forbidden`: Prosody's non-admins,
                // even for an existing node) may not auto-create them
                // either: its publish or subscribe reports what it meets.
                Err(IqError::Server(error))
                    if access.as_ref().is_some_and(|a| !a.is_open())
                        && !error.is_access_refusal() =>
                {
                    return Err(IqError::Server(error));
                }
                // Over a server's limit: the embedded server says
                // not-acceptable, Prosody bad-request ("max_items: out of
                // bounds"), and its autocreate then makes the node with
                // its default of 20 items.
                Err(IqError::Server(error))
                    if matches!(error.condition.as_str(), "not-acceptable" | "bad-request") =>
                {
                    warn!("{}", pubsub::refused_configuration(topic, asked, &error));
                }
                Err(IqError::Server(error)) => {
                    debug!(topic, %error, "node not created; relying on an existing or auto-created node");
                }
                Err(other) => return Err(other),
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Creates `topic` as this account, which becomes its owner, keeping
    /// the bus's `max_items` events, and makes each of `publishers` (bare
    /// JIDs of service accounts) a publisher of it. A topic that exists
    /// already is fine: its publishers are set all the same. If the config
    /// restricts the topic ([`topic_access`](crate::BusConfigBuilder::topic_access)),
    /// its access and lists are set too, on an existing topic as well
    /// (which takes being its owner).
    ///
    /// For servers on which services should not create topics themselves:
    /// Prosody 0.12 lets only admins of the pubsub component create nodes,
    /// and makes an admin owner of every node. Run this once per topic as
    /// one admin account (`xbus topic create`); the services then publish
    /// and subscribe as plain accounts (docs/DEPLOYMENT.md, "Who may create
    /// topics").
    pub async fn create_topic(
        &self,
        topic: &str,
        publishers: &[&str],
    ) -> Result<(), TopicSetupError> {
        validate_topic(topic)?;
        let mut jids = Vec::with_capacity(publishers.len());
        for jid in publishers {
            match jid.parse::<xmpp_parsers::jid::BareJid>() {
                Ok(bare) if bare.node().is_some() => jids.push(bare.to_string()),
                _ => {
                    return Err(TopicSetupError::InvalidPublisher {
                        jid: (*jid).to_owned(),
                    });
                }
            }
        }
        let timeout = self.inner.config.publish_timeout;
        let deadline = Instant::now() + timeout;
        let failed = |step: &'static str| {
            move |error: IqError| match error {
                IqError::Server(error) => TopicSetupError::Rejected {
                    topic: topic.to_owned(),
                    step,
                    error,
                },
                IqError::TimedOut => TopicSetupError::TimedOut {
                    topic: topic.to_owned(),
                    after: timeout,
                },
                IqError::Closed => TopicSetupError::Closed,
            }
        };
        let access = self.access_for(topic);
        let create = Repeatable::Create {
            node: topic.to_owned(),
            max_items: self.inner.config.max_items,
            persistence: Persistence::Persistent,
            access: access.clone(),
        };
        let existed = match self.iq(create, deadline).await {
            Ok(_) => {
                self.check_kept(topic, self.inner.config.max_items, deadline)
                    .await;
                false
            }
            Err(IqError::Server(error)) if error.condition == "conflict" => true,
            Err(error) => return Err(failed("create")(error)),
        };
        if let Some(access) = access.filter(|a| !a.is_open()) {
            if existed {
                let payload = access::configure(topic, access.form_fields());
                self.pubsub_iq(true, payload, None, deadline)
                    .await
                    .map_err(failed("configure the access of"))?;
            }
            let lists = access.affiliations();
            if !lists.is_empty() {
                let payload = access::set_affiliations(topic, &lists);
                self.pubsub_iq(true, payload, None, deadline)
                    .await
                    .map_err(failed("set the access lists of"))?;
            }
        }
        if !jids.is_empty() {
            let payload = pubsub::publishers(topic, &jids);
            self.pubsub_iq(true, payload, None, deadline)
                .await
                .map_err(failed("set the publishers of"))?;
        }
        Ok(())
    }

    /// Gives the accounts of `access` their affiliations with the node of
    /// `topic`, which this bus just created; a refusal is logged (the
    /// publishes and subscriptions of the accounts left out will say so).
    async fn set_lists(&self, topic: &str, access: &TopicAccess, deadline: Instant) {
        let list = access.affiliations();
        if list.is_empty() {
            return;
        }
        let payload = access::set_affiliations(topic, &list);
        match self.pubsub_iq(true, payload, None, deadline).await {
            Ok(_) => debug!(topic, accounts = list.len(), "topic access lists set"),
            Err(error) => warn!(
                topic,
                ?error,
                "the server refused the access lists of the topic; set them with \
                 Bus::topic_access (docs/DEPLOYMENT.md, \"Topic access\")"
            ),
        }
    }

    /// The node of `topic` exists already (another bus, perhaps a
    /// subscriber's, created it): sets `access` on it if this account owns
    /// it, and warns otherwise, since the topic then has the access its
    /// creator gave it.
    async fn configure_existing(&self, topic: &str, access: &TopicAccess, deadline: Instant) {
        let payload = access::configure(topic, access.form_fields());
        match self.pubsub_iq(true, payload, None, deadline).await {
            Ok(_) => self.set_lists(topic, access, deadline).await,
            // Only the event type's derive asks for access, with no lists:
            // every bus of the type does, and all but the owner get here.
            Err(error) if access.affiliations().is_empty() => {
                debug!(
                    topic,
                    ?error,
                    "existing topic not configured (not its owner)"
                );
            }
            Err(error) => warn!(
                topic,
                ?error,
                "topic {topic:?} existed already and this account may not configure it: its \
                 access is what its creator set, not this bus's topic_access; have the \
                 topic's owner set it, or delete the topic and let this bus create it first \
                 (docs/DEPLOYMENT.md, \"Topic access\")"
            ),
        }
    }

    /// Reads back what the node of `topic`, just created, keeps, and warns
    /// when the server keeps fewer events than `asked` (a server may lower
    /// `max_items` to its cap instead of refusing).
    async fn check_kept(&self, topic: &str, asked: u32, deadline: Instant) {
        let payload = pubsub::configuration(topic);
        match self.pubsub_iq(false, payload, None, deadline).await {
            Ok(Some(result)) => {
                let kept = pubsub::kept(&result);
                debug!(topic, ?kept, "node configuration");
                if let Some(warning) = pubsub::shortfall(topic, asked, kept) {
                    warn!("{warning}");
                }
            }
            Ok(None) => {}
            Err(error) => debug!(topic, ?error, "node configuration not read"),
        }
    }
}
