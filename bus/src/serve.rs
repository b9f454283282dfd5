//! Serving requests: the [`Handler`] trait, the [`Context`] a handler gets,
//! and the type-erased form the connection task runs.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::headers::Headers;
use crate::request::{Request, RpcError};
use crate::rpc::{self, RawRequest, RawResponse};

/// What a handler knows about the call it answers.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) from: FullJid,
    pub(crate) method: String,
    pub(crate) headers: Headers,
    pub(crate) deadline: Instant,
}

impl Context {
    /// The caller's full JID, as stamped by the server (not spoofable by
    /// the caller).
    pub fn from(&self) -> &FullJid {
        &self.from
    }

    /// The method called.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The XEP-0131 headers the caller sent.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// When the caller stops waiting: the call's arrival plus the timeout
    /// the caller announced (the callee's default request timeout if it
    /// announced none). An answer after it is dropped by the caller.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left until [`deadline`](Self::deadline); zero once it passed.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Answers calls of one request type. Implement it for a service struct,
/// or pass an async closure `|req: R, ctx: Context| async move { .. }`
/// to [`Bus::serve`](crate::Bus::serve).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use xbus::{Context, Handler, Request, RpcError};
///
/// #[derive(Request, Serialize, Deserialize)]
/// #[request(method = "inventory.check", response = u32)]
/// struct CheckStock {
///     sku: String,
/// }
///
/// struct Inventory;
///
/// #[xbus::async_trait]
/// impl Handler<CheckStock> for Inventory {
///     async fn handle(&self, req: CheckStock, _ctx: Context) -> Result<u32, RpcError> {
///         match req.sku.as_str() {
///             "A1" => Ok(3),
///             other => Err(RpcError::new("unknown_sku", format!("no such SKU {other}"))),
///         }
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Handler<R: Request>: Send + Sync + 'static {
    /// Answers one call: a response, or an application error the caller
    /// receives as [`RequestError::Remote`](crate::RequestError::Remote).
    async fn handle(&self, request: R, ctx: Context) -> Result<R::Response, RpcError>;
}

#[async_trait::async_trait]
impl<R, F, Fut> Handler<R> for F
where
    R: Request,
    F: Fn(R, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Response, RpcError>> + Send + 'static,
{
    async fn handle(&self, request: R, ctx: Context) -> Result<R::Response, RpcError> {
        self(request, ctx).await
    }
}

/// One incoming call, as the task hands it to a handler.
pub(crate) struct Call {
    pub from: FullJid,
    pub request: Element,
    pub arrived: Instant,
}

/// A handler with its request type erased: request element in, response
/// element or stanza error out.
pub(crate) type ErasedHandler =
    Arc<dyn Fn(Call) -> BoxFuture<'static, Result<Element, StanzaError>> + Send + Sync>;

/// Wraps `handler` so the task can run it without knowing `R`: decodes the
/// request (a failure is `bad-request`), runs the handler, encodes the
/// response (a failure is `internal-server-error`).
pub(crate) fn erase<R: Request, H: Handler<R>>(
    handler: H,
    max_payload: usize,
    default_timeout: Duration,
) -> ErasedHandler {
    let handler = Arc::new(handler);
    Arc::new(move |call: Call| {
        let handler = handler.clone();
        Box::pin(async move {
            let (raw, timeout) = RawRequest::from_element(&call.request, max_payload)
                .map_err(|e| rpc::bad_request(e.to_string()))?;
            let request = raw
                .decode::<R>()
                .map_err(|e| rpc::bad_request(e.to_string()))?;
            let ctx = Context::of_call(call, raw.method, raw.headers, timeout, default_timeout);
            let response = handler
                .handle(request, ctx)
                .await
                .map_err(|e| rpc::app_error(&e))?;
            let raw = RawResponse::encode::<R>(&response)
                .map_err(|e| rpc::handler_failed(format!("the response did not encode: {e}")))?;
            answer(&raw, R::METHOD, max_payload).map_err(rpc::handler_failed)
        })
    })
}

impl Context {
    /// The context of `call`, whose request announced `timeout`.
    pub(crate) fn of_call(
        call: Call,
        method: String,
        headers: Headers,
        timeout: Option<Duration>,
        default_timeout: Duration,
    ) -> Context {
        Context {
            from: call.from,
            method,
            headers,
            // A caller's timeout is capped at a day, so that no value can
            // overflow the deadline.
            deadline: call.arrived
                + timeout
                    .unwrap_or(default_timeout)
                    .min(Duration::from_secs(24 * 3600)),
        }
    }
}

/// The `<response/>` answering a call of `method`, or why it cannot be
/// sent (the caller gets `internal-server-error`): it exceeds the maximum
/// payload.
pub(crate) fn answer(
    raw: &RawResponse,
    method: &str,
    max_payload: usize,
) -> Result<Element, String> {
    if raw.data.len() > max_payload {
        return Err(format!(
            "the response of {} bytes exceeds the maximum payload of {max_payload} bytes",
            raw.data.len()
        ));
    }
    Ok(raw.to_element(method))
}

/// Runs an erased handler, turning a panic into `internal-server-error`.
pub(crate) async fn run(handler: ErasedHandler, call: Call) -> Result<Element, StanzaError> {
    match AssertUnwindSafe(handler(call)).catch_unwind().await {
        Ok(answer) => answer,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(rpc::handler_failed(format!(
                "the handler panicked: {message}"
            )))
        }
    }
}
