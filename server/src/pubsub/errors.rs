//! Stanza errors of the pubsub service: an RFC 6120 defined condition plus,
//! where XEP-0060 defines one, an application condition in
//! `http://jabber.org/protocol/pubsub#errors`.

use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::ns;
use super::xml::attr_name;

/// Why a request failed, before it becomes a [`StanzaError`].
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    type_: ErrorType,
    condition: DefinedCondition,
    /// Name of the `pubsub#errors` child, and its `feature` attribute.
    app: Option<(&'static str, Option<&'static str>)>,
    text: String,
}

/// Handler results.
pub(crate) type Result<T> = std::result::Result<T, Failure>;

impl Failure {
    fn new(type_: ErrorType, condition: DefinedCondition, text: impl Into<String>) -> Failure {
        Failure {
            type_,
            condition,
            app: None,
            text: text.into(),
        }
    }

    fn with_app(mut self, name: &'static str) -> Failure {
        self.app = Some((name, None));
        self
    }

    /// `bad-request` (modify).
    pub(crate) fn bad_request(text: impl Into<String>) -> Failure {
        Failure::new(ErrorType::Modify, DefinedCondition::BadRequest, text)
    }

    /// `bad-request` + a `pubsub#errors` condition (modify).
    pub(crate) fn bad_request_app(app: &'static str, text: impl Into<String>) -> Failure {
        Failure::bad_request(text).with_app(app)
    }

    /// `not-acceptable` (modify), e.g. an invalid configuration value.
    pub(crate) fn not_acceptable(text: impl Into<String>) -> Failure {
        Failure::new(ErrorType::Modify, DefinedCondition::NotAcceptable, text)
    }

    /// `not-acceptable` + `<payload-too-big/>` (modify).
    pub(crate) fn payload_too_big(size: usize, limit: usize) -> Failure {
        Failure::not_acceptable(format!(
            "item payload of {size} bytes exceeds the limit of {limit} bytes"
        ))
        .with_app("payload-too-big")
    }

    /// `not-acceptable` + `<invalid-subid/>` (modify).
    pub(crate) fn invalid_subid() -> Failure {
        Failure::not_acceptable("no subscription with this subid").with_app("invalid-subid")
    }

    /// `item-not-found` (cancel): a missing node or item.
    pub(crate) fn item_not_found(text: impl Into<String>) -> Failure {
        Failure::new(ErrorType::Cancel, DefinedCondition::ItemNotFound, text)
    }

    /// `conflict` (cancel): the node exists.
    pub(crate) fn conflict(text: impl Into<String>) -> Failure {
        Failure::new(ErrorType::Cancel, DefinedCondition::Conflict, text)
    }

    /// `conflict` + `<precondition-not-met/>` (cancel): publish-options
    /// that do not match the node's configuration.
    pub(crate) fn precondition_not_met(field: &str) -> Failure {
        Failure::conflict(format!(
            "publish-options field {field} does not match the node"
        ))
        .with_app("precondition-not-met")
    }

    /// `forbidden` (auth).
    pub(crate) fn forbidden(text: impl Into<String>) -> Failure {
        Failure::new(ErrorType::Auth, DefinedCondition::Forbidden, text)
    }

    /// `not-allowed` + `<closed-node/>` (cancel), XEP-0060 §6.1.3.4 and §6.5.9.x: the node's access model (a
    /// whitelist) leaves the requester out.
    pub(crate) fn closed_node() -> Failure {
        Failure::new(
            ErrorType::Cancel,
            DefinedCondition::NotAllowed,
            "the node is whitelisted and you are not on its list: ask its owner to make \
             you a member or publisher",
        )
        .with_app("closed-node")
    }

    /// `not-authorized` + `<presence-subscription-required/>` (auth),
    /// XEP-0060 §6.1.3.2: the node's access model is presence and the
    /// requester does not receive its owner's presence.
    pub(crate) fn presence_required() -> Failure {
        Failure::new(
            ErrorType::Auth,
            DefinedCondition::NotAuthorized,
            "the node's access model is presence: subscribe to its owner's presence, or \
             ask its owner to make you a member",
        )
        .with_app("presence-subscription-required")
    }

    /// `unexpected-request` + `<not-subscribed/>` (cancel).
    pub(crate) fn not_subscribed() -> Failure {
        Failure::new(
            ErrorType::Cancel,
            DefinedCondition::UnexpectedRequest,
            "the JID is not subscribed to this node",
        )
        .with_app("not-subscribed")
    }

    /// `policy-violation` + `<too-many-subscriptions/>` (wait).
    pub(crate) fn too_many_subscriptions(limit: usize) -> Failure {
        Failure::new(
            ErrorType::Wait,
            DefinedCondition::PolicyViolation,
            format!("the node has its maximum of {limit} subscriptions"),
        )
        .with_app("too-many-subscriptions")
    }

    /// `resource-constraint` (wait): the service holds its maximum of nodes.
    pub(crate) fn too_many_nodes(limit: usize) -> Failure {
        Failure::new(
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            format!("the service holds its maximum of {limit} nodes"),
        )
    }

    /// `feature-not-implemented` + `<unsupported feature='…'/>` (cancel).
    pub(crate) fn unsupported(feature: &'static str) -> Failure {
        let mut failure = Failure::new(
            ErrorType::Cancel,
            DefinedCondition::FeatureNotImplemented,
            format!("pubsub feature {feature} is not supported"),
        );
        failure.app = Some(("unsupported", Some(feature)));
        failure
    }

    /// `service-unavailable` (cancel): a namespace the service does not
    /// speak (RFC 6120 §8.4).
    pub(crate) fn service_unavailable() -> Failure {
        Failure::new(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "the pubsub service does not handle this request",
        )
    }

    /// The stanza error to put in the reply.
    pub(crate) fn into_stanza_error(self) -> StanzaError {
        let mut error = StanzaError::new(self.type_, self.condition, "en", self.text);
        error.other = self.app.map(|(name, feature)| {
            let mut builder = Element::builder(name, ns::ERRORS);
            if let Some(feature) = feature {
                builder = builder.attr(attr_name("feature"), feature);
            }
            builder.build()
        });
        error
    }
}
