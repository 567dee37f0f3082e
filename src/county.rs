//! A county in one process: a hub and any number of clinics, each clinic an agent reading a
//! simulated cart over a real pseudo-terminal. Used by `examples/county.rs` and `tests/`.

use crate::client::Api;
use crate::procs::{Proc, wait_log, workspace_bin};
use crate::sim::{Cart, Pty};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yilian_agent::clinicians::{self, Clinician};
use yilian_agent::config::{AgentConfig, ClinicPageConfig, DicomNodeConfig, InboxConfig, SerialConfig};
use yilian_agent::driver::DriverKind;
use yilian_agent::{AgentStats, stats};
use yilian_hub::broker;
use yilian_hub::store::Db;
use yilian_hub::{BrokerMode, HubConfig};
use yilian_protocol::keys::{PublicKey, SigningKey};

/// Which broker a hub uses.
#[derive(Debug, Clone)]
pub enum Broker {
    /// rumqttd inside the hub process, on a free loopback port.
    Embedded,
    /// An external broker at `mqtts://host:port`.
    External(String),
    /// A Mosquitto of the hub's own, started from the configuration `yilian-hub broker-config
    /// mosquitto` writes (TLS, client certificates, ACL), so that configuration is what is
    /// tested.
    Mosquitto,
}

/// True when the tests should also cover Mosquitto (`$YILIAN_TEST_MOSQUITTO` set, as
/// scripts/test does).
pub fn mosquitto_enabled() -> bool {
    std::env::var("YILIAN_TEST_MOSQUITTO").is_ok_and(|v| !v.is_empty())
}

/// Starts a Mosquitto for the hub whose data folder is `hub_dir`, configured by
/// [`yilian_hub::mosquitto::write_config`] from that hub's county CA, on a free port.
pub async fn mosquitto_for(hub_dir: &Path) -> anyhow::Result<crate::procs::Mosquitto> {
    mosquitto_for_hubs(hub_dir, &[]).await
}

/// Like [`mosquitto_for`], for several hub processes named `hub_instances` (see
/// `yilian-hub run --instance`) sharing one store.
pub async fn mosquitto_for_hubs(hub_dir: &Path, hub_instances: &[String]) -> anyhow::Result<crate::procs::Mosquitto> {
    std::fs::create_dir_all(hub_dir)?;
    let ca = yilian_hub::ca::CountyCa::load_or_create(hub_dir)?;
    let port = broker::free_port()?;
    // Started as root (CI containers), Mosquitto would drop to its own user, who cannot read the
    // 0600 key this process wrote; the test broker runs as whoever runs the tests (the owner of
    // the folder this process just made).
    let created_by_root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(hub_dir)?) == 0;
    let run_as = created_by_root.then_some("root");
    let files = yilian_hub::mosquitto::write_config(
        &ca,
        &hub_dir.join("mosquitto"),
        &format!("127.0.0.1:{port}"),
        &[],
        false,
        run_as,
        &[],
        yilian_hub::clock::now_ms(),
        hub_instances,
    )?;
    crate::procs::Mosquitto::start_with_config(&files.conf, port).await
}

/// The external broker named by `$YILIAN_TEST_MQTT_URL` (e.g. Mosquitto), if any.
///
/// # Errors
/// The variable is set but nothing accepts connections there: a test must not silently fall
/// back to the embedded broker and pass.
pub fn external_test_broker() -> anyhow::Result<Option<String>> {
    let url = match std::env::var("YILIAN_TEST_MQTT_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => return Ok(None),
    };
    let (host, port) = yilian_protocol::topic::broker_addr(&url)?;
    std::net::TcpStream::connect((host.as_str(), port))
        .with_context(|| format!("YILIAN_TEST_MQTT_URL={url} is set but the broker is unreachable"))?;
    Ok(Some(url))
}

/// The broker the tests should use: Mosquitto if `$YILIAN_TEST_MOSQUITTO` is set, else the
/// external one if `$YILIAN_TEST_MQTT_URL` is set, else the embedded one.
pub fn test_broker() -> anyhow::Result<Broker> {
    if mosquitto_enabled() {
        return Ok(Broker::Mosquitto);
    }
    Ok(external_test_broker()?.map_or(Broker::Embedded, Broker::External))
}

/// Every broker the tests should cover: embedded, plus Mosquitto or the external one if set.
pub fn test_brokers() -> anyhow::Result<Vec<Broker>> {
    let mut v = vec![Broker::Embedded];
    if mosquitto_enabled() {
        v.push(Broker::Mosquitto);
    } else {
        v.extend(external_test_broker()?.map(Broker::External));
    }
    Ok(v)
}

