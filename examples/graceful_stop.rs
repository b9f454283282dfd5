//! Stopping a service instance gracefully on `SIGTERM`, the signal
//! orchestrators (Kubernetes, systemd, docker stop) send before `SIGKILL`.
//!
//! ```sh
//! cargo run --example graceful_stop
//! ```
//!
//! Two instances of an inventory service answer calls that take 300 ms; a
//! shop calls them continuously from three tasks. After a second the
//! example sends `SIGTERM` to itself, and instance `inv-2` stops the way a
//! service should:
//!
//! 1. `set_status("draining")`: callers stop picking it;
//! 2. a short grace period, for calls routed before the callers saw it;
//! 3. `close()`: unavailable presence, new calls refused with
//!    `service-unavailable` (a caller retries them once on another
//!    instance), the running handlers finished and answered (up to the
//!    close timeout, 5 s by default), then the stream ends.
//!
//! It prints what `inv-2` was doing when the signal came, that those calls
//! were answered, that it got no new calls, and that no call failed.
//!
//! With `XBUS_JID`/`XBUS_PASSWORD` (and optionally `XBUS_SERVER`,
//! `XBUS_TLS`) set, all three buses log in as that account with the
//! resources `inv-1`, `inv-2` and `shop`. Without them, the example starts
//! the embedded server on a free loopback port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use xbus::{Bus, BusConfig, Context, InstanceEvent, Request};

/// Some work that takes a while.
#[derive(Request, Serialize, Deserialize, Debug)]
#[request(method = "inventory.recount", response = String)]
struct Recount {
    sku: String,
}

/// How long each call's handler works.
const WORK: Duration = Duration::from_millis(300);

/// What one instance's handler did.
#[derive(Default)]
struct Counters {
    started: AtomicUsize,
    running: AtomicUsize,
    answered: AtomicUsize,
    /// Set once the instance has announced `draining`.
    draining: AtomicBool,
    started_while_draining: AtomicUsize,
}

/// One inventory instance; its handler counts its calls in `counters`.
async fn inventory(config: BusConfig, counters: Arc<Counters>) -> anyhow::Result<Bus> {
    let bus = Bus::connect(config).await?;
    let me = bus.jid().resource().to_string();
    bus.serve(move |req: Recount, _ctx: Context| {
        let (me, counters) = (me.clone(), counters.clone());
        async move {
            counters.started.fetch_add(1, Ordering::SeqCst);
            if counters.draining.load(Ordering::SeqCst) {
                counters
                    .started_while_draining
                    .fetch_add(1, Ordering::SeqCst);
            }
            counters.running.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(WORK).await;
            counters.running.fetch_sub(1, Ordering::SeqCst);
            counters.answered.fetch_add(1, Ordering::SeqCst);
            Ok(format!("{} recounted by {me}", req.sku))
        }
    })
    .await?;
    Ok(bus)
}

/// What a service does on SIGTERM. Returns the calls it was running when
/// the signal came.
async fn stop_gracefully(bus: &Bus, counters: &Counters) -> anyhow::Result<usize> {
    let in_flight = counters.running.load(Ordering::SeqCst);
    bus.set_status("draining").await?; // callers pick other instances
    counters.draining.store(true, Ordering::SeqCst);
    // Calls already on their way (sent before the callers saw the new
    // status) still arrive: answer them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    bus.close().await?; // refuses new calls, finishes the running ones
    Ok(in_flight)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    xbus_examples::init_logs();
    // Installed first: from here on SIGTERM no longer ends the process.
    let mut sigterm = signal(SignalKind::terminate())?;

    let configs = xbus_examples::configs().await?;
    let (c1, c2) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let first = inventory(configs.instance("inv-1")?, c1.clone()).await?;
    let second = inventory(configs.instance("inv-2")?, c2.clone()).await?;
    let shop = Bus::connect(configs.client()?).await?;
    let service = first.jid().to_bare().to_string();
    let mut watch = shop.watch(&service).await?;
    let mut online = 0;
    while online < 2 {
        match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
            Ok(Some(InstanceEvent::Online(_))) => online += 1,
            Ok(Some(_)) => {}
            _ => anyhow::bail!("the two instances did not come online"),
        }
    }
    println!("instances {} and {} online", first.jid(), second.jid());

    // The shop calls continuously from three tasks.
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for task in 0..3 {
        let (shop, service, stop) = (shop.clone(), service.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let sku = format!("T{task}-{n}");
                match shop.request(&service, Recount { sku }).await {
                    Ok(answer) => ok.push(answer),
                    Err(error) => failed.push(error.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        }));
    }

    // The orchestrator's SIGTERM, one second in; here inv-2 is the
    // instance that handles it.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "sending SIGTERM to this process (pid {})",
        std::process::id()
    );
    // SAFETY: kill(2) on our own pid, whose SIGTERM handler is installed.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGTERM);
    }
    sigterm.recv().await;
    let at_signal = started.elapsed();
    let before = c2.started.load(Ordering::SeqCst);
    let in_flight = stop_gracefully(&second, &c2).await?;
    let took = started.elapsed() - at_signal;
    let running_after_close = c2.running.load(Ordering::SeqCst);
    let answered_after_close = c2.answered.load(Ordering::SeqCst);
    let started_at_close = c2.started.load(Ordering::SeqCst);
    println!(
        "inv-2: SIGTERM at {at_signal:.1?} with {in_flight} calls running; \
         draining, closed {took:.1?} later"
    );
    println!(
        "inv-2: {} calls started while draining; {running_after_close} still running after close(); \
         {answered_after_close} of {} answered",
        c2.started_while_draining.load(Ordering::SeqCst),
        c2.started.load(Ordering::SeqCst),
    );

    // The shop goes on calling; only inv-1 answers now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut answered, mut failed) = (Vec::new(), Vec::new());
    for caller in callers {
        let (ok, errors) = caller.await?;
        answered.extend(ok);
        failed.extend(errors);
    }
    let by_inv2_after_close = c2.started.load(Ordering::SeqCst) - started_at_close;
    let by = |name: &str| answered.iter().filter(|a| a.ends_with(name)).count();
    println!(
        "shop: {} calls answered ({} by inv-1, {} by inv-2), {} failed",
        answered.len(),
        by("inv-1"),
        by("inv-2"),
        failed.len()
    );
    println!(
        "inv-2: {} calls in total ({before} before SIGTERM), {by_inv2_after_close} after close()",
        c2.started.load(Ordering::SeqCst)
    );
    for error in &failed {
        println!("failed: {error}");
    }
    first.close().await?;
    shop.close().await?;
    let clean = failed.is_empty()
        && running_after_close == 0
        && by_inv2_after_close == 0
        && by("inv-2") == answered_after_close;
    println!(
        "{}",
        if clean {
            "done: no call lost"
        } else {
            "PROBLEM"
        }
    );
    if !clean {
        std::process::exit(1);
    }
    Ok(())
}
