//! [`Allow`]: who may call a bus's handlers and send to its inboxes.
//!
//! The server stamps every stanza with its sender's JID, which a client
//! cannot forge, so the bus can check the sender before it runs any code
//! of the application's. See `docs/SECURITY.md`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use xmpp_parsers::jid::{BareJid, DomainPart};

use crate::error::ConfigError;

/// Who may call this bus's handlers ([`Bus::serve`](crate::Bus::serve))
/// and send events to its inboxes ([`Bus::inbox`](crate::Bus::inbox)).
///
/// A refused call is answered `forbidden` before its handler runs (the
/// caller gets [`RequestError::Forbidden`](crate::RequestError::Forbidden));
/// a refused event is dropped and counted in
/// [`BusStats::refused_messages`](crate::BusStats::refused_messages).
///
/// The default is [`Allow::same_domain`]: accounts of the bus's own XMPP
/// domain, as for presence subscriptions
/// ([`SubscriptionPolicy::SameDomain`](crate::SubscriptionPolicy::SameDomain)).
/// Set it for the whole bus with
/// [`BusConfigBuilder::allow`](crate::BusConfigBuilder::allow), or for one
/// method with [`ServeBuilder::allow`](crate::ServeBuilder::allow).
///
/// ```
/// use xbus::Allow;
///
/// // Two services and every account of a partner's domain.
/// let allow = Allow::only(["orders@example.org", "billing@example.org", "partner.example"])?;
/// assert!(allow.allows("orders@example.org".parse()?));
/// assert!(allow.allows("anyone@partner.example".parse()?));
/// assert!(!allow.allows("inventory@example.org".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Allow {
    rule: Rule,
}

#[derive(Clone, Default)]
enum Rule {
    #[default]
    SameDomain,
    Anyone,
    Only {
        accounts: Vec<BareJid>,
        domains: Vec<DomainPart>,
    },
    Custom(Arc<dyn Fn(&BareJid) -> bool + Send + Sync>),
}

impl Allow {
    /// Accounts of the bus's own domain (`*@example.org` for a bus logged
    /// in as `orders@example.org`). The default.
    pub fn same_domain() -> Allow {
        Allow {
            rule: Rule::SameDomain,
        }
    }

    /// Every account that can reach the bus through its server, other
    /// domains' included when the server federates.
    pub fn anyone() -> Allow {
        Allow { rule: Rule::Anyone }
    }

    /// The accounts (`billing@example.org`) and domains (`example.org`,
    /// every account of it) listed, and no one else. An entry that is
    /// neither is a [`ConfigError`] naming it. A resource given
    /// (`billing@example.org/i1`) is ignored: access is per account.
    pub fn only<I>(entries: I) -> Result<Allow, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut accounts = Vec::new();
        let mut domains = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let invalid = |reason: String| ConfigError::Invalid {
                setting: "allow",
                value: entry.to_owned(),
                reason,
            };
            if entry.contains('@') {
                let jid = xmpp_parsers::jid::Jid::from_str(entry)
                    .map_err(|e| invalid(format!("not an account JID: {e}")))?;
                accounts.push(jid.to_bare());
            } else {
                let domain = DomainPart::new(entry)
                    .map_err(|e| invalid(format!("not a domain: {e}")))?
                    .into_owned();
                domains.push(domain);
            }
        }
        Ok(Allow {
            rule: Rule::Only { accounts, domains },
        })
    }

    /// The accounts for which `allow` is true, e.g. a lookup in the
    /// application's own table. It runs on the bus's connection task for
    /// every call and event: keep it quick and non-blocking.
    pub fn custom(allow: impl Fn(&BareJid) -> bool + Send + Sync + 'static) -> Allow {
        Allow {
            rule: Rule::Custom(Arc::new(allow)),
        }
    }

    /// Whether `from` is allowed. [`Allow::same_domain`] allows every
    /// account here: it needs the bus's own domain, which the bus adds
    /// when it checks a caller.
    pub fn allows(&self, from: BareJid) -> bool {
        self.check(None, &from)
    }

    /// Whether `from` may reach the bus logged in as `own`.
    pub(crate) fn allows_for(&self, own: &BareJid, from: &BareJid) -> bool {
        self.check(Some(own), from)
    }

    fn check(&self, own: Option<&BareJid>, from: &BareJid) -> bool {
        match &self.rule {
            Rule::SameDomain => own.is_none_or(|own| own.domain() == from.domain()),
            Rule::Anyone => true,
            Rule::Only { accounts, domains } => {
                accounts.contains(from) || domains.iter().any(|d| **d == *from.domain())
            }
            Rule::Custom(allow) => allow(from),
        }
    }

    /// A short description for errors and logs: what is allowed.
    pub(crate) fn describe(&self, own: &BareJid) -> String {
        match &self.rule {
            Rule::SameDomain => format!("accounts of {}", own.domain()),
            Rule::Anyone => "anyone".to_owned(),
            Rule::Only { accounts, domains } => {
                let mut listed: Vec<String> = accounts.iter().map(ToString::to_string).collect();
                listed.extend(domains.iter().map(|d| format!("accounts of {d}")));
                if listed.is_empty() {
                    "no one".to_owned()
                } else {
                    listed.join(", ")
                }
            }
            Rule::Custom(_) => "the accounts the application's check allows".to_owned(),
        }
    }
}

impl fmt::Debug for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::SameDomain => f.write_str("Allow::SameDomain"),
            Rule::Anyone => f.write_str("Allow::Anyone"),
            Rule::Only { accounts, domains } => f
                .debug_struct("Allow::Only")
                .field("accounts", accounts)
                .field("domains", domains)
                .finish(),
            Rule::Custom(_) => f.write_str("Allow::Custom(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::from_str(s).unwrap()
    }

    #[test]
    fn same_domain_is_the_default() {
        let own = jid("orders@example.org");
        let allow = Allow::default();
        assert!(allow.allows_for(&own, &jid("billing@example.org")));
        assert!(!allow.allows_for(&own, &jid("billing@example.com")));
        assert_eq!(allow.describe(&own), "accounts of example.org");
    }

    #[test]
    fn only_lists_accounts_and_domains() {
        let own = jid("inventory@example.org");
        let allow = Allow::only(["orders@example.org/i1", "partner.example"]).unwrap();
        assert!(allow.allows_for(&own, &jid("orders@example.org")));
        assert!(allow.allows_for(&own, &jid("x@partner.example")));
        assert!(!allow.allows_for(&own, &jid("billing@example.org")));
        assert_eq!(
            allow.describe(&own),
            "orders@example.org, accounts of partner.example"
        );
        assert_eq!(
            Allow::only(Vec::<String>::new()).unwrap().describe(&own),
            "no one"
        );
        let err = Allow::only(["a@@b"]).unwrap_err().to_string();
        assert!(err.contains("allow") && err.contains("a@@b"), "{err}");
    }

    #[test]
    fn anyone_and_custom() {
        let own = jid("inventory@example.org");
        assert!(Allow::anyone().allows_for(&own, &jid("x@elsewhere.net")));
        let allow = Allow::custom(|from| from.node().is_some_and(|n| n.as_str() == "ops"));
        assert!(allow.allows_for(&own, &jid("ops@elsewhere.net")));
        assert!(!allow.allows_for(&own, &jid("dev@example.org")));
    }
}