/// Starts a standalone embedded broker on a free port for the hub whose data folder is
/// `hub_dir` (its county CA, its enrolled devices, its key) and returns its URL (for tests that
/// restart the hub while the broker stays up).
pub fn standalone_broker(hub_dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(hub_dir)?;
    let port = broker::free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let ca = yilian_hub::ca::CountyCa::load_or_create(hub_dir)?;
    let server = ca.server_cert(&[])?;
    let tls = broker::BrokerTls { ca: ca.ca_pem_path(), cert: server.cert, key: server.key };
    let auth = broker::Authenticator {
        store: yilian_hub::store::Store::open(&hub_dir.join("yilian.db"))?,
        hub_key: yilian_hub::keys::load_or_create(hub_dir)?.public_key(),
    };
    broker::start_embedded(addr, Some(&tls), auth)?;
    Ok(format!("mqtts://{addr}"))
}

/// The hubs this process started, by public key: their data folder (county CA) and whether
/// they run TLS. [`Clinic::prepare`] finds its hub's CA here from the hub key it is given, so
/// that the many tests that call it keep their shape.
static HUBS: Mutex<Vec<(PublicKey, PathBuf, bool)>> = Mutex::new(Vec::new());

fn register_hub(key: PublicKey, data_dir: &Path, tls: bool) {
    let mut hubs = HUBS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    hubs.retain(|(k, _, _)| *k != key);
    hubs.push((key, data_dir.to_path_buf(), tls));
}

fn hub_of(key: &PublicKey) -> Option<(PathBuf, bool)> {
    let hubs = HUBS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    hubs.iter().find(|(k, _, _)| k == key).map(|(_, d, t)| (d.clone(), *t))
}

/// `url` with the scheme its hub speaks: `mqtts://` over TLS, `mqtt://` in plaintext.
fn with_scheme(url: &str, tls: bool) -> String {
    let rest = url.strip_prefix("mqtts://").or_else(|| url.strip_prefix("mqtt://")).unwrap_or(url);
    format!("{}://{rest}", if tls { "mqtts" } else { "mqtt" })
}

/// MQTT options for a client that connects to the hub (whose key is `hub_key`) as device
/// `device` of `site` with `key`: TLS with a certificate the hub's CA issues for `key`, and the
/// connect password. The key must be enrolled for the embedded broker to admit it.
pub fn device_mqtt_options(
    hub_key: &PublicKey,
    broker_url: &str,
    site: &str,
    device: &str,
    key: &SigningKey,
) -> anyhow::Result<rumqttc::MqttOptions> {
    let (dir, tls) = hub_of(hub_key).context("no hub with that key was started by this process")?;
    let (host, port) = yilian_protocol::topic::broker_addr(broker_url)?;
    let mut o = rumqttc::MqttOptions::new(device, host, port);
    o.set_credentials(device, yilian_protocol::connect::connect_password(key, device, yilian_hub::clock::now_ms()));
    o.set_max_packet_size(yilian_protocol::limits::MQTT_MAX_PACKET, yilian_protocol::limits::MQTT_MAX_PACKET);
    if tls {
        let ca = yilian_hub::ca::CountyCa::load_or_create(&dir)?;
        let cert = ca.issue_device(site, device, &key.public_key())?;
        let cfg = yilian_protocol::tls::mqtt_client_config(ca.ca_pem().as_bytes(), cert.as_bytes(), key.pkcs8())?;
        o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(cfg)));
    }
    Ok(o)
}

/// Waits until `check` returns `Some`, polling every 50 ms, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running hub.
pub struct HubHandle {
    /// HTTP API address.
    pub http: SocketAddr,
    /// API client with the demo specialist's token.
    pub api: Api,
    /// The demo specialist's token.
    pub token: String,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Broker URL agents connect to.
    pub broker_url: String,
    /// The hub's public key (agents pin it).
    pub hub_key: PublicKey,
    /// The county CA certificate (`<data>/ca/ca.pem`).
    pub ca_pem: PathBuf,
    /// `https://127.0.0.1:port` (`http://` when run with `insecure_plaintext`).
    pub base_url: String,
    /// The hub's own Mosquitto ([`Broker::Mosquitto`]), stopped with the hub.
    pub mosquitto: Option<crate::procs::Mosquitto>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), yilian_hub::run::HubError>>,
}

impl HubHandle {
    /// Starts a hub with its data in `data_dir`, adding specialist `demo` (演示医师).
    pub async fn start(data_dir: &Path, broker: Broker) -> anyhow::Result<Self> {
        Self::start_with(data_dir, broker, |_| {}).await
    }

