//! Events sent to one service: `send` and `inbox`, against every server of the matrix.

mod common;

use common::{matrix, next, raw_client, raw_iq, two_buses, within};
use serde::{Deserialize, Serialize};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::{IqRequest, IqResponse};
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
    matrix(async |kind| {
        let (_server, sender, receiver) = two_buses(kind).await;
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
    })
    .await;
}

#[tokio::test]
async fn unexpected_stanzas_are_answered_and_the_bus_keeps_working() {
    matrix(async |kind| {
    let (server, sender, receiver) = two_buses(kind).await;
    let mut inbox = within("inbox", receiver.inbox::<StockChanged>())
        .await
        .unwrap();
    let account = server.account().unwrap();
    let mut raw = raw_client(&server, &account).await;
    let target = receiver.jid().to_string();

    // An IQ the bus does not serve: service-unavailable, not silence.
    let query = Element::builder("query", "urn:example:unknown").build();
    match raw_iq(&mut raw, &target, IqRequest::Get(query)).await {
        IqResponse::Error(error) => assert_eq!(
            error.defined_condition,
            tokio_xmpp::parsers::stanza_error::DefinedCondition::ServiceUnavailable
        ),
        other => panic!("expected an error, got {other:?}"),
    }
    // XEP-0199 ping is answered.
    let ping = Element::builder("ping", "urn:xmpp:ping").build();
    assert!(matches!(
        raw_iq(&mut raw, &target, IqRequest::Get(ping)).await,
        IqResponse::Result(None)
    ));
    // Messages that are not xbus events, and a fake pubsub event from a
    // user (not the pubsub service): ignored.
    for xml in [
        "<message xmlns='jabber:client' type='chat'><body>hello</body></message>",
        "<message xmlns='jabber:client'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='stock.changed'><item id='x'/></items></event></message>",
        "<message xmlns='jabber:client'><payload xmlns='urn:xbus:0' encoding='json' version='3'>e30=</payload></message>",
    ] {
        let mut message: Message = xml.parse::<Element>().unwrap().try_into().unwrap();
        message.to = Some(target.parse().unwrap());
        within("raw send", raw.send_stanza(message.into()))
            .await
            .unwrap();
    }
    // A direct event with a bad payload but a usable topic: a delivery error.
    let mut message: Message = "<message xmlns='jabber:client'><payload xmlns='urn:xbus:0' topic='stock.changed' encoding='json' version='3'>!!</payload></message>"
        .parse::<Element>()
        .unwrap()
        .try_into()
        .unwrap();
    message.to = Some(target.parse().unwrap());
    within("raw send", raw.send_stanza(message.into()))
        .await
        .unwrap();
    let error = next("bad direct event", &mut inbox).await.unwrap_err();
    assert!(
        matches!(error.reason(), xbus::DecodeError::Base64(_)),
        "{error}"
    );
    assert_eq!(
        error.from(),
        Some(raw.bound_jid().unwrap().to_string().as_str())
    );

    let event = StockChanged {
        sku: "E5".into(),
        delta: 1,
    };
    within("send", sender.send(&target, &event)).await.unwrap();
    assert_eq!(next("good event", &mut inbox).await.unwrap().event, event);
    })
    .await;
}
