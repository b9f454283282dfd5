//! The certificate all test servers present, and the CA that signed it.
//!
//! One test CA and one RSA-2048 server certificate per test process, for
//! `localhost` and `pubsub.localhost` (subjectAltName), made with `openssl`
//! the first time a server starts. A separate CA is needed: webpki (rustls)
//! refuses a self-signed CA certificate used as the server's own
//! (`CaUsedAsEndEntity`). The PEM text is kept in memory (the scratch
//! directory is removed at once); each server writes its own copy into its
//! own temporary directory, so nothing is shared on disk between servers.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::{HarnessError, OPENSSL_INSTALL_HINT, process, require_binary};

/// How long `openssl req` may take.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// A certificate and its private key, both PEM.
#[derive(Debug)]
pub(crate) struct CertPair {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) ca_pem: String,
}

/// The process-wide certificate, generated on first use.
///
/// A failure is not cached: the next call tries again.
pub(crate) fn shared() -> Result<&'static CertPair, HarnessError> {
    static CERT: Mutex<Option<&'static CertPair>> = Mutex::new(None);
    let mut guard = CERT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pair) = *guard {
        return Ok(pair);
    }
    let pair: &'static CertPair = Box::leak(Box::new(generate()?));
    *guard = Some(pair);
    Ok(pair)
}

fn generate() -> Result<CertPair, HarnessError> {
    let openssl = require_binary("openssl", OPENSSL_INSTALL_HINT);
    let scratch = tempfile::Builder::new()
        .prefix("xbus-certs-")
        .tempdir()
        .map_err(|e| HarnessError::io("creating a directory for the test certificate", e))?;
    let path = |name: &str| scratch.path().join(name);
    let (ca_cert, ca_key) = (path("ca.crt"), path("ca.key"));
    let (cert, key, csr, ext) = (
        path("localhost.crt"),
        path("localhost.key"),
        path("localhost.csr"),
        path("ext.cnf"),
    );
    fs::write(
        &ext,
        "subjectAltName=DNS:localhost,DNS:pubsub.localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| HarnessError::io("writing the certificate extensions", e))?;
    let openssl_run = |args: &[&std::ffi::OsStr], what: &str| {
        let mut command = Command::new(&openssl);
        command.args(args);
        process::run(command, what, OPENSSL_TIMEOUT)
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    openssl_run(
        &[
            os("req"),
            os("-x509"),
            os("-newkey"),
            os("rsa:2048"),
            os("-nodes"),
            os("-days"),
            os("3650"),
            os("-subj"),
            os("/CN=xbus test CA"),
            os("-keyout"),
            ca_key.as_os_str(),
            os("-out"),
            ca_cert.as_os_str(),
        ],
        "openssl req -x509 ... (test CA)",
    )?;
    openssl_run(
        &[
            os("req"),
            os("-newkey"),
            os("rsa:2048"),
            os("-nodes"),
            os("-subj"),
            os("/CN=localhost"),
            os("-keyout"),
            key.as_os_str(),
            os("-out"),
            csr.as_os_str(),
        ],
        "openssl req -newkey ... (server key)",
    )?;
    openssl_run(
        &[
            os("x509"),
            os("-req"),
            os("-in"),
            csr.as_os_str(),
            os("-CA"),
            ca_cert.as_os_str(),
            os("-CAkey"),
            ca_key.as_os_str(),
            os("-CAcreateserial"),
            os("-days"),
            os("3650"),
            os("-extfile"),
            ext.as_os_str(),
            os("-out"),
            cert.as_os_str(),
        ],
        "openssl x509 -req ... (server certificate)",
    )?;
    let read = |path: &Path| {
        fs::read_to_string(path)
            .map_err(|e| HarnessError::io(format!("reading {}", path.display()), e))
    };
    Ok(CertPair {
        cert_pem: read(&cert)?,
        key_pem: read(&key)?,
        ca_pem: read(&ca_cert)?,
    })
}

/// Writes `localhost.crt` and `localhost.key` (mode 0600) into `dir`;
/// returns the path of the CA certificate (`ca.crt`), the one clients
/// trust.
pub(crate) fn install(pair: &CertPair, dir: &Path) -> Result<PathBuf, HarnessError> {
    let write = |name: &str, text: &str, mode: u32| {
        let path = dir.join(name);
        fs::write(&path, text)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(mode)))
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        Ok::<_, HarnessError>(path)
    };
    write("localhost.crt", &pair.cert_pem, 0o644)?;
    write("localhost.key", &pair.key_pem, 0o600)?;
    write("ca.crt", &pair.ca_pem, 0o644)
}
