//! Wires the agent together: serial ports → drivers → assembler → uplink (spool + MQTT).

use crate::assemble::{Assembled, Assembler};
use crate::config::AgentConfig;
use crate::driver::DeviceEvent;
use crate::journey::Journeys;
use crate::reports::ReportStore;
use crate::serial::{self, PortEvent};
use crate::spool::{Spool, SpoolError};
use crate::stats::AgentStats;
use crate::uplink::{self, Outgoing, UplinkConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use yilian_protocol::KeyError;
use yilian_protocol::keys::{PublicKey, SigningKey};
use yilian_protocol::message::{DeviceOutput, Lane, Payload};

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A key file could not be read.
    #[error("reading key {path}: {source}")]
    KeyFile {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A key file's content is not a key.
    #[error("key {path}: {source}")]
    Key {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        source: KeyError,
    },
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Loads the device key and the pinned hub key named in the config.
pub fn load_keys(cfg: &AgentConfig) -> Result<(SigningKey, PublicKey), StartError> {
    let pk8 = std::fs::read(&cfg.key).map_err(|source| StartError::KeyFile { path: cfg.key.clone(), source })?;
    let key = SigningKey::from_pkcs8(&pk8).map_err(|source| StartError::Key { path: cfg.key.clone(), source })?;
    let hub_text = std::fs::read_to_string(&cfg.hub_public_key)
        .map_err(|source| StartError::KeyFile { path: cfg.hub_public_key.clone(), source })?;
    let hub = PublicKey::from_hex(&hub_text)
        .map_err(|source| StartError::Key { path: cfg.hub_public_key.clone(), source })?;
    Ok((key, hub))
}

/// The TLS settings of the MQTT link: the pinned county CA, this device's certificate, and its
/// signing key as the TLS client key.
pub fn tls_settings(cfg: &AgentConfig) -> Result<rumqttc::TlsConfiguration, StartError> {
    let read = |p: &Option<std::path::PathBuf>, field: &str| -> Result<Vec<u8>, StartError> {
        let p = p.as_ref().ok_or_else(|| crate::config::ConfigError::Invalid {
            field: field.into(),
            reason: "needed for mqtts://".into(),
        })?;
        std::fs::read(p).map_err(|source| StartError::KeyFile { path: p.clone(), source })
    };
    let ca = read(&cfg.ca_certificate, "ca_certificate")?;
    let cert = read(&cfg.certificate, "certificate")?;
    let pk8 = std::fs::read(&cfg.key).map_err(|source| StartError::KeyFile { path: cfg.key.clone(), source })?;
    let config = yilian_protocol::tls::mqtt_client_config(&ca, &cert, &pk8).map_err(|e| {
        crate::config::ConfigError::Invalid { field: "ca_certificate/certificate".into(), reason: e.to_string() }
    })?;
    Ok(rumqttc::TlsConfiguration::Rustls(config))
}

/// The uplink's settings from the agent's configuration: broker address, TLS, timeouts, window
/// and quota. Public so an in-process load generator drives [`uplink::run`] exactly as the agent
/// configures it.
pub fn uplink_config(cfg: &AgentConfig) -> Result<UplinkConfig, StartError> {
    let url = yilian_protocol::topic::parse_broker_url(&cfg.broker)
        .map_err(|e| crate::config::ConfigError::Invalid { field: "broker".into(), reason: e.to_string() })?;
    let tls = if url.tls { Some(tls_settings(cfg)?) } else { None };
    if tls.is_none() {
        warn!(broker = %cfg.broker, "INSECURE: insecure_plaintext: the MQTT link runs WITHOUT TLS; anyone on the network can read patient data. For debugging only.");
    }
    Ok(UplinkConfig {
        site: cfg.site.clone(),
        device: cfg.device.clone(),
        host: url.host,
        port: url.port,
        tls,
        ack_timeout: Duration::from_secs(cfg.ack_timeout_secs.max(1)),
        heartbeat: Duration::from_secs(cfg.heartbeat_secs.max(1)),
        window: cfg.window,
        spool_max_bytes: cfg.spool_max_bytes,
        key_file: Some(cfg.key.clone()),
        hub_key_file: Some(cfg.hub_public_key.clone()),
    })
}

/// Runs the agent until `shutdown` fires; on the way out every assembled body is spooled.
pub async fn run(cfg: AgentConfig, stats: Arc<AgentStats>, shutdown: CancellationToken) -> Result<(), StartError> {
    run_with(cfg, stats, shutdown, None).await
}

/// [`run`], first sending `trial_probe` as a line of device output (port `agent`): a release on
/// trial proves it can get a signed message to the hub and have it acknowledged.
pub async fn run_with(
    cfg: AgentConfig,
    stats: Arc<AgentStats>,
    shutdown: CancellationToken,
    trial_probe: Option<String>,
) -> Result<(), StartError> {
    cfg.validate()?;
    let (key, hub_key) = load_keys(&cfg)?;
    // The log key lives beside the device key.
    let key_dir = cfg.key.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    crate::logkey::install(key_dir)
        .map_err(|source| StartError::KeyFile { path: key_dir.join(crate::logkey::FILE), source })?;
    let spool_key = crate::spool::load_or_create_key(&cfg.spool_key_path())?;
    let (spool, report) = Spool::open(&cfg.spool_dir, spool_key)?;
    // Counters reflect the spool before any task runs, so nobody reads "empty" while files wait.
    stats.spool_entries.store(spool.len() as u64, std::sync::atomic::Ordering::Relaxed);
    stats.spool_bytes.store(spool.bytes(), std::sync::atomic::Ordering::Relaxed);
    stats.spool_tampered.store(spool.tampered(), std::sync::atomic::Ordering::Relaxed);
    if !report.quarantined.is_empty() {
        error!(files = ?report.quarantined, "damaged spool files moved to quarantine");
    }
    if report.migrated > 0 {
        info!(records = report.migrated, "plaintext spool records from before encryption sealed in place");
    }
    info!(
        site = %cfg.site, device = %cfg.device, key_id = %key.key_id(), pending = report.pending,
        next_seq = spool.next_seq(), "agent starting"
    );
    let uplink_cfg = uplink_config(&cfg)?;
    let tracker = TaskTracker::new();
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(256);
    let (port_tx, port_rx) = mpsc::channel::<PortEvent>(1024);
    let ports_token = CancellationToken::new();
    for port in &cfg.serial {
        tracker.spawn(serial::run_port(port.clone(), port_tx.clone(), stats.clone(), ports_token.clone()));
    }
    if let Some(line) = trial_probe {
        let _ = port_tx.send(PortEvent::Device("agent".into(), DeviceEvent::Text(line))).await;
    }
    drop(port_tx);
    let spool = Arc::new(std::sync::Mutex::new(spool));
    // Read at start like the spool: a few hundred small files.
    let journeys = Arc::new(Journeys::open(&cfg.reports_dir, crate::clock::now_ms()));
    if let Some(node) = cfg.dicom.clone() {
        // Modalities push here; complete studies go up as signed manifests and chunks.
        let inbox = cfg.inbox.as_ref().map(|i| i.dir.clone());
        let dir = node.dir.clone();
        let token = ports_token.clone();
        tracker.spawn(async move {
            if let Err(e) = crate::dicom_node::run(node, inbox, token).await {
                error!(error = %e, "the DICOM node stopped");
            }
        });
        tracker.spawn(crate::image_uplink::run(dir, out_tx.clone(), spool.clone(), ports_token.clone()));
    }
    if let Some(page) = cfg.clinic_page.clone() {
        let (config, token) = (cfg.clone(), ports_token.clone());
        let local = crate::clinic_page::Local { journeys: journeys.clone(), stats: stats.clone(), tx: out_tx.clone() };
        tracker.spawn(async move {
            if let Err(e) = crate::clinic_page::run(&page.listen, config, local, token).await {
                error!(listen = %page.listen, error = %e, "the clinic page cannot listen");
            }
        });
    }
    if let Some(hub) = cfg.hub_https() {
        tracker.spawn(crate::report_pdf::run(cfg.clone(), hub, ports_token.clone()));
    }
    if let Some(update) = cfg.update.clone() {
        tracker.spawn(crate::fleet_report::run(update, out_tx.clone(), ports_token.clone()));
    }
    if let Some(inbox) = cfg.inbox.clone() {
        // Stopped with the ports: its sender must be gone before the uplink can finish.
        tracker.spawn(crate::inbox::run(
            inbox,
            cfg.device.clone(),
            out_tx.clone(),
            spool.clone(),
            journeys.clone(),
            ports_token.clone(),
        ));
    }
    let assembler =
        tokio::spawn(assemble_loop(cfg.device.clone(), cfg.chunk_ms, port_rx, out_tx, stats.clone(), journeys.clone()));
    let uplink = tokio::spawn(uplink::run(
        uplink_cfg,
        Arc::new(key),
        hub_key,
        spool.clone(),
        uplink::ClinicRecords { reports: ReportStore::new(&cfg.reports_dir), journeys },
        out_rx,
        stats,
    ));
    shutdown.cancelled().await;
    // Stop reading ports first, so the assembler flushes and the uplink spools everything.
    ports_token.cancel();
    tracker.close();
    tracker.wait().await;
    let _ = assembler.await;
    let _ = uplink.await;
    info!("agent stopped");
    Ok(())
}

async fn assemble_loop(
    device: String,
    chunk_ms: u32,
    mut rx: mpsc::Receiver<PortEvent>,
    tx: mpsc::Sender<Outgoing>,
    stats: Arc<AgentStats>,
    journeys: Arc<Journeys>,
) {
    let mut assemblers: HashMap<String, Assembler> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        let (port, out) = match ev {
            PortEvent::Device(port, DeviceEvent::Frame(f)) => {
                let a = assemblers.entry(port.clone()).or_insert_with(|| Assembler::new(&device, chunk_ms));
                let out = a.handle(f);
                (port, out)
            }
            PortEvent::Device(port, DeviceEvent::Text(line)) => {
                let o = Outgoing::new(
                    Lane::Stream,
                    Payload::DeviceOutput(DeviceOutput { port, line, received_at_ms: crate::clock::now_ms() }),
                );
                if tx.send(o).await.is_err() {
                    return;
                }
                continue;
            }
            PortEvent::Device(_, _) => continue,
            PortEvent::Closed(port) => {
                let out = assemblers.get_mut(&port).map(Assembler::port_closed).unwrap_or_default();
                (port, out)
            }
        };
        for item in out {
            let outgoing = outgoing_of(&port, item, &stats, &journeys).await;
            for o in outgoing {
                if tx.send(o).await.is_err() {
                    return;
                }
            }
        }
    }
    // Ports are closed: flush what remains of every stream.
    for a in assemblers.values_mut() {
        for item in a.flush_streams() {
            if let Assembled::Chunk(chunk) = item {
                AgentStats::add(&stats.chunks, 1);
                AgentStats::add(&stats.samples, chunk.leads.iter().map(|l| u64::from(l.samples.count)).sum());
                let _ = tx.send(Outgoing::new(Lane::Stream, Payload::StreamChunk(chunk))).await;
            }
        }
    }
}

/// What the uplink sends for one assembled item: a study split into parts on its priority's lane
/// (its journey recorded), a chunk on the stream lane, nothing for a problem (logged); counted in
/// `stats`. Public so an in-process load generator feeds the uplink exactly as the agent does.
pub async fn outgoing_of(port: &str, item: Assembled, stats: &AgentStats, journeys: &Arc<Journeys>) -> Vec<Outgoing> {
    match item {
        Assembled::Study(study) => {
            let samples: u64 = study.leads.iter().map(|l| u64::from(l.samples.count)).sum();
            match study.split() {
                Ok(parts) => {
                    info!(%port, study = %study.study_uid, priority = study.priority.as_str(), parts = parts.len(), "study assembled");
                    let (j, st, source) = (journeys.clone(), study.clone(), format!("serial {port}"));
                    let _ = tokio::task::spawn_blocking(move || j.recorded(&st, &source, crate::clock::now_ms())).await;
                    AgentStats::add(&stats.studies, 1);
                    AgentStats::add(&stats.samples, samples);
                    let lane = study.priority.lane();
                    parts.into_iter().map(|p| Outgoing::new(lane, Payload::StudyPart(p))).collect()
                }
                Err(e) => {
                    error!(%port, study = %study.study_uid, error = %e, "study too large to send");
                    AgentStats::add(&stats.problems, 1);
                    vec![]
                }
            }
        }
        Assembled::Chunk(chunk) => {
            AgentStats::add(&stats.chunks, 1);
            AgentStats::add(&stats.samples, chunk.leads.iter().map(|l| u64::from(l.samples.count)).sum());
            vec![Outgoing::new(Lane::Stream, Payload::StreamChunk(chunk))]
        }
        Assembled::Problem(p) => {
            warn!(%port, problem = %p, "cart data problem");
            AgentStats::add(&stats.problems, 1);
            vec![]
        }
    }
}

/// Writes a new device key: `{prefix}.pk8` (owner-only) and `{prefix}.pub` (hex).
pub fn keygen(prefix: &std::path::Path) -> Result<(std::path::PathBuf, std::path::PathBuf), std::io::Error> {
    let key = SigningKey::generate().map_err(std::io::Error::other)?;
    let pk8 = prefix.with_extension("pk8");
    let public = prefix.with_extension("pub");
    if let Some(dir) = pk8.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_private(&pk8, key.pkcs8())?;
    std::fs::write(&public, format!("{}\n", key.public_key().to_hex()))?;
    Ok((pk8, public))
}

/// Writes a private key file readable only by its owner, refusing to overwrite one.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