    /// Like [`HubHandle::start`], with a chance to adjust the configuration.
    pub async fn start_with(
        data_dir: &Path,
        broker: Broker,
        adjust: impl FnOnce(&mut HubConfig),
    ) -> anyhow::Result<Self> {
        let (key, token) = prepare_hub_dir(data_dir)?;
        let mut mosquitto = None;
        let (mode, broker_url) = match broker {
            Broker::Embedded => {
                let addr: SocketAddr = ([127, 0, 0, 1], broker::free_port()?).into();
                (BrokerMode::Embedded(addr), format!("mqtts://{addr}"))
            }
            Broker::External(url) => (BrokerMode::External(url.clone()), url),
            Broker::Mosquitto => {
                let m = mosquitto_for(data_dir).await?;
                let url = m.url();
                mosquitto = Some(m);
                (BrokerMode::External(url.clone()), url)
            }
        };
        let mut cfg = HubConfig::new(data_dir.to_path_buf(), mode);
        if let Some(m) = &mosquitto {
            cfg.broker_crl = Some(data_dir.join("mosquitto").join("crl.pem"));
            cfg.broker_reload = Some(m.reload_command());
        }
        cfg.claim_ttl = Duration::from_secs(600);
        // One MQTT session per hub data folder, stable across restarts of that hub, distinct
        // from other hubs sharing an external test broker.
        cfg.client_id = format!("yilian-hub-{}", &hex_digest(data_dir.to_string_lossy().as_bytes())[..12]);
        adjust(&mut cfg);
        let tls = !cfg.insecure_plaintext;
        let broker_url = with_scheme(&broker_url, tls);
        register_hub(key.public_key(), data_dir, tls);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(yilian_hub::run(cfg, listener, shutdown.clone()));
        let ca_pem = yilian_hub::ca::ca_pem_path(data_dir);
        let base_url = format!("{}://{http}", if tls { "https" } else { "http" });
        let api = Api::new(&base_url, tls.then(|| std::fs::read(&ca_pem)).transpose()?.as_deref(), &token)?;
        let probe = api.clone();
        wait_for("the hub's HTTP API", Duration::from_secs(20), || {
            let p = probe.clone();
            async move { p.stats().await.ok() }
        })
        .await?;
        Ok(Self {
            http,
            api,
            token,
            data_dir: data_dir.to_path_buf(),
            broker_url,
            hub_key: key.public_key(),
            ca_pem,
            base_url,
            mosquitto,
            shutdown,
            task,
        })
    }

    /// A reqwest client builder that trusts this hub's county CA.
    pub fn http_client(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        crate::client::http_client(Some(&std::fs::read(&self.ca_pem)?))
    }

    /// MQTT options to connect as device `device` of `site` with `key` (see
    /// [`device_mqtt_options`]).
    pub fn device_mqtt_options(
        &self,
        site: &str,
        device: &str,
        key: &SigningKey,
    ) -> anyhow::Result<rumqttc::MqttOptions> {
        device_mqtt_options(&self.hub_key, &self.broker_url, site, device, key)
    }

    /// Enrols a device directly in the hub's database (what `yilian-hub enroll` does).
    pub fn enroll(&self, site: &str, device: &str, key: &PublicKey) -> anyhow::Result<()> {
        hub_db(&self.data_dir)?.enroll(site, device, key, false, yilian_hub::clock::now_ms())?;
        Ok(())
    }

    /// Adds a specialist and returns their API token.
    pub fn add_specialist(&self, id: &str, name: &str) -> anyhow::Result<String> {
        let token = yilian_hub::http::auth::new_token().map_err(|_| anyhow::anyhow!("rng"))?;
        hub_db(&self.data_dir)?.add_specialist(id, name, &yilian_hub::http::auth::token_hash(&token))?;
        Ok(token)
    }

    /// Stops the hub and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("hub task")??;
        // The hub's own Mosquitto (if any) goes with it: its process is killed on drop.
        drop(self.mosquitto);
        Ok(())
    }
}

/// The demo console sign-in (an admin, so the fleet page shows too).
pub const DEMO_LOGIN: (&str, &str) = ("demo", "yilian-demo");
/// The clinicians every demo clinic lists for acknowledging critical results (name, PIN).
pub const DEMO_CLINICIANS: [(&str, &str); 2] = [("王芳", "2468"), ("赵强", "1357")];
/// The demo county's security officer: reads the audit log (`/audit`) and nothing clinical.
pub const DEMO_AUDITOR: (&str, &str) = ("auditor", "yilian-audit");

/// Makes the hub's key and database in `data_dir`, with specialist `demo` (API token and console
/// login [`DEMO_LOGIN`]); returns the hub key and the demo token.
fn prepare_hub_dir(data_dir: &Path) -> anyhow::Result<(SigningKey, String)> {
    std::fs::create_dir_all(data_dir)?;
    let key = yilian_hub::keys::load_or_create(data_dir)?;
    // Made here, before any hub runs, so the harness and the hub never race to create it.
    yilian_hub::ca::CountyCa::load_or_create(data_dir)?;
    let token = add_specialist_in(data_dir, "demo", "演示医师")?;
    let hash = yilian_hub::http::session::hash_password(DEMO_LOGIN.1).map_err(|e| anyhow::anyhow!(e))?;
    hub_db(data_dir)?.add_user(DEMO_LOGIN.0, "演示医师", "admin", &hash, yilian_hub::clock::now_ms())?;
    let hash = yilian_hub::http::session::hash_password(DEMO_AUDITOR.1).map_err(|e| anyhow::anyhow!(e))?;
    hub_db(data_dir)?.add_user(DEMO_AUDITOR.0, "审计员", "auditor", &hash, yilian_hub::clock::now_ms())?;
    Ok((key, token))
}

