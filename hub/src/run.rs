//! Wires the hub together: broker, MQTT client, ingest, store, HTTP.

use crate::broker;
use crate::http::{self, AppState};
use crate::ingest::{self, Ingest, Rejects};
use crate::keys;
use crate::publish::Publisher;
use crate::store::Store;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yilian_protocol::limits::MQTT_MAX_PACKET;
use yilian_protocol::topic::{STATUS_FILTER, UP_FILTER, broker_addr};

/// Where the hub's broker is.
#[derive(Debug, Clone)]
pub enum BrokerMode {
    /// Run rumqttd in this process, listening here.
    Embedded(SocketAddr),
    /// Use an external broker (Mosquitto, EMQX): `mqtt://host:port`.
    External(String),
}

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Data folder: `yilian.db`, `hub.pk8`, `hub.pub`.
    pub data_dir: PathBuf,
    /// Broker.
    pub broker: BrokerMode,
    /// How long a specialist's claim lasts.
    pub claim_ttl: Duration,
    /// MQTT client id of this hub process.
    pub client_id: String,
    /// The signer id in the hub's envelopes.
    pub hub_id: String,
    /// Per-device rate and size limits.
    pub limits: crate::ratelimit::Limits,
    /// Waiting targets for stat, urgent and routine studies (overdue past them).
    pub wait_targets: [Duration; 3],
    /// An image study with nothing new for this long is marked partial, with what is missing.
    pub image_partial_after: Duration,
    /// The store key file (patient data at rest); `None`: `keys/store.key` in the data folder.
    pub store_key: Option<PathBuf>,
    /// How long each kind of data is kept.
    pub retention: crate::retention::Retention,
    /// How often expired data is swept.
    pub retention_interval: Duration,
    /// How long a device's old key stays valid after the device rotated to a new one.
    pub key_overlap: Duration,
}

impl HubConfig {
    /// Defaults for a data folder and broker.
    pub fn new(data_dir: PathBuf, broker: BrokerMode) -> Self {
        Self {
            data_dir,
            broker,
            claim_ttl: Duration::from_secs(15 * 60),
            client_id: "yilian-hub".into(),
            hub_id: "hub".into(),
            limits: crate::ratelimit::Limits::default(),
            wait_targets: crate::http::console::WAIT_TARGETS.map(|m| Duration::from_secs(m * 60)),
            image_partial_after: Duration::from_secs(30 * 60),
            store_key: None,
            retention: crate::retention::Retention::default(),
            retention_interval: crate::retention::INTERVAL,
            key_overlap: crate::ingest::DEFAULT_KEY_OVERLAP,
        }
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("yilian.db")
    }

    /// The store key file: `store_key`, or `keys/store.key` in the data folder.
    pub fn store_key_path(&self) -> PathBuf {
        self.store_key.clone().unwrap_or_else(|| crate::store::sealed::default_key_path(&self.db_path()))
    }
}

