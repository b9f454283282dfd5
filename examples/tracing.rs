//! Tracing: one order followed through three services as one trace.
//!
//! ```sh
//! cargo run --example tracing
//! ```
//!
//! `orders` publishes an order; `billing`, subscribed to it, charges it and
//! calls `inventory` to reserve the stock. With xbus's feature `otel`, the
//! publish and the call carry W3C `traceparent` headers, and the receiving
//! `delivery` and `handler` spans continue the trace: the printed tree has
//! one trace id and all three services in it.
//!
//! The three buses share this process and an embedded server, so that the
//! example runs anywhere; the spans are the same across processes and
//! hosts. A real deployment installs an OTLP exporter where this example
//! keeps the spans in memory to print them.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info_span};
use tracing_subscriber::layer::SubscriberExt;
use xbus::{Bus, Context, Event, Request, RpcError};

/// An order was placed.
#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "orders.placed")]
struct OrderPlaced {
    id: u64,
    sku: String,
}

/// Reserves stock for an order; answers how many are left.
#[derive(Request, Serialize, Deserialize)]
#[request(method = "inventory.reserve", response = u32)]
struct Reserve {
    sku: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Spans go to OpenTelemetry through tracing-opentelemetry; here into
    // memory, to print them as a tree at the end.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("example"))),
    )?;

    let server = xbus_server::Server::start_local().await?;
    let orders = Bus::connect(server.bus_config("orders")?.build()?).await?;
    let billing = Bus::connect(server.bus_config("billing")?.build()?).await?;
    let inventory = Bus::connect(server.bus_config("inventory")?.build()?).await?;

    inventory
        .serve(|req: Reserve, _ctx: Context| {
            // Runs in xbus's `handler` span: this span joins the trace.
            async move { Ok::<_, RpcError>(41) }
                .instrument(info_span!("inventory: reserve stock", sku = req.sku))
        })
        .await?;

    let mut placed = billing.subscribe::<OrderPlaced>().await?;
    let to = inventory.jid().to_bare().to_string();
    let billed = tokio::spawn({
        let billing = billing.clone();
        async move {
            let delivery = placed.next().await.expect("subscribed")?;
            // The delivery's span continues the publisher's trace; billing's
            // work runs in it.
            let span = delivery.span().clone();
            async {
                let charge = info_span!("billing: charge card", order = delivery.event.id);
                async { tokio::time::sleep(Duration::from_millis(5)).await }
                    .instrument(charge)
                    .await;
                let left = billing
                    .request(
                        &to,
                        Reserve {
                            sku: delivery.event.sku.clone(),
                        },
                    )
                    .await?;
                anyhow::Ok(left)
            }
            .instrument(span)
            .await
        }
    });

    let checkout = info_span!("orders: checkout", order = 1001);
    orders
        .publish(&OrderPlaced {
            id: 1001,
            sku: "A1".into(),
        })
        .instrument(checkout)
        .await?;
    let left = tokio::time::timeout(Duration::from_secs(10), billed).await???;
    println!("order 1001 billed; {left} of A1 left\n");

    for bus in [&orders, &billing, &inventory] {
        bus.close().await?;
    }
    print_tree(&exporter.get_finished_spans()?);
    Ok(())
}

/// Prints the spans as trees, children under their parent, with the
/// time each took.
fn print_tree(spans: &[SpanData]) {
    let mut children: HashMap<_, Vec<&SpanData>> = HashMap::new();
    let ids: Vec<_> = spans.iter().map(|s| s.span_context.span_id()).collect();
    let mut roots = Vec::new();
    for span in spans {
        if ids.contains(&span.parent_span_id) {
            children.entry(span.parent_span_id).or_default().push(span);
        } else {
            roots.push(span);
        }
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_time);
    }
    roots.sort_by_key(|s| s.start_time);
    // Only the trace of the order: the buses' own connection spans are
    // roots of other traces.
    for root in roots.iter().filter(|r| r.name.starts_with("orders")) {
        println!("trace {}", root.span_context.trace_id());
        print_span(root, &children, 0);
    }
}

fn print_span(
    span: &SpanData,
    children: &HashMap<opentelemetry::trace::SpanId, Vec<&SpanData>>,
    depth: usize,
) {
    let took = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    let fields: Vec<String> = span
        .attributes
        .iter()
        .filter(|kv| ["topic", "method", "order", "sku", "to", "from"].contains(&kv.key.as_str()))
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    println!(
        "{:indent$}{} {} [{:.1} ms]{}",
        "",
        span.name,
        fields.join(" "),
        took.as_secs_f64() * 1e3,
        if span.parent_span_is_remote {
            "  <- remote parent"
        } else {
            ""
        },
        indent = depth * 2
    );
    for child in children
        .get(&span.span_context.span_id())
        .into_iter()
        .flatten()
    {
        print_span(child, children, depth + 1);
    }
}
