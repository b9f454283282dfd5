//! Calls in both directions: running handlers for incoming `<request/>`s,
//! and routing this bus's calls to an instance, retrying once elsewhere if
//! the instance has just gone.

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span};
use xmpp_parsers::iq::{IqHeader, IqPayload};
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use super::{PendingIq, Task, answer};
use crate::allow::Allow;
use crate::command::{Answer, CallFailure, CallOutcome, Route, Target};
use crate::meter;
use crate::request::ServeError;
use crate::rpc;
use crate::serve::{self, Call, ErasedHandler};

/// A call this bus makes, until it is answered.
pub(crate) struct OutgoingCall {
    pub target: Target,
    pub method: String,
    pub request: Element,
    pub reply: oneshot::Sender<CallOutcome>,
    /// Names the call's IQs: `xc<token>.<attempt>`.
    pub token: u64,
    /// Instances tried so far (a call to a service is retried once).
    pub tried: Vec<FullJid>,
    /// Tells the caller where the call went.
    pub route: Route,
}

impl OutgoingCall {
    pub fn new(
        target: Target,
        method: String,
        token: u64,
        request: Element,
        reply: oneshot::Sender<CallOutcome>,
        route: Route,
    ) -> OutgoingCall {
        OutgoingCall {
            target,
            method,
            request,
            reply,
            token,
            tried: Vec::new(),
            route,
        }
    }

    /// The id of the IQ for attempt `n` (1 or 2).
    pub fn iq_id(token: u64, attempt: usize) -> String {
        format!("xc{token}.{attempt}")
    }

    pub fn fail(self, failure: CallFailure) {
        let _ = self.reply.send(Err(failure));
    }

    fn service(&self) -> Option<&BareJid> {
        match &self.target {
            Target::Service(service) => Some(service),
            Target::Instance(_) => None,
        }
    }
}

impl Task {
    pub(super) fn add_handler(
        &mut self,
        method: String,
        handler: ErasedHandler,
        allow: Allow,
    ) -> Result<(), ServeError> {
        if self.handlers.contains_key(&method) {
            return Err(ServeError::AlreadyServed { method });
        }
        debug!(method, "serving");
        self.handlers.insert(method, (handler, allow));
        Ok(())
    }

    /// Answers a call with `error` before any handler ran.
    async fn refuse_call(&mut self, header: IqHeader, error: StanzaError) {
        self.counters.refused_calls += 1;
        meter::refused(meter::answer_error_type(&error));
        self.answer_iq(header, IqPayload::Error(error)).await;
    }

    /// An IQ set with a `<request/>`: refuse it at once, or run its handler
    /// as a task of its own under the concurrency limit.
    pub(super) async fn on_incoming_call(&mut self, header: IqHeader, request: Element) {
        let arrived = Instant::now();
        let from = match header.from.clone().map(Jid::try_into_full) {
            Some(Ok(from)) => from,
            _ => {
                let error = rpc::bad_request("a call must come from a full JID".into());
                self.refuse_call(header, error).await;
                return;
            }
        };
        if self.offline_announced {
            // Closing: the caller goes to another instance.
            let error = StanzaError::new(
                xmpp_parsers::stanza_error::ErrorType::Cancel,
                xmpp_parsers::stanza_error::DefinedCondition::ServiceUnavailable,
                "en",
                "this instance is closing",
            );
            self.refuse_call(header, error).await;
            return;
        }
        let method = request.attr("method").unwrap_or_default().to_owned();
        let served = self.handlers.get(&method);
        // Checked first: a caller that may not call learns nothing, not
        // even whether the method is served.
        let allow = served.map_or(&self.allow, |(_, allow)| allow);
        let own = self.bound().to_bare();
        if !allow.allows_for(&own, &from.to_bare()) {
            let error = rpc::forbidden(&method, &from, &allow.describe(&own));
            debug!(method, %from, "call refused: the caller is not allowed");
            self.counters.forbidden_calls += 1;
            self.refuse_call(header, error).await;
            return;
        }
        let Some(handler) = served.map(|(handler, _)| handler.clone()) else {
            debug!(method, %from, "call to a method without handler");
            let error = if method.is_empty() {
                rpc::bad_request("the request has no method attribute".into())
            } else {
                rpc::unknown_method(&method)
            };
            self.refuse_call(header, error).await;
            return;
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            debug!(method, %from, "all handler slots busy; call refused");
            let error = rpc::overloaded(self.max_handlers);
            self.refuse_call(header, error).await;
            return;
        };
        let answers = self.answers_tx.clone();
        let span = info_span!("handler", method, %from, id = header.id);
        crate::trace::continue_from_element(&span, &request);
        let call = Call {
            from,
            request,
            arrived,
        };
        let in_flight = meter::InFlight::start(meter::Side::Server, &method);
        tokio::spawn(
            async move {
                let outcome = serve::run(handler, call).await;
                let error = outcome.as_ref().err().map(meter::answer_error_type);
                meter::handled(&method, arrived.elapsed(), error);
                drop(in_flight);
                let response = match outcome {
                    Ok(element) => IqPayload::Result(Some(element)),
                    Err(error) => {
                        debug!(?error.defined_condition, "call answered with an error");
                        IqPayload::Error(error)
                    }
                };
                // The permit is released after the answer is queued, so the
                // answers waiting to be sent are bounded by the limit too.
                let _ = answers.send(Box::new(answer(header, response)));
                drop(permit);
            }
            .instrument(span),
        );
    }

