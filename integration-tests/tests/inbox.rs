//! Events sent to one service: `send` and `inbox`, against a real Prosody.

mod common;

use common::{next, two_buses, within};
use serde::{Deserialize, Serialize};
use xbus::Event;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "stock.changed", encoding = "json", version = 3)]
struct StockChanged {
    sku: String,
    delta: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "orders.created")]
struct OrderCreated {
    id: u64,
}

fn order(id: u64) -> OrderCreated {
    OrderCreated { id }
}

#[tokio::test]
async fn send_and_inbox() {
    let (_server, sender, receiver) = two_buses().await;
    let mut inbox = within("inbox", receiver.inbox::<StockChanged>())
        .await
        .unwrap();
    let mut other = within("inbox", receiver.inbox::<OrderCreated>())
        .await
        .unwrap();
    let event = StockChanged {
        sku: "D4".into(),
        delta: 7,
    };
    // To the bare JID (the server routes it) and to the full JID.
    within(
        "send bare",
        sender.send(&receiver.jid().to_bare().to_string(), &event),
    )
    .await
    .unwrap();
    within(
        "send full",
        sender.send(&receiver.jid().to_string(), &order(5)),
    )
    .await
    .unwrap();
    let delivery = next("inbox", &mut inbox).await.unwrap();
    assert_eq!(delivery.event, event);
    assert_eq!(
        delivery.publisher.as_deref(),
        Some(sender.jid().to_string().as_str())
    );
    assert_eq!(
        next("other inbox", &mut other).await.unwrap().event,
        order(5)
    );
    let error = within("bad recipient", sender.send("not a jid@@", &event))
        .await
        .unwrap_err();
    assert!(
        matches!(error, xbus::SendError::InvalidRecipient { .. }),
        "{error}"
    );
}