/// The file in a hub's data folder naming its PostgreSQL store, when it has one.
const STORE_URL_FILE: &str = "store.url";

/// Opens the store of the hub whose data folder is `data_dir`: the PostgreSQL database named in
/// its `store.url` (written by [`HubProc::start_on`]), or `yilian.db` in it.
pub fn hub_db(data_dir: &Path) -> anyhow::Result<Db> {
    let file = data_dir.join("yilian.db");
    let key = yilian_hub::store::sealed::default_key_path(&file);
    Ok(match std::fs::read_to_string(data_dir.join(STORE_URL_FILE)) {
        Ok(url) => Db::open_at(&yilian_hub::store::Location::Postgres(url.trim().to_string()), &key)?,
        Err(_) => Db::open(&file)?,
    })
}

/// Enrols a device in the hub database in `data_dir` (safe while the hub runs: SQLite WAL).
pub fn enroll_in(data_dir: &Path, site: &str, device: &str, key: &PublicKey) -> anyhow::Result<()> {
    hub_db(data_dir)?.enroll(site, device, key, false, yilian_hub::clock::now_ms())?;
    Ok(())
}

/// Adds a specialist to the hub database in `data_dir` and returns the new token.
pub fn add_specialist_in(data_dir: &Path, id: &str, name: &str) -> anyhow::Result<String> {
    let token = yilian_hub::http::auth::new_token().map_err(|_| anyhow::anyhow!("rng"))?;
    hub_db(data_dir)?.add_specialist(id, name, &yilian_hub::http::auth::token_hash(&token))?;
    Ok(token)
}

/// The hub as a real `yilian-hub` process, for kill -9 tests.
pub struct HubProc {
    /// HTTP API address (the same across restarts).
    pub http: SocketAddr,
    /// API client with the demo token.
    pub api: Api,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Broker URL agents use.
    pub broker_url: String,
    /// Hub public key.
    pub hub_key: PublicKey,
    /// `https://127.0.0.1:port`.
    pub base_url: String,
    args: Vec<String>,
    proc: Option<Proc>,
    starts: usize,
}

impl HubProc {
    /// Starts `yilian-hub run` on `data_dir`: with its embedded broker on a free port, or
    /// against `external` (mqtt://...).
    pub async fn start(data_dir: &Path, external: Option<&str>, failpoint: Option<&str>) -> anyhow::Result<Self> {
        Self::start_on(data_dir, external, failpoint, None).await
    }

    /// Like [`HubProc::start`], with the store in the PostgreSQL database at `store` (a URL)
    /// instead of SQLite in the data folder.
    pub async fn start_on(
        data_dir: &Path,
        external: Option<&str>,
        failpoint: Option<&str>,
        store: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_with(data_dir, external, failpoint, store, &[]).await
    }

    /// Like [`HubProc::start_on`], with more arguments for `yilian-hub run` (e.g. `--instance`).
    pub async fn start_with(
        data_dir: &Path,
        external: Option<&str>,
        failpoint: Option<&str>,
        store: Option<&str>,
        run_args: &[&str],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        if let Some(url) = store {
            std::fs::write(data_dir.join(STORE_URL_FILE), url)?;
        }
        let (key, token) = prepare_hub_dir(data_dir)?;
        let http: SocketAddr = ([127, 0, 0, 1], broker::free_port()?).into();
        let mut args = vec!["--data".to_string(), data_dir.display().to_string()];
        if let Some(url) = store {
            args.extend(["--store".into(), url.to_string()]);
        }
        args.extend(["run".into(), "--http".into(), http.to_string()]);
        args.extend(run_args.iter().map(|a| a.to_string()));
        let broker_url = match external {
            Some(url) => {
                args.extend(["--broker".into(), url.to_string()]);
                url.to_string()
            }
            None => {
                let mqtt: SocketAddr = ([127, 0, 0, 1], broker::free_port()?).into();
                args.extend(["--mqtt-listen".into(), mqtt.to_string()]);
                format!("mqtts://{mqtt}")
            }
        };
        register_hub(key.public_key(), data_dir, true);
        let base_url = format!("https://{http}");
        let ca = std::fs::read(yilian_hub::ca::ca_pem_path(data_dir))?;
        let mut hub = Self {
            http,
            api: Api::new(&base_url, Some(&ca), &token)?,
            base_url,
            data_dir: data_dir.to_path_buf(),
            broker_url,
            hub_key: key.public_key(),
            args,
            proc: None,
            starts: 0,
        };
        hub.restart(failpoint).await?;
        Ok(hub)
    }