    /// Sends a call to its instance, or picks one of the service.
    pub(super) async fn start_call(&mut self, call: OutgoingCall) {
        match call.target.clone() {
            Target::Instance(to) => self.send_call(to, call).await,
            Target::Service(service) => {
                if self.directory.must_discover(&service) {
                    self.discover(&service).await;
                    self.directory.park_call(&service, call);
                } else {
                    self.route_call(service, call).await;
                }
            }
        }
    }

    /// Sends a call to the least busy online instance of `service` not
    /// tried yet; with none, it fails at once.
    pub(super) async fn route_call(&mut self, service: BareJid, call: OutgoingCall) {
        // This bus is an instance of its own service too, but only a
        // candidate for methods it serves.
        let mut skip = call.tried.clone();
        if !self.handlers.contains_key(&call.method) {
            skip.push(self.bound());
        }
        match self.directory.pick(&service, &skip) {
            Some(to) => self.send_call(to, call).await,
            None => {
                let reason = self.directory.why_none(&service, !call.tried.is_empty());
                call.fail(CallFailure::NoResponder { reason });
            }
        }
    }

    async fn send_call(&mut self, to: FullJid, mut call: OutgoingCall) {
        if call.reply.is_closed() {
            return; // the caller gave up while the call was parked
        }
        self.directory.call_started(&to);
        // Keep the request only while a retry is possible.
        let request = if call.service().is_some() && call.tried.is_empty() {
            call.request.clone()
        } else {
            std::mem::replace(
                &mut call.request,
                Element::bare("request", crate::codec::NS),
            )
        };
        call.tried.push(to.clone());
        *call.route.lock().expect("lock poisoned") = Some(to.clone());
        debug!(method = call.method, %to, "call sent");
        let id = OutgoingCall::iq_id(call.token, call.tried.len());
        self.send_iq_as(
            id,
            Jid::from(to.clone()),
            true,
            request,
            PendingIq::Call { to, call },
        )
        .await;
    }

    pub(super) async fn on_call_answer(
        &mut self,
        from: FullJid,
        call: OutgoingCall,
        result: Result<Option<Element>, StanzaError>,
    ) {
        self.directory.call_ended(&from);
        if let (Err(error), Some(service)) = (&result, call.service())
            && rpc::is_unavailable(error)
            && call.tried.len() == 1
        {
            debug!(method = call.method, %from, "instance unavailable; retrying on another");
            self.directory.gone(&from).await;
            let service = service.clone();
            self.route_call(service, call).await;
            return;
        }
        let _ = call.reply.send(Ok(Answer { from, result }));
    }

    /// The caller gave up: forget the call's IQ.
    pub(super) fn cancel_call(&mut self, token: u64) {
        for attempt in 1..=2 {
            if let Some(PendingIq::Call { to, .. }) =
                self.pending.remove(&OutgoingCall::iq_id(token, attempt))
            {
                self.directory.call_ended(&to);
            }
        }
    }
}
