//! rustls configurations of the hub: the HTTPS console's server side, and the MQTT client side
//! from files (the settings themselves are in [`yilian_protocol::tls`]).

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use yilian_protocol::tls::{TlsConfigError, certs_from_pem, provider};

/// A TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// File trouble.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The material is not usable.
    #[error(transparent)]
    Config(#[from] TlsConfigError),
    /// The server key is not a PEM private key.
    #[error("server key: {0}")]
    Key(String),
}

/// The MQTT client side from files: the county CA, a client certificate and its `.pk8` key.
pub fn mqtt_client_config_from_files(
    ca: &Path,
    cert: &Path,
    key_pk8: &Path,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    Ok(yilian_protocol::tls::mqtt_client_config(&read(ca)?, &read(cert)?, &read(key_pk8)?)?)
}

/// The HTTPS server side: the hub's certificate chain and P-256 key, no client certificates
/// (people sign in with passwords).
pub fn https_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = certs_from_pem("server certificate", &read(cert)?)?;
    let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| TlsError::Key(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsConfigError::Rustls { what: "server protocol versions", source })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| TlsConfigError::Rustls { what: "server certificate and key", source })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io { path: path.display().to_string(), source })
}
