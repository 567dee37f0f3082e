//! The embedded MQTT broker (rumqttd), for a county that runs on one machine.
//!
//! rumqttd's `Broker::start` blocks forever and has no shutdown, so it gets a dedicated
//! `std::thread` and lives as long as the process. It cannot report the port it bound when given
//! port 0, so callers pass a concrete address (tests pick a free port first).
//!
//! Security: TLS with client certificates from the county CA (rumqttd's `verify-client-cert`
//! makes it require and verify one), and an auth hook that admits a connection only if its
//! password is a fresh signature by the enrolled key of the device named as username and client
//! id (see [`yilian_protocol::connect`]). rumqttd does not hand the certificate to the hook, so
//! the binding "client id = enrolled key" rests on the signature; the certificate keeps anyone
//! without a county-issued certificate from reaching MQTT at all. The hook runs before rumqttd
//! registers the connection, so a refused duplicate client id never takes over a session.

use crate::store::Store;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings, TlsConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{error, warn};
use yilian_protocol::keys::PublicKey;
use yilian_protocol::limits::MQTT_MAX_PACKET;

/// The embedded broker's TLS files (all PEM).
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// The county CA: client certificates must chain to it.
    pub ca: PathBuf,
    /// The hub's server certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Who may connect: enrolled devices (by the store) and the hub itself (by its key).
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// The hub's store, asked for a device's enrolled key at each connection.
    pub store: Store,
    /// The hub's public key; connections with username [`crate::ca::HUB_IDENTITY`] must be
    /// signed by it.
    pub hub_key: PublicKey,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthRefusal {
    /// A device's username must be its client id.
    #[error("username {username:?} differs from client id {client_id:?}")]
    NameMismatch {
        /// Username sent.
        username: String,
        /// Client id sent.
        client_id: String,
    },
    /// No enrolled (or no longer enrolled) device by that id.
    #[error("device {0:?} is not enrolled")]
    NotEnrolled(String),
    /// The store could not answer.
    #[error("store: {0}")]
    Store(String),
    /// The password did not prove the key.
    #[error(transparent)]
    Password(#[from] yilian_protocol::connect::ConnectError),
}

impl Authenticator {
    /// Checks one CONNECT at `now_ms`.
    pub async fn check(&self, client_id: &str, username: &str, password: &str, now_ms: i64) -> Result<(), AuthRefusal> {
        use yilian_protocol::connect::check_connect_password;
        if username == crate::ca::HUB_IDENTITY {
            // The hub's client id varies (several hub processes may share a broker); the
            // signature covers it, so the username alone grants nothing.
            return Ok(check_connect_password(&self.hub_key, client_id, password, now_ms)?);
        }
        if username != client_id {
            return Err(AuthRefusal::NameMismatch { username: trim(username), client_id: trim(client_id) });
        }
        let device = client_id.to_string();
        let found = self
            .store
            .call(move |db| db.device_keys(&device, now_ms))
            .await
            .map_err(|e| AuthRefusal::Store(e.to_string()))?
            .map_err(|e| AuthRefusal::Store(e.to_string()))?;
        // Revoked and rejected devices have no keys; during a key rotation's overlap both the
        // new and the old key may connect.
        let keys = found.map(|d| d.keys).unwrap_or_default();
        let mut last = Err(AuthRefusal::NotEnrolled(trim(client_id)));
        for key in &keys {
            match check_connect_password(key, client_id, password, now_ms) {
                Ok(()) => return Ok(()),
                Err(e) => last = Err(e.into()),
            }
        }
        last
    }
}

fn trim(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The broker did not come up.
#[derive(Debug, thiserror::Error)]
#[error("embedded broker on {addr} did not accept connections within {waited_ms} ms (port in use?)")]
pub struct BrokerError {
    /// Listen address.
    pub addr: SocketAddr,
    /// How long we waited.
    pub waited_ms: u64,
}

/// rumqttd configuration: one MQTT 3.1.1 listener, Yilian's packet limit, bounded memory, TLS
/// unless `tls` is `None` (`--insecure-plaintext`), and the auth hook.
pub fn config(listen: SocketAddr, tls: Option<&BrokerTls>, auth: Authenticator) -> Config {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MQTT_MAX_PACKET,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, username: String, password: String| {
        let auth = auth.clone();
        async move {
            match auth.check(&client_id, &username, &password, crate::clock::now_ms()).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(client_id = %trim(&client_id), reason = %e, "MQTT connection refused");
                    false
                }
            }
        }
    });
    let tls = tls.map(|t| TlsConfig::Rustls {
        capath: Some(t.ca.display().to_string()),
        certpath: t.cert.display().to_string(),
        keypath: t.key.display().to_string(),
    });
    let server = ServerSettings { name: "yilian-v4".into(), listen, tls, next_connection_delay_ms: 1, connections };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            // Each subscribed filter keeps a commit log of at most 4 × 16 MiB.
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    }
}

fn port_taken(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_err()
}

/// Starts the broker on its own thread and waits until it has bound its port.
///
/// Readiness is seen by trying to bind the port ourselves rather than by connecting: a bare TCP
/// probe makes rumqttd log an error for the aborted MQTT handshake.
pub fn start_embedded(listen: SocketAddr, tls: Option<&BrokerTls>, auth: Authenticator) -> Result<(), BrokerError> {
    if port_taken(listen) {
        return Err(BrokerError { addr: listen, waited_ms: 0 });
    }
    let cfg = config(listen, tls, auth);
    std::thread::Builder::new()
        .name("yilian-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(cfg);
            if let Err(e) = broker.start() {
                error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|_| BrokerError { addr: listen, waited_ms: 0 })?;
    let started = Instant::now();
    let limit = Duration::from_secs(10);
    while started.elapsed() < limit {
        if port_taken(listen) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError { addr: listen, waited_ms: limit.as_millis() as u64 })
}

/// A free loopback port (bind port 0, read it, release it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
