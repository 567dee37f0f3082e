//! Device lifecycle outside the store: bootstrap tokens and files, the device certificate handed
//! out on approval, and disconnecting revoked devices from the broker.
//!
//! rumqttd 0.20 has no admin API to drop a client. MQTT does it for us: a CONNECT with a client
//! id already connected makes the broker drop the older connection (rumqttd `routing.rs`
//! "Duplicate client_id, dropping previous connection"; Mosquitto does the same). So the hub
//! connects with the revoked device's client id and a clean session, which also discards any
//! reports queued for it, and disconnects. The broker's connect check then refuses the device
//! itself (it asks [`crate::store::Db::device_keys`], which lists no key for a revoked device).
//!
//! An external broker (Mosquitto) admits by certificate and takes the client id from it, so
//! there the hub keeps the broker's CRL ([`crate::store::Db::revoked_keys`], signed by the county
//! CA) and has the broker reload it, then takes the client id over with a short-lived
//! certificate naming the device. Mosquitto checks the CRL at each new connection only; the
//! takeover is what ends the live one.

use crate::clock::now_ms;
use crate::store::Store;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yilian_protocol::keys::PublicKey;

/// How often the hub looks for devices revoked by another process (the CLI).
pub const REVOCATION_POLL: Duration = Duration::from_secs(5);
/// A revoked device that keeps coming back is disconnected again at most this often.
const KICK_EVERY: Duration = Duration::from_secs(5);
/// Default time a bootstrap token stays valid.
pub const DEFAULT_TOKEN_TTL_HOURS: u64 = 72;

/// A new bootstrap token: show `token` once; store `id` and `secret_sha256`.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The whole token, `id.secret` (hex), for the clinic's bootstrap file.
    pub token: String,
    /// The part the hub looks the token up by.
    pub id: String,
    /// SHA-256 of the secret part: all the hub keeps of it.
    pub secret_sha256: [u8; 32],
}

/// Makes a random bootstrap token (8-byte id, 32-byte secret).
pub fn new_token() -> Result<NewToken, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let (mut id, mut secret) = ([0u8; 8], [0u8; 32]);
    rng.fill(&mut id)?;
    rng.fill(&mut secret)?;
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    Ok(NewToken { token: format!("{id}.{secret}"), secret_sha256: secret_hash(&secret), id })
}

fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits a token into its id and the SHA-256 of its secret; `None` if it is not `id.secret`.
pub fn parse_token(token: &str) -> Option<(String, [u8; 32])> {
    let (id, secret) = token.trim().split_once('.')?;
    let hex16 = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex16(id, 16) && hex16(secret, 64)).then(|| (id.to_ascii_lowercase(), secret_hash(&secret.to_ascii_lowercase())))
}

/// What a clinic's agent needs to enrol: `yilian-agent enrol --bootstrap FILE --device ID`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bootstrap {
    /// The hub's HTTP(S) address, e.g. `https://hub.county:8443`.
    pub hub: String,
    /// The broker the agent will connect to, `mqtt://host:port`.
    pub broker: String,
    /// The clinic the token is bound to.
    pub site: String,
    /// The single-use token.
    pub token: String,
    /// The county CA certificate (PEM) the device pins for enrolment and MQTT; absent only for a
    /// hub run with `--insecure-plaintext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

/// Writes a bootstrap file readable only by its owner (it holds a secret).
pub fn write_bootstrap(path: &Path, b: &Bootstrap) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = toml::to_string(b).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(format!("# Yilian enrolment bootstrap for clinic {}; single use.\n{text}", b.site).as_bytes())?;
    f.sync_all()?;
    Ok(path.to_path_buf())
}

/// The device's certificate (PEM) from the county CA, for its enrolled key. It only lets the
/// device reach the broker; what it may do there follows its state (a pending device's messages
/// are quarantined, a revoked one is refused at connect).
pub fn device_certificate(ca: &crate::ca::CountyCa, site: &str, device: &str, key: &PublicKey) -> Option<String> {
    match ca.issue_device(site, device, key) {
        Ok(pem) => Some(pem),
        Err(e) => {
            warn!(device, error = %e, "cannot issue the device certificate");
            None
        }
    }
}

