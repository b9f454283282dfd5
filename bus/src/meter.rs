//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (cargo
//! feature `metrics`): whatever recorder the application installs
//! (Prometheus, OTLP, StatsD, ...) receives them. Without the feature every
//! function here is empty and inlined away.
//!
//! Names and labels follow the OpenTelemetry messaging and RPC semantic
//! conventions where they define one, `xbus.*` otherwise. Labels carry
//! topic, group and method names only, never JIDs or ids, so that their
//! cardinality stays that of the application's own types. The full list is
//! in `docs/OBSERVABILITY.md`.

use std::time::Duration;

use xmpp_parsers::stanza_error::StanzaError;

use crate::error::{PublishError, SendError};
use crate::request::RequestError;
use crate::status::ConnectionEvent;

/// Describes every metric (type, unit, meaning) to the installed
/// recorder, once per process.
#[inline]
pub(crate) fn describe() {
    #[cfg(feature = "metrics")]
    imp::describe();
}

/// The `error.type` of a stanza error a call was answered with, by its
/// condition: what the bus itself answers (`unknown_method`,
/// `overloaded`, `closing`, `bad_request`, `handler_failed`) or a
/// handler's `app_error`.
pub(crate) fn answer_error_type(error: &StanzaError) -> &'static str {
    use xmpp_parsers::stanza_error::DefinedCondition as C;
    match error.defined_condition {
        C::UndefinedCondition => "app_error",
        C::BadRequest => "bad_request",
        C::FeatureNotImplemented => "unknown_method",
        C::ResourceConstraint => "overloaded",
        C::ServiceUnavailable => "closing",
        C::InternalServerError => "handler_failed",
        C::Forbidden => "forbidden",
        _ => "_OTHER",
    }
}

/// The `error.type` of a failed publish.
pub(crate) fn publish_error_type(error: &PublishError) -> &'static str {
    match error {
        PublishError::Rejected { .. } => "rejected",
        PublishError::OutboxFull { .. } => "outbox_full",
        PublishError::TimedOut { .. } => "timed_out",
        PublishError::Closed => "closed",
        PublishError::Forbidden { .. } => "forbidden",
        PublishError::AccessNotApplied(_) => "access_not_applied",
        _ => "invalid",
    }
}

/// The `error.type` of a failed send.
pub(crate) fn send_error_type(error: &SendError) -> &'static str {
    match error {
        SendError::NoInstance { .. } => "no_instance",
        SendError::NotAcknowledged(_) => "not_acknowledged",
        SendError::Closed => "closed",
        _ => "invalid",
    }
}

/// `messaging.system` and `rpc.system.name`.
#[cfg(feature = "metrics")]
const SYSTEM: &str = "xmpp";

/// What a send on the messaging side was.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outgoing {
    /// A pubsub publish, measured until the server's confirmation.
    Publish,
    /// A direct `<message/>` (`send`, `send_to_any`), until the server's
    /// acknowledgement.
    Send,
}

impl Outgoing {
    #[cfg(feature = "metrics")]
    fn name(self) -> &'static str {
        match self {
            Outgoing::Publish => "publish",
            Outgoing::Send => "send",
        }
    }
}

/// One publish or send finished after `elapsed`, failed with `error`
/// (an `error.type`) or not.
#[inline]
pub(crate) fn sent(kind: Outgoing, topic: &str, elapsed: Duration, error: Option<&'static str>) {
    #[cfg(feature = "metrics")]
    imp::sent(kind, topic, elapsed, error);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, topic, elapsed, error);
}

/// One event handed to a subscription or inbox, or (with `group`) to a
/// consumer group's consumer.
#[inline]
pub(crate) fn consumed(topic: &str, group: Option<&str>) {
    #[cfg(feature = "metrics")]
    imp::consumed(topic, group);
    #[cfg(not(feature = "metrics"))]
    let _ = (topic, group);
}

/// A call this bus made finished after `elapsed`.
#[inline]
pub(crate) fn called(method: &str, elapsed: Duration, result: Result<(), &RequestError>) {
    #[cfg(feature = "metrics")]
    imp::called(method, elapsed, result.err().map(request_error_type));
    #[cfg(not(feature = "metrics"))]
    let _ = (method, elapsed, result);
}

