//! Checking on running instances: three instances of an inventory service
//! run as child processes; one is stopped gracefully (SIGTERM), one is
//! killed (SIGKILL), and a live table shows each instance's status as the
//! watching bus sees it: online, draining, unresponsive, gone.
//!
//! ```sh
//! cargo run --example monitor
//! ```
//!
//! The killed instance's server keeps its session "available" while it
//! waits for an XEP-0198 resumption (60 s on the embedded server, 300 s on
//! ejabberd, 600 s on Prosody); the watching bus's liveness pings take it
//! out of the rotation within about 2 s anyway (see `xbus::Liveness`).
//!
//! Runs on the embedded server; a child started with `instance` as its
//! first argument is one instance, configured from `XBUS_*` variables.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use xbus::{Bus, BusConfig, Context, InstanceEvent, Request, RpcError, Watch};

/// How many of an item are in stock?
#[derive(Request, Serialize, Deserialize, Debug)]
#[request(method = "inventory.check", response = u32)]
struct CheckStock {
    sku: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("instance") {
        return instance().await;
    }
    monitor().await
}

/// One instance: serves calls until SIGTERM, then drains and closes.
async fn instance() -> anyhow::Result<()> {
    let bus = Bus::connect(BusConfig::from_env()?).await?;
    bus.serve(|_: CheckStock, _: Context| async move { Ok::<_, RpcError>(3) })
        .await?;
    signal(SignalKind::terminate())?.recv().await;
    bus.set_status("draining").await?;
    // Callers stop picking this instance; give calls already on their way
    // a moment, then close (which waits for running handlers).
    tokio::time::sleep(Duration::from_millis(500)).await;
    bus.close().await?;
    Ok(())
}

async fn monitor() -> anyhow::Result<()> {
    let server = xbus_server::Server::start_local().await?;
    let config = |user: &str| server.bus_config(user);
    let watcher = Bus::connect(config("monitor")?.build()?).await?;
    let service = format!("inventory@{}", server.domain());
    let mut watch = watcher.watch(&service).await?;
    let started = Instant::now();
    let mut table = Table::default();

    let mut children = BTreeMap::new();
    for name in ["i1", "i2", "i3"] {
        // Registers the account; the child logs in with the same settings.
        let _ = config(&format!("inventory/{name}"))?;
        children.insert(name, spawn(&server, name)?);
    }
    table
        .follow(&mut watch, started, Duration::from_secs(5), |t| {
            t.count("online") == 3
        })
        .await;

    println!("{:>6}  i2: SIGTERM (graceful stop)", secs(started));
    signal_child(&children["i2"], libc::SIGTERM);
    table
        .follow(&mut watch, started, Duration::from_secs(5), |t| {
            t.status("i2") == Some("gone")
        })
        .await;

    let killed = Instant::now();
    println!("{:>6}  i3: SIGKILL", secs(started));
    signal_child(&children["i3"], libc::SIGKILL);
    table
        .follow(&mut watch, started, Duration::from_secs(5), |t| {
            t.status("i3") == Some("unresponsive")
        })
        .await;
    let listed = watcher.instances(&service).await?;
    println!(
        "i3 left the rotation {:.1} s after the kill; instances() lists {} ({})",
        killed.elapsed().as_secs_f64(),
        listed.len(),
        listed
            .iter()
            .map(|i| i.jid.resource().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let answer = watcher
        .request(&service, CheckStock { sku: "A1".into() })
        .timeout(Duration::from_secs(1))
        .await?;
    println!("a call to {service} is answered: {answer} in stock");

    for (_, mut child) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    watcher.close().await?;
    Ok(())
}

/// Starts one instance as a child process of this example.
fn spawn(server: &xbus_server::Server, name: &str) -> anyhow::Result<Child> {
    let ca = server.ca_file().map(|p| p.display().to_string());
    let child = Command::new(std::env::current_exe()?)
        .arg("instance")
        .env("XBUS_JID", format!("inventory@{}/{name}", server.domain()))
        .env("XBUS_PASSWORD", "xbus-dev")
        .env("XBUS_SERVER", server.addr().to_string())
        .env("XBUS_TLS", ca.unwrap_or_else(|| "plaintext".into()))
        .stdin(Stdio::null())
        .spawn()?;
    Ok(child)
}

fn signal_child(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(pid, signal) };
}

fn secs(since: Instant) -> String {
    format!("+{:.1}s", since.elapsed().as_secs_f64())
}

/// Each instance's status, by resource, as the watch reports it.
#[derive(Default)]
struct Table(BTreeMap<String, String>);

impl Table {
    fn status(&self, resource: &str) -> Option<&str> {
        self.0.get(resource).map(String::as_str)
    }

    fn count(&self, status: &str) -> usize {
        self.0.values().filter(|s| *s == status).count()
    }

    fn apply(&mut self, event: InstanceEvent) {
        let (resource, status) = match event {
            InstanceEvent::Online(i)
            | InstanceEvent::StatusChanged(i)
            | InstanceEvent::Responsive(i) => {
                let status = match i.status.as_str() {
                    "ready" => "online".to_owned(),
                    other => other.to_owned(),
                };
                (i.jid.resource().to_string(), status)
            }
            InstanceEvent::Unresponsive(jid) => (jid.resource().to_string(), "unresponsive".into()),
            InstanceEvent::Offline(jid) => (jid.resource().to_string(), "gone".into()),
            _ => return,
        };
        self.0.insert(resource, status);
    }

    /// Prints the table after every change until `done` holds or `limit`
    /// has passed.
    async fn follow(
        &mut self,
        watch: &mut Watch,
        started: Instant,
        limit: Duration,
        done: impl Fn(&Table) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(event)) => {
                    self.apply(event);
                    let row: Vec<String> =
                        self.0.iter().map(|(r, s)| format!("{r} {s:<12}")).collect();
                    println!("{:>6}  {}", secs(started), row.join("  ").trim_end());
                }
                _ => {
                    println!("{:>6}  (no change within {limit:?})", secs(started));
                    return;
                }
            }
        }
    }
}
