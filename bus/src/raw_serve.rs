//! Serving a method without a request type: [`Bus::serve_raw`], the
//! untyped counterpart of [`Bus::serve`], for tools, bridges and mocks
//! (`xbus reply`).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use crate::allow::Allow;
use crate::bus::Bus;
use crate::event::validate_topic;
use crate::request::{RpcError, ServeError};
use crate::rpc::{self, RawRequest, RawResponse};
use crate::serve::{self, Call, Context, ErasedHandler};

/// Answers calls of one method as bytes: the untyped form of
/// [`Handler`](crate::Handler). Implement it, or pass an async closure
/// `|req: RawRequest, ctx: Context| async move { .. }` to
/// [`Bus::serve_raw`].
///
/// The handler gets the request as the caller sent it, in either encoding
/// and any schema version (unless [`ServeRawBuilder::version`] narrows it),
/// and returns the response serialized in the request's encoding
/// ([`RawRequest::encoding`]): the answer carries the request's encoding
/// and version, as the protocol requires.
#[async_trait::async_trait]
pub trait RawHandler: Send + Sync + 'static {
    /// Answers one call: the serialized response, or an application error
    /// the caller receives as [`RequestError::Remote`](crate::RequestError::Remote).
    async fn handle(&self, request: RawRequest, ctx: Context) -> Result<Vec<u8>, RpcError>;
}

#[async_trait::async_trait]
impl<F, Fut> RawHandler for F
where
    F: Fn(RawRequest, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static,
{
    async fn handle(&self, request: RawRequest, ctx: Context) -> Result<Vec<u8>, RpcError> {
        self(request, ctx).await
    }
}

impl Bus {
    /// Answers calls of `method` with `handler`, which gets the request as
    /// bytes and returns the response as bytes: the untyped form of
    /// [`Bus::serve`], for tools, bridges and mocks. Calls run, are limited
    /// and are allowed in as with [`Bus::serve`]; await the returned
    /// builder, or narrow who may call or the schema version first:
    ///
    /// ```no_run
    /// # async fn run(bus: xbus::Bus) -> Result<(), xbus::ServeError> {
    /// use xbus::{Context, Encoding, RawRequest, RpcError};
    ///
    /// // An echo of any request, in whatever encoding it came.
    /// bus.serve_raw("test.echo", |req: RawRequest, _ctx: Context| async move {
    ///     match req.encoding {
    ///         Encoding::Json | Encoding::MessagePack => Ok(req.data),
    ///         _ => Err(RpcError::new("unsupported", "an encoding I do not know")),
    ///     }
    /// })
    /// .version(1)
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// `method` must be a valid name (as a topic's, see
    /// [`validate_topic`](crate::validate_topic)), else awaiting fails with
    /// [`ServeError::InvalidMethod`].
    pub fn serve_raw<H: RawHandler>(
        &self,
        method: impl Into<String>,
        handler: H,
    ) -> ServeRawBuilder<H> {
        ServeRawBuilder {
            bus: self.clone(),
            method: method.into(),
            handler,
            allow: None,
            version: None,
        }
    }
}

/// A handler being set up by [`Bus::serve_raw`]; await it to start serving.
#[must_use = "a handler serves nothing until the builder is awaited"]
pub struct ServeRawBuilder<H> {
    bus: Bus,
    method: String,
    handler: H,
    allow: Option<Allow>,
    version: Option<u32>,
}

impl<H: RawHandler> ServeRawBuilder<H> {
    /// Who may call this method, instead of the bus's
    /// [`allow`](crate::BusConfigBuilder::allow) setting.
    pub fn allow(mut self, allow: Allow) -> Self {
        self.allow = Some(allow);
        self
    }

    /// Takes only calls of schema version `version`: the others are
    /// answered `bad-request` ([`RequestError::Rejected`](crate::RequestError::Rejected)),
    /// as a typed handler answers them. By default every version reaches
    /// the handler.
    pub fn version(mut self, version: u32) -> Self {
        self.version = Some(version);
        self
    }
}

impl<H> std::fmt::Debug for ServeRawBuilder<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeRawBuilder")
            .field("method", &self.method)
            .field("allow", &self.allow)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<H: RawHandler> IntoFuture for ServeRawBuilder<H> {
    type Output = Result<(), ServeError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let method = self.method;
            validate_topic(&method).map_err(|e| ServeError::InvalidMethod {
                method: method.clone(),
                reason: e.to_string(),
            })?;
            let bus = self.bus;
            let allow = self.allow.unwrap_or_else(|| bus.config().allow.clone());
            let handler = erase_raw(&bus, method.clone(), self.handler, self.version);
            bus.add_handler(method, handler, allow).await
        })
    }
}

/// Wraps `handler` as the task runs handlers: parses the request (a
/// failure, or a version other than `version`, is `bad-request`), runs the
/// handler, answers in the request's encoding and version.
fn erase_raw<H: RawHandler>(
    bus: &Bus,
    method: String,
    handler: H,
    version: Option<u32>,
) -> ErasedHandler {
    let (max_payload, default_timeout) = (bus.config().max_payload, bus.config().request_timeout);
    let handler = Arc::new(handler);
    let method: Arc<str> = method.into();
    Arc::new(move |call: Call| {
        let (handler, method) = (handler.clone(), method.clone());
        Box::pin(async move {
            let (raw, timeout) = RawRequest::from_element(&call.request, max_payload)
                .map_err(|e| rpc::bad_request(e.to_string()))?;
            if let Some(expected) = version.filter(|v| *v != raw.version) {
                return Err(rpc::bad_request(format!(
                    "the request has schema version {}, {method:?} takes version {expected}",
                    raw.version
                )));
            }
            let ctx = Context::of_call(
                call,
                raw.method.clone(),
                raw.headers.clone(),
                timeout,
                default_timeout,
            );
            let (encoding, version) = (raw.encoding, raw.version);
            let data = handler
                .handle(raw, ctx)
                .await
                .map_err(|e| rpc::app_error(&e))?;
            let response = RawResponse {
                encoding,
                version,
                data,
            };
            serve::answer(&response, &method, max_payload).map_err(rpc::handler_failed)
        })
    })
}
