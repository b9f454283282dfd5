//! The `xbus_instance` helper itself: what process-fault tests rely on
//! (lines on stdout, SIGSTOP/SIGCONT, graceful stop on SIGTERM).

mod common;

use std::time::Duration;

use common::*;
use xbus::RequestError;

#[tokio::test]
async fn the_helper_serves_stops_resumes_and_drains() {
    matrix(async |kind| {
        let server = start(kind);
        let service = server.account().expect("account");
        let (mut process, jid) = serving_process(&*server, &service, "p1").await;
        assert_eq!(jid, format!("{}/p1", service.jid), "{}", tag());
        let caller = bus(&*server).await;

        let answer = within(
            "call",
            caller.request(
                &service.jid,
                Echo {
                    seq: 1,
                    sleep_ms: 0,
                },
            ),
        )
        .await
        .expect("call the helper");
        assert_eq!(answer.resource, "p1", "{}", tag());
        assert_eq!(process.expect_line("call", STEP).await, "1", "{}", tag());
        within(
            "send job",
            caller.send_to_any(&service.jid, &Job { seq: 7 }),
        )
        .await
        .expect("send job");
        assert_eq!(process.expect_line("job", STEP).await, "7", "{}", tag());

        process.stop();
        let frozen = within(
            "call a stopped process",
            caller
                .request(
                    &jid,
                    Echo {
                        seq: 2,
                        sleep_ms: 0,
                    },
                )
                .timeout(Duration::from_millis(500)),
        )
        .await;
        assert!(
            matches!(frozen, Err(RequestError::TimedOut { .. })),
            "{}a stopped process answered: {frozen:?}",
            tag()
        );
        process.resume();
        let answer = within(
            "call after SIGCONT",
            caller.request(
                &jid,
                Echo {
                    seq: 3,
                    sleep_ms: 0,
                },
            ),
        )
        .await
        .expect("call after SIGCONT");
        assert_eq!(answer.seq, 3, "{}", tag());

        process.terminate();
        process.expect_line("draining", STEP).await;
        process.expect_line("closed", STEP).await;
        let status = process.wait_exit(STEP).await.expect("exits after SIGTERM");
        assert!(status.success(), "{}exit status {status}", tag());
        within("close caller", caller.close()).await.ok();
    })
    .await;
}
