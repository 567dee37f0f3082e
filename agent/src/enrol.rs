//! Enrolment with a bootstrap token: `yilian-agent enrol --bootstrap FILE --device ID`.
//!
//! The device makes its key here (it never leaves the device), proves possession to the hub
//! with a signed request, and waits, polling with fresh signatures, until county IT approves it.
//! Then it writes the pinned hub key, its certificate when the hub has a CA, and a
//! ready-to-run `agent.toml`. Running it again after a crash reuses the key and asks again.

use crate::config::AgentConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use yilian_protocol::enrol::{EnrolRequest, EnrolStatus, sign_poll};
use yilian_protocol::keys::SigningKey;

/// What county IT hands a clinic to enrol one device (written by `yilian-hub enrol-token`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// The hub's HTTP(S) address.
    pub hub: String,
    /// The broker's address, `mqtt://host:port`.
    pub broker: String,
    /// The clinic the token is bound to.
    pub site: String,
    /// The single-use token.
    pub token: String,
    /// The county CA certificate (PEM): the hub's HTTPS and the broker must chain to it.
    #[serde(default)]
    pub ca_certificate: Option<String>,
}

/// An HTTP client for the hub that trusts only the county CA in the bootstrap (none at all
/// without one, so a plaintext `http://` hub is the only thing it can reach).
fn client(b: &Bootstrap) -> Result<reqwest::Client, EnrolError> {
    county_client(b.ca_certificate.as_deref().map(str::as_bytes))
        .and_then(reqwest::ClientBuilder::build)
        .map_err(|e| http_err(&b.hub, e))
}

/// A reqwest client builder that trusts only the county CA in `ca_pem` (nothing at all without
/// one): the agent's every HTTPS connection to the hub.
pub fn county_client(ca_pem: Option<&[u8]>) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let mut builder = reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false);
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
    }
    Ok(builder)
}

/// Enrolment did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The bootstrap file is not one.
    #[error("{path}: not a bootstrap file: {reason}")]
    Bootstrap {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The device key on disk is not a key.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: yilian_protocol::KeyError,
    },
    /// The hub could not be reached or answered garbage.
    #[error("hub {url}: {reason}")]
    Http {
        /// What was asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The hub refused (bad token, expired, used, wrong clinic, device id taken, ...).
    #[error("the hub refused the enrolment ({code}): {message}")]
    Refused {
        /// Machine-readable reason, e.g. `token-used`.
        code: String,
        /// The hub's words.
        message: String,
    },
    /// County IT rejected or revoked the device.
    #[error("county IT {0} this device")]
    NotApproved(String),
    /// Still pending when we stopped waiting.
    #[error("still waiting for approval after {0:?}; run the same command again to keep waiting")]
    StillPending(Duration),
    /// The written configuration does not load.
    #[error("the written configuration is invalid: {0}")]
    Config(String),
}

