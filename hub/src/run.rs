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
use yilian_protocol::topic::{STATUS_FILTER, UP_FILTER, parse_broker_url};

/// Where the hub's broker is.
#[derive(Debug, Clone)]
pub enum BrokerMode {
    /// Run rumqttd in this process, listening here.
    Embedded(SocketAddr),
    /// Use an external broker (Mosquitto, EMQX): `mqtts://host:port` (`mqtt://` only with
    /// `insecure_plaintext`).
    External(String),
}

/// The MQTT shared-subscription group of hub processes sharing one store.
pub const SHARE_GROUP: &str = "yilian-hubs";

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Data folder: `yilian.db`, `hub.pk8`, `hub.pub`.
    pub data_dir: PathBuf,
    /// Broker.
    pub broker: BrokerMode,
    /// How long a specialist's claim lasts.
    pub claim_ttl: Duration,
    /// MQTT client id of this hub process (with an external broker it is the hub's identity:
    /// see `instance`).
    pub client_id: String,
    /// This hub's name among several hub processes sharing one store and one external broker;
    /// `None`: the only hub. With a name, the hub connects as `yilian-hub-NAME` and takes its
    /// share of the uplink through the MQTT shared subscription [`SHARE_GROUP`].
    pub instance: Option<String>,
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
    /// The store's database: `None` is SQLite in the data folder; a `postgres://` URL is a
    /// PostgreSQL database, which several hub processes may share.
    pub store: Option<String>,
    /// How long each kind of data is kept.
    pub retention: crate::retention::Retention,
    /// How often expired data is swept.
    pub retention_interval: Duration,
    /// How long a device's old key stays valid after the device rotated to a new one.
    pub key_overlap: Duration,
    /// Plaintext MQTT and HTTP, for debugging only (logged loudly). Default false: TLS.
    pub insecure_plaintext: bool,
    /// Host names or addresses (besides localhost) the server certificate is issued for.
    pub tls_names: Vec<String>,
    /// External broker: the CRL file it reads (Mosquitto `crlfile`), kept current by the hub.
    pub broker_crl: Option<PathBuf>,
    /// External broker: a shell command that makes it re-read the CRL.
    pub broker_reload: Option<String>,
    /// How often rollouts are moved on (outcomes read, stages opened, halts).
    pub rollout_tick: Duration,
    /// The hospital HIS that takes every signed report as HL7 v2 (none: not sent).
    pub his: Option<crate::hl7::sender::HisConfig>,
    /// The hospital PACS that takes every reported study by C-STORE (none: not sent).
    pub pacs: Option<crate::pacs::PacsConfig>,
    /// The CJK font for printable reports (none: the first of the usual Debian fonts found).
    pub report_font: Option<PathBuf>,
    /// The centre's name printed on reports.
    pub centre: String,
    /// Critical results: when and where unacknowledged ones are escalated.
    pub critical: crate::critical::CriticalConfig,
}

impl HubConfig {
    /// Defaults for a data folder and broker.
    pub fn new(data_dir: PathBuf, broker: BrokerMode) -> Self {
        Self {
            data_dir,
            broker,
            claim_ttl: Duration::from_secs(15 * 60),
            client_id: "yilian-hub".into(),
            instance: None,
            hub_id: "hub".into(),
            limits: crate::ratelimit::Limits::default(),
            wait_targets: crate::http::console::WAIT_TARGETS.map(|m| Duration::from_secs(m * 60)),
            image_partial_after: Duration::from_secs(30 * 60),
            store_key: None,
            store: None,
            retention: crate::retention::Retention::default(),
            retention_interval: crate::retention::INTERVAL,
            key_overlap: crate::ingest::DEFAULT_KEY_OVERLAP,
            rollout_tick: crate::fleet::ROLLOUT_TICK,
            his: None,
            pacs: None,
            report_font: None,
            critical: crate::critical::CriticalConfig::default(),
            centre: "县域心电诊断中心 County ECG centre".into(),
            insecure_plaintext: false,
            tls_names: Vec::new(),
            broker_crl: None,
            broker_reload: None,
        }
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("yilian.db")
    }

