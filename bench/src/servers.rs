//! The XMPP servers a run measures: the embedded one as a child process
//! (`xbus-bench --serve-embedded`), Prosody, ejabberd and an ejabberd
//! cluster started by the test harness (its configs lift the servers'
//! throttles). On the cluster, the clients of a scenario are spread over
//! its nodes in turn (the publisher on one, the subscriber on the next),
//! and the server CPU is that of every node.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use xbus_integration_tests::{Ejabberd, EjabberdCluster, Prosody, Storage, XmppServer};

/// An account on a benchmark server.
#[derive(Debug, Clone)]
pub struct Account {
    /// Bare JID, `name@localhost`.
    pub jid: String,
    /// Its password.
    pub password: String,
}

/// A running XMPP server, as the XMPP drivers see it.
pub struct XmppTarget {
    /// `embedded`, `prosody`, `ejabberd` or `ejabberd-cluster`.
    pub server: &'static str,
    /// Client-to-server addresses, one per node (plaintext allowed on
    /// loopback); [`XmppTarget::addr`] hands them out in turn.
    addrs: Vec<SocketAddr>,
    next_addr: AtomicUsize,
    /// The XMPP domain, `localhost`.
    pub domain: String,
    /// The pubsub service, `pubsub.localhost`.
    pub pubsub: String,
    /// The server's processes (one per node), for their CPU time.
    pub pids: Vec<u32>,
    backend: Backend,
}

enum Backend {
    /// The embedded server with open accounts: any name registers on first login;
    /// its process, unless it runs elsewhere (the tests run it in theirs).
    Embedded {
        child: Option<Child>,
        next: AtomicU64,
    },
    Harness(Box<dyn XmppServer>),
}

impl std::fmt::Debug for XmppTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppTarget")
            .field("server", &self.server)
            .field("addrs", &self.addrs)
            .field("pids", &self.pids)
            .finish()
    }
}

impl XmppTarget {
    /// The address for the next client: the nodes in turn.
    pub fn addr(&self) -> SocketAddr {
        let n = self.next_addr.fetch_add(1, Ordering::Relaxed);
        self.addrs[n % self.addrs.len()]
    }

    /// A fresh account, from a task: registering one may run a server tool
    /// (`prosodyctl`), so it runs off the async threads.
    pub async fn fresh_account(self: &Arc<Self>) -> anyhow::Result<Account> {
        let target = self.clone();
        tokio::task::spawn_blocking(move || target.account())
            .await
            .context("account registration panicked")?
    }

    /// A fresh account.
    pub fn account(&self) -> anyhow::Result<Account> {
        match &self.backend {
            Backend::Embedded { next, .. } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                Ok(Account {
                    jid: format!("bench{n}@{}", self.domain),
                    password: "bench".to_owned(),
                })
            }
            Backend::Harness(server) => {
                let account = server.account()?;
                Ok(Account {
                    jid: account.jid,
                    password: account.password,
                })
            }
        }
    }
}

