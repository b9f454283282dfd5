//! The XEP-0060 publish-subscribe service at `pubsub.<domain>`: a pure
//! state machine. The server hands it every IQ addressed to the service and
//! routes the notifications it returns; it does no I/O of its own.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::Message;

/// Limits of the pubsub service.
#[derive(Debug, Clone)]
pub struct PubSubConfig {
    /// Largest `pubsub#max_items` a node may ask for.
    pub max_items_limit: u32,
    /// `pubsub#max_items` of a node created without one.
    pub default_max_items: u32,
    /// Most nodes the service holds.
    pub max_nodes: usize,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            max_items_limit: 10_000,
            default_max_items: 1000,
            max_nodes: 10_000,
        }
    }
}

/// What handling one IQ produced.
#[derive(Debug)]
pub struct Outcome {
    /// The answer to the IQ (a result or an error), addressed to its sender.
    pub reply: Iq,
    /// Event notifications to route, each addressed (`to`) to a subscriber
    /// and sent `from` the service.
    pub notifications: Vec<Message>,
}

/// The pubsub service.
#[derive(Debug)]
pub struct PubSub {
    service: Jid,
    config: PubSubConfig,
}

impl PubSub {
    /// A service answering as `service` (e.g. `pubsub.localhost`).
    pub fn new(service: Jid, config: PubSubConfig) -> PubSub {
        PubSub { service, config }
    }

    /// The service's JID.
    pub fn jid(&self) -> &Jid {
        &self.service
    }

    /// Handles one IQ (get or set) sent to the service by `from`.
    pub fn handle_iq(&mut self, from: &FullJid, iq: Iq) -> Outcome {
        let _ = (from, &self.config);
        let (header, _) = iq.split();
        let error = xmpp_parsers::stanza_error::StanzaError::new(
            xmpp_parsers::stanza_error::ErrorType::Cancel,
            xmpp_parsers::stanza_error::DefinedCondition::FeatureNotImplemented,
            "en",
            "pubsub is not implemented yet",
        );
        let reply = Iq::assemble(
            xmpp_parsers::iq::IqHeader {
                from: Some(self.service.clone()),
                to: header.from,
                id: header.id,
            },
            xmpp_parsers::iq::IqPayload::Error(error),
        );
        Outcome {
            reply,
            notifications: Vec::new(),
        }
    }

    /// A session ended: the service may drop what it held for that full
    /// JID (nothing, so far).
    pub fn session_ended(&mut self, jid: &FullJid) {
        let _ = jid;
    }
}
