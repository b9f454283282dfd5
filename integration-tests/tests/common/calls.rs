//! Calls made continuously while an instance dies (`crash.rs`,
//! `cluster.rs`), and waiting for a watch to see it leave.
// Not every test that includes this file uses every item.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use xbus::{Bus, InstanceEvent, Watch};

use super::common::{Echo, within};

/// One call every this long.
pub const PACE: Duration = Duration::from_millis(20);

/// One call's fate: when it started (since the fault), and how it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the call started, since the fault.
    pub started: Duration,
    /// When it ended, since the fault.
    pub ended: Duration,
    /// The answering instance's resource, or the error.
    pub result: Result<String, String>,
}

/// [`call_continuously`] in a task of its own, while the test kills or
/// freezes an instance.
pub fn spawn_calls(
    caller: &Bus,
    service: &str,
    zero: Instant,
    run: Duration,
    timeout: Duration,
) -> tokio::task::JoinHandle<Vec<Outcome>> {
    let (caller, service) = (caller.clone(), service.to_owned());
    tokio::spawn(async move { call_continuously(&caller, &service, zero, run, timeout).await })
}

/// Calls `service` every [`PACE`] for `run`, each with `timeout`, without
/// waiting for one call to end before the next starts; the outcomes, with
/// times measured from `zero`.
pub async fn call_continuously(
    caller: &Bus,
    service: &str,
    zero: Instant,
    run: Duration,
    timeout: Duration,
) -> Vec<Outcome> {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut seq = 0;
    let end = Instant::now() + run;
    while Instant::now() < end {
        seq += 1;
        let caller = caller.clone();
        let service = service.to_owned();
        let outcomes = outcomes.clone();
        tasks.push(tokio::spawn(async move {
            let started = zero.elapsed();
            let result = caller
                .request(&service, Echo { seq, sleep_ms: 0 })
                .timeout(timeout)
                .await
                .map(|answer| answer.resource)
                .map_err(|e| e.to_string());
            let ended = zero.elapsed();
            outcomes.lock().unwrap().push(Outcome {
                started,
                ended,
                result,
            });
        }));
        tokio::time::sleep(PACE).await;
    }
    for task in tasks {
        within("call task", task).await.expect("call task");
    }
    let mut outcomes = outcomes.lock().unwrap().clone();
    outcomes.sort_by_key(|o| o.started);
    outcomes
}

/// Waits until `watch` reports `jid` unresponsive or offline; how long
/// after `zero` that was, or `None` if not within `limit` of now.
pub async fn left(
    watch: &mut Watch,
    jid: &str,
    zero: Instant,
    limit: Duration,
) -> Option<Duration> {
    tokio::time::timeout(limit, async {
        while let Some(event) = watch.next().await {
            match &event {
                InstanceEvent::Unresponsive(j) | InstanceEvent::Offline(j)
                    if j.to_string() == jid =>
                {
                    return zero.elapsed();
                }
                _ => {}
            }
        }
        std::future::pending().await
    })
    .await
    .ok()
}