impl Drop for XmppTarget {
    fn drop(&mut self) {
        if let Backend::Embedded {
            child: Some(child), ..
        } = &mut self.backend
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Which XMPP servers can run here, and for the others why not.
pub fn available(names: &[String]) -> (Vec<&'static str>, Vec<String>) {
    let mut ok = Vec::new();
    let mut notes = Vec::new();
    for name in names {
        match name.as_str() {
            "embedded" => ok.push("embedded"),
            "prosody" if in_path("prosody") => ok.push("prosody"),
            "ejabberd" if in_path("ejabberdctl") => ok.push("ejabberd"),
            "ejabberd-cluster" if in_path("ejabberdctl") => ok.push("ejabberd-cluster"),
            "prosody-stock" if in_path("prosody") => ok.push("prosody-stock"),
            "ejabberd-stock" if in_path("ejabberdctl") => ok.push("ejabberd-stock"),
            "prosody" | "prosody-stock" => notes.push(format!(
                "prosody: not installed ({})",
                xbus_integration_tests::PROSODY_INSTALL_HINT
            )),
            "ejabberd" | "ejabberd-stock" | "ejabberd-cluster" => notes.push(format!(
                "ejabberd: not installed ({})",
                xbus_integration_tests::EJABBERD_INSTALL_HINT
            )),
            other => notes.push(format!("{other}: unknown XMPP server")),
        }
    }
    (ok, notes)
}

/// Whether `server` is one of the harness's servers with the servers' own
/// item storage (`prosody-stock`, `ejabberd-stock`), beside the tuned one
/// the plain names start (see `Storage` in the harness).
pub fn is_stock(server: &str) -> bool {
    server.ends_with("-stock")
}

/// Starts the server called `name` (one of [`available`]'s).
pub fn start(name: &'static str) -> anyhow::Result<Arc<XmppTarget>> {
    let target = match name {
        "embedded" => start_embedded()?,
        "prosody" => harness(name, Prosody::start()?, |s| s.pid().into_iter().collect()),
        "ejabberd" => harness(name, Ejabberd::start()?, |s| s.pid().into_iter().collect()),
        "prosody-stock" => harness(name, Prosody::start_with(Storage::Stock)?, |s| {
            s.pid().into_iter().collect()
        }),
        "ejabberd-stock" => harness(name, Ejabberd::start_with(Storage::Stock)?, |s| {
            s.pid().into_iter().collect()
        }),
        "ejabberd-cluster" => {
            let cluster = EjabberdCluster::start()?;
            let addrs = (0..cluster.len()).map(|n| cluster.node_addr(n)).collect();
            let mut target = harness(name, cluster, |c| {
                (0..c.len()).filter_map(|n| c.node(n).pid()).collect()
            });
            target.addrs = addrs;
            target
        }
        other => bail!("unknown XMPP server {other:?}"),
    };
    Ok(Arc::new(target))
}

fn harness<S: XmppServer + 'static>(
    name: &'static str,
    server: S,
    pids: impl Fn(&S) -> Vec<u32>,
) -> XmppTarget {
    XmppTarget {
        server: name,
        addrs: vec![server.addr()],
        next_addr: AtomicUsize::new(0),
        domain: server.domain().to_owned(),
        pubsub: server.pubsub_service(),
        pids: pids(&server),
        backend: Backend::Harness(Box::new(server)),
    }
}

/// The embedded server (open accounts, plaintext, a free loopback port) in
/// a child process, `xbus-bench --serve-embedded`: its CPU time is then
/// measured apart from the clients', as Prosody's and NATS's are.
fn start_embedded() -> anyhow::Result<XmppTarget> {
    let exe = std::env::current_exe().context("find the xbus-bench executable")?;
    let mut child = Command::new(exe)
        .arg("--serve-embedded")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the embedded server")?;
    let stdout = child
        .stdout
        .take()
        .context("stdout of the embedded server")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Some(Ok(line))) => line,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the embedded server did not print its address within 10 s ({other:?})");
        }
    };
    let addr = parse_listening(&line).with_context(|| {
        format!("the embedded server printed {line:?}, not `listening on ADDR`")
    })?;
    Ok(XmppTarget {
        server: "embedded",
        addrs: vec![addr],
        next_addr: AtomicUsize::new(0),
        domain: "localhost".to_owned(),
        pubsub: "pubsub.localhost".to_owned(),
        pids: vec![child.id()],
        backend: Backend::Embedded {
            child: Some(child),
            next: AtomicU64::new(1),
        },
    })
}

/// The embedded server already listening at `addr` (started by the
/// caller, e.g. in a test's process): open accounts, no process to stop.
#[cfg(test)]
pub fn embedded_at(addr: SocketAddr) -> XmppTarget {
    XmppTarget {
        server: "embedded",
        addrs: vec![addr],
        next_addr: AtomicUsize::new(0),
        domain: "localhost".to_owned(),
        pubsub: "pubsub.localhost".to_owned(),
        pids: Vec::new(),
        backend: Backend::Embedded {
            child: None,
            next: AtomicU64::new(1),
        },
    }
}

/// `xbus-bench --serve-embedded`: runs the embedded server with open
/// accounts in plaintext on a free loopback port, prints `listening on
/// ADDR` and serves until the process is killed (as `xbus server --bind
/// 127.0.0.1:0` does).
pub async fn serve_embedded() -> anyhow::Result<()> {
    let server = xbus_server::Server::builder()
        .bind("127.0.0.1:0")
        .start()
        .await
        .context("start the embedded server")?;
    println!("listening on {}", server.addr());
    std::future::pending::<()>().await;
    Ok(())
}

/// Reads `listening on 127.0.0.1:PORT ...`, the first line the embedded
/// server prints.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("listening on ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `name` is an executable in `PATH`.
pub fn in_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let file = dir.join(name);
            std::fs::metadata(&file).is_ok_and(|m| m.is_file())
        })
    })
}
