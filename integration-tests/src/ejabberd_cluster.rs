//! An ejabberd cluster on this machine, as a test server: two nodes of
//! ejabberd 23.01 joined over Erlang distribution, sharing their Mnesia
//! tables (accounts, pubsub nodes and items) and routing to each other's
//! sessions.
//!
//! The recipe (`/work/shared/notes/server-throughput.md`, "An ejabberd
//! cluster on one machine"):
//! * **One loopback address per node**, `127.A.B.2` and `127.A.B.3` with
//!   `A.B` random per cluster, so that clusters of parallel tests never
//!   meet: without `epmd`, `ERL_DIST_PORT` is both the port a node listens
//!   on and the one it dials, so every node of a cluster listens on the
//!   same port, each on its own address. Each node's c2s listener uses
//!   one port number too, on its own address.
//! * **Long node names** (`xa@127.A.B.2`) and one random cookie, in each
//!   node's own `ejabberdctl.cfg`.
//! * **Joining**: the first node starts alone (with [`Storage::Tuned`],
//!   three times, to convert `pubsub_item`, as a lone server does); the
//!   second starts, then `ejabberdctl join_cluster` makes it a copy of the
//!   first, with the first one's table types. Joining wipes the joining
//!   node's database, so accounts are registered after it.
//!
//! What the cluster offers as an [`XmppServer`]:
//! * [`addr`](XmppServer::addr) hands out the nodes in turn, so that the
//!   clients of a test land on different nodes: publisher and subscriber,
//!   caller and instance. [`EjabberdCluster::node_addr`] names one.
//! * [`kill`](XmppServer::kill) kills every node (the whole service goes
//!   down, as a lone server's kill does) and [`restart`](XmppServer::restart)
//!   brings them all back, started together: a node that was not the last
//!   one down waits for the others' tables.
//! * [`EjabberdCluster::kill_node`] and [`EjabberdCluster::restart_node`]
//!   take one node down and back: a node loss, which the cluster survives.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::ejabberd::{DOMAIN, Ejabberd};
use crate::ejabberd_register::register_in_band;
use crate::process::{self, LaunchError};
use crate::{Account, HarnessError, ServerKind, Storage, XmppServer};

/// How many nodes a cluster has. Two on a 2-core machine: a third would
/// only share the same cores.
pub const CLUSTER_NODES: usize = 2;

/// How long the joining node may take to leave, wipe, copy the tables and
/// accept clients again.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Each node's Erlang name before the `@`.
const NODE_NAMES: [&str; CLUSTER_NODES] = ["xa", "xb"];

/// How many times a cluster start picks other ports when one is taken.
const START_ATTEMPTS: usize = 3;

/// A cluster of [`CLUSTER_NODES`] ejabberd nodes on loopback addresses of
/// their own, for one test. Dropping it stops every node and removes their
/// directories.
#[derive(Debug)]
pub struct EjabberdCluster {
    nodes: Vec<Ejabberd>,
    /// The node [`XmppServer::addr`] hands out next.
    next_client: AtomicUsize,
    next_account: AtomicUsize,
}

impl EjabberdCluster {
    /// Starts a cluster with tuned storage ([`Storage::Tuned`]) and waits
    /// until every node has joined and accepts clients.
    ///
    /// # Panics
    ///
    /// If ejabberd is not installed; the message says how to install it.
    pub fn start() -> Result<EjabberdCluster, HarnessError> {
        EjabberdCluster::start_with(Storage::Tuned)
    }

    /// [`EjabberdCluster::start`] with the given item storage.
    ///
    /// The first cluster of a test process is made the slow way (see the
    /// module docs, about 20 s on 2 busy cores), stopped cleanly, and its
    /// nodes' Mnesia directories kept as a template; every cluster after it
    /// starts from copies of them, both nodes at once, in the time of one
    /// server start. Clusters from one template share node names and
    /// loopback addresses, not ports (each has its own c2s and
    /// distribution port, and its own cookie), so they never meet.
    pub fn start_with(storage: Storage) -> Result<EjabberdCluster, HarnessError> {
        // One at a time per process, so that parallel tests wait for the
        // one that makes the template instead of making their own.
        static MAKING: Mutex<()> = Mutex::new(());
        let template = {
            let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
            Template::load_or_make(storage)?
        };
        retry_ports(|| EjabberdCluster::start_from(&template))
    }

