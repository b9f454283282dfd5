//! Which systems a run can measure, and the one place that starts them:
//! [`start_group`] starts what a group of systems shares (an XMPP server,
//! nats-server), [`start_system`] builds one system on it.
//!
//! This is the only file that names the drivers' constructors.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::mock::Mock;
use super::results::Scenario;
use super::scenario::IdleConnections;
use super::servers::{self, XmppTarget};
use super::system::{EventSystem, GroupSystem, RpcSystem};
use super::{http, nats, raw_xmpp, xmpp};
use xbus::Persistence;

/// A system as named on the command line (`--systems`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// xbus on an XMPP server.
    Xbus,
    /// A bare tokio-xmpp client on an XMPP server: the ceiling for xbus.
    RawXmpp,
    /// NATS core (async-nats and nats-server).
    Nats,
    /// HTTP/1.1 keep-alive RPC (reqwest and axum).
    Http,
    /// REST polling every 100 ms.
    Poll100ms,
    /// REST polling every second.
    Poll1s,
    /// The in-process mock (hidden: it exercises the pipeline, it
    /// measures nothing real).
    Mock,
}

impl Kind {
    /// Every system `--systems` accepts.
    pub const ALL: [Kind; 7] = [
        Kind::Xbus,
        Kind::RawXmpp,
        Kind::Nats,
        Kind::Http,
        Kind::Poll100ms,
        Kind::Poll1s,
        Kind::Mock,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Xbus => "xbus",
            Kind::RawXmpp => "raw-xmpp",
            Kind::Nats => "nats",
            Kind::Http => "http",
            Kind::Poll100ms => "poll-100ms",
            Kind::Poll1s => "poll-1s",
            Kind::Mock => "mock",
        }
    }

    /// The system called `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name.trim())
    }

    /// Whether it runs on each XMPP server.
    pub fn on_xmpp(self) -> bool {
        matches!(self, Kind::Xbus | Kind::RawXmpp)
    }

    /// Whether it runs in `group`.
    pub fn runs_in(self, group: Group) -> bool {
        match self {
            Kind::Xbus | Kind::RawXmpp => matches!(group, Group::Xmpp(_)),
            Kind::Nats => group == Group::Nats,
            Kind::Http | Kind::Poll100ms | Kind::Poll1s => group == Group::Http,
            Kind::Mock => group == Group::Mock,
        }
    }

    /// Row label: `xbus/prosody`, `nats`, ...
    pub fn label(self, group: Group) -> String {
        match group {
            Group::Xmpp(server) => format!("{}/{server}", self.name()),
            _ => self.name().to_owned(),
        }
    }

    /// Which of `selected` it runs in `group`: event scenarios for event
    /// systems, RPC scenarios for RPC systems, the consumer group for xbus
    /// (on every server), idle memory for xbus on the embedded server (and
    /// the mock).
    ///
    /// A server with stock storage (`prosody-stock`, `ejabberd-stock`) runs
    /// the throughput scenario only: storage is what it is there to show.
    pub fn scenarios(self, group: Group, selected: &[Scenario]) -> Vec<Scenario> {
        let stock = matches!(group, Group::Xmpp(server) if servers::is_stock(server));
        let events = !matches!(self, Kind::Http);
        let rpc = !matches!(self, Kind::Poll100ms | Kind::Poll1s);
        let groups = matches!(self, Kind::Xbus);
        let idle_memory = matches!(
            (self, group),
            (Kind::Xbus, Group::Xmpp("embedded")) | (Kind::Mock, _)
        );
        selected
            .iter()
            .copied()
            .filter(|s| !stock || *s == Scenario::Throughput)
            .filter(|s| match s {
                Scenario::ThroughputTransient => groups,
                Scenario::Throughput
                | Scenario::Fanout4
                | Scenario::Fanout16
                | Scenario::PushLatency
                | Scenario::Idle => events,
                Scenario::Group3 => groups,
                Scenario::RpcSequential | Scenario::RpcConcurrent => rpc,
                Scenario::IdleMemory => idle_memory,
            })
            .collect()
    }
}

/// Systems that share what [`start_group`] starts, measured one after the
/// other; a group is stopped before the next starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// On an XMPP server: `embedded`, `prosody` or `ejabberd`.
    Xmpp(&'static str),
    /// On nats-server.
    Nats,
    /// HTTP servers in this process.
    Http,
    /// In this process.
    Mock,
}

impl Group {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Group::Xmpp(server) => server,
            Group::Nats => "nats-server",
            Group::Http => "http",
            Group::Mock => "mock",
        }
    }
}

/// What a group's systems share while it runs; dropping it stops it.
pub enum GroupState {
    /// A running XMPP server.
    Xmpp(Arc<XmppTarget>),
    /// A running nats-server, with the clients' settings.
    Nats(Arc<nats::NatsSystem>),
    /// Nothing shared.
    None,
}