    /// (Re)starts the process, killing a running one first, and waits for its API.
    pub async fn restart(&mut self, failpoint: Option<&str>) -> anyhow::Result<()> {
        self.kill9();
        self.starts += 1;
        let bin = workspace_bin("yilian-hub")?;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let log = self.data_dir.join(format!("hub-{}.log", self.starts));
        // Each stored envelope is logged (debug), so a test can tell which hub stored what.
        let mut env = vec![("RUST_LOG", "info,rumqttd=off,yilian_hub::ingest=debug")];
        if let Some(f) = failpoint {
            env.push(("YILIAN_FAILPOINT", f));
        }
        self.proc = Some(Proc::spawn("yilian-hub", &bin, &args, &env, &log)?);
        let api = self.api.clone();
        wait_for("the hub process's HTTP API", Duration::from_secs(30), || {
            let api = api.clone();
            async move { api.stats().await.ok() }
        })
        .await?;
        Ok(())
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// True while the process runs (false after a failpoint aborted it).
    pub fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::running)
    }

    /// Enrols a device.
    pub fn enroll(&self, site: &str, device: &str, key: &PublicKey) -> anyhow::Result<()> {
        enroll_in(&self.data_dir, site, device, key)
    }

    /// The current process's log.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// The process id while it runs (for reading its CPU and memory in `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }
}

/// Issues a bootstrap token for `site` in the hub database in `data_dir`, valid for `ttl_ms` from
/// `issued_at_ms`.
pub fn enrol_token_in(data_dir: &Path, site: &str, ttl_ms: i64, issued_at_ms: i64) -> anyhow::Result<String> {
    let t = yilian_hub::lifecycle::new_token().map_err(|_| anyhow::anyhow!("rng"))?;
    hub_db(data_dir)?.add_enrol_token(&t.id, &t.secret_sha256, site, "test", issued_at_ms + ttl_ms, issued_at_ms)?;
    Ok(t.token)
}

/// Approves, rejects or revokes `device` in the hub database in `data_dir`.
pub fn device_action_in(data_dir: &Path, device: &str, action: &str, reason: &str) -> anyhow::Result<()> {
    let action = yilian_hub::store::lifecycle::Action::parse(action).context("action")?;
    hub_db(data_dir)?
        .device_action(device, action, "test", reason, yilian_hub::clock::now_ms())?
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// A clinic: an agent, its folder, and the simulated cart on its serial port.
pub struct Clinic {
    /// Site id.
    pub site: String,
    /// Device id.
    pub device: String,
    /// The clinic's folder (keys, spool, reports, config).
    pub dir: PathBuf,
    /// Agent counters.
    pub stats: Arc<AgentStats>,
    /// The pty standing in for the cable.
    pub pty: Pty,
    /// The cart's printer port (text driver, GBK), a second pty.
    pub printer: Pty,
    /// The device's public key.
    pub public_key: PublicKey,
    /// The simulated cart.
    pub cart: Arc<Mutex<Cart>>,
    /// The agent's configuration.
    pub config: AgentConfig,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), yilian_agent::run::StartError>>>,
    process: Option<Proc>,
    process_starts: usize,
}

impl Clinic {
    /// The clinic page's address, `http://host:port`.
    pub fn page_url(&self) -> Option<String> {
        self.config.clinic_page.as_ref().map(|p| format!("http://{}", p.listen))
    }

    /// The clinic's watched inbox folder (drop cart files here; `stat/`, `urgent/`, `routine/`).
    pub fn inbox(&self) -> PathBuf {
        self.config.inbox.as_ref().map_or_else(|| self.dir.join("inbox"), |i| i.dir.clone())
    }

    /// Creates the clinic's folder, key and pty, enrols it at `hub`, and starts its agent.
    pub async fn start(root: &Path, site: &str, device: &str, hub: &HubHandle) -> anyhow::Result<Self> {
        let mut clinic = Self::prepare(root, site, device, &hub.hub_key, &hub.broker_url)?;
        clinic.config.hub_url = Some(hub.base_url.clone());
        clinic.write_config()?;
        hub.enroll(site, device, &clinic.public_key)?;
        clinic.start_agent().await?;
        Ok(clinic)
    }