    /// A cluster the slow way: the first node alone, the others joining it.
    fn start_joined(storage: Storage) -> Result<EjabberdCluster, LaunchError> {
        let fatal = LaunchError::Fatal;
        let ips = node_ips().map_err(fatal)?;
        let (c2s_port, dist_port) = (port_free_on_all(&ips)?, port_free_on_all(&ips)?);
        let cookie = process::random_alnum(32).map_err(fatal)?;
        let mut nodes = Vec::with_capacity(CLUSTER_NODES);
        for (n, ip) in ips.iter().enumerate() {
            let mut node = Ejabberd::cluster_node(
                storage,
                SocketAddr::from((*ip, c2s_port)),
                format!("{}@{ip}", NODE_NAMES[n]),
                cookie.clone(),
                dist_port,
                None,
            )
            .map_err(fatal)?;
            node.launch_now().map_err(fatal)?;
            nodes.push(node);
        }
        nodes[0].convert_storage(storage).map_err(fatal)?;
        let first = nodes[0].node().to_owned();
        for node in &nodes[1..] {
            node.ctl_within(&["join_cluster", &first], JOIN_TIMEOUT)
                .map_err(fatal)?;
        }
        let cluster = EjabberdCluster::of(nodes);
        cluster.await_joined().map_err(fatal)?;
        Ok(cluster)
    }

    /// A cluster from copies of `template`'s Mnesia directories, its nodes
    /// started together.
    fn start_from(template: &Template) -> Result<EjabberdCluster, LaunchError> {
        let fatal = LaunchError::Fatal;
        let (c2s_port, dist_port) = (
            port_free_on_all(&template.ips)?,
            port_free_on_all(&template.ips)?,
        );
        let cookie = process::random_alnum(32).map_err(fatal)?;
        let mut nodes = Vec::with_capacity(CLUSTER_NODES);
        for (n, ip) in template.ips.iter().enumerate() {
            nodes.push(
                Ejabberd::cluster_node(
                    template.storage,
                    SocketAddr::from((*ip, c2s_port)),
                    format!("{}@{ip}", NODE_NAMES[n]),
                    cookie.clone(),
                    dist_port,
                    Some(&template.spool(n)),
                )
                .map_err(fatal)?,
            );
        }
        let mut cluster = EjabberdCluster::of(nodes);
        cluster.launch_all()?;
        cluster.await_joined().map_err(fatal)?;
        Ok(cluster)
    }

    fn of(nodes: Vec<Ejabberd>) -> EjabberdCluster {
        EjabberdCluster {
            nodes,
            next_client: AtomicUsize::new(0),
            next_account: AtomicUsize::new(0),
        }
    }

    /// Spawns every node, then waits for each: a node that was not the last
    /// one down waits for the others' tables.
    fn launch_all(&mut self) -> Result<(), LaunchError> {
        let mut launching = Vec::with_capacity(self.nodes.len());
        for node in &mut self.nodes {
            launching.push(node.spawn()?);
        }
        for (node, launching) in self.nodes.iter_mut().zip(launching) {
            node.await_ready(launching)?;
        }
        Ok(())
    }