/// Starts the servers of `group` (blocking work runs off the runtime).
pub async fn start_group(group: Group) -> anyhow::Result<GroupState> {
    match group {
        Group::Xmpp(server) => {
            let target = tokio::task::spawn_blocking(move || servers::start(server)).await??;
            Ok(GroupState::Xmpp(target))
        }
        Group::Nats => {
            let server = tokio::task::spawn_blocking(nats::NatsServer::start).await??;
            Ok(GroupState::Nats(Arc::new(nats::NatsSystem::new(server))))
        }
        Group::Http | Group::Mock => Ok(GroupState::None),
    }
}

/// Connects idle clients for the idle-memory scenario.
pub type IdleConnect =
    Box<dyn Fn(usize) -> BoxFuture<'static, anyhow::Result<IdleConnections>> + Send + Sync>;

/// A system under test, ready for the scenarios.
pub struct Sut {
    /// Its event side, if it has one.
    pub events: Option<Arc<dyn EventSystem>>,
    /// Its RPC side, if it has one.
    pub rpc: Option<Arc<dyn RpcSystem>>,
    /// Its consumer groups, if it has them.
    pub groups: Option<Arc<dyn GroupSystem>>,
    /// Its event side on transient topics, if it has them.
    pub transient: Option<Arc<dyn EventSystem>>,
    /// The server's processes (one per node of a cluster), for their CPU time.
    pub server_pids: Vec<u32>,
    /// For the idle-memory scenario.
    pub idle_connect: Option<IdleConnect>,
}

impl Sut {
    /// Its row label, as the system gives it.
    pub fn name(&self) -> Option<String> {
        match (&self.events, &self.rpc) {
            (Some(events), _) => Some(events.name()),
            (None, Some(rpc)) => Some(rpc.name()),
            (None, None) => None,
        }
    }
}

/// Builds system `kind` on `state` (the state of `kind`'s group).
pub async fn start_system(state: &GroupState, kind: Kind) -> anyhow::Result<Sut> {
    let mut sut = Sut {
        events: None,
        rpc: None,
        groups: None,
        transient: None,
        server_pids: Vec::new(),
        idle_connect: None,
    };
    match (kind, state) {
        (Kind::Xbus, GroupState::Xmpp(target)) => {
            let system = Arc::new(xmpp::XbusSystem::new(target.clone()));
            let transient =
                xmpp::XbusSystem::with_persistence(target.clone(), Persistence::Transient);
            sut.transient = Some(Arc::new(transient));
            sut.events = Some(system.clone());
            sut.rpc = Some(system.clone());
            sut.groups = Some(system);
            sut.server_pids = target.pids.clone();
            let target = target.clone();
            sut.idle_connect = Some(Box::new(move |n| {
                let target = target.clone();
                async move {
                    let buses = xmpp::connect_idle_buses(&target, n).await?;
                    Ok(IdleConnections {
                        count: buses.len(),
                        guard: Box::new(buses),
                    })
                }
                .boxed()
            }));
        }
        (Kind::RawXmpp, GroupState::Xmpp(target)) => {
            let system = Arc::new(raw_xmpp::RawXmppSystem::new(target.clone()));
            sut.events = Some(system.clone());
            sut.rpc = Some(system);
            sut.server_pids = target.pids.clone();
        }
        (Kind::Nats, GroupState::Nats(system)) => {
            sut.events = Some(system.clone());
            sut.rpc = Some(system.clone());
            sut.server_pids = vec![system.server().pid()];
        }
        (Kind::Http, _) => sut.rpc = Some(Arc::new(http::HttpRpc::start().await?)),
        (Kind::Poll100ms, _) => {
            let polling = http::Polling::start(Duration::from_millis(100)).await?;
            sut.events = Some(Arc::new(polling));
        }
        (Kind::Poll1s, _) => {
            let polling = http::Polling::start(Duration::from_secs(1)).await?;
            sut.events = Some(Arc::new(polling));
        }
        (Kind::Mock, _) => {
            let mock = Arc::new(Mock::start(Default::default()).await?);
            sut.events = Some(mock.clone());
            sut.rpc = Some(mock.clone());
            sut.idle_connect = Some(Box::new(move |n| {
                let mock = mock.clone();
                async move {
                    let mut connections = Vec::with_capacity(n);
                    for _ in 0..n {
                        connections.push(mock.idle_connection().await?);
                    }
                    Ok(IdleConnections {
                        count: connections.len(),
                        guard: Box::new(connections),
                    })
                }
                .boxed()
            }));
        }
        (kind, _) => {
            return Err(anyhow::anyhow!(
                "{} does not run in this group",
                kind.name()
            ))
            .context("internal error");
        }
    }
    Ok(sut)
}
