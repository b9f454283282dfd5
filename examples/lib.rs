//! Holds the examples; see the `[[example]]` entries of Cargo.toml. What
//! they share lives here.

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`).
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
}
