//! A server restart loses every session: calls and presence must recover
//! by themselves once the buses are back.

mod common;

use std::time::Duration;

use common::{init_tracing, instances, matrix, next, start, within};
use serde::{Deserialize, Serialize};
use xbus::{Context, InstanceEvent, Request, RequestError};

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "test.sleep", response = String)]
struct Sleep {
    millis: u64,
}

#[tokio::test]
async fn calls_and_presence_recover_after_the_server_restarts() {
    matrix(async |kind| {
        init_tracing();
        let mut server = start(kind);
        let (service, buses) = instances(&server, 1).await;
        let callee = &buses[0];
        within(
            "serve",
            callee.serve(|req: Sleep, _: Context| async move {
                tokio::time::sleep(Duration::from_millis(req.millis)).await;
                Ok("slept".to_owned())
            }),
        )
        .await
        .unwrap();
        let caller = common::bus(&server).await;
        let mut watch = within("watch", caller.watch(&service.jid)).await.unwrap();
        assert!(matches!(
            next("online", &mut watch).await,
            InstanceEvent::Online(_)
        ));
        within("call", caller.request(&service.jid, Sleep { millis: 0 }))
            .await
            .unwrap();

        // A call in flight when the server goes away cannot be answered: it
        // fails as Disconnected (or times out), never with a wrong answer.
        let in_flight = {
            let caller = caller.clone();
            let to = service.jid.clone();
            tokio::spawn(async move {
                caller
                    .request(&to, Sleep { millis: 3000 })
                    .timeout(Duration::from_secs(8))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.restart().expect("restart the server");
        let lost = within("in-flight call ends", in_flight).await.unwrap();
        assert!(
            matches!(
                lost,
                Err(RequestError::Disconnected { .. } | RequestError::TimedOut { .. })
            ),
            "{lost:?}"
        );

        // The watch saw the instance go, and sees it come back once both buses
        // have reconnected and re-announced themselves.
        within("back online", async {
            loop {
                if let InstanceEvent::Online(instance) = next("watch", &mut watch).await
                    && instance.jid.to_bare().to_string() == service.jid
                {
                    return;
                }
            }
        })
        .await;
        let answer = within("call after restart", async {
            loop {
                match caller.request(&service.jid, Sleep { millis: 0 }).await {
                    Ok(answer) => return answer,
                    Err(RequestError::NoResponder { .. } | RequestError::Disconnected { .. }) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(other) => panic!("after restart: {other:?}"),
                }
            }
        })
        .await;
        assert_eq!(answer, "slept");
    })
    .await;
}

/// A crash (SIGKILL, so no `<system-shutdown/>` stream error) loses every
/// session without a word: the buses' XEP-0198 resumption is refused with
/// `<failed/>`, and they must then start fresh sessions.
///
/// Both servers send that `<failed/>` without `h`, which xmpp-parsers 0.23
/// cannot parse, so tokio-xmpp alone would retry the same `<resume/>`
/// forever; xbus's reconnector starts a fresh session instead (see
/// `bus/src/reconnect.rs`).
#[tokio::test]
async fn calls_recover_after_the_server_crashes() {
    matrix(async |kind| {
        init_tracing();
        let mut server = start(kind);
        let (service, buses) = instances(&server, 1).await;
        within(
            "serve",
            buses[0].serve(|_: Sleep, _: Context| async move { Ok("slept".to_owned()) }),
        )
        .await
        .unwrap();
        let caller = common::bus(&server).await;
        within("call", caller.request(&service.jid, Sleep { millis: 0 }))
            .await
            .unwrap();
        // ejabberd keeps accounts in dets, which delays writes by up to 3 s:
        // a crash sooner would lose the accounts themselves.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        server.kill();
        server.restart().expect("start the server again");
        let answer = within("call after the crash", async {
            loop {
                match caller.request(&service.jid, Sleep { millis: 0 }).await {
                    Ok(answer) => return answer,
                    Err(RequestError::NoResponder { .. } | RequestError::Disconnected { .. }) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(other) => panic!("after the crash: {other:?}"),
                }
            }
        })
        .await;
        assert_eq!(answer, "slept");
    })
    .await;
}
