//! [`Password`]: a password that never shows in `Debug` output or logs.

use std::fmt;

/// The account's password. Its `Debug` prints `"<redacted>"`, so that a
/// logged [`BusConfig`](crate::BusConfig) or builder never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Password(String);

impl Password {
    pub(crate) fn new(password: String) -> Password {
        Password(password)
    }

    /// The password itself, for SASL.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}