    /// Creates the clinic's folder, key, ptys and `agent.toml`; enrolment and starting the agent
    /// are the caller's.
    pub fn prepare(
        root: &Path,
        site: &str,
        device: &str,
        hub_key: &PublicKey,
        broker_url: &str,
    ) -> anyhow::Result<Self> {
        let dir = root.join(site);
        std::fs::create_dir_all(dir.join("keys"))?;
        let key_path = dir.join("keys").join(format!("{device}.pk8"));
        if !key_path.exists() {
            yilian_agent::run::write_private(&key_path, SigningKey::generate()?.pkcs8())?;
        }
        let key = SigningKey::from_pkcs8(&std::fs::read(&key_path)?)?;
        std::fs::write(dir.join("keys/hub.pub"), format!("{}\n", hub_key.to_hex()))?;
        // The credentials `yilian-hub enroll --out` would hand over: the county CA and this
        // device's certificate for its key.
        let (hub_dir, tls) = hub_of(hub_key).context("Clinic::prepare: no hub with that key was started here")?;
        let broker_url = with_scheme(broker_url, tls);
        let (ca_certificate, certificate) = if tls {
            let ca = yilian_hub::ca::CountyCa::load_or_create(&hub_dir)?;
            let files =
                yilian_hub::ca::write_credentials(&ca, &dir.join("keys"), site, device, &key.public_key(), hub_key)?;
            (Some(files.ca), Some(files.certificate))
        } else {
            (None, None)
        };
        let pty = Pty::open()?;
        let printer = Pty::open()?;
        // A stable name for the cart's port, as udev's /dev/serial/by-id links give real carts:
        // re-plugging points it at a new pty.
        let cart_link = dir.join("ttyCART0");
        relink(&cart_link, pty.path())?;
        let config = AgentConfig {
            site: site.into(),
            device: device.into(),
            key: key_path,
            hub_public_key: dir.join("keys/hub.pub"),
            broker: broker_url.clone(),
            ca_certificate,
            certificate,
            insecure_plaintext: !tls,
            spool_dir: dir.join("spool"),
            reports_dir: dir.join("reports"),
            chunk_ms: 1000,
            ack_timeout_secs: 10,
            heartbeat_secs: 5,
            window: 32,
            spool_max_bytes: 1 << 30,
            spool_key: None,
            update: None,
            hub_url: None,
            bundle_version: None,
            // Every clinic has a folder where its cart's PC software (or a nurse) drops files.
            inbox: Some(InboxConfig {
                dir: dir.join("inbox"),
                settle_ms: 500,
                utc_offset_minutes: 480,
                parts_wait_secs: 600,
            }),
            clinic_page: Some(ClinicPageConfig {
                listen: format!("127.0.0.1:{}", broker::free_port()?),
                clinicians: DEMO_CLINICIANS
                    .iter()
                    .map(|(name, pin)| Clinician { name: (*name).into(), pin_hash: clinicians::hash_pin(pin) })
                    .collect(),
            }),
            // Every clinic also has a DICOM node its modalities push images to.
            dicom: Some(DicomNodeConfig {
                quiet_secs: 1,
                high_priority: "stat".into(),
                ..DicomNodeConfig::new(dir.join("dicom"), &format!("127.0.0.1:{}", broker::free_port()?))
            }),
            serial: vec![
                SerialConfig {
                    name: "cart".into(),
                    path: cart_link,
                    baud: 115_200,
                    driver: DriverKind::Ylf,
                    encoding: "utf-8".into(),
                },
                SerialConfig {
                    name: "printer".into(),
                    path: printer.path().to_path_buf(),
                    baud: 9600,
                    driver: DriverKind::Text,
                    encoding: "gbk".into(),
                },
            ],
        };
        let cart = Arc::new(Mutex::new(Cart::new(&pty)?));
        let clinic = Self {
            site: site.into(),
            device: device.into(),
            dir,
            stats: Arc::new(AgentStats::default()),
            public_key: key.public_key(),
            pty,
            printer,
            cart,
            config,
            shutdown: CancellationToken::new(),
            task: None,
            process: None,
            process_starts: 0,
        };
        clinic.write_config()?;
        Ok(clinic)
    }

    /// Pulls the cart's cable: the pty closes (the agent reads end-of-file) and its path is gone.
    pub fn unplug(&mut self) -> anyhow::Result<()> {
        // The cart lets go of the line, and a fresh pty takes the old one's place in the struct;
        // the old one closes as it drops.
        self.cart.lock().map_err(|_| anyhow::anyhow!("cart lock poisoned"))?.detach()?;
        let spare = Pty::open()?;
        let old = std::mem::replace(&mut self.pty, spare);
        drop(old);
        std::fs::remove_file(self.dir.join("ttyCART0")).ok();
        Ok(())
    }

    /// Plugs the cable back in: the stable link points at the current pty and the cart writes
    /// there.
    pub fn replug(&mut self) -> anyhow::Result<()> {
        relink(&self.dir.join("ttyCART0"), self.pty.path())?;
        self.cart.lock().map_err(|_| anyhow::anyhow!("cart lock poisoned"))?.reattach(&self.pty)
    }

    /// Writes the current config to `agent.toml` in the clinic folder.
    pub fn write_config(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("agent.toml");
        std::fs::write(&path, toml_string(&self.config)?)?;
        Ok(path)
    }

    /// Starts the agent as a real `yilian-agent run` process (for kill -9), waiting until it
    /// has opened its serial ports.
    pub async fn start_agent_process(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.start_agent_process_wrapped(&[], env).await
    }

