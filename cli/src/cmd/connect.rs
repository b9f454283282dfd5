//! The connection options every bus command shares, and the one-line
//! messages for what can go wrong while connecting.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use xbus::{Bus, BusConfig, BusConfigBuilder, ConfigError, ConnectError, Tls};

use super::json::parse_secs;

/// Where to connect and as whom: the flags of `pub`, `sub`, `req` and
/// `services`, each with the environment variable of
/// `BusConfig::from_env` as its fallback.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectArgs {
    /// Account JID, e.g. `orders@example.org` (a full JID picks the resource).
    #[arg(long, env = "XBUS_JID", value_name = "JID")]
    pub jid: Option<String>,
    /// The account's password.
    #[arg(long, env = "XBUS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// A file holding the password (a mounted secret), instead of
    /// `--password`; one trailing newline is ignored.
    #[arg(long, env = "XBUS_PASSWORD_FILE", value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Server to connect to, `host:port`, or several, comma-separated (the
    /// nodes of a cluster: the first that answers) [default: the JID's
    /// domain, port 5222].
    #[arg(long, env = "XBUS_SERVER", value_name = "HOST:PORT[,...]")]
    pub server: Option<String>,
    /// Pubsub service holding the topics (default: `pubsub.<domain>`).
    #[arg(long, env = "XBUS_PUBSUB", value_name = "JID")]
    pub pubsub: Option<String>,
    /// `required` (STARTTLS, system roots), `plaintext` (loopback only), or
    /// the path of a PEM CA file to trust.
    #[arg(
        long,
        env = "XBUS_TLS",
        value_name = "MODE",
        default_value = "required"
    )]
    pub tls: String,
    /// How long connecting and logging in may take, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub connect_timeout: Duration,
}

impl ConnectArgs {
    /// The bus configuration these options describe, mirroring
    /// `BusConfig::from_lookup`; errors name both the flag and the variable.
    pub fn config(&self) -> anyhow::Result<BusConfigBuilder> {
        let given = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        let jid = given(&self.jid)
            .ok_or_else(|| anyhow!("no account JID: pass --jid or set XBUS_JID"))?;
        let password = match (given(&self.password), &self.password_file) {
            (Some(password), None) => password,
            (None, Some(path)) => {
                BusConfig::read_password_file(path).map_err(|e| anyhow!("--password-file/{e}"))?
            }
            (Some(_), Some(_)) => {
                return Err(anyhow!(
                    "both a password and a password file are given \
                     (--password/XBUS_PASSWORD, --password-file/XBUS_PASSWORD_FILE): give one"
                ));
            }
            (None, None) => {
                return Err(anyhow!(
                    "no password: pass --password or --password-file, \
                     or set XBUS_PASSWORD or XBUS_PASSWORD_FILE"
                ));
            }
        };
        let mut builder = BusConfig::builder(jid, password).connect_timeout(self.connect_timeout);
        if let Some(server) = given(&self.server) {
            builder = builder.server(server);
        }
        if let Some(pubsub) = given(&self.pubsub) {
            builder = builder.pubsub_service(pubsub);
        }
        builder = builder.tls(match self.tls.as_str() {
            "" | "required" => Tls::Required,
            "plaintext" => Tls::Plaintext,
            path => Tls::CustomCa(PathBuf::from(path)),
        });
        Ok(builder)
    }

    /// Connects with these options; `tune` adjusts the configuration first.
    pub async fn connect(
        &self,
        tune: impl FnOnce(BusConfigBuilder) -> BusConfigBuilder,
    ) -> anyhow::Result<Bus> {
        let config = tune(self.config()?).build().map_err(config_error)?;
        Bus::connect(config).await.map_err(connect_error)
    }
}

/// Names the flag and the variable of an invalid setting.
fn config_error(error: ConfigError) -> anyhow::Error {
    let flag = |setting: &str| match setting {
        "jid" => "--jid/XBUS_JID",
        "password" => "--password/XBUS_PASSWORD",
        "server" => "--server/XBUS_SERVER",
        "pubsub_service" => "--pubsub/XBUS_PUBSUB",
        "tls" => "--tls/XBUS_TLS",
        "topic_access" => "--publisher/--subscriber",
        _ => "a setting",
    };
    match error {
        ConfigError::Invalid {
            setting,
            value,
            reason,
        } => anyhow!("invalid {} {value:?}: {reason}", flag(setting)),
        ConfigError::Missing { variable } => anyhow!("{} is not set", flag(variable)),
        other => anyhow!(other),
    }
}

/// Says what failed while connecting, in words a user acts on.
fn connect_error(error: ConnectError) -> anyhow::Error {
    match error {
        ConnectError::Auth { jid, condition } => {
            anyhow!("login failed: wrong password or unknown account for {jid} ({condition})")
        }
        ConnectError::UnknownHost { host, source } => {
            anyhow!("unknown server name {host}: {}", io_reason(&source))
        }
        ConnectError::Unreachable { server, source } => {
            anyhow!("cannot connect to {server}: {}", io_reason(&source))
        }
        ConnectError::TimedOut { server, after } => {
            anyhow!(
                "cannot connect to {server}: no login within {}s",
                after.as_secs_f64()
            )
        }
        other => anyhow!(other),
    }
}

/// A socket error in plain words: `connection refused` rather than
/// `Connection refused (os error 111)`.
fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match error.kind() {
        kind @ (ConnectionRefused | ConnectionReset | TimedOut | HostUnreachable
        | NetworkUnreachable | AddrNotAvailable | PermissionDenied) => kind.to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_errors_read_plainly() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(io_reason(&refused), "connection refused");
    }

    #[test]
    fn invalid_settings_name_flag_and_variable() {
        let error = config_error(ConfigError::Invalid {
            setting: "server",
            value: "nope".into(),
            reason: "expected host:port".into(),
        });
        assert_eq!(
            error.to_string(),
            "invalid --server/XBUS_SERVER \"nope\": expected host:port"
        );
    }
}
