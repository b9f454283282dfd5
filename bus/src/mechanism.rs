//! Which SASL mechanism a login uses: the strongest the server offers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// The SASL mechanisms xbus logs in with, strongest first.
///
/// SCRAM never sends the password, and proves that the server knows it
/// too; PLAIN sends it (inside TLS, or on loopback), so it is used only
/// when the server offers no SCRAM. ANONYMOUS is never used: a bus always
/// logs in as its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    const PREFERRED: [Mechanism; 3] = [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The SASL name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The strongest of `offered`, if xbus knows any.
    pub(crate) fn pick(offered: &BTreeSet<String>) -> Option<Mechanism> {
        Self::PREFERRED
            .into_iter()
            .find(|m| offered.contains(m.name()))
    }
}

/// The mechanism of a bus's last login, shared by its logins and the
/// [`Bus`](crate::Bus) handle.
#[derive(Debug, Clone, Default)]
pub(crate) struct LastMechanism(Arc<AtomicU8>);

impl LastMechanism {
    pub(crate) fn set(&self, mechanism: Mechanism) {
        let index = Mechanism::PREFERRED
            .iter()
            .position(|m| *m == mechanism)
            .unwrap_or_default();
        self.0.store(index as u8 + 1, Ordering::Relaxed);
    }

    /// The SASL name, or `""` before the first login.
    pub(crate) fn name(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            0 => "",
            n => Mechanism::PREFERRED[usize::from(n - 1)].name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn scram_wins_over_plain() {
        let pick = |names: &[&str]| Mechanism::pick(&offered(names)).map(Mechanism::name);
        assert_eq!(
            pick(&["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]),
            Some("SCRAM-SHA-256")
        );
        assert_eq!(
            pick(&["PLAIN", "SCRAM-SHA-1", "X-OAUTH2"]),
            Some("SCRAM-SHA-1")
        );
        assert_eq!(pick(&["PLAIN", "DIGEST-MD5"]), Some("PLAIN"));
        assert_eq!(pick(&["ANONYMOUS", "EXTERNAL"]), None);
    }

    #[test]
    fn the_last_login_is_shared() {
        let last = LastMechanism::default();
        let handle = last.clone();
        assert_eq!(handle.name(), "");
        last.set(Mechanism::ScramSha1);
        assert_eq!(handle.name(), "SCRAM-SHA-1");
        last.set(Mechanism::Plain);
        assert_eq!(handle.name(), "PLAIN");
    }
}
