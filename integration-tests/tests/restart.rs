//! A caller that restarts must reach its services with its very first
//! call.
//!
//! The bug (fixed in 48b50f6): billing calls inventory, restarts (same
//! account, same resource) and calls again 500 ms after connecting; every
//! call failed at once with `NoResponder: no instance of inventory@... is
//! online` on Prosody and the embedded server, although inventory was
//! online. The server answered the caller's initial presence with
//! inventory's presence before the roster result, the bus dropped that
//! presence as unsolicited, then took the roster's "subscribed, nobody
//! online" as the truth. ejabberd, answering the roster first, worked.
//!
//! Covered: a clean close and reconnect with the same resource and with a
//! new one, and a caller process killed with `SIGKILL` (no unavailable
//! presence, no stream end) replaced by a new caller with the same
//! resource or a new one. After a `SIGKILL`, Prosody and ejabberd keep the
//! dead session for resumption (XEP-0198 hibernation, minutes): the new
//! caller with the same resource binds it anyway (the server replaces the
//! hibernating session), which [`a_sigkilled_caller_replaced_by_one_with_the_same_resource`]
//! checks.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use xbus::{Bus, Context, InstanceEvent};

/// How long after connecting the restarted caller makes its first call,
/// as in the report of the bug.
const FIRST_CALL_AFTER: Duration = Duration::from_millis(500);

/// Restarts per test: the race was seen on every restart, more than one
/// makes a lucky ordering unlikely to hide it.
const RESTARTS: usize = 3;

/// Serves [`Echo`] on `bus`, answering with its resource.
async fn serve_echo(bus: &Bus) {
    let resource = bus.jid().resource().to_string();
    within(
        "serve echo",
        bus.serve(move |req: Echo, _ctx: Context| {
            let resource = resource.clone();
            async move {
                Ok(Echoed {
                    resource,
                    seq: req.seq,
                })
            }
        }),
    )
    .await
    .expect("serve");
}

/// One call from `caller` to `service`; panics with the error (and what
/// the caller did before) if it fails.
async fn call_ok(caller: &Bus, service: &str, seq: u64, what: &str) {
    let answer = within(
        what,
        caller
            .request(service, Echo { seq, sleep_ms: 0 })
            .timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{}{what}: call {seq} from {} failed: {e}",
            tag(),
            caller.jid()
        )
    });
    assert_eq!(answer.seq, seq, "{}{what}: answer to another call", tag());
    assert_eq!(answer.resource, "i1", "{}{what}", tag());
}

/// A caller connected as `account`/`resource`, checked to have bound
/// exactly that resource (a server could give another one when the
/// resource is taken, which would test something else).
async fn caller(server: &dyn XmppServer, account: &Account, resource: &str) -> Bus {
    let bus = instance(server, account, resource).await;
    assert_eq!(
        bus.jid().resource().as_str(),
        resource,
        "{}the server bound another resource than asked for",
        tag()
    );
    bus
}

/// Billing calls inventory, closes, and comes back as `next_resource(n)`:
/// its first call, 500 ms after connecting, must succeed.
async fn restart_after_close(kind: ServerKind, next_resource: fn(usize) -> String) {
    let server = start(kind);
    let inventory_account = server.account().expect("account");
    let inventory = instance(&*server, &inventory_account, "i1").await;
    serve_echo(&inventory).await;
    let service = inventory_account.jid.clone();
    let billing = server.account().expect("account");

    let mut current = caller(&*server, &billing, &next_resource(0)).await;
    call_ok(&current, &service, 0, "first call ever").await;
    for n in 1..=RESTARTS {
        within("close caller", current.close())
            .await
            .expect("close caller");
        current = caller(&*server, &billing, &next_resource(n)).await;
        tokio::time::sleep(FIRST_CALL_AFTER).await;
        let what = format!("first call after restart {n} as {}", current.jid());
        call_ok(&current, &service, n as u64, &what).await;
    }
    within("close caller", current.close()).await.ok();
    within("close inventory", inventory.close()).await.ok();
}

#[tokio::test]
async fn a_caller_restarted_with_the_same_resource_calls_at_once() {
    matrix(async |kind| restart_after_close(kind, |_| "b1".to_owned()).await).await;
}

#[tokio::test]
async fn a_caller_restarted_with_a_new_resource_calls_at_once() {
    matrix(async |kind| restart_after_close(kind, |n| format!("b{n}")).await).await;
}

/// A caller process (billing/b1) makes one successful call and is killed
/// with `SIGKILL`; a new caller as billing/`resource` makes its first call
/// 500 ms after connecting. An observer watching billing tells whether the
/// killed session still looked online (hibernating) when the new caller
/// bound.
async fn restart_after_sigkill(kind: ServerKind, resource: &str) {
    let server = start(kind);
    let inventory_account = server.account().expect("account");
    let inventory = instance(&*server, &inventory_account, "i1").await;
    serve_echo(&inventory).await;
    let service = inventory_account.jid.clone();
    let billing = server.account().expect("account");

    let mut process = spawn_instance(&*server, &billing, "b1", &["call", &service, "--wait"]);
    let old_jid = process.ready(STEP).await;
    assert_eq!(
        process.expect_line("ok", STEP).await,
        "i1",
        "{}the caller process's call",
        tag()
    );
    process.expect_line("waiting", STEP).await;

    let observer = bus(&*server).await;
    let mut watch = within("watch billing", observer.watch(&billing.jid))
        .await
        .expect("watch billing");
    let seen = within("billing's instances", observer.instances(&billing.jid))
        .await
        .expect("instances");
    assert!(
        seen.iter().any(|i| i.jid.to_string() == old_jid),
        "{}the observer does not see the caller process {old_jid}: {seen:?}",
        tag()
    );

    process.kill();
    // Give the server time to notice the dead TCP connection: it then
    // either ends the session (unavailable presence) or keeps it for
    // resumption.
    let went_offline = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(event) = watch.next().await {
            if matches!(&event, InstanceEvent::Offline(jid) if jid.to_string() == old_jid) {
                return;
            }
        }
        std::future::pending::<()>().await // the watch ended: no event
    })
    .await
    .is_ok();
    let hibernating = within("billing's instances", observer.instances(&billing.jid))
        .await
        .expect("instances")
        .iter()
        .any(|i| i.jid.to_string() == old_jid);
    eprintln!(
        "{}after SIGKILL of {old_jid}: offline event {went_offline}, still listed {hibernating}",
        tag()
    );
    // All three keep it (seen: still listed 1 s after the kill, no
    // offline event): the new caller below binds while it hibernates.
    assert!(
        hibernating,
        "{}expected {kind} to keep the killed session for resumption",
        tag()
    );

    let restarted = caller(&*server, &billing, resource).await;
    tokio::time::sleep(FIRST_CALL_AFTER).await;
    let what = format!(
        "first call of {} after SIGKILL of {old_jid} (old session listed: {hibernating})",
        restarted.jid()
    );
    call_ok(&restarted, &service, 1, &what).await;
    call_ok(&restarted, &service, 2, "second call").await;

    within("close caller", restarted.close()).await.ok();
    within("close observer", observer.close()).await.ok();
    within("close inventory", inventory.close()).await.ok();
}

#[tokio::test]
async fn a_sigkilled_caller_replaced_by_one_with_the_same_resource() {
    matrix(async |kind| restart_after_sigkill(kind, "b1").await).await;
}

#[tokio::test]
async fn a_sigkilled_caller_replaced_by_one_with_a_new_resource() {
    matrix(async |kind| restart_after_sigkill(kind, "b2").await).await;
}
