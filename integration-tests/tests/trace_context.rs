//! W3C trace context across every hop (feature `otel`), against every
//! server of the matrix: a caller's `request`, `publish` and `send` carry
//! `traceparent` headers, and the instance's `handler` span, the
//! subscriber's `delivery` spans and a consumer group's `job` span continue
//! the caller's trace, each a child of the span that sent it. Spans are
//! read back from OpenTelemetry's in-memory exporter.

mod common;

use std::time::Duration;

use common::{bus, matrix, next, start, within};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use xbus::{ConsumeOptions, Context, Event, Request, RpcError};

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "trace.order_placed")]
struct OrderPlaced {
    id: u64,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "trace.reserve", response = u64)]
struct Reserve {
    id: u64,
}

/// Routes this process's spans to an in-memory exporter (each test file
/// is a process of its own; this one has one test).
fn exporter() -> InMemorySpanExporter {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("trace_context")));
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    exporter
}

/// The finished span called `name` in trace `trace` (with attribute
/// `topic` or `method` = `on` when given), waiting for it to end.
async fn span(
    exporter: &InMemorySpanExporter,
    trace: TraceId,
    name: &str,
    on: Option<&str>,
) -> SpanData {
    within(&format!("span {name} on {on:?} ended"), async {
        loop {
            let spans = exporter.get_finished_spans().expect("spans");
            let found = spans.into_iter().find(|s| {
                s.span_context.trace_id() == trace
                    && s.name == name
                    && on.is_none_or(|on| {
                        s.attributes.iter().any(|kv| {
                            (kv.key == Key::from_static_str("topic")
                                || kv.key == Key::from_static_str("method"))
                                && kv.value == Value::from(on.to_owned())
                        })
                    })
            });
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn child_of(child: &SpanData, parent: &SpanData) {
    assert_eq!(
        child.parent_span_id,
        parent.span_context.span_id(),
        "{}: the {} span's parent is the {} span",
        common::tag(),
        child.name,
        parent.name
    );
    assert!(
        child.parent_span_is_remote,
        "{}: {} continues a remote parent",
        common::tag(),
        child.name
    );
}

#[tokio::test]
async fn trace_crosses_every_hop() {
    let exporter = exporter();
    matrix(async |kind| {
        let server = start(kind);
        let caller = bus(&*server).await;
        let instance = bus(&*server).await;
        let subscriber = bus(&*server).await;
        within(
            "serve",
            instance.serve(|req: Reserve, _ctx: Context| async move {
                // The handler's own spans join the caller's trace.
                let _inner = tracing::info_span!("reserving").entered();
                Ok::<_, RpcError>(req.id)
            }),
        )
        .await
        .expect("serve");
        let mut topic = within("subscribe", subscriber.subscribe::<OrderPlaced>())
            .await
            .expect("subscribe");
        let mut inbox = within("inbox", subscriber.inbox::<OrderPlaced>())
            .await
            .expect("inbox");
        let mut jobs = within(
            "consume",
            subscriber.consume::<OrderPlaced>("billing", ConsumeOptions::new()),
        )
        .await
        .expect("consume");

        let root = tracing::info_span!("checkout", kind = kind.name());
        let trace = root.context().span().span_context().trace_id();
        assert_ne!(trace, TraceId::INVALID);
        async {
            let reserved = caller
                .request(&instance.jid().to_string(), Reserve { id: 7 })
                .await
                .expect("call");
            assert_eq!(reserved, 7);
            caller.publish(&OrderPlaced { id: 7 }).await.expect("publish");
            caller
                .send(&subscriber.jid().to_string(), &OrderPlaced { id: 8 })
                .await
                .expect("send");
        }
        .instrument(root.clone())
        .await;
        drop(root);

        // Handing the events over: each delivery span ends when the
        // delivery is dropped; the job's once it is settled.
        let delivery = next("topic delivery", &mut topic).await.expect("decodes");
        assert!(delivery.headers.get(xbus::TRACEPARENT).is_some());
        assert_eq!(delivery.span().context().span().span_context().trace_id(), trace);
        drop(delivery);
        let direct = next("inbox delivery", &mut inbox).await.expect("decodes");
        assert_eq!(direct.event.id, 8);
        drop(direct);
        let job = next("job", &mut jobs).await.expect("decodes");
        job.ack().expect("ack");

        let checkout = span(&exporter, trace, "checkout", None).await;
        let request = span(&exporter, trace, "request", Some("trace.reserve")).await;
        let handler = span(&exporter, trace, "handler", Some("trace.reserve")).await;
        let reserving = span(&exporter, trace, "reserving", None).await;
        let publish = span(&exporter, trace, "publish", Some("trace.order_placed")).await;
        let send = span(&exporter, trace, "send", Some("trace.order_placed")).await;
        assert_eq!(request.parent_span_id, checkout.span_context.span_id());
        assert_eq!(publish.parent_span_id, checkout.span_context.span_id());
        child_of(&handler, &request);
        assert_eq!(reserving.parent_span_id, handler.span_context.span_id());
        // Two delivery spans on the topic: the subscription's (parent: the
        // publish) and the inbox's (parent: the send).
        let deliveries: Vec<SpanData> = within("both deliveries", async {
            loop {
                let found: Vec<SpanData> = exporter
                    .get_finished_spans()
                    .expect("spans")
                    .into_iter()
                    .filter(|s| s.span_context.trace_id() == trace && s.name == "delivery")
                    .collect();
                if found.len() >= 2 {
                    return found;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let parents: Vec<SpanId> = deliveries.iter().map(|d| d.parent_span_id).collect();
        assert!(
            parents.contains(&publish.span_context.span_id())
                && parents.contains(&send.span_context.span_id()),
            "{}: one delivery under the publish, one under the send: {parents:?}",
            common::tag()
        );
        for delivery in &deliveries {
            assert!(delivery.parent_span_is_remote);
        }
        let job = span(&exporter, trace, "job", Some("trace.order_placed")).await;
        child_of(&job, &publish);
        eprintln!(
            "{}trace {trace}: checkout → request → handler → reserving; publish → delivery, job; send → delivery",
            common::tag()
        );

        drop((topic, inbox, jobs));
        for bus in [&caller, &instance, &subscriber] {
            within("close", bus.close()).await.expect("close");
        }
        exporter.reset();
    })
    .await;
}