/// The hub could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// Hub key trouble.
    #[error(transparent)]
    Key(#[from] keys::HubKeyError),
    /// Store trouble.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Embedded broker trouble.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// Bad broker URL.
    #[error("broker url: {0}")]
    BrokerUrl(#[from] yilian_protocol::TopicError),
    /// I/O (data folder, HTTP server).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
}

/// Runs the hub until `shutdown`, serving HTTP on `http`.
pub async fn run(cfg: HubConfig, http: tokio::net::TcpListener, shutdown: CancellationToken) -> Result<(), HubError> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|source| HubError::Io { what: "creating the data folder", source })?;
    let key = Arc::new(keys::load_or_create(&cfg.data_dir)?);
    crate::logkey::install(&cfg.data_dir).map_err(|source| HubError::Io { what: "the log key", source })?;
    let store = Store::open_with_key(&cfg.db_path(), &cfg.store_key_path())?;
    // The store opened with this key and checked it, so the image index is sealed with the same.
    let store_key = crate::store::sealed::load_or_create_key_file(&cfg.store_key_path())?;
    let images = Arc::new(
        crate::images::ImageStore::open_with_key(&cfg.data_dir.join("images"), store_key)
            .map_err(|e| HubError::Io { what: "opening the image store", source: std::io::Error::other(e) })?,
    );
    let (host, port) = match &cfg.broker {
        BrokerMode::Embedded(addr) => {
            let addr = *addr;
            tokio::task::spawn_blocking(move || broker::start_embedded(addr))
                .await
                .map_err(|e| HubError::Io { what: "starting the broker", source: std::io::Error::other(e) })??;
            info!(%addr, "embedded MQTT broker listening");
            (addr.ip().to_string(), addr.port())
        }
        BrokerMode::External(url) => broker_addr(url)?,
    };
    let mut opts = MqttOptions::new(cfg.client_id.clone(), host.clone(), port);
    opts.set_keep_alive(Duration::from_secs(15));
    opts.set_clean_session(false);
    // PUBACKs go out on receipt. Durability rests on the agent's spool and the hub's signed
    // application ack after commit; holding PUBACKs back would add nothing but the risk that one
    // lost PUBACK keeps a slot of the broker's small inflight window (Mosquitto: 20) forever.
    opts.set_max_packet_size(MQTT_MAX_PACKET, MQTT_MAX_PACKET);
    opts.set_inflight(1000);
    opts.set_request_channel_capacity(10_000);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    let previous = keys::load_previous(&cfg.data_dir)?.map(Arc::new);
    if let Some(p) = &previous {
        info!(from = %p.key_id(), to = %key.key_id(), "hub key rotated; agents are told to follow at their next birth");
    }
    let publisher = Publisher::new(client.clone(), key.clone(), &cfg.hub_id).with_previous_key(previous);
    let rejects = Arc::new(Rejects::default());
    let (tx, rx) = mpsc::channel(4096);
    let (revoked_tx, revoked_rx) = mpsc::channel(64);
    let ingest_task = tokio::spawn(ingest::run(
        Ingest::new(store.clone(), publisher.clone(), rejects.clone(), cfg.limits)
            .with_revoked_sink(revoked_tx)
            .with_key_overlap(cfg.key_overlap),
        rx,
    ));
    let disconnect_task = tokio::spawn(crate::lifecycle::run_disconnects(
        store.clone(),
        host.clone(),
        port,
        revoked_rx,
        shutdown.child_token(),
    ));
    let poll_token = shutdown.child_token();
    let (poll_store, poll_pub) = (store.clone(), publisher.clone());
    let poll_task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let ev = tokio::select! {
                _ = poll_token.cancelled() => return,
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(broker = %format!("{host}:{port}"), "hub connected to broker");
                    backoff = Duration::from_millis(200);
                    for f in [UP_FILTER, STATUS_FILTER] {
                        if let Err(e) = poll_pub_subscribe(&poll_pub, f) {
                            warn!(error = %e, filter = f, "subscribe failed");
                        }
                    }
                    let (s, p) = (poll_store.clone(), poll_pub.clone());
                    tokio::spawn(async move {
                        // Agents that stayed connected through a hub restart (an external
                        // broker) have no new birth: tell them of a hub key rotation now.
                        if let Ok(Ok(devices)) = s.call(|db| db.lifecycle_devices()).await {
                            for d in devices.iter().filter(|d| d.state.may_act()) {
                                p.publish_hub_rotation(&d.site_id, &d.device_id);
                            }
                        }
                        p.republish_reports(&s, None).await
                    });
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "broker connection lost; retrying");
                    tokio::select! {
                        _ = poll_token.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    let into_store = images.clone();
    let deliver: crate::imaging::Deliver = Arc::new(move |path: &std::path::Path| match into_store.insert_file(path) {
        Ok(_) => Ok(()),
        // The same SOP Instance UID with other bytes: the first copy stays, the study goes on.
        Err(crate::images::ImageError::Conflict { sop_uid, stored }) => {
            warn!(sop = %sop_uid, stored = %stored, "an instance came again with other bytes; the first copy is kept");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    });
    let imaging_task = tokio::spawn(crate::imaging::run(
        store.clone(),
        cfg.data_dir.join("image-work"),
        deliver,
        cfg.image_partial_after,
        shutdown.child_token(),
    ));
    let retention_task = tokio::spawn(retention_loop(
        store.clone(),
        images.clone(),
        cfg.retention,
        cfg.retention_interval,
        shutdown.child_token(),
    ));
    let state = AppState {
        store,
        publisher,
        rejects,
        claim_ttl_ms: cfg.claim_ttl.as_millis() as i64,
        wait_targets_ms: cfg.wait_targets.map(|d| d.as_millis() as i64),
        images,
    };
    let addr = http.local_addr().map_err(|source| HubError::Io { what: "http listener", source })?;
    info!(%addr, data = %cfg.data_dir.display(), key_id = %key.key_id(), "hub HTTP API listening");
    // Connect info gives the enrolment endpoint the address a request came from.
    let served = axum::serve(http, http::router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    let _ = poll_task.await;
    let _ = ingest_task.await;
    let _ = imaging_task.await;
    let _ = retention_task.await;
    let _ = disconnect_task.await;
    let _ = client.try_disconnect();
    info!("hub stopped");
    served.map_err(|source| HubError::Io { what: "http server", source })
}

/// Sweeps expired data now and then every `every` (see [`crate::retention`]).
async fn retention_loop(
    store: Store,
    images: Arc<crate::images::ImageStore>,
    policy: crate::retention::Retention,
    every: Duration,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::clock::now_ms();
        let swept = match store.call(move |db| crate::retention::sweep(db, &policy, now)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(error = %e, "retention sweep failed; it runs again later");
                continue;
            }
            Err(_) => return,
        };
        for uid in swept.image_studies {
            let images = images.clone();
            match tokio::task::spawn_blocking(move || images.delete_study(&uid)).await {
                Ok(Err(e)) => warn!(error = %e, "retention: deleting an image study's files failed"),
                Err(e) => warn!(error = %e, "retention: deleting an image study's files failed"),
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn poll_pub_subscribe(p: &Publisher, filter: &str) -> Result<(), rumqttc::ClientError> {
    p.client().try_subscribe(filter, QoS::AtLeastOnce)
}
