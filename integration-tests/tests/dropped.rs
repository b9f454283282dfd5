//! A `Bus` dropped without `close()` ends its stream quietly, whatever its
//! server does next: no panic on tokio-xmpp's worker ("Backend was unable
//! to handle reconnect request.") when the connection is lost after the
//! last handle is gone, or while it was being re-established.
//!
//! A panic on a spawned task does not fail a test by itself: tokio catches
//! it. So this binary installs a panic hook that records every panic raised
//! outside the test's own code, and the tests assert that it recorded none.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use xbus::{Bus, ConnectionEvent};
use xbus_integration_tests::CutProxy;

/// Panics raised in tokio-xmpp or in the bus, as "file:line: message".
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file()).unwrap_or_default();
            if !file.contains("tests/") {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let line = info.location().map(|l| l.line()).unwrap_or_default();
                PANICS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{file}:{line}: {message}"));
            }
            previous(info);
        }));
    });
}

fn panics() -> Vec<String> {
    PANICS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Waits until `status` ends (the bus task finished), bounded by `STEP`.
async fn ended(status: &mut xbus::StatusStream) -> Vec<ConnectionEvent> {
    within("the status stream ends", async {
        let mut seen = Vec::new();
        while let Some(event) = status.next().await {
            seen.push(event);
        }
        seen
    })
    .await
}

#[tokio::test]
async fn a_bus_dropped_while_connected_survives_its_server_stopping() {
    record_panics();
    matrix(async |kind| {
        let mut server = start(kind);
        let bus = bus(&*server).await;
        let mut status = bus.status();
        drop(bus);
        let seen = ended(&mut status).await;
        assert!(seen.contains(&ConnectionEvent::Closed), "{seen:?}");
        server.kill();
        // Any reconnect attempt would start within its first back-off.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(panics(), Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn a_bus_dropped_while_reconnecting_ends_its_stream_without_a_panic() {
    record_panics();
    matrix(async |kind| {
        let server = start(kind);
        // The server "goes away" behind a proxy that refuses connections:
        // the embedded server's kill() listens again at once.
        let proxy = CutProxy::start(server.addr()).expect("start the proxy");
        let account = server.account().expect("account");
        let config = config(&*server, &account)
            .server(proxy.addr().to_string())
            .build()
            .expect("config");
        let bus = within("connect", Bus::connect(config))
            .await
            .expect("connect");
        let mut status = bus.status();
        assert_eq!(
            next("connected", &mut status).await,
            ConnectionEvent::Connected
        );
        proxy.set_refusing(true);
        proxy.cut();
        // Let it fail a few attempts, so that one is waiting out its
        // back-off when the bus goes.
        loop {
            if let ConnectionEvent::Reconnecting { attempt } =
                next("reconnecting", &mut status).await
                && attempt >= 3
            {
                break;
            }
        }
        drop(bus);
        let seen = ended(&mut status).await;
        assert!(seen.contains(&ConnectionEvent::Closed), "{seen:?}");
        // The server coming back must not revive anything either.
        proxy.set_refusing(false);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(panics(), Vec::<String>::new());
        assert_eq!(proxy.live(), 0, "nothing reconnected");
    })
    .await;
}
