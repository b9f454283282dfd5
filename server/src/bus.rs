//! xbus on the embedded server (feature `bus`): the one line a test or an
//! example needs to get a bus.

use crate::{Server, ServerError};

/// The password [`Server::bus`] registers its users with: the embedded
/// server is for development and tests, not for secrets.
const DEV_PASSWORD: &str = "xbus-dev";

/// [`start_with_bus`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "bus")))]
pub enum EmbeddedError {
    /// The server did not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The bus did not connect.
    #[error(transparent)]
    Connect(#[from] xbus::ConnectError),
    /// The bus configuration was refused.
    #[error(transparent)]
    Config(#[from] xbus::ConfigError),
}

#[cfg_attr(docsrs, doc(cfg(feature = "bus")))]
impl Server {
    /// A [`BusConfig`](xbus::BusConfig) builder for `user` on this server:
    /// its address, and STARTTLS trusting its generated certificate (or
    /// plaintext when the server has no TLS). `user` is a user name,
    /// optionally with `/resource` to name the instance. The account is
    /// registered with a development password.
    pub fn bus_config(&self, user: &str) -> Result<xbus::BusConfigBuilder, ServerError> {
        let (name, resource) = match user.split_once('/') {
            Some((name, resource)) => (name, Some(resource)),
            None => (user, None),
        };
        self.register(name, DEV_PASSWORD)?;
        let jid = match resource {
            Some(resource) => format!("{name}@{}/{resource}", self.domain()),
            None => format!("{name}@{}", self.domain()),
        };
        let builder = xbus::BusConfig::builder(jid, DEV_PASSWORD).server(self.addr().to_string());
        Ok(match self.ca_file() {
            Some(ca) => builder.ca_file(ca),
            None => builder.allow_plaintext(),
        })
    }

    /// Connects a bus as `user` (see [`bus_config`](Self::bus_config)).
    pub async fn bus(&self, user: &str) -> Result<xbus::Bus, EmbeddedError> {
        let config = self.bus_config(user)?.build()?;
        Ok(xbus::Bus::connect(config).await?)
    }
}

/// Starts an embedded server for `localhost` on a free loopback port, with
/// STARTTLS on a generated certificate, and connects a bus to it as
/// `user`. Keep the server alive as long as the bus:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let (server, bus) = xbus_server::start_with_bus("orders").await?;
/// let other = server.bus("billing").await?;
/// # Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "bus")))]
pub async fn start_with_bus(user: &str) -> Result<(Server, xbus::Bus), EmbeddedError> {
    let server = Server::start_local().await?;
    let bus = server.bus(user).await?;
    Ok((server, bus))
}