/// A handler of this bus answered after `elapsed`, with an error of
/// `error.type` or not.
#[inline]
pub(crate) fn handled(method: &str, elapsed: Duration, error: Option<&'static str>) {
    #[cfg(feature = "metrics")]
    imp::handled(method, elapsed, error);
    #[cfg(not(feature = "metrics"))]
    let _ = (method, elapsed, error);
}

/// An incoming call refused before any handler ran.
#[inline]
pub(crate) fn refused(reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("xbus.rpc.server.refused", "reason" => reason).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}

/// Calls in flight, made (`Side::Client`) or answered (`Side::Server`),
/// for as long as the guard lives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Client,
    Server,
}

/// Counts one call in flight until dropped.
pub(crate) struct InFlight {
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
}

impl InFlight {
    /// Counts a call of `method` in flight on `side`.
    #[inline]
    pub fn start(side: Side, method: &str) -> InFlight {
        #[cfg(feature = "metrics")]
        {
            let name = match side {
                Side::Client => "xbus.rpc.client.active_calls",
                Side::Server => "xbus.rpc.server.active_calls",
            };
            let gauge = metrics::gauge!(name, "rpc.system.name" => SYSTEM, "rpc.method" => method.to_owned());
            gauge.increment(1.0);
            InFlight { gauge }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (side, method);
            InFlight {}
        }
    }
}

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.gauge.decrement(1.0);
    }
}

