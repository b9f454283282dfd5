//! W3C trace context (`traceparent`, `tracestate`) carried in XEP-0131
//! headers, so that a trace crosses every hop of the bus.
//!
//! With the cargo feature `otel`, the sending side writes the trace
//! context of its `publish`, `send` or `request` span into the payload's
//! headers, and the receiving side makes its `delivery`, `job` or
//! `handler` span a child of the context it finds there. Without the
//! feature every function here is empty and inlined away.
//!
//! The spans are [`tracing`] spans; `tracing-opentelemetry` links them to
//! OpenTelemetry contexts, and the W3C [`TraceContextPropagator`] writes
//! and reads the header values. See `docs/OBSERVABILITY.md`.
//!
//! [`TraceContextPropagator`]: https://docs.rs/opentelemetry_sdk/latest/opentelemetry_sdk/propagation/struct.TraceContextPropagator.html

use tracing::Span;
use xmpp_parsers::minidom::Element;

use crate::headers::Headers;

/// The header that carries the W3C `traceparent`
/// (`00-<trace id>-<parent span id>-<flags>`).
pub const TRACEPARENT: &str = "traceparent";

/// The header that carries the W3C `tracestate`, when it is not empty.
pub const TRACESTATE: &str = "tracestate";

/// Adds the trace context of `span` to `headers`, unless the caller set a
/// `traceparent` of its own or `span` belongs to no OpenTelemetry trace.
#[inline]
pub(crate) fn inject(span: &Span, headers: &mut Headers) {
    #[cfg(feature = "otel")]
    otel::inject(span, headers);
    #[cfg(not(feature = "otel"))]
    let _ = (span, headers);
}

/// Makes `span` continue the trace whose context `headers` carry, if any.
#[cfg(feature = "otel")]
fn continue_from(span: &Span, headers: &Headers) {
    otel::continue_from(span, &otel::FromHeaders(headers));
}

/// Makes `span` continue the trace whose context the SHIM `<headers/>`
/// children of `parent` carry (an incoming `<request/>`), without copying
/// the headers.
#[inline]
pub(crate) fn continue_from_element(span: &Span, parent: &Element) {
    #[cfg(feature = "otel")]
    otel::continue_from(span, &otel::FromElement(parent));
    #[cfg(not(feature = "otel"))]
    let _ = (span, parent);
}

/// The span of one event handed to the application: a subscription's or
/// inbox's `delivery`, a consumer group's `job`. It continues the
/// publisher's trace and stays open as long as the delivery (or a clone of
/// the span) lives. Without the feature `otel` it is empty and takes no
/// space.
#[derive(Debug, Clone)]
pub(crate) struct ReceiveSpan(#[cfg(feature = "otel")] pub(crate) Span);

impl Default for ReceiveSpan {
    /// No span.
    fn default() -> ReceiveSpan {
        #[cfg(feature = "otel")]
        return ReceiveSpan(Span::none());
        #[cfg(not(feature = "otel"))]
        ReceiveSpan()
    }
}

impl ReceiveSpan {
    /// The `delivery` span of an event on `topic`.
    #[inline]
    pub fn delivery(topic: &str, item_id: Option<&str>, headers: &Headers) -> ReceiveSpan {
        #[cfg(feature = "otel")]
        {
            let span = tracing::info_span!("delivery", topic, item_id);
            continue_from(&span, headers);
            ReceiveSpan(span)
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = (topic, item_id, headers);
            ReceiveSpan()
        }
    }

    /// The `job` span of a consumer group's delivery.
    #[inline]
    pub fn job(
        group: &str,
        topic: &str,
        item: &str,
        attempt: u32,
        headers: &Headers,
    ) -> ReceiveSpan {
        #[cfg(feature = "otel")]
        {
            let span = tracing::info_span!("job", group, topic, item, attempt);
            continue_from(&span, headers);
            ReceiveSpan(span)
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = (group, topic, item, attempt, headers);
            ReceiveSpan()
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use xmpp_parsers::minidom::Element;

    use super::TRACEPARENT;
    use crate::headers::{Headers, NS_SHIM};

    pub fn inject(span: &Span, headers: &mut Headers) {
        if span.is_disabled() || headers.get(TRACEPARENT).is_some() {
            return;
        }
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(&cx, &mut IntoHeaders(headers));
        }
    }

    pub fn continue_from(span: &Span, carrier: &dyn Extractor) {
        if span.is_disabled() || carrier.get(TRACEPARENT).is_none() {
            return;
        }
        let cx = TraceContextPropagator::new().extract(carrier);
        if cx.span().span_context().is_valid() {
            // Fails only when no OpenTelemetry layer is installed: then
            // there is no trace to continue either.
            let _ = span.set_parent(cx);
        }
    }

    struct IntoHeaders<'a>(&'a mut Headers);

    impl Injector for IntoHeaders<'_> {
        fn set(&mut self, key: &str, value: String) {
            // The propagator writes an empty `tracestate`; it carries nothing.
            if !value.is_empty() {
                self.0.insert(key, value);
            }
        }
    }

    pub struct FromHeaders<'a>(pub &'a Headers);

    impl Extractor for FromHeaders<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key)
        }

        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(name, _)| name).collect()
        }
    }

    /// The SHIM headers of an element, read in place.
    pub struct FromElement<'a>(pub &'a Element);

    impl FromElement<'_> {
        fn headers(&self) -> impl Iterator<Item = &Element> {
            self.0
                .children()
                .filter(|c| c.is("headers", NS_SHIM))
                .flat_map(|h| h.children().filter(|c| c.is("header", NS_SHIM)))
        }
    }

    impl Extractor for FromElement<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.headers()
                .find(|h| h.attr("name") == Some(key))
                .map(|h| h.texts().next().unwrap_or_default())
        }

        fn keys(&self) -> Vec<&str> {
            self.headers().filter_map(|h| h.attr("name")).collect()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_headers_in_place_like_a_copy() {
            let mut headers = Headers::new();
            headers
                .insert(
                    TRACEPARENT,
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
                .insert("other", "x");
            let parent = Element::builder("request", crate::codec::NS)
                .append(headers.to_element())
                .build();
            let cx = TraceContextPropagator::new().extract(&FromElement(&parent));
            assert_eq!(
                cx.span().span_context().trace_id().to_string(),
                "0af7651916cd43dd8448eb211c80319c"
            );
            assert_eq!(FromElement(&parent).keys(), [TRACEPARENT, "other"]);
            let bad = Headers::from_iter([(TRACEPARENT, "00-zz-b7ad6b7169203331-01")]);
            let cx = TraceContextPropagator::new().extract(&FromHeaders(&bad));
            assert!(!cx.span().span_context().is_valid());
        }
    }
}
