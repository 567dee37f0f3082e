//! TLS client settings shared by the agent, the hub's own MQTT connection and test clients
//! (feature `tls`): trust only the county CA, present the device's certificate with its Ed25519
//! signing key.
//!
//! The provider is ring, named explicitly, so the configuration never depends on which of
//! rustls's providers some other crate in the build switched on.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use thiserror::Error;

/// A TLS configuration could not be built from the given material.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// No certificate, or a malformed one.
    #[error("{what}: no usable certificate in PEM: {reason}")]
    Pem {
        /// What was being read.
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// rustls refused the material.
    #[error("{what}: {source}")]
    Rustls {
        /// What was being built.
        what: &'static str,
        /// Cause.
        source: rustls::Error,
    },
}

/// rustls's ring provider.
///
/// rustls 0.23.48 deprecates it for lacking post-quantum key exchange (which needs aws-lc-rs, a
/// C build); the workspace signs and verifies with ring everywhere, and the county's links are
/// authenticated with classical keys anyway, so ring stays until the SM2/PQ work revisits it.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM text (at least one).
pub fn certs_from_pem(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem { what, reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Pem { what, reason: "no CERTIFICATE block".into() });
    }
    Ok(certs)
}

/// A root store holding only the county CA: the pin. A server certificate from any other CA,
/// public ones included, is refused.
pub fn county_roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem("county CA", ca_pem)? {
        roots.add(c).map_err(|source| TlsConfigError::Rustls { what: "county CA", source })?;
    }
    Ok(roots)
}

/// The client side of an MQTT connection: trusts only the county CA in `ca_pem` and presents
/// `cert_pem` with the Ed25519 key in `key_pk8` (a `.pk8` file's bytes), so the TLS identity
/// is the enrolled signing key.
pub fn mqtt_client_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pk8: &[u8],
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let roots = county_roots(ca_pem)?;
    let certs = certs_from_pem("client certificate", cert_pem)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pk8.to_vec()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsConfigError::Rustls { what: "client protocol versions", source })?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|source| TlsConfigError::Rustls { what: "client certificate and key", source })?;
    Ok(Arc::new(cfg))
}
