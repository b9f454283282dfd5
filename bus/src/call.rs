//! RPC on the [`Bus`] handle: [`Bus::serve`] and [`Bus::request`].

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span};
use xmpp_parsers::jid::{FullJid, Jid};

use crate::allow::Allow;
use crate::bus::Bus;
use crate::command::{Answer, CallFailure, Command, Dropped, Route, Target};
use crate::event::validate_topic;
use crate::headers::Headers;
use crate::meter;
use crate::request::{Request, RequestError, ServeError};
use crate::rpc::{self, RawRequest, RawResponse};
use crate::serve::{self, Handler};
use crate::subscription::DropGuard;

impl Bus {
    /// Answers calls of `R` with `handler`: an async closure
    /// `|req: R, ctx: Context| async move { .. }` or a type implementing
    /// [`Handler<R>`]. One handler per method and bus; handlers of several
    /// methods run side by side.
    ///
    /// Each call runs as a task of its own, up to
    /// [`max_concurrent_handlers`](crate::BusConfigBuilder::max_concurrent_handlers)
    /// at once; a call beyond the limit is refused at once with
    /// [`RequestError::Overloaded`]. A handler that panics answers
    /// `internal-server-error` and the bus goes on serving. A request that
    /// does not decode is answered `bad-request` with the reason.
    ///
    /// Only the accounts the bus's [`Allow`] lets in may call: by default
    /// those of the bus's own domain (see
    /// [`BusConfigBuilder::allow`](crate::BusConfigBuilder::allow)). Others
    /// are answered `forbidden` before the handler runs. Await the returned
    /// builder, or give the method an allow-list of its own first:
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(xbus::Request, Serialize, Deserialize)]
    /// # #[request(method = "inventory.restock", response = ())]
    /// # struct Restock { sku: String }
    /// # async fn run(bus: xbus::Bus) -> Result<(), Box<dyn std::error::Error>> {
    /// bus.serve(|req: Restock, _ctx| async move { Ok(()) })
    ///     .allow(xbus::Allow::only(["purchasing@example.org"])?)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn serve<R: Request, H: Handler<R>>(&self, handler: H) -> ServeBuilder<R, H> {
        ServeBuilder {
            bus: self.clone(),
            handler,
            allow: None,
            request: PhantomData,
        }
    }

    /// Calls `target` with `request` and resolves to the handler's
    /// response. Await it, or set a timeout or headers first:
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # use std::time::Duration;
    /// # #[derive(xbus::Request, Serialize, Deserialize)]
    /// # #[request(method = "inventory.check", response = u32)]
    /// # struct CheckStock { sku: String }
    /// # async fn run(bus: xbus::Bus) -> Result<(), xbus::RequestError> {
    /// let level = bus
    ///     .request("inventory@example.org", CheckStock { sku: "A1".into() })
    ///     .timeout(Duration::from_millis(500))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// `target` is a service (a bare JID: the bus picks the online instance
    /// with the fewest calls in flight from this bus, in turn among equals,
    /// skipping [`Draining`](crate::Status::Draining) ones, and retries once
    /// on another instance if the one picked has just gone) or one instance
    /// (a full JID). With no instance online the call fails at once with
    /// [`RequestError::NoResponder`]. The first call to a service this bus
    /// has never seen first asks for its presence (see
    /// [`discovery_timeout`](crate::BusConfigBuilder::discovery_timeout)).
    pub fn request<R: Request>(&self, target: &str, request: R) -> RequestBuilder<R> {
        RequestBuilder {
            bus: self.clone(),
            target: target.to_owned(),
            request,
            timeout: None,
            headers: Headers::new(),
        }
    }

    /// Calls `target` with an already serialized request: the untyped
    /// form, for tools and bridges. `timeout` defaults to the configured
    /// request timeout. Returns the instance that answered and its
    /// response.
    pub async fn request_raw(
        &self,
        target: &str,
        mut request: RawRequest,
        timeout: Option<Duration>,
    ) -> Result<(FullJid, RawResponse), RequestError> {
        let method = request.method.clone();
        validate_topic(&method).map_err(|e| RequestError::InvalidMethod {
            method: method.clone(),
            reason: e.to_string(),
        })?;
        request.headers.validate()?;
        let max = self.config().max_payload;
        if request.data.len() > max {
            return Err(RequestError::PayloadTooLarge {
                size: request.data.len(),
                max,
            });
        }
        let target = match Jid::from_str(target) {
            Ok(jid) => match jid.try_into_full() {
                Ok(full) => Target::Instance(full),
                Err(bare) => Target::Service(bare),
            },
            Err(e) => {
                return Err(RequestError::InvalidTarget {
                    target: target.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        let timeout = timeout.unwrap_or(self.config().request_timeout);
        let span = info_span!("request", method, to = %target);
        crate::trace::inject(&span, &mut request.headers);
        let in_flight = meter::InFlight::start(meter::Side::Client, &method);
        let started = Instant::now();
        let outcome = self
            .call(target, request.to_element(timeout), method.clone(), timeout)
            .instrument(span)
            .await;
        drop(in_flight);
        meter::called(&method, started.elapsed(), outcome.as_ref().map(|_| ()));
        outcome
    }

    async fn call(
        &self,
        target: Target,
        element: xmpp_parsers::minidom::Element,
        method: String,
        timeout: Duration,
    ) -> Result<(FullJid, RawResponse), RequestError> {
        static TOKENS: AtomicU64 = AtomicU64::new(1);
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        let route = Route::default();
        let instance = || {
            let sent_to = route.lock().expect("lock poisoned");
            sent_to.as_ref().map(FullJid::to_string)
        };
        let timed_out = || RequestError::TimedOut {
            method: method.clone(),
            to: target.to_string(),
            after: timeout,
            instance: instance(),
        };
        let disconnected = || RequestError::Disconnected {
            method: method.clone(),
            instance: instance(),
        };
        let (reply, answer) = oneshot::channel();
        let command = self.command(Command::Call {
            target: target.clone(),
            method: method.clone(),
            token,
            request: element,
            reply,
            route: route.clone(),
        });
        match tokio::time::timeout_at(deadline, command).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(())) => return Err(disconnected()),
            Ok(Ok(())) => {}
        }
        // Until the answer comes, dropping this guard (a timeout, or the
        // caller's future dropped) makes the task forget the call.
        let mut guard = self.guard(Dropped::Call { token });
        let outcome = tokio::time::timeout_at(deadline, answer).await;
        let outcome = match outcome {
            Err(_) => {
                debug!("no answer within the timeout");
                return Err(timed_out());
            }
            Ok(Err(_)) => return Err(disconnected()),
            Ok(Ok(outcome)) => outcome,
        };
        DropGuard::defuse(&mut guard);
        drop(guard);
        let Answer { from, result } = match outcome {
            Ok(answer) => answer,
            Err(CallFailure::NoResponder { reason }) => {
                return Err(RequestError::NoResponder {
                    method,
                    to: target.to_string(),
                    reason,
                });
            }
            Err(CallFailure::Disconnected) => return Err(disconnected()),
        };
        match result {
            Ok(payload) => {
                let max = self.config().max_payload;
                let response =
                    RawResponse::from_result(payload.as_ref(), max).map_err(|error| {
                        RequestError::BadResponse {
                            method: method.clone(),
                            from: from.to_string(),
                            error,
                        }
                    })?;
                debug!(%from, "answered");
                Ok((from, response))
            }
            Err(error) => Err(rpc::classify(&method, from.as_str(), &error)),
        }
    }
}

/// A handler being set up by [`Bus::serve`]; await it to start serving.
#[must_use = "a handler serves nothing until the builder is awaited"]
pub struct ServeBuilder<R, H> {
    bus: Bus,
    handler: H,
    allow: Option<Allow>,
    request: PhantomData<fn(R)>,
}

impl<R: Request, H: Handler<R>> ServeBuilder<R, H> {
    /// Who may call this method, instead of the bus's
    /// [`allow`](crate::BusConfigBuilder::allow) setting.
    pub fn allow(mut self, allow: Allow) -> Self {
        self.allow = Some(allow);
        self
    }
}

impl<R, H> std::fmt::Debug for ServeBuilder<R, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeBuilder")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl<R: Request, H: Handler<R>> IntoFuture for ServeBuilder<R, H> {
    type Output = Result<(), ServeError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let bus = self.bus;
            let config = bus.config();
            let allow = self.allow.unwrap_or_else(|| config.allow.clone());
            let handler =
                serve::erase::<R, H>(self.handler, config.max_payload, config.request_timeout);
            bus.add_handler(R::METHOD.to_owned(), handler, allow).await
        })
    }
}

