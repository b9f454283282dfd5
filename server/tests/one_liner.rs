//! The one line a user's test needs (feature `bus`): a server and a
//! connected bus, over STARTTLS with the generated certificate.
#![cfg(feature = "bus")]

mod common;

use common::within;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use xbus::{Context, Event, Request};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "orders.created")]
struct OrderCreated {
    id: u64,
}

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "billing.total", response = u64)]
struct Total {
    id: u64,
}

#[tokio::test]
async fn start_with_bus_gives_a_working_bus_and_more_on_demand() {
    let (server, orders) = within("start", xbus_server::start_with_bus("orders"))
        .await
        .expect("server and bus");
    assert_eq!(orders.jid().to_bare().to_string(), "orders@localhost");
    // A second service, as a named instance.
    let billing = within("second bus", server.bus("billing/i1"))
        .await
        .expect("second bus");
    assert_eq!(billing.jid().to_string(), "billing@localhost/i1");
    within(
        "serve",
        billing.serve(|req: Total, _: Context| async move { Ok(req.id * 100) }),
    )
    .await
    .unwrap();
    let total = within("call", orders.request("billing@localhost", Total { id: 7 }))
        .await
        .unwrap();
    assert_eq!(total, 700);
    let mut created = within("subscribe", billing.subscribe::<OrderCreated>())
        .await
        .unwrap();
    within("publish", orders.publish(&OrderCreated { id: 7 }))
        .await
        .unwrap();
    let delivery = within("delivery", created.next()).await.unwrap().unwrap();
    assert_eq!(delivery.event, OrderCreated { id: 7 });
}