    /// Where the store's database is.
    pub fn store_location(&self) -> crate::store::Location {
        self.store
            .as_deref()
            .map_or_else(|| crate::store::Location::Sqlite(self.db_path()), crate::store::Location::parse)
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
    /// County CA trouble.
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    /// TLS configuration trouble.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Several hubs need an external broker to share.
    #[error("--instance needs an external broker (--broker): hubs share the uplink through it")]
    InstanceWithoutBroker,
    /// A plaintext broker URL without `insecure_plaintext`.
    #[error("broker {0} is plaintext (mqtt://); use mqtts:// or, for debugging only, --insecure-plaintext")]
    PlaintextRefused(String),
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
    let store = Store::open_at(&cfg.store_location(), &cfg.store_key_path())?;
    // The store opened with this key and checked it, so the image index is sealed with the same.
    let store_key = crate::store::sealed::load_or_create_key_file(&cfg.store_key_path())?;
    let images = Arc::new(
        crate::images::ImageStore::open_with_key(&cfg.data_dir.join("images"), store_key)
            .map_err(|e| HubError::Io { what: "opening the image store", source: std::io::Error::other(e) })?,
    );
    let ca = Arc::new(crate::ca::CountyCa::load_or_create(&cfg.data_dir)?);
    let server_cert = ca.server_cert(&cfg.tls_names)?;
    if cfg.insecure_plaintext {
        warn!(
            "INSECURE: --insecure-plaintext: MQTT and HTTP run WITHOUT TLS; anyone on the network can read patient data. For debugging only."
        );
    } else {
        info!(ca = %ca.ca_pem_path().display(), "TLS on; {}", crate::ca::trust_hint(&ca.ca_pem_path()));
    }
    if cfg.instance.is_some() && matches!(cfg.broker, BrokerMode::Embedded(_)) {
        return Err(HubError::InstanceWithoutBroker);
    }
    if let Some(i) = &cfg.instance {
        yilian_protocol::topic::check_slug("hub instance", i)?;
    }
    let identity = crate::ca::hub_identity(cfg.instance.as_deref());
    let client_id = if cfg.instance.is_some() { identity.clone() } else { cfg.client_id.clone() };
    let client_tls = {
        let hub_client = ca.issue_hub_client(&key.public_key(), &identity)?;
        let path = cfg.data_dir.join("ca").join("hub-client.pem");
        std::fs::write(&path, &hub_client)
            .map_err(|source| HubError::Io { what: "writing the hub client certificate", source })?;
        yilian_protocol::tls::mqtt_client_config(ca.ca_pem().as_bytes(), hub_client.as_bytes(), key.pkcs8())
            .map_err(crate::tls::TlsError::from)?
    };
    let (host, port, tls) = match &cfg.broker {
        BrokerMode::Embedded(addr) => {
            let addr = *addr;
            let tls = (!cfg.insecure_plaintext).then(|| broker::BrokerTls {
                ca: ca.ca_pem_path(),
                cert: server_cert.cert.clone(),
                key: server_cert.key.clone(),
            });
            let auth = broker::Authenticator { store: store.clone(), hub_key: key.public_key() };
            tokio::task::spawn_blocking(move || broker::start_embedded(addr, tls.as_ref(), auth))
                .await
                .map_err(|e| HubError::Io { what: "starting the broker", source: std::io::Error::other(e) })??;
            info!(%addr, tls = !cfg.insecure_plaintext, "embedded MQTT broker listening");
            (addr.ip().to_string(), addr.port(), !cfg.insecure_plaintext)
        }
        BrokerMode::External(url) => {
            let u = parse_broker_url(url)?;
            if !u.tls && !cfg.insecure_plaintext {
                return Err(HubError::PlaintextRefused(url.clone()));
            }
            if cfg.broker_crl.is_none() {
                warn!(
                    "external broker without --broker-crl: a revoked device's connection is dropped but the broker \
                     lets it back in; the hub still refuses its every message"
                );
            }
            (u.host, u.port, u.tls)
        }
    };
    let mut opts = MqttOptions::new(client_id.clone(), host.clone(), port);
    if tls {
        opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(client_tls.clone())));
    }
    let takeover_tls = client_tls;
    let password = |key: &yilian_protocol::keys::SigningKey, client_id: &str| {
        yilian_protocol::connect::connect_password(key, client_id, crate::clock::now_ms())
    };
    opts.set_credentials(identity.clone(), password(&key, &client_id));
    opts.set_keep_alive(Duration::from_secs(15));
    // A lone hub keeps its session, so the broker holds the uplink while it restarts. Hubs
    // sharing the uplink must not: a stopped hub's session would keep taking its share into a
    // queue nobody reads. The other hubs take everything; agents resend what was never acked.
    opts.set_clean_session(cfg.instance.is_some());
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
        crate::lifecycle::BrokerAccess {
            host: host.clone(),
            port,
            tls: tls.then(|| rumqttc::TlsConfiguration::Rustls(takeover_tls.clone())),
            key: key.clone(),
            external: matches!(cfg.broker, BrokerMode::External(_)).then(|| crate::lifecycle::ExternalBroker {
                ca: ca.clone(),
                crl: cfg.broker_crl.clone(),
                reload: cfg.broker_reload.clone(),
            }),
        },
        revoked_rx,
        shutdown.child_token(),
    ));
    let poll_token = shutdown.child_token();
    let (poll_store, poll_pub) = (store.clone(), publisher.clone());
    let (poll_key, poll_client_id, poll_identity) = (key.clone(), client_id.clone(), identity.clone());
    let shared = cfg.instance.is_some();
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
                        // Hubs sharing the store share the uplink: each message goes to one of them.
                        let f = if shared { format!("$share/{SHARE_GROUP}/{f}") } else { f.to_string() };
                        let f = f.as_str();
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
                        p.republish_reports(&s, None).await;
                        p.republish_critical(&s, None).await
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
                    // The password carries its time: a reconnect needs a fresh one.
                    eventloop.mqtt_options.set_credentials(poll_identity.clone(), password(&poll_key, &poll_client_id));
                    tokio::select! {
                        _ = poll_token.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    let imaging_task = tokio::spawn(crate::imaging::run(
        store.clone(),
        cfg.data_dir.join("image-work"),
        images.clone(),
        cfg.image_partial_after,
        shutdown.child_token(),
    ));
    let orphans_task = tokio::spawn(orphaned_reports_loop(store.clone(), publisher.clone(), shutdown.child_token()));
    let retention_task = tokio::spawn(retention_loop(
        store.clone(),
        images.clone(),
        cfg.retention,
        cfg.retention_interval,
        shutdown.child_token(),
    ));
    let tuf = yilian_update::repo::RepoDir(cfg.data_dir.join("tuf"));
    let tuf_task = tokio::spawn(crate::fleet::refresh_loop(tuf.clone(), shutdown.child_token()));
    let rollout_task =
        tokio::spawn(crate::fleet::rollout_loop(store.clone(), cfg.rollout_tick, shutdown.child_token()));
    // The outboxes start now, before any report can be signed: what was reported before the HIS
    // or PACS was connected is not replayed to it, and nothing reported from here on is missed.
    let (his_on, pacs_on) = (cfg.his.is_some(), cfg.pacs.is_some());
    let started = crate::clock::now_ms();
    let since = store
        .call(move |db| -> Result<(i64, i64), crate::store::StoreError> {
            let his = if his_on { db.outbox_since("hl7_since_ms", started)? } else { started };
            let pacs = if pacs_on { db.outbox_since("pacs_since_ms", started)? } else { started };
            Ok((his, pacs))
        })
        .await;
    let (his_since, pacs_since) = match since {
        Ok(Ok(s)) => s,
        Ok(Err(e)) | Err(e) => return Err(HubError::Store(e)),
    };
    let critical_task = tokio::spawn(crate::critical::run(store.clone(), cfg.critical.clone(), shutdown.child_token()));
    let preread_task =
        tokio::spawn(crate::preread::run(store.clone(), Duration::from_millis(500), shutdown.child_token()));
    let printer = match crate::report_pdf::load_font(cfg.report_font.as_deref()) {
        Ok(font) => {
            Some(crate::report_pdf::Printer { font, centre: cfg.centre.clone(), hub_key_id: key.key_id().to_string() })
        }
        Err(e) => {
            warn!(error = %e, "printable reports are off");
            None
        }
    };
    let pacs_task = cfg.pacs.clone().map(|mut p| {
        p.printer = printer.clone();
        tokio::spawn(crate::pacs::run(store.clone(), p, pacs_since, shutdown.child_token()))
    });
    let his_task = cfg.his.clone().map(|mut his| {
        // The HIS gets the printable report too, as an ED segment, when there is a font for it.
        his.pdf = printer.clone();
        tokio::spawn(crate::hl7::sender::run(store.clone(), his, his_since, shutdown.child_token()))
    });
    let state = AppState {
        store,
        publisher,
        rejects,
        claim_ttl_ms: cfg.claim_ttl.as_millis() as i64,
        wait_targets_ms: cfg.wait_targets.map(|d| d.as_millis() as i64),
        images,
        ca: Some(ca),
        tuf: Some(tuf),
        printer,
    };
    let addr = http.local_addr().map_err(|source| HubError::Io { what: "http listener", source })?;
    // Connect info gives the audit log and the enrolment endpoint the address a request came from.
    let served = if cfg.insecure_plaintext {
        warn!(%addr, "INSECURE: hub HTTP API listening WITHOUT TLS (http://)");
        axum::serve(http, http::router(state).into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
    } else {
        info!(%addr, data = %cfg.data_dir.display(), key_id = %key.key_id(), "hub HTTPS API listening (https://)");
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(crate::tls::https_server_config(
            &server_cert.cert,
            &server_cert.key,
        )?);
        let handle = axum_server::Handle::new();
        let stop = handle.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            stop.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        let std_listener = http.into_std().map_err(|source| HubError::Io { what: "http listener", source })?;
        axum_server::from_tcp_rustls(std_listener, tls)
            .handle(handle)
            .serve(http::router(state).into_make_service_with_connect_info::<SocketAddr>())
            .await
    };
    let _ = poll_task.await;
    let _ = ingest_task.await;
    let _ = imaging_task.await;
    let _ = retention_task.await;
    let _ = orphans_task.await;
    let _ = tuf_task.await;
    let _ = rollout_task.await;
    let _ = critical_task.await;
    let _ = preread_task.await;
    for t in [his_task, pacs_task].into_iter().flatten() {
        let _ = t.await;
    }
    let _ = disconnect_task.await;
    let _ = client.try_disconnect();
    info!("hub stopped");
    served.map_err(|source| HubError::Io { what: "http server", source })
}

/// How long a signed report may stay unpublished before another hub sends it: the signing hub
/// publishes within milliseconds unless it stopped in between.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// Publishes, every few seconds, reports whose signing hub stopped before it published them
/// (with several hubs on one store, the others take over; a lone hub finds them after restart).
async fn orphaned_reports_loop(store: Store, publisher: Publisher, token: CancellationToken) {
    let mut tick = tokio::time::interval(ORPHAN_GRACE / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let before = crate::clock::now_ms() - ORPHAN_GRACE.as_millis() as i64;
        let rows = match store.call(move |db| db.unpublished_reports(before)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot list unpublished reports");
                continue;
            }
            Err(_) => return,
        };
        publisher.publish_and_mark(&store, rows, "report its signing hub did not publish is published").await;
    }
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
