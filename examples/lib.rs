//! Holds the examples; see the `[[example]]` entries of Cargo.toml. What
//! they share lives here.

use xbus::BusConfig;

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`).
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
}

/// Where the buses of the `rpc` and `graceful_stop` examples log in:
/// instances `inventory/RESOURCE` and a client `shop`.
pub enum Configs {
    /// One account from the environment, told apart by resource.
    Env,
    /// An embedded server with a service account and a client account.
    Local(Box<xbus_server::Server>),
}

/// The environment's account when `XBUS_JID` is set, else an embedded
/// server on loopback.
pub async fn configs() -> anyhow::Result<Configs> {
    if std::env::var_os("XBUS_JID").is_some() {
        return Ok(Configs::Env);
    }
    println!("XBUS_JID is not set: starting an embedded XMPP server on loopback");
    let server = xbus_server::Server::start_local().await?;
    Ok(Configs::Local(Box::new(server)))
}

impl Configs {
    /// The config of instance `resource` of the inventory service.
    pub fn instance(&self, resource: &str) -> anyhow::Result<BusConfig> {
        match self {
            Configs::Env => env_with_resource(resource),
            Configs::Local(server) => Ok(server
                .bus_config(&format!("inventory/{resource}"))?
                .build()?),
        }
    }

    /// The config of the calling client.
    pub fn client(&self) -> anyhow::Result<BusConfig> {
        match self {
            Configs::Env => env_with_resource("shop"),
            Configs::Local(server) => Ok(server.bus_config("shop")?.build()?),
        }
    }
}

/// `BusConfig::from_env`, with `resource` on the JID.
fn env_with_resource(resource: &str) -> anyhow::Result<BusConfig> {
    Ok(BusConfig::from_lookup(|name| {
        let value = std::env::var(name).ok()?;
        Some(match name {
            "XBUS_JID" => format!("{value}/{resource}"),
            _ => value,
        })
    })?)
}
