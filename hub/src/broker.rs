//! The embedded MQTT broker (rumqttd), for a county that runs on one machine.
//!
//! rumqttd's `Broker::start` blocks forever and has no shutdown, so it gets a dedicated
//! `std::thread` and lives as long as the process. It cannot report the port it bound when given
//! port 0, so callers pass a concrete address (tests pick a free port first).

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::error;
use yilian_protocol::limits::MQTT_MAX_PACKET;

/// The broker did not come up.
#[derive(Debug, thiserror::Error)]
#[error("embedded broker on {addr} did not accept connections within {waited_ms} ms (port in use?)")]
pub struct BrokerError {
    /// Listen address.
    pub addr: SocketAddr,
    /// How long we waited.
    pub waited_ms: u64,
}

/// rumqttd configuration: one MQTT 3.1.1 listener, Yilian's packet limit, bounded memory.
pub fn config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MQTT_MAX_PACKET,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server =
        ServerSettings { name: "yilian-v4".into(), listen, tls: None, next_connection_delay_ms: 1, connections };
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
pub fn start_embedded(listen: SocketAddr) -> Result<(), BrokerError> {
    if port_taken(listen) {
        return Err(BrokerError { addr: listen, waited_ms: 0 });
    }
    let cfg = config(listen);
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