    /// Like [`Clinic::start_agent_process`], run through `wrapper` (e.g. `faketime -f +5h`).
    pub async fn start_agent_process_wrapped(&mut self, wrapper: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
        let cfg = self.write_config()?;
        self.process_starts += 1;
        let log = self.dir.join(format!("agent-{}.log", self.process_starts));
        let mut all_env = vec![("RUST_LOG", "info")];
        all_env.extend_from_slice(env);
        let bin = workspace_bin("yilian-agent")?;
        let bin = bin.to_str().context("binary path")?;
        let cfg = cfg.to_str().context("config path")?;
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.extend([bin, "run", "--config", cfg]);
        let p = Proc::spawn("yilian-agent", std::path::Path::new(argv[0]), &argv[1..], &all_env, &log)?;
        wait_log(&p, "serial port open", self.config.serial.len(), Duration::from_secs(30)).await?;
        self.process = Some(p);
        Ok(())
    }

    /// Stops the agent process as Ctrl-C does (it spools what it assembled) and waits.
    pub async fn stop_agent_process(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.process.take() {
            let status = p.interrupt(Duration::from_secs(20)).await;
            anyhow::ensure!(status.is_some_and(|s| s.success()), "agent did not stop cleanly: {status:?}\n{}", p.log());
        }
        Ok(())
    }

    /// kill -9 of the agent process.
    pub fn kill9_agent(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// The agent process's id, while it runs as a process.
    pub fn agent_pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Proc::pid)
    }

    /// The agent process's log.
    pub fn agent_log(&self) -> String {
        self.process.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// Envelope files in the spool folder now (works for both kinds of agent).
    pub fn spool_files(&self) -> usize {
        std::fs::read_dir(self.config.spool_dir.join("q"))
            .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".env")).count())
            .unwrap_or(0)
    }

    /// (Re)starts the agent with fresh counters, and waits until it has opened its port.
    pub async fn start_agent(&mut self) -> anyhow::Result<()> {
        self.stats = Arc::new(AgentStats::default());
        self.shutdown = CancellationToken::new();
        self.task =
            Some(tokio::spawn(yilian_agent::run(self.config.clone(), self.stats.clone(), self.shutdown.clone())));
        let s = self.stats.clone();
        let ports = self.config.serial.len() as u64;
        wait_for("the agent to open its serial ports", Duration::from_secs(20), || {
            let s = s.clone();
            async move { (AgentStats::get(&s.port_opens) >= ports).then_some(()) }
        })
        .await
    }

    /// Stops the agent (it spools what it has assembled) and waits for it.
    ///
    /// It first lets the agent read what the cart already wrote (until its event count has
    /// been still for 200 ms, at most 5 s): stopping mid-frame loses that frame, as it would
    /// at a real clinic, and tests that stop agents on purpose mean to test something else.
    pub async fn stop_agent(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut seen = AgentStats::get(&self.stats.device_events);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = AgentStats::get(&self.stats.device_events);
            if now == seen {
                break;
            }
            seen = now;
        }
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.context("agent task")??;
        }
        Ok(())
    }

    /// Stops the agent and clears its retained status on the broker, so that later hubs sharing
    /// the broker (tests) do not see a device they never enrolled.
    pub async fn shutdown(mut self, broker_url: &str) -> anyhow::Result<()> {
        self.stop_agent().await?;
        self.kill9_agent();
        let topic =
            yilian_protocol::topic::Topic::new(&self.site, &self.device, yilian_protocol::topic::Channel::Status)?;
        // The device itself clears it (the agent has stopped): only it may connect under its id
        // and, with Mosquitto's ACL, publish on its status topic.
        let key = SigningKey::from_pkcs8(&std::fs::read(&self.config.key)?)?;
        let hub_key = PublicKey::from_hex(&std::fs::read_to_string(&self.config.hub_public_key)?)?;
        let opts = device_mqtt_options(&hub_key, broker_url, &self.site, &self.device, &key)?;
        let (client, mut ev) = rumqttc::AsyncClient::new(opts, 8);
        client.publish(topic.to_string(), rumqttc::QoS::AtLeastOnce, true, Vec::new()).await?;
        client.disconnect().await?;
        // Drive the connection until the publish is acknowledged and the disconnect sent.
        let drive = async {
            while let Ok(e) = ev.poll().await {
                if matches!(e, rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drive).await;
        Ok(())
    }

    /// The cart prints a line on its printer port, encoded in GBK as Chinese carts do.
    pub fn print(&self, line: &str) -> anyhow::Result<()> {
        let (bytes, _, unmappable) = encoding_rs::GBK.encode(line);
        anyhow::ensure!(!unmappable, "{line:?} has characters GBK cannot encode");
        let mut out = self.printer.writer()?;
        std::io::Write::write_all(&mut out, &bytes)?;
        std::io::Write::write_all(&mut out, b"\r\n")?;
        Ok(())
    }

    /// Runs `f` with the cart on a blocking thread (pty writes may block).
    pub async fn cart<R: Send + 'static>(&self, f: impl FnOnce(&mut Cart) -> R + Send + 'static) -> R {
        let cart = self.cart.clone();
        let join = tokio::task::spawn_blocking(move || {
            let mut c = cart.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut c)
        });
        match join.await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Envelopes waiting in the agent's spool.
    pub fn spool_entries(&self) -> u64 {
        AgentStats::get(&self.stats.spool_entries)
    }

    /// Waits until the agent's spool is empty (everything acked by the hub).
    pub async fn wait_drained(&self, timeout: Duration) -> anyhow::Result<()> {
        let s = self.stats.clone();
        wait_for(&format!("{}'s spool to drain", self.device), timeout, || {
            let s = s.clone();
            async move {
                // Empty, and either something was acked or this agent (since its start) has had
                // nothing to send at all.
                let idle = AgentStats::get(&s.device_events) == 0 && AgentStats::get(&s.chunks) == 0;
                (AgentStats::get(&s.spool_entries) == 0 && (AgentStats::get(&s.acked) > 0 || idle)).then_some(())
            }
        })
        .await
    }
}