/// How the hub reaches its broker to take over a revoked device's client id.
#[derive(Clone)]
pub struct BrokerAccess {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS towards the broker (`None` only with `--insecure-plaintext`).
    pub tls: Option<rumqttc::TlsConfiguration>,
    /// The hub's key: the broker admits the hub under any client id with a fresh signature by it.
    pub key: std::sync::Arc<yilian_protocol::keys::SigningKey>,
    /// Set for an external broker (Mosquitto, EMQX), which admits by certificate.
    pub external: Option<ExternalBroker>,
}

/// What the hub needs to keep an external broker in step with revocations.
#[derive(Clone)]
pub struct ExternalBroker {
    /// The county CA: it mints the short-lived certificates that take a device's client id
    /// over, and signs the CRL.
    pub ca: std::sync::Arc<crate::ca::CountyCa>,
    /// Where the broker reads its CRL (Mosquitto `crlfile`); `None`: the broker is not told, and
    /// a revoked device is only refused message by message at the hub.
    pub crl: Option<PathBuf>,
    /// A shell command that makes the broker re-read its CRL (`systemctl reload mosquitto`,
    /// `kill -HUP <pid>`), run after each change.
    pub reload: Option<String>,
}

impl BrokerAccess {
    fn options(&self, client_id: &str) -> Result<MqttOptions, String> {
        let mut opts = MqttOptions::new(client_id, self.host.clone(), self.port);
        let tls = match (&self.tls, &self.external) {
            // Mosquitto makes the certificate's CN the client id: to take the device's id over,
            // the hub presents a certificate naming the device, for its own key.
            (Some(_), Some(ext)) => {
                let cert = ext.ca.issue_takeover(client_id, &self.key.public_key()).map_err(|e| e.to_string())?;
                let cfg = yilian_protocol::tls::mqtt_client_config(
                    ext.ca.ca_pem().as_bytes(),
                    cert.as_bytes(),
                    self.key.pkcs8(),
                )
                .map_err(|e| e.to_string())?;
                Some(rumqttc::TlsConfiguration::Rustls(cfg))
            }
            (tls, _) => tls.clone(),
        };
        if let Some(tls) = tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(tls));
        }
        let password = yilian_protocol::connect::connect_password(&self.key, client_id, crate::clock::now_ms());
        opts.set_credentials(crate::ca::HUB_IDENTITY, password);
        Ok(opts)
    }
}

/// Takes over `client_id` on the broker, which drops whoever is connected with it, and leaves.
///
/// The embedded broker admits the hub under any client id (its signature covers the id); an
/// external one is shown a ten-minute certificate naming the device ([`crate::ca::CountyCa::issue_takeover`]).
pub async fn disconnect_client(access: &BrokerAccess, client_id: &str) -> Result<(), String> {
    let mut opts = access.options(client_id)?;
    opts.set_clean_session(true);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut ev) = AsyncClient::new(opts, 4);
    let drive = async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client.disconnect().await.map_err(|e| e.to_string())?;
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), drive).await.map_err(|_| "broker did not answer".to_string())?
}

/// The external broker's CRL as last written: rewritten when the set of refused keys changes,
/// and daily so it never reaches its next-update date.
struct CrlState {
    written: Option<(Vec<(String, PublicKey)>, Instant)>,
}

const CRL_REFRESH: Duration = Duration::from_secs(24 * 3600);

