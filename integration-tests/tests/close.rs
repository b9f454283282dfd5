//! What `close()` promises a service that stops: calls in flight are
//! answered within the close timeout, and one that cannot be is reported,
//! not dropped in silence.

mod common;

use std::time::{Duration, Instant};

use common::*;
use xbus::{Bus, CloseError, Context};

/// Serves [`Echo`], sleeping as each request asks.
async fn serve_sleepy(bus: &Bus) {
    within(
        "serve",
        bus.serve(|req: Echo, _ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(req.sleep_ms)).await;
            Ok(Echoed {
                resource: String::new(),
                seq: req.seq,
            })
        }),
    )
    .await
    .expect("serve");
}

#[tokio::test]
async fn close_answers_calls_in_flight_and_reports_the_ones_it_must_abandon() {
    matrix(async |kind| {
        let server = start(kind);
        let account = server.account().expect("account");
        let connect = async |close_timeout: Duration| {
            let config = config(&*server, &account)
                .close_timeout(close_timeout)
                .build()
                .expect("config");
            within("connect", Bus::connect(config))
                .await
                .expect("connect")
        };
        let caller = bus(&*server).await;

        // A 300 ms call in flight at close(), 2 s of close timeout: answered.
        let instance = connect(Duration::from_secs(2)).await;
        serve_sleepy(&instance).await;
        let target = instance.jid().to_string();
        let call = {
            let caller = caller.clone();
            let target = target.clone();
            tokio::spawn(async move {
                caller
                    .request(
                        &target,
                        Echo {
                            seq: 1,
                            sleep_ms: 300,
                        },
                    )
                    .timeout(Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        within("close", instance.close())
            .await
            .expect("clean close");
        let answer = within("the call", call).await.expect("task");
        assert_eq!(answer.expect("answered before the close ended").seq, 1);

        // A 3 s call, 500 ms of close timeout: close() says so, in time.
        let instance = connect(Duration::from_millis(500)).await;
        serve_sleepy(&instance).await;
        let target = instance.jid().to_string();
        let call = {
            let caller = caller.clone();
            tokio::spawn(async move {
                caller
                    .request(
                        &target,
                        Echo {
                            seq: 2,
                            sleep_ms: 3000,
                        },
                    )
                    .timeout(Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let closed = within("close", instance.close()).await;
        let took = started.elapsed();
        eprintln!(
            "{}close with a 3 s handler running: {closed:?} after {took:?}",
            tag()
        );
        assert!(
            matches!(
                closed,
                Err(CloseError::HandlersAbandoned { running: 1, .. })
            ),
            "{}{closed:?}",
            tag()
        );
        assert!(
            took < Duration::from_millis(1500),
            "{}close took {took:?}",
            tag()
        );
        let abandoned = within("the abandoned call", call).await.expect("task");
        assert!(abandoned.is_err(), "{}{abandoned:?}", tag());
        within("close caller", caller.close()).await.ok();
    })
    .await;
}
