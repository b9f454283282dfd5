//! Errors of the embedded server's public API.

use std::io;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding or configuring the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The configuration is inconsistent (the message says how).
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// The TLS certificate or key could not be made or loaded.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// Writing the generated certificate to disk failed.
    #[error("cannot write the generated certificate: {0}")]
    Io(#[from] io::Error),
}
