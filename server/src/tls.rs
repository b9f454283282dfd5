//! TLS for STARTTLS: a generated CA and certificate, or user-given PEM.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::ServerError;

/// What the TLS set-up produced.
pub(crate) struct TlsSetup {
    pub acceptor: TlsAcceptor,
    /// PEM of the CA that signed the generated certificate.
    pub ca_pem: Option<String>,
}

/// Makes a CA and a certificate for `domain` and `pubsub.<domain>`.
pub(crate) fn generated(domain: &str) -> Result<TlsSetup, ServerError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let tls = |e: rcgen::Error| ServerError::Tls(e.to_string());
    let ca_key = KeyPair::generate().map_err(tls)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "xbus-server throwaway CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls)?;

    let leaf_key = KeyPair::generate().map_err(tls)?;
    let mut leaf_params =
        CertificateParams::new(vec![domain.to_string(), format!("pubsub.{domain}")])
            .map_err(tls)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, domain.to_string());
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .map_err(tls)?;

    let chain = vec![leaf.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::try_from(leaf_key.serialize_der())
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok(TlsSetup {
        acceptor: acceptor(chain, key)?,
        ca_pem: Some(ca_cert.pem()),
    })
}

/// Loads a PEM certificate chain and private key.
pub(crate) fn from_pem(cert: &[u8], key: &[u8]) -> Result<TlsSetup, ServerError> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(ServerError::Tls("no certificate in the PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| ServerError::Tls(format!("key PEM: {e}")))?;
    Ok(TlsSetup {
        acceptor: acceptor(chain, key)?,
        ca_pem: None,
    })
}

/// The rustls crypto provider: the process-wide default when the
/// application installed one, else *ring* (deprecated in rustls 0.23.48 for
/// lacking post-quantum key exchange; kept so that no C toolchain is needed).
fn crypto_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default().cloned().unwrap_or_else(|| {
        #[allow(deprecated)]
        let ring = ring::default_provider();
        Arc::new(ring)
    })
}

fn acceptor(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, ServerError> {
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
