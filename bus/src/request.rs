//! The [`Request`] trait, the handler's [`RpcError`] and the caller's
//! [`RequestError`].

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DecodeError, EncodeError, ServerError};
use crate::event::Encoding;
use crate::headers::InvalidHeader;

/// A typed RPC call: a request type and the type of its answer.
///
/// Implement it with `#[derive(Request)]`:
/// `#[request(method = "...", response = Type, encoding = "msgpack" | "json",
/// version = N)]`. Only `response` is required; the method defaults to the
/// type name in snake case, the encoding to MessagePack, the version to 1.
/// The response travels with the request's encoding and version.
pub trait Request: Serialize + DeserializeOwned + Send + 'static {
    /// What a handler answers.
    type Response: Serialize + DeserializeOwned + Send + 'static;
    /// The method name: follows the [topic rules](crate::validate_topic).
    const METHOD: &'static str;
    /// How the request and its response are serialized.
    const ENCODING: Encoding;
    /// Schema version of the request and its response; a call with another
    /// version is refused as malformed.
    const VERSION: u32;
}

/// The application error a handler returns: a machine-readable code and a
/// message for people. The caller receives it as
/// [`RequestError::Remote`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
#[non_exhaustive]
pub struct RpcError {
    /// A short, stable code the caller can match on, e.g. `out_of_stock`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl RpcError {
    /// An application error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> RpcError {
        RpcError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A call made with [`Bus::request`](crate::Bus::request) failed. Each kind
/// says what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The target is not a valid JID.
    #[error("invalid request target {target:?}: {reason}")]
    InvalidTarget {
        /// What was given.
        target: String,
        /// Why it is not a JID.
        reason: String,
    },
    /// The request did not serialize.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The method name breaks the [topic rules](crate::validate_topic)
    /// (only possible with [`Bus::request_raw`](crate::Bus::request_raw)).
    #[error("invalid method {method:?}: {reason}")]
    InvalidMethod {
        /// What was given.
        method: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value cannot be carried.
    #[error(transparent)]
    InvalidHeader(#[from] InvalidHeader),
    /// The serialized request exceeds the configured maximum payload.
    #[error("request of {size} bytes exceeds the maximum payload of {max} bytes")]
    PayloadTooLarge {
        /// Serialized size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// No answer within the timeout. The handler may still have run.
    #[error("{method} to {to}{}: no answer within {after:?}", sent_to(.instance))]
    TimedOut {
        /// The method called.
        method: String,
        /// The service or instance called.
        to: String,
        /// The timeout.
        after: Duration,
        /// The instance (full JID) the call went to, if it left: the one
        /// that did not answer.
        instance: Option<String>,
    },
    /// Nobody can answer: no instance of the service is online, or the
    /// server reported the recipient unavailable. Returned at once, not
    /// after the timeout; retry later or elsewhere.
    #[error("{method} to {to}: no responder ({reason})")]
    NoResponder {
        /// The method called.
        method: String,
        /// The service or instance called.
        to: String,
        /// What the bus or the server said.
        reason: String,
    },
    /// The handler returned an application error.
    #[error("{method} at {from} failed: {error}")]
    Remote {
        /// The method called.
        method: String,
        /// The instance that answered.
        from: String,
        /// The handler's code and message.
        error: RpcError,
    },
    /// The callee refused the request as malformed (`bad-request`): a
    /// payload that does not decode, another schema version. Retrying the
    /// same request will not help.
    #[error("{method} rejected by {from}: {reason}")]
    Rejected {
        /// The method called.
        method: String,
        /// The instance that refused.
        from: String,
        /// The callee's reason.
        reason: String,
    },
    /// The callee has no handler for the method.
    #[error("{from} has no handler for {method}")]
    UnknownMethod {
        /// The method called.
        method: String,
        /// The instance that answered.
        from: String,
    },
    /// The callee is running its maximum of concurrent handlers
    /// (`resource-constraint`). Retry after a pause.
    #[error("{method}: {from} is at its limit of concurrent calls")]
    Overloaded {
        /// The method called.
        method: String,
        /// The instance that refused.
        from: String,
    },
    /// The callee does not allow this bus's account to call the method
    /// (`forbidden`; see [`Allow`](crate::Allow)). The handler did not
    /// run. Retrying will not help: the callee's allow-list must include
    /// the caller's account or domain.
    #[error("{method} refused by {from}: {reason}")]
    Forbidden {
        /// The method called.
        method: String,
        /// The instance that refused.
        from: String,
        /// The callee's explanation: who is allowed.
        reason: String,
    },
    /// The handler failed without an application error: it panicked, or
    /// its response did not serialize (`internal-server-error`).
    #[error("{method} at {from}: the handler failed: {reason}")]
    HandlerFailed {
        /// The method called.
        method: String,
        /// The instance that answered.
        from: String,
        /// The callee's explanation.
        reason: String,
    },
    /// The answer did not decode as the method's response type.
    #[error("{method}: the response from {from} does not decode: {error}")]
    BadResponse {
        /// The method called.
        method: String,
        /// The instance that answered.
        from: String,
        /// Why it does not decode.
        error: DecodeError,
    },
    /// Any other stanza error, from the callee or its server.
    #[error("{method} to {to}: {error}")]
    Server {
        /// The method called.
        method: String,
        /// The service or instance called.
        to: String,
        /// The stanza error.
        error: ServerError,
    },
    /// The connection was lost or closed before the answer came.
    #[error("{method}{}: disconnected before the answer came", sent_to(.instance))]
    Disconnected {
        /// The method called.
        method: String,
        /// The instance (full JID) the call went to, if it left.
        instance: Option<String>,
    },
}

/// `" (sent to INSTANCE)"`, or nothing.
fn sent_to(instance: &Option<String>) -> String {
    instance
        .as_ref()
        .map(|jid| format!(" (sent to {jid})"))
        .unwrap_or_default()
}

/// [`Bus::serve`](crate::Bus::serve) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// This bus already has a handler for the method.
    #[error("method {method:?} already has a handler on this bus")]
    AlreadyServed {
        /// The method.
        method: String,
    },
    /// The method name is not valid (see
    /// [`Bus::serve_raw`](crate::Bus::serve_raw)).
    #[error("invalid method name {method:?}: {reason}")]
    InvalidMethod {
        /// The method.
        method: String,
        /// Why it is not valid.
        reason: String,
    },
    /// The bus is closed.
    #[error("the bus is closed")]
    Closed,
}
