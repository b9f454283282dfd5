//! Accounts and server-side SASL (PLAIN, SCRAM-SHA-1, SCRAM-SHA-256).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sasl::common::scram::{Sha1, Sha256};
use sasl::common::{ChannelBinding, Identity};
use sasl::secret::{self, Pbkdf2Sha1, Pbkdf2Sha256};
use sasl::server::mechanisms::{Plain, Scram};
use sasl::server::{Mechanism, Provider, ProviderError, Validator, ValidatorError};
use xmpp_parsers::sasl::Mechanism as SaslMechanism;

use crate::config::Accounts;

/// PBKDF2 iterations announced in SCRAM challenges (RFC 7677's minimum).
const SCRAM_ITERATIONS: u32 = 4096;

/// The account store: user name (node part) → password.
#[derive(Debug, Clone)]
pub(crate) struct AccountStore {
    open: bool,
    passwords: Arc<Mutex<HashMap<String, String>>>,
}

impl AccountStore {
    pub fn new(accounts: &Accounts) -> AccountStore {
        let (open, list) = match accounts {
            Accounts::Open => (true, Vec::new()),
            Accounts::Fixed(list) => (false, list.clone()),
        };
        AccountStore {
            open,
            passwords: Arc::new(Mutex::new(list.into_iter().collect())),
        }
    }

    /// The SASL mechanisms offered, strongest first.
    pub fn mechanisms(&self) -> Vec<&'static str> {
        if self.open {
            vec!["PLAIN"]
        } else {
            vec!["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
        }
    }

    /// Adds or replaces an account; `false` if the name is not a valid,
    /// normalised JID node part.
    pub fn register(&self, user: &str, password: &str) -> bool {
        if !valid_user(user) {
            return false;
        }
        self.lock().insert(user.to_owned(), password.to_owned());
        true
    }

    /// Whether `user` exists (open mode: every user does).
    pub fn exists(&self, user: &str) -> bool {
        self.open || self.lock().contains_key(user)
    }