/// Reads a bootstrap file.
pub fn load_bootstrap(path: &Path) -> Result<Bootstrap, EnrolError> {
    let text = std::fs::read_to_string(path).map_err(|source| EnrolError::File { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|e| EnrolError::Bootstrap { path: path.to_path_buf(), reason: e.to_string() })
}

/// Where enrolment keeps the device's files under its folder.
pub fn key_path(dir: &Path, device: &str) -> PathBuf {
    dir.join("keys").join(format!("{device}.pk8"))
}

/// Loads the device key in `dir`, or makes one (owner-only file) if there is none yet.
pub fn load_or_make_key(dir: &Path, device: &str) -> Result<SigningKey, EnrolError> {
    let path = key_path(dir, device);
    let file = |source| EnrolError::File { path: path.clone(), source };
    match std::fs::read(&path) {
        Ok(bytes) => SigningKey::from_pkcs8(&bytes).map_err(|source| EnrolError::Key { path: path.clone(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir.join("keys")).map_err(file)?;
            let key = SigningKey::generate().map_err(|source| EnrolError::Key { path: path.clone(), source })?;
            crate::run::write_private(&path, key.pkcs8()).map_err(file)?;
            Ok(key)
        }
        Err(e) => Err(file(e)),
    }
}

fn http_err(url: &str, e: impl std::fmt::Display) -> EnrolError {
    EnrolError::Http { url: url.to_string(), reason: e.to_string() }
}

async fn answer(url: &str, resp: reqwest::Response) -> Result<EnrolStatus, EnrolError> {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| http_err(url, e))?;
    if status.is_success() {
        return serde_json::from_value(body).map_err(|e| http_err(url, e));
    }
    Err(EnrolError::Refused {
        code: body["code"].as_str().unwrap_or("refused").to_string(),
        message: body["error"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_string),
    })
}

/// Sends the signed enrolment request; the hub answers with the device's state (pending).
pub async fn request(b: &Bootstrap, device: &str, key: &SigningKey, now_ms: i64) -> Result<EnrolStatus, EnrolError> {
    let url = format!("{}/api/enrol", b.hub.trim_end_matches('/'));
    let req = EnrolRequest::sign(&b.token, &b.site, device, key, now_ms);
    let resp = client(b)?.post(&url).json(&req).send().await.map_err(|e| http_err(&url, e))?;
    answer(&url, resp).await
}

/// Asks how the enrolment stands, signed with the device key.
pub async fn poll(b: &Bootstrap, device: &str, key: &SigningKey, now_ms: i64) -> Result<EnrolStatus, EnrolError> {
    let (alg, at_ms, sig) = sign_poll(device, key, now_ms);
    let url = format!("{}/api/enrol/{device}", b.hub.trim_end_matches('/'));
    let resp = client(b)?
        .get(&url)
        .query(&[("alg", alg.to_string()), ("at_ms", at_ms.to_string()), ("sig", sig)])
        .send()
        .await
        .map_err(|e| http_err(&url, e))?;
    answer(&url, resp).await
}

/// Polls every `every` until the device is approved (then writes its files and returns the
/// config path), rejected or revoked, or `limit` has passed. The files are written while
/// pending already, so the agent can run meanwhile: the hub holds what it sends in quarantine
/// and it keeps everything in its spool until the hub, after approval, stores it.
pub async fn wait_for_approval(
    b: &Bootstrap,
    device: &str,
    dir: &Path,
    key: &SigningKey,
    every: Duration,
    limit: Duration,
) -> Result<PathBuf, EnrolError> {
    let started = tokio::time::Instant::now();
    let mut written = false;
    loop {
        let status = poll(b, device, key, crate::clock::now_ms()).await?;
        match status.state.as_str() {
            "active" => return write_credentials(b, device, dir, &status),
            "pending" if !written => {
                write_credentials(b, device, dir, &status)?;
                written = true;
            }
            "pending" => {}
            other => return Err(EnrolError::NotApproved(other.to_string())),
        }
        if started.elapsed() >= limit {
            return Err(EnrolError::StillPending(limit));
        }
        tokio::time::sleep(every).await;
    }
}

/// Writes the pinned hub key, the certificates when present, and `agent.toml` (kept if one is
/// there already: an operator's edits win).
pub fn write_credentials(b: &Bootstrap, device: &str, dir: &Path, status: &EnrolStatus) -> Result<PathBuf, EnrolError> {
    let hub_key = status
        .hub_public_key
        .as_deref()
        .ok_or_else(|| EnrolError::Http { url: b.hub.clone(), reason: "the answer carries no hub key".into() })?;
    let hub_key = yilian_protocol::keys::PublicKey::from_hex(hub_key)
        .map_err(|source| EnrolError::Key { path: dir.join("keys/hub.pub"), source })?;
    let write = |name: &str, text: &str| {
        let path = dir.join("keys").join(name);
        crate::durable::write_atomic(&path, text.as_bytes()).map_err(|source| EnrolError::File { path, source })
    };
    write("hub.pub", &format!("{}\n", hub_key.to_hex()))?;
    let mut tls = String::new();
    let q = |p: PathBuf| toml::Value::String(p.to_string_lossy().into_owned()).to_string();
    if let Some(ca) = status.ca_certificate.as_ref().or(b.ca_certificate.as_ref()) {
        write("ca.pem", ca)?;
        tls.push_str(&format!("ca_certificate = {}\n", q(dir.join("keys/ca.pem"))));
    }
    if let Some(cert) = &status.certificate {
        let name = format!("{device}.crt");
        write(&name, cert)?;
        tls.push_str(&format!("certificate = {}\n", q(dir.join("keys").join(name))));
    }
    if tls.is_empty() {
        tls.push_str("insecure_plaintext = true\n");
    }
    let config = dir.join("agent.toml");
    if config.exists() {
        return Ok(config);
    }
    let text = format!(
        "# Written by `yilian-agent enrol` for {device} at {site}. Add [[serial]] ports for the cart.\n\
         site = {site_q}\ndevice = {device_q}\nkey = {key}\nhub_public_key = {hub}\nbroker = {broker}\n\
         spool_dir = {spool}\nreports_dir = {reports}\n{tls}\n[inbox]\ndir = {inbox}\n",
        site = b.site,
        site_q = toml::Value::String(b.site.clone()),
        device_q = toml::Value::String(device.to_string()),
        key = q(key_path(dir, device)),
        hub = q(dir.join("keys/hub.pub")),
        broker = toml::Value::String(b.broker.clone()),
        spool = q(dir.join("spool")),
        reports = q(dir.join("reports")),
        inbox = q(dir.join("inbox")),
    );
    let parsed: AgentConfig = toml::from_str(&text).map_err(|e| EnrolError::Config(e.to_string()))?;
    parsed.validate().map_err(|e| EnrolError::Config(e.to_string()))?;
    crate::durable::write_atomic(&config, text.as_bytes())
        .map_err(|source| EnrolError::File { path: config.clone(), source })?;
    Ok(config)
}