    /// Waits until every node lists all of them and takes registrations
    /// (the joining node restarts ejabberd after copying the tables).
    fn await_joined(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        // Unique: a cluster made from a template has its probes.
        let tag = process::random_alnum(8)?.to_lowercase();
        for (n, node) in self.nodes.iter().enumerate() {
            loop {
                let probe = format!("xbus-probe-{tag}-{n}");
                let answer = if process::accepts_tcp(node.addr()) {
                    register_in_band(node.addr(), &probe, "probe")
                } else {
                    Err(HarnessError::io(
                        format!("connecting to {}", node.addr()),
                        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                    ))
                };
                match answer {
                    Ok(()) => break,
                    Err(error) if Instant::now() >= deadline => {
                        return Err(HarnessError::Startup {
                            server: ServerKind::EjabberdCluster,
                            reason: format!(
                                "node {} did not take clients within {JOIN_TIMEOUT:?} of joining: {error}",
                                node.node()
                            ),
                            log: node.log_path(),
                            log_tail: process::tail(&node.log_path(), 0, 30),
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        let listed = self.nodes[0].ctl(&["list_cluster"])?;
        for node in &self.nodes {
            if !listed.contains(node.node()) {
                return Err(HarnessError::Startup {
                    server: ServerKind::EjabberdCluster,
                    reason: format!("`list_cluster` does not list {}: {listed}", node.node()),
                    log: node.log_path(),
                    log_tail: process::tail(&node.log_path(), 0, 30),
                });
            }
        }
        Ok(())
    }

    /// How many nodes the cluster has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always `false`: a cluster has nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The c2s address of node `n` (from 0).
    pub fn node_addr(&self, n: usize) -> SocketAddr {
        self.nodes[n].addr()
    }

    /// Every node's c2s address, comma-separated: an `XBUS_SERVER` value.
    pub fn addresses(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `n` itself (its Erlang name, `ejabberdctl`, its log).
    pub fn node(&self, n: usize) -> &Ejabberd {
        &self.nodes[n]
    }

    /// Kills node `n` with `SIGKILL` and waits for it; the others go on.
    pub fn kill_node(&mut self, n: usize) {
        self.nodes[n].kill();
    }

    /// Starts node `n` again with its data; it rejoins the cluster by
    /// itself and copies what the others stored meanwhile.
    pub fn restart_node(&mut self, n: usize) -> Result<(), HarnessError> {
        self.nodes[n].restart()
    }
}

impl Drop for EjabberdCluster {
    fn drop(&mut self) {
        // The joined nodes first: the first node, stopped last, is the
        // one whose tables are newest.
        for node in self.nodes.iter_mut().skip(1).rev() {
            node.shut_down();
        }
    }
}

impl XmppServer for EjabberdCluster {
    fn kind(&self) -> ServerKind {
        ServerKind::EjabberdCluster
    }

    /// The nodes in turn: each call hands out the next node's c2s address,
    /// so the clients of a test spread over the cluster.
    fn addr(&self) -> SocketAddr {
        let n = self.next_client.fetch_add(1, Ordering::Relaxed);
        self.nodes[n % self.nodes.len()].addr()
    }

    fn ca_file(&self) -> &Path {
        self.nodes[0].ca_file()
    }

    /// Registers a fresh account (`c1@localhost`, ...) in-band on the first
    /// running node; every node knows it when this returns (`passwd` is
    /// replicated synchronously).
    fn account(&self) -> Result<Account, HarnessError> {
        let n = self.next_account.fetch_add(1, Ordering::SeqCst) + 1;
        let user = format!("c{n}");
        let password = process::random_alnum(20)?;
        let node = self
            .nodes
            .iter()
            .find(|node| node.is_running())
            .unwrap_or(&self.nodes[0]);
        register_in_band(node.addr(), &user, &password)?;
        Ok(Account {
            jid: format!("{user}@{DOMAIN}"),
            password,
        })
    }

    /// Kills every node with `SIGKILL`.
    fn kill(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Stops the nodes that run, then starts every node again, all at once
    /// (each waits for the others' tables), and waits until each is ready.
    fn restart(&mut self) -> Result<(), HarnessError> {
        for node in self.nodes.iter_mut().skip(1).rev() {
            node.shut_down();
        }
        self.nodes[0].shut_down();
        self.launch_all().map_err(launch_error)
    }

    /// The first node's log.
    fn log_path(&self) -> PathBuf {
        self.nodes[0].log_path()
    }
}

/// Runs `start` again (on other ports) when a port was taken, up to
/// [`START_ATTEMPTS`] times.
fn retry_ports<T>(mut start: impl FnMut() -> Result<T, LaunchError>) -> Result<T, HarnessError> {
    let mut attempt = 1;
    loop {
        match start() {
            Ok(started) => return Ok(started),
            Err(LaunchError::PortTaken(_)) if attempt < START_ATTEMPTS => attempt += 1,
            Err(error) => return Err(launch_error(error)),
        }
    }
}

/// A cleanly stopped cluster's Mnesia directories (`spool-N` in `root`),
/// with its nodes' addresses (`ips`).
///
/// It is kept for later test processes too (`cargo test` runs one per test
/// file), in the servers' temporary directory under a name that hashes
/// what it depends on: the deployed config and schema, the storage, the
/// installed `ejabberdctl`. A new ejabberd or config makes a new one.
#[derive(Debug, Clone)]
struct Template {
    storage: Storage,
    ips: Vec<Ipv4Addr>,
    root: PathBuf,
}

impl Template {
    /// The template for `storage`, made if there is none yet.
    fn load_or_make(storage: Storage) -> Result<Template, HarnessError> {
        let made = process::server_dir("xbus-ejabberd-cluster-new-")?;
        let home = made.path().parent().map(Path::to_owned).unwrap_or_default();
        let root = home.join(format!(
            "xbus-ejabberd-cluster-template-{}",
            template_key(storage)
        ));
        if let Some(template) = Template::load(storage, &root) {
            return Ok(template);
        }
        let made = made.keep();
        Template::make(storage, &made)?;
        // Another process may have made one meanwhile: either will do.
        if std::fs::rename(&made, &root).is_err() {
            let _ = std::fs::remove_dir_all(&made);
        }
        Template::load(storage, &root).ok_or_else(|| {
            HarnessError::io(
                format!("reading the cluster template {}", root.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
    }

    /// A complete template in `root` (its `ips` file is written last).
    fn load(storage: Storage, root: &Path) -> Option<Template> {
        let ips = std::fs::read_to_string(root.join("ips")).ok()?;
        let ips: Vec<Ipv4Addr> = ips.lines().filter_map(|l| l.parse().ok()).collect();
        (ips.len() == CLUSTER_NODES).then(|| Template {
            storage,
            ips,
            root: root.to_owned(),
        })
    }

    /// Makes a cluster the slow way, stops it cleanly and copies its
    /// nodes' Mnesia directories into `root`.
    fn make(storage: Storage, root: &Path) -> Result<(), HarnessError> {
        let mut cluster = retry_ports(|| EjabberdCluster::start_joined(storage))?;
        let ips = cluster
            .nodes
            .iter()
            .map(|node| match node.addr().ip() {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
            })
            .collect();
        // The joined nodes first, so that the first node, the last one
        // down, loads its tables from disk and the others wait for it.
        for node in cluster.nodes.iter_mut().skip(1).rev() {
            node.shut_down();
        }
        cluster.nodes[0].shut_down();
        let template = Template {
            storage,
            ips,
            root: root.to_owned(),
        };
        for (n, node) in cluster.nodes.iter().enumerate() {
            let spool = template.spool(n);
            std::fs::create_dir(&spool)
                .map_err(|e| HarnessError::io(format!("creating {}", spool.display()), e))?;
            process::copy_tree(&node.dir().join("spool"), &spool)?;
        }
        let ips: String = template.ips.iter().map(|ip| format!("{ip}\n")).collect();
        let path = root.join("ips");
        std::fs::write(&path, ips)
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
    }

    /// Node `n`'s Mnesia directory.
    fn spool(&self, n: usize) -> PathBuf {
        self.root.join(format!("spool-{n}"))
    }
}

/// A hash of what a template depends on.
fn template_key(storage: Storage) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    crate::ejabberd_config::fingerprint().hash(&mut hasher);
    format!("{storage:?}").hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    if let Some(ctl) = process::find_in_path("ejabberdctl")
        && let Ok(meta) = std::fs::metadata(ctl)
    {
        meta.len().hash(&mut hasher);
        meta.modified().ok().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

fn launch_error(error: LaunchError) -> HarnessError {
    match error {
        LaunchError::PortTaken(e) | LaunchError::Fatal(e) => e,
    }
}

/// `127.A.B.2`, `127.A.B.3`, ...: loopback addresses of this cluster's own,
/// `A.B` random.
fn node_ips() -> Result<Vec<Ipv4Addr>, HarnessError> {
    let random = process::random_alnum(8)?;
    let mut seed = 0u32;
    for byte in random.bytes() {
        seed = seed.wrapping_mul(31).wrapping_add(u32::from(byte));
    }
    let [a, b] = [(seed % 254 + 1) as u8, ((seed / 254) % 256) as u8];
    Ok((0..CLUSTER_NODES)
        .map(|n| Ipv4Addr::new(127, a, b, 2 + n as u8))
        .collect())
}

/// A port free on every one of `ips`.
fn port_free_on_all(ips: &[Ipv4Addr]) -> Result<u16, LaunchError> {
    for _ in 0..20 {
        let port = process::free_port().map_err(LaunchError::Fatal)?;
        if ips
            .iter()
            .all(|ip| TcpListener::bind(SocketAddr::from((IpAddr::V4(*ip), port))).is_ok())
        {
            return Ok(port);
        }
    }
    Err(LaunchError::PortTaken(HarnessError::io(
        "finding a port free on every node's address",
        std::io::Error::from(std::io::ErrorKind::AddrInUse),
    )))
}