impl Bus {
    /// Has the task answer calls of `method` with `handler`.
    pub(crate) async fn add_handler(
        &self,
        method: String,
        handler: serve::ErasedHandler,
        allow: Allow,
    ) -> Result<(), ServeError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Serve {
            method,
            handler,
            allow,
            reply,
        })
        .await
        .map_err(|_| ServeError::Closed)?;
        answer.await.map_err(|_| ServeError::Closed)?
    }
}

/// A call being set up by [`Bus::request`]; await it to send it.
#[must_use = "a request does nothing until it is awaited"]
#[derive(Debug)]
pub struct RequestBuilder<R> {
    bus: Bus,
    target: String,
    request: R,
    timeout: Option<Duration>,
    headers: Headers,
}

impl<R: Request> RequestBuilder<R> {
    /// Waits at most `timeout` for the answer instead of the configured
    /// request timeout (10 s by default). The callee sees the deadline in
    /// its [`Context`](crate::Context).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends XEP-0131 headers (trace ids, ...) with the request.
    pub fn headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

impl<R: Request> IntoFuture for RequestBuilder<R> {
    type Output = Result<R::Response, RequestError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut raw = RawRequest::encode(&self.request)?;
            raw.headers = self.headers;
            let (from, response) = self
                .bus
                .request_raw(&self.target, raw, self.timeout)
                .await?;
            response
                .decode::<R>()
                .map_err(|error| RequestError::BadResponse {
                    method: R::METHOD.to_owned(),
                    from: from.to_string(),
                    error,
                })
        })
    }
}