/// Points the symlink `link` at `target`, replacing it atomically.
fn relink(link: &Path, target: &Path) -> anyhow::Result<()> {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)?;
    Ok(())
}

fn hex_digest(bytes: &[u8]) -> String {
    yilian_hub::http::auth::token_hash(&String::from_utf8_lossy(bytes))
}

fn toml_string(cfg: &AgentConfig) -> anyhow::Result<String> {
    Ok(format!("# Written by the Yilian county harness.\n{}", toml::to_string(cfg)?))
}

/// Counters re-exported for callers that read agent stats.
pub use stats::AgentStats as Stats;

/// Device lifecycle helpers (what `yilian-hub enrol-token` and `yilian-hub device` do).
impl HubHandle {
    /// Issues a bootstrap token for `site`, valid for `ttl_ms` from `issued_at_ms`.
    pub fn enrol_token_at(&self, site: &str, ttl_ms: i64, issued_at_ms: i64) -> anyhow::Result<String> {
        enrol_token_in(&self.data_dir, site, ttl_ms, issued_at_ms)
    }

    /// Issues a bootstrap token for `site`, valid for an hour.
    pub fn enrol_token(&self, site: &str) -> anyhow::Result<String> {
        self.enrol_token_at(site, 3_600_000, yilian_hub::clock::now_ms())
    }

    /// The bootstrap a clinic gets with `token`.
    pub fn bootstrap(&self, site: &str, token: &str) -> yilian_agent::enrol::Bootstrap {
        yilian_agent::enrol::Bootstrap {
            hub: self.base_url.clone(),
            broker: self.broker_url.clone(),
            site: site.to_string(),
            token: token.to_string(),
            ca_certificate: std::fs::read_to_string(&self.ca_pem).ok(),
        }
    }

    /// MQTT options for a client with the hub's own identity under `client_id` (the embedded
    /// broker admits the hub under any client id): stands in for a broker that let a message
    /// through, to test the hub's own checks.
    pub fn hub_mqtt_options(&self, client_id: &str) -> anyhow::Result<rumqttc::MqttOptions> {
        let key = SigningKey::from_pkcs8(&std::fs::read(self.data_dir.join("hub.pk8"))?)?;
        let (host, port) = yilian_protocol::topic::broker_addr(&self.broker_url)?;
        let mut o = rumqttc::MqttOptions::new(client_id, host, port);
        let password = yilian_protocol::connect::connect_password(&key, client_id, yilian_hub::clock::now_ms());
        o.set_credentials(yilian_hub::ca::HUB_IDENTITY, password);
        o.set_max_packet_size(yilian_protocol::limits::MQTT_MAX_PACKET, yilian_protocol::limits::MQTT_MAX_PACKET);
        if self.base_url.starts_with("https://") {
            let ca = yilian_hub::ca::CountyCa::load_or_create(&self.data_dir)?;
            let cert = ca.issue_hub_client(&key.public_key(), yilian_hub::ca::HUB_IDENTITY)?;
            let cfg = yilian_protocol::tls::mqtt_client_config(ca.ca_pem().as_bytes(), cert.as_bytes(), key.pkcs8())?;
            o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(cfg)));
        }
        Ok(o)
    }

    /// Approves, rejects or revokes a device as county IT does from the CLI.
    pub fn device_action(&self, device: &str, action: &str, reason: &str) -> anyhow::Result<()> {
        device_action_in(&self.data_dir, device, action, reason)
    }

    /// Messages of `device` held in quarantine.
    pub fn quarantined(&self, device: &str) -> anyhow::Result<i64> {
        Ok(hub_db(&self.data_dir)?.quarantined(device)?)
    }

    /// The site and current key the broker's connect check would accept for `device`.
    pub fn device_key(&self, device: &str) -> anyhow::Result<Option<(String, PublicKey)>> {
        Ok(hub_db(&self.data_dir)?.device_key(device)?)
    }
}