/// A connection status change: reconnect attempts, resumptions, session
/// resets, failovers.
#[inline]
pub(crate) fn connection(event: &ConnectionEvent) {
    #[cfg(feature = "metrics")]
    {
        let name = match event {
            ConnectionEvent::Reconnecting { .. } => "xbus.connection.reconnect_attempts",
            ConnectionEvent::Resumed => "xbus.connection.resumptions",
            ConnectionEvent::SessionReset => "xbus.connection.session_resets",
            ConnectionEvent::FailedOver { .. } => "xbus.connection.failovers",
            _ => return,
        };
        metrics::counter!(name).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = event;
}

/// An event a full [`DropOldest`](crate::BufferPolicy::DropOldest) buffer
/// dropped.
#[inline]
pub(crate) fn dropped(topic: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("xbus.buffer.dropped", "messaging.destination.name" => topic.to_owned())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = topic;
}

/// A direct event from an account the bus's [`Allow`](crate::Allow) does
/// not include, dropped unread.
#[inline]
pub(crate) fn refused_message() {
    #[cfg(feature = "metrics")]
    metrics::counter!("xbus.inbox.refused").increment(1);
}

/// Consumer-group deliveries after the first (`redeliveries`) and events
/// sent to the dead-letter topic (`dead_letters`), as this bus led the
/// group.
#[inline]
pub(crate) fn group(topic: &str, group: &str, redeliveries: u64, dead_letters: u64) {
    #[cfg(feature = "metrics")]
    {
        let labels = [
            ("messaging.destination.name", topic.to_owned()),
            ("messaging.consumer.group.name", group.to_owned()),
        ];
        if redeliveries > 0 {
            metrics::counter!("xbus.group.redeliveries", &labels).increment(redeliveries);
        }
        if dead_letters > 0 {
            metrics::counter!("xbus.group.dead_letters", &labels).increment(dead_letters);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (topic, group, redeliveries, dead_letters);
}

/// The `error.type` of a failed call: the [`RequestError`] variant, in
/// snake case.
#[cfg(feature = "metrics")]
fn request_error_type(error: &RequestError) -> &'static str {
    match error {
        RequestError::InvalidTarget { .. } => "invalid_target",
        RequestError::Encode(_) => "encode",
        RequestError::InvalidMethod { .. } => "invalid_method",
        RequestError::InvalidHeader(_) => "invalid_header",
        RequestError::PayloadTooLarge { .. } => "payload_too_large",
        RequestError::TimedOut { .. } => "timed_out",
        RequestError::NoResponder { .. } => "no_responder",
        RequestError::Remote { .. } => "remote",
        RequestError::Rejected { .. } => "rejected",
        RequestError::UnknownMethod { .. } => "unknown_method",
        RequestError::Overloaded { .. } => "overloaded",
        RequestError::Forbidden { .. } => "forbidden",
        RequestError::HandlerFailed { .. } => "handler_failed",
        RequestError::BadResponse { .. } => "bad_response",
        RequestError::Server { .. } => "server",
        RequestError::Disconnected { .. } => "disconnected",
    }
}

#[cfg(feature = "metrics")]
mod imp {
    use std::sync::Once;
    use std::time::Duration;

    use metrics::{Label, Unit, counter, describe_counter, describe_gauge, describe_histogram};

    use super::{Outgoing, SYSTEM};

    pub fn sent(kind: Outgoing, topic: &str, elapsed: Duration, error: Option<&'static str>) {
        describe();
        let mut labels = vec![
            Label::from_static_parts("messaging.system", SYSTEM),
            Label::from_static_parts("messaging.operation.name", kind.name()),
            Label::new("messaging.destination.name", topic.to_owned()),
        ];
        if let Some(error) = error {
            labels.push(Label::from_static_parts("error.type", error));
        }
        counter!("messaging.client.sent.messages", labels.iter()).increment(1);
        metrics::histogram!("messaging.client.operation.duration", labels)
            .record(elapsed.as_secs_f64());
    }

    pub fn consumed(topic: &str, group: Option<&str>) {
        describe();
        let mut labels = vec![
            Label::from_static_parts("messaging.system", SYSTEM),
            Label::from_static_parts("messaging.operation.name", "receive"),
            Label::new("messaging.destination.name", topic.to_owned()),
        ];
        if let Some(group) = group {
            labels.push(Label::new(
                "messaging.consumer.group.name",
                group.to_owned(),
            ));
        }
        counter!("messaging.client.consumed.messages", labels).increment(1);
    }

    pub fn called(method: &str, elapsed: Duration, error: Option<&'static str>) {
        describe();
        metrics::histogram!("rpc.client.call.duration", rpc_labels(method, error))
            .record(elapsed.as_secs_f64());
    }

    pub fn handled(method: &str, elapsed: Duration, error: Option<&'static str>) {
        describe();
        metrics::histogram!("rpc.server.call.duration", rpc_labels(method, error))
            .record(elapsed.as_secs_f64());
    }

    fn rpc_labels(method: &str, error: Option<&'static str>) -> Vec<Label> {
        let mut labels = vec![
            Label::from_static_parts("rpc.system.name", SYSTEM),
            Label::new("rpc.method", method.to_owned()),
        ];
        if let Some(error) = error {
            labels.push(Label::from_static_parts("error.type", error));
        }
        labels
    }

    /// Describes every metric to the recorder, once per process.
    pub fn describe() {
        static DESCRIBED: Once = Once::new();
        DESCRIBED.call_once(|| {
            describe_counter!(
                "messaging.client.sent.messages",
                "Events published or sent (with error.type when it failed)"
            );
            describe_histogram!(
                "messaging.client.operation.duration",
                Unit::Seconds,
                "From publish/send to the server's confirmation"
            );
            describe_counter!(
                "messaging.client.consumed.messages",
                "Events handed to a subscription, inbox or consumer-group consumer"
            );
            describe_histogram!(
                "rpc.client.call.duration",
                Unit::Seconds,
                "Calls this bus made, until the answer"
            );
            describe_histogram!(
                "rpc.server.call.duration",
                Unit::Seconds,
                "Calls this bus's handlers answered, from arrival to answer"
            );
            describe_gauge!(
                "xbus.rpc.client.active_calls",
                "Calls made and not answered yet"
            );
            describe_gauge!("xbus.rpc.server.active_calls", "Handlers running now");
            describe_counter!(
                "xbus.rpc.server.refused",
                "Incoming calls refused before a handler ran"
            );
            describe_counter!(
                "xbus.inbox.refused",
                "Direct events from accounts not allowed, dropped unread"
            );
            describe_counter!("xbus.connection.reconnect_attempts", "Reconnect attempts");
            describe_counter!(
                "xbus.connection.resumptions",
                "Reconnects that resumed the session (XEP-0198)"
            );
            describe_counter!(
                "xbus.connection.session_resets",
                "Reconnects with a new session"
            );
            describe_counter!("xbus.connection.failovers", "Moves to another server");
            describe_counter!(
                "xbus.buffer.dropped",
                "Events dropped by full DropOldest buffers"
            );
            describe_counter!(
                "xbus.group.redeliveries",
                "Consumer-group deliveries after the first, made as the group's leader"
            );
            describe_counter!(
                "xbus.group.dead_letters",
                "Consumer-group events published to the dead-letter topic"
            );
        });
    }
}
