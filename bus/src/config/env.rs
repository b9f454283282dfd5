//! [`BusConfig::from_env`]: the configuration from `XBUS_*` variables.

use std::path::{Path, PathBuf};

use super::{BusConfig, SettingNames, Tls};
use crate::error::ConfigError;

/// The names errors use for settings read from the environment.
const ENV_NAMES: SettingNames = SettingNames {
    jid: "XBUS_JID",
    password: "XBUS_PASSWORD",
    server: "XBUS_SERVER",
    pubsub: "XBUS_PUBSUB",
    tls: "XBUS_TLS",
};

impl BusConfig {
    /// Reads the configuration from the environment:
    ///
    /// | variable | meaning | required |
    /// |---|---|---|
    /// | `XBUS_JID` | account JID, e.g. `orders@example.org` | yes |
    /// | `XBUS_PASSWORD` | its password | this or `XBUS_PASSWORD_FILE` |
    /// | `XBUS_PASSWORD_FILE` | a file holding the password (a mounted secret); one trailing newline is ignored | this or `XBUS_PASSWORD` |
    /// | `XBUS_SERVER` | `host:port` to connect to, or several, comma-separated (`a:5222,b:5222`: the nodes of a cluster); default: the JID's domain on port 5222 | no |
    /// | `XBUS_PUBSUB` | pubsub service JID; default `pubsub.<domain>` | no |
    /// | `XBUS_TLS` | `required` (default), `plaintext` (loopback servers only), or a path to a PEM CA file | no |
    ///
    /// A missing or invalid value gives a [`ConfigError`] that names the
    /// variable. Setting both `XBUS_PASSWORD` and `XBUS_PASSWORD_FILE` is
    /// an error, so that a stale variable never wins over the secret.
    pub fn from_env() -> Result<BusConfig, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `get`
    /// (for tests and for configuration that is not in the process
    /// environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<BusConfig, ConfigError> {
        let set = |name: &str| get(name).filter(|v| !v.is_empty());
        let jid = set("XBUS_JID").ok_or(ConfigError::Missing {
            variable: "XBUS_JID",
        })?;
        let password = match (set("XBUS_PASSWORD"), set("XBUS_PASSWORD_FILE")) {
            (Some(password), None) => password,
            (None, Some(path)) => BusConfig::read_password_file(Path::new(&path))?,
            (Some(_), Some(path)) => {
                return Err(ConfigError::Invalid {
                    setting: "XBUS_PASSWORD_FILE",
                    value: path,
                    reason: "XBUS_PASSWORD is set too: set only one of them".into(),
                });
            }
            (None, None) => {
                return Err(ConfigError::Missing {
                    variable: "XBUS_PASSWORD (or XBUS_PASSWORD_FILE)",
                });
            }
        };
        let mut builder = BusConfig::builder(jid, password);
        if let Some(server) = set("XBUS_SERVER") {
            builder = builder.server(server);
        }
        if let Some(pubsub) = set("XBUS_PUBSUB") {
            builder = builder.pubsub_service(pubsub);
        }
        if let Some(tls) = set("XBUS_TLS") {
            builder = builder.tls(match tls.as_str() {
                "required" => Tls::Required,
                "plaintext" => Tls::Plaintext,
                path => Tls::CustomCa(PathBuf::from(path)),
            });
        }
        builder.build_named(&ENV_NAMES)
    }

    /// The password in a secret file, as `XBUS_PASSWORD_FILE` reads it: the
    /// file's content without one trailing newline (`echo pw > file`
    /// writes one). An unreadable or empty file is a [`ConfigError`]
    /// naming `XBUS_PASSWORD_FILE` and the path.
    pub fn read_password_file(path: &Path) -> Result<String, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            setting: "XBUS_PASSWORD_FILE",
            value: path.display().to_string(),
            reason,
        };
        let content =
            std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read: {e}")))?;
        let password = content
            .strip_suffix('\n')
            .map(|p| p.strip_suffix('\r').unwrap_or(p))
            .unwrap_or(&content);
        if password.is_empty() {
            return Err(invalid("the file is empty".into()));
        }
        Ok(password.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<BusConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BusConfig::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn from_env_names_the_missing_variable() {
        let err = env(&[("XBUS_PASSWORD", "x")]).unwrap_err();
        assert!(err.to_string().contains("XBUS_JID"), "{err}");
        let err = env(&[("XBUS_JID", "a@b")]).unwrap_err();
        assert!(err.to_string().contains("XBUS_PASSWORD"), "{err}");
    }

    #[test]
    fn from_env_names_the_invalid_variable() {
        let base = [("XBUS_JID", "a@example.org"), ("XBUS_PASSWORD", "pw")];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            env(&v).unwrap_err().to_string()
        };
        assert!(with(("XBUS_SERVER", "localhost")).contains("XBUS_SERVER"));
        assert!(with(("XBUS_SERVER", "localhost:http")).contains("XBUS_SERVER"));
        assert!(with(("XBUS_PUBSUB", "a@@b")).contains("XBUS_PUBSUB"));
        assert!(with(("XBUS_TLS", "/no/such/ca.pem")).contains("XBUS_TLS"));
        let err = env(&[("XBUS_JID", "example.org"), ("XBUS_PASSWORD", "pw")]).unwrap_err();
        assert!(err.to_string().contains("XBUS_JID"), "{err}");
    }

    #[test]
    fn from_env_reads_everything() {
        let config = env(&[
            ("XBUS_JID", "svc@example.org/one"),
            ("XBUS_PASSWORD", "pw"),
            ("XBUS_SERVER", "127.0.0.1:5299"),
            ("XBUS_PUBSUB", "events.example.org"),
            ("XBUS_TLS", "plaintext"),
        ])
        .unwrap();
        assert_eq!(config.jid().to_string(), "svc@example.org/one");
        assert_eq!(config.servers, [("127.0.0.1".to_owned(), 5299)]);
        assert_eq!(config.pubsub_service().to_string(), "events.example.org");
        assert_eq!(config.tls, Tls::Plaintext);
    }

    #[test]
    fn several_servers() {
        let config = env(&[
            ("XBUS_JID", "svc@example.org"),
            ("XBUS_PASSWORD", "pw"),
            (
                "XBUS_SERVER",
                "127.0.0.2:5222, 127.0.0.3:5222,,127.0.0.2:5222",
            ),
        ])
        .unwrap();
        assert_eq!(
            config.servers,
            [
                ("127.0.0.2".to_owned(), 5222),
                ("127.0.0.3".to_owned(), 5222)
            ]
        );
        let err = env(&[
            ("XBUS_JID", "svc@example.org"),
            ("XBUS_PASSWORD", "pw"),
            ("XBUS_SERVER", "a:5222,b"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("XBUS_SERVER") && err.contains("\"b\""),
            "{err}"
        );
        let config = BusConfig::builder("svc@example.org", "pw")
            .servers(["x:1", "y:2"])
            .build()
            .unwrap();
        assert_eq!(config.servers.len(), 2);
        let default = BusConfig::builder("svc@example.org", "pw").build().unwrap();
        assert_eq!(default.servers, [("example.org".to_owned(), 5222)]);
    }

    #[test]
    fn the_password_comes_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let path = file.display().to_string();
        let config = env(&[("XBUS_JID", "a@example.org"), ("XBUS_PASSWORD_FILE", &path)]).unwrap();
        assert_eq!(config.password.expose(), "s3cret");
        let both = env(&[
            ("XBUS_JID", "a@example.org"),
            ("XBUS_PASSWORD", "pw"),
            ("XBUS_PASSWORD_FILE", &path),
        ])
        .unwrap_err()
        .to_string();
        assert!(both.contains("set only one"), "{both}");
        let missing = dir.path().join("none").display().to_string();
        let err = env(&[
            ("XBUS_JID", "a@example.org"),
            ("XBUS_PASSWORD_FILE", &missing),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("XBUS_PASSWORD_FILE") && err.contains("cannot read"),
            "{err}"
        );
        std::fs::write(&file, "\n").unwrap();
        let err = env(&[("XBUS_JID", "a@example.org"), ("XBUS_PASSWORD_FILE", &path)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
        let err = env(&[("XBUS_JID", "a@example.org")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("XBUS_PASSWORD_FILE"), "{err}");
    }

    #[test]
    fn plaintext_only_to_loopback() {
        let with_server = |server: &str| {
            env(&[
                ("XBUS_JID", "a@example.org"),
                ("XBUS_PASSWORD", "pw"),
                ("XBUS_SERVER", server),
                ("XBUS_TLS", "plaintext"),
            ])
        };
        assert!(with_server("127.0.0.1:5222").is_ok());
        assert!(with_server("127.4.5.2:5222,[::1]:5222").is_ok());
        // A name is checked once resolved, when the bus connects.
        assert!(with_server("localhost:5222").is_ok());
        let err = with_server("127.0.0.1:5222,10.0.0.7:5222")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("XBUS_TLS") && err.contains("10.0.0.7") && err.contains("loopback"),
            "{err}"
        );
    }
}