    /// A server-side mechanism for `name`, if it is offered; `initial` is
    /// the client's initial response.
    pub fn mechanism(
        &self,
        name: &SaslMechanism,
        initial: &[u8],
    ) -> Option<Box<dyn Mechanism + Send>> {
        let offered = self.mechanisms();
        let check = self.clone();
        // sasl 0.5's SCRAM server inverts the GS2 check: with
        // `ChannelBinding::None` it accepts only "y" and refuses the usual
        // "n". With `TlsUnique` and empty data it accepts "n" (and adds no
        // binding data to the proof), so pick by the client's flag.
        let binding = if initial.first() == Some(&b'y') {
            ChannelBinding::None
        } else {
            ChannelBinding::TlsUnique(Vec::new())
        };
        match name {
            SaslMechanism::Plain if offered.contains(&"PLAIN") => Some(Box::new(Plain::new(check))),
            SaslMechanism::ScramSha1 if offered.contains(&"SCRAM-SHA-1") => {
                Some(Box::new(Scram::<Sha1, _>::new(check, binding)))
            }
            SaslMechanism::ScramSha256 if offered.contains(&"SCRAM-SHA-256") => {
                Some(Box::new(Scram::<Sha256, _>::new(check, binding)))
            }
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.passwords
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn password(&self, identity: &Identity) -> Result<String, ProviderError> {
        let Identity::Username(user) = identity else {
            return Err(ProviderError::AuthenticationFailed);
        };
        self.lock()
            .get(user)
            .cloned()
            .ok_or(ProviderError::AuthenticationFailed)
    }
}

/// A user name must be a valid, already normalised JID node part.
fn valid_user(user: &str) -> bool {
    xmpp_parsers::jid::NodePart::new(user).is_ok_and(|node| node.as_str() == user)
}

fn salt() -> [u8; 16] {
    rand::random::<u128>().to_le_bytes()
}

impl Validator<secret::Plain> for AccountStore {
    fn validate(&self, identity: &Identity, value: &secret::Plain) -> Result<(), ValidatorError> {
        let Identity::Username(user) = identity else {
            return Err(ValidatorError::AuthenticationFailed);
        };
        if !valid_user(user) {
            return Err(ValidatorError::AuthenticationFailed);
        }
        let mut passwords = self.lock();
        match passwords.get(user) {
            Some(known) if *known == value.0 => Ok(()),
            Some(_) => Err(ValidatorError::AuthenticationFailed),
            None if self.open => {
                tracing::debug!(user, "open registration");
                passwords.insert(user.clone(), value.0.clone());
                Ok(())
            }
            None => Err(ValidatorError::AuthenticationFailed),
        }
    }
}

impl Provider<Pbkdf2Sha1> for AccountStore {
    fn provide(&self, identity: &Identity) -> Result<Pbkdf2Sha1, ProviderError> {
        let password = self.password(identity)?;
        Ok(Pbkdf2Sha1::derive(&password, &salt(), SCRAM_ITERATIONS)?)
    }
}

impl Provider<Pbkdf2Sha256> for AccountStore {
    fn provide(&self, identity: &Identity) -> Result<Pbkdf2Sha256, ProviderError> {
        let password = self.password(identity)?;
        Ok(Pbkdf2Sha256::derive(&password, &salt(), SCRAM_ITERATIONS)?)
    }
}

sasl::impl_validator_using_provider!(AccountStore, Pbkdf2Sha1);
sasl::impl_validator_using_provider!(AccountStore, Pbkdf2Sha256);

#[cfg(test)]
mod tests {
    use super::*;
    use sasl::client::Mechanism as ClientMechanism;
    use sasl::common::Credentials;
    use sasl::server::Response;

    fn exchange(
        store: &AccountStore,
        name: SaslMechanism,
        mut client: Box<dyn ClientMechanism>,
    ) -> Result<String, String> {
        let initial = client.initial();
        let mut server = store.mechanism(&name, &initial).ok_or("not offered")?;
        let mut response = server.respond(&initial).map_err(|e| e.to_string())?;
        loop {
            match response {
                Response::Success(Identity::Username(user), data) => {
                    client.success(&data).map_err(|e| e.to_string())?;
                    return Ok(user);
                }
                Response::Success(..) => return Err("no user".into()),
                Response::Proceed(challenge) => {
                    let answer = client.response(&challenge).map_err(|e| e.to_string())?;
                    response = server.respond(&answer).map_err(|e| e.to_string())?;
                }
            }
        }
    }

    fn fixed() -> AccountStore {
        AccountStore::new(&Accounts::Fixed(vec![("alice".into(), "secret".into())]))
    }

    fn creds(password: &str) -> Credentials {
        Credentials::default()
            .with_username("alice")
            .with_password(password)
    }

    #[test]
    fn scram_sha1_and_sha256_and_plain() {
        use sasl::client::mechanisms::{Plain, Scram};
        let store = fixed();
        let sha1 = Scram::<Sha1>::from_credentials(creds("secret")).unwrap();
        assert_eq!(
            exchange(&store, SaslMechanism::ScramSha1, Box::new(sha1)),
            Ok("alice".into())
        );
        let sha256 = Scram::<Sha256>::from_credentials(creds("secret")).unwrap();
        assert_eq!(
            exchange(&store, SaslMechanism::ScramSha256, Box::new(sha256)),
            Ok("alice".into())
        );
        let plain = Plain::from_credentials(creds("secret")).unwrap();
        assert_eq!(
            exchange(&store, SaslMechanism::Plain, Box::new(plain)),
            Ok("alice".into())
        );
    }

    #[test]
    fn scram_with_y_flag_and_wrong_password() {
        use sasl::client::mechanisms::Scram;
        let store = fixed();
        let flagged = creds("secret").with_channel_binding(ChannelBinding::Unsupported);
        let sha1 = Scram::<Sha1>::from_credentials(flagged).unwrap();
        assert_eq!(
            exchange(&store, SaslMechanism::ScramSha1, Box::new(sha1)),
            Ok("alice".into())
        );
        let wrong = Scram::<Sha256>::from_credentials(creds("nope")).unwrap();
        assert!(exchange(&store, SaslMechanism::ScramSha256, Box::new(wrong)).is_err());
    }

    #[test]
    fn open_mode_registers_with_plain_only() {
        use sasl::client::mechanisms::Plain;
        let store = AccountStore::new(&Accounts::Open);
        assert_eq!(store.mechanisms(), vec!["PLAIN"]);
        let first = Plain::from_credentials(creds("pw1")).unwrap();
        assert!(exchange(&store, SaslMechanism::Plain, Box::new(first)).is_ok());
        let second = Plain::from_credentials(creds("pw2")).unwrap();
        assert!(exchange(&store, SaslMechanism::Plain, Box::new(second)).is_err());
        assert!(store.mechanism(&SaslMechanism::ScramSha1, b"n,,").is_none());
    }
}