impl CrlState {
    /// Brings the CRL up to date; true when the broker now refuses every revoked key (or there
    /// is no CRL to keep).
    async fn refresh(&mut self, store: &Store, ext: &ExternalBroker) -> bool {
        let Some(path) = &ext.crl else { return true };
        let now = now_ms();
        let revoked = match store.call(move |db| db.revoked_keys(now)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) | Err(e) => {
                warn!(error = %e, "cannot list revoked keys for the broker's CRL");
                return false;
            }
        };
        let set: Vec<(String, PublicKey)> = revoked.iter().map(|r| (r.device.clone(), r.key)).collect();
        if self.written.as_ref().is_some_and(|(w, at)| *w == set && at.elapsed() < CRL_REFRESH) {
            return true;
        }
        if let Err(e) = ext.ca.write_crl(path, &revoked, now) {
            warn!(error = %e, "cannot write the broker's CRL");
            return false;
        }
        if let Some(cmd) = &ext.reload
            && let Err(e) = run_reload(cmd).await
        {
            warn!(command = %cmd, error = %e, "the broker did not reload its CRL; trying again");
            return false;
        }
        info!(crl = %path.display(), revoked_keys = set.len(), "broker CRL written");
        self.written = Some((set, Instant::now()));
        true
    }
}

async fn run_reload(cmd: &str) -> Result<(), String> {
    let run = tokio::process::Command::new("sh").arg("-c").arg(cmd).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .map_err(|_| "no answer in 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Disconnects revoked and rejected devices: those the store lists as due (checked every
/// [`REVOCATION_POLL`]), and those ingest saw sending again (`seen`). With an external broker it
/// first rewrites the broker's CRL, so the device it drops cannot come straight back.
pub async fn run_disconnects(
    store: Store,
    access: BrokerAccess,
    mut seen: mpsc::Receiver<String>,
    shutdown: CancellationToken,
) {
    let mut last: HashMap<String, Instant> = HashMap::new();
    // Seen again too soon after a disconnect: taken off at the next tick instead.
    let mut deferred: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut crl = CrlState { written: None };
    let mut tick = tokio::time::interval(REVOCATION_POLL);
    loop {
        let devices: Vec<String> = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Some(ext) = &access.external
                    && !crl.refresh(&store, ext).await
                {
                    // Dropping a device the broker would let straight back in achieves nothing
                    // and would mark it done; wait for the CRL.
                    continue;
                }
                let mut due: Vec<String> = match store.call(|db| db.disconnects_due()).await {
                    Ok(Ok(due)) => due.into_iter().map(|(_, d)| d).collect(),
                    Ok(Err(e)) | Err(e) => {
                        warn!(error = %e, "cannot list revoked devices");
                        Vec::new()
                    }
                };
                due.extend(std::mem::take(&mut deferred));
                due.sort();
                due.dedup();
                due
            }
            d = seen.recv() => match d {
                Some(d) if last.get(&d).is_none_or(|t| t.elapsed() >= KICK_EVERY) => vec![d],
                Some(d) => {
                    if deferred.len() < 10_000 {
                        deferred.insert(d);
                    }
                    continue;
                }
                None => return,
            },
        };
        for device in devices {
            match disconnect_client(&access, &device).await {
                Ok(()) => {
                    info!(device, "revoked device disconnected from the broker");
                    last.insert(device.clone(), Instant::now());
                    let d = device.clone();
                    if let Ok(Err(e)) | Err(e) = store.call(move |db| db.mark_disconnected(&d, now_ms())).await {
                        warn!(device, error = %e, "cannot record the disconnect");
                    }
                }
                Err(e) => warn!(device, error = %e, "cannot disconnect a revoked device; trying again"),
            }
        }
        last.retain(|_, t| t.elapsed() < KICK_EVERY * 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_back_and_garbage_does_not() {
        let t = new_token().expect("rng");
        let (id, hash) = parse_token(&t.token).expect("parses");
        assert_eq!((id.as_str(), hash), (t.id.as_str(), t.secret_sha256));
        assert_ne!(new_token().expect("rng").token, t.token);
        for bad in ["", ".", "abc.def", &t.id, &format!("{}.{}", t.id, "zz".repeat(32)), &format!("{}x", t.token)] {
            assert!(parse_token(bad).is_none(), "{bad:?}");
        }
    }
}
