//! `yilian-hub`: the county hub's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use yilian_hub::store::Db;
use yilian_hub::{BrokerMode, HubConfig};
use yilian_protocol::keys::PublicKey;

#[derive(Parser)]
#[command(name = "yilian-hub", version, about = "Yilian county hub: verify, store, queue, report")]
struct Cli {
    /// Data folder (database, hub key).
    #[arg(long, global = true, default_value = "yilian-data", env = "YILIAN_DATA")]
    data: PathBuf,
    /// The store key (32 bytes, owner-only) that seals patient data in the database; default
    /// `keys/store.key` in the data folder. Keep it off the database's backups.
    #[arg(long, global = true, env = "YILIAN_STORE_KEY")]
    store_key: Option<PathBuf>,
    /// The store's database: SQLite in the data folder by default, or a PostgreSQL URL
    /// (`postgres://user@host:port/db`) that several hub processes share.
    #[arg(long, global = true, env = "YILIAN_STORE")]
    store: Option<String>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; the size of `Run` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Run {
        /// Use an external broker (mqtts://host:port) instead of the embedded one.
        #[arg(long)]
        broker: Option<String>,
        /// This hub's name among several hub processes sharing one store (--store postgres://…)
        /// and one external broker: it connects as `yilian-hub-NAME` and takes its share of the
        /// uplink (name each one in `broker-config mosquitto --hub-instance`).
        #[arg(long, requires = "broker")]
        instance: Option<String>,
        /// With --broker: the CRL file the broker reads (Mosquitto `crlfile`, written by
        /// `broker-config mosquitto`); the hub keeps it listing every revoked or retired device key.
        #[arg(long, requires = "broker")]
        broker_crl: Option<PathBuf>,
        /// With --broker-crl: a shell command that makes the broker re-read the CRL, run after
        /// each change (e.g. `systemctl reload mosquitto`).
        #[arg(long, requires = "broker_crl")]
        broker_reload: Option<String>,
        /// Send every signed report to the hospital HIS as HL7 v2.5.1 ORU^R01 over MLLP, at
        /// `host:port`.
        #[arg(long)]
        his_mllp: Option<String>,
        /// The HIS's character set: `utf-8` or `gb18030` (GBK systems).
        #[arg(long, default_value = "utf-8", requires = "his_mllp")]
        his_charset: String,
        /// MSH-5, the receiving application.
        #[arg(long, default_value = "HIS", requires = "his_mllp")]
        his_application: String,
        /// MSH-6, the receiving facility.
        #[arg(long, default_value = "", requires = "his_mllp")]
        his_facility: String,
        /// Seconds to wait for the HIS's acknowledgement before retrying.
        #[arg(long, default_value_t = 30, requires = "his_mllp")]
        his_ack_timeout_secs: u64,
        /// Send every reported study to the hospital PACS as a DICOM ECG waveform object by
        /// C-STORE, at `host:port`.
        #[arg(long)]
        pacs: Option<String>,
        /// The PACS's AE title.
        #[arg(long, default_value = "PACS", requires = "pacs")]
        pacs_ae: String,
        /// Our AE title towards the PACS.
        #[arg(long, default_value = "YILIAN", requires = "pacs")]
        pacs_calling_ae: String,
        /// Also send each signed report to the PACS, as a DICOM Encapsulated PDF in the same study.
        #[arg(long, requires = "pacs")]
        pacs_report_pdf: bool,
        /// The CJK font printed reports use (TTF/TTC/OTF); default the first of
        /// fonts-wqy-microhei, fonts-wqy-zenhei, fonts-noto-cjk found.
        #[arg(long)]
        report_font: Option<PathBuf>,
        /// The centre's name printed at the top of every report.
        #[arg(long)]
        centre: Option<String>,
        /// Minutes a critical result may wait for the clinic's acknowledgement before it is
        /// escalated.
        #[arg(long, default_value_t = 10)]
        critical_escalate_minutes: u64,
        /// Where escalated critical results are POSTed as JSON (the hospital's SMS or phone
        /// gateway).
        #[arg(long)]
        critical_webhook: Option<String>,
        /// CA certificate (PEM) for an https critical webhook.
        #[arg(long, requires = "critical_webhook")]
        critical_webhook_ca: Option<PathBuf>,
        /// Listen address of the embedded broker (MQTT over TLS).
        #[arg(long, default_value = "0.0.0.0:8883")]
        mqtt_listen: SocketAddr,
        /// Host name or address clinics and browsers use for this hub (repeatable); the server
        /// certificate is issued for these besides localhost and 127.0.0.1.
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
        /// Run MQTT and HTTP WITHOUT TLS. For debugging only: patient data crosses the network
        /// in the clear.
        #[arg(long)]
        insecure_plaintext: bool,
        /// Listen address of the HTTP API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Minutes a specialist's claim lasts.
        #[arg(long, default_value_t = 15)]
        claim_minutes: u64,
        /// Messages per second one device may send, sustained (more are dropped unacknowledged,
        /// and the agent sends them again later).
        #[arg(long, default_value_t = 200.0)]
        device_msgs_per_s: f64,
        /// Messages one device may send in a burst.
        #[arg(long, default_value_t = 2000.0)]
        device_burst: f64,
        /// Minutes a STAT study may wait before the worklist marks it overdue.
        #[arg(long, default_value_t = 10)]
        stat_target_minutes: u64,
        /// Minutes an urgent study may wait.
        #[arg(long, default_value_t = 30)]
        urgent_target_minutes: u64,
        /// Minutes a routine study may wait.
        #[arg(long, default_value_t = 1440)]
        routine_target_minutes: u64,
        /// Days monitoring stream chunks are kept.
        #[arg(long, default_value_t = yilian_hub::retention::Retention::default().stream_days)]
        retain_stream_days: u32,
        /// Days the carts' printed lines are kept.
        #[arg(long, default_value_t = yilian_hub::retention::Retention::default().device_output_days)]
        retain_device_output_days: u32,
        /// Days ECG studies and their reports are kept (medical records: 30 years).
        #[arg(long, default_value_t = yilian_hub::retention::Retention::default().studies_days)]
        retain_studies_days: u32,
        /// Days image studies and their reports are kept (medical records: 30 years).
        #[arg(long, default_value_t = yilian_hub::retention::Retention::default().images_days)]
        retain_images_days: u32,
        /// Days quarantined messages of pending devices are kept.
        #[arg(long, default_value_t = yilian_hub::retention::Retention::default().quarantine_days)]
        retain_quarantine_days: u32,
        /// Hours a device's old key stays valid after it rotated to a new one.
        #[arg(long, default_value_t = 24)]
        key_overlap_hours: u64,
    },
    /// Enrol a device with its public key (hex file from `yilian-agent keygen`).
    Enroll {
        /// Site (clinic) id.
        #[arg(long)]
        site: String,
        /// Device id.
        #[arg(long)]
        device: String,
        /// The device's `.pub` file.
        #[arg(long)]
        public_key: PathBuf,
        /// Replace a different key already enrolled for this device.
        #[arg(long)]
        replace: bool,
        /// Also write the device's credentials here: `ca.pem`, `<device>.crt`, `hub.pub`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The county CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Fleet-update releases: the county's TUF repository in `<data>/tuf` (root and targets keys
    /// stay on county IT's offline key folder; the hub keeps snapshot and timestamp fresh).
    Release {
        #[command(subcommand)]
        command: ReleaseCommand,
    },
    /// Staged rollouts of signed releases to the fleet: start one, watch it, pause, resume,
    /// approve the next stage or abort. The running hub moves stages on by itself.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Write an external broker's configuration from the county CA.
    BrokerConfig {
        #[command(subcommand)]
        command: BrokerConfigCommand,
    },
    /// Manage specialists.
    Specialist {
        #[command(subcommand)]
        command: SpecialistCommand,
    },
    /// Print the hub's public key (give `hub.pub` to every agent), or rotate it.
    Key {
        #[command(subcommand)]
        command: Option<KeyCommand>,
    },
    /// Manage console users (specialists and county IT admins).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the tags the logs show instead of a patient name or identity number (`ph:`), free
    /// text (`th:`) or a file name (`fh:`), under this installation's log key: support finds a
    /// patient's log lines without the logs ever holding the name.
    LogTag {
        /// The name, number, text or file name.
        text: String,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Issue a single-use bootstrap token for enrolling one device at a clinic; prints it once
    /// and writes a bootstrap file for `yilian-agent enrol --bootstrap FILE`.
    EnrolToken {
        /// Site (clinic) the token is bound to.
        #[arg(long)]
        site: String,
        /// Hours until the token expires.
        #[arg(long, default_value_t = yilian_hub::lifecycle::DEFAULT_TOKEN_TTL_HOURS)]
        ttl_hours: u64,
        /// The hub's address as the clinic reaches it.
        #[arg(long, default_value = "https://127.0.0.1:8080")]
        hub_url: String,
        /// The broker's address as the clinic reaches it.
        #[arg(long, default_value = "mqtts://127.0.0.1:8883")]
        broker_url: String,
        /// Where to write the bootstrap file (default `bootstrap-SITE-TOKENID.toml`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Approve, reject, revoke or list devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain; exit status 1 and the first bad entry if it was edited,
    /// removed or reordered.
    Verify,
    /// Write every entry as JSON lines (with its hashes) to standard output.
    Export,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a new hub signing key (with the hub stopped); agents follow at their next connection.
    Rotate,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Approve a pending device (its messages become clinical data).
    Approve {
        /// Device id.
        device: String,
    },
    /// Reject a pending device.
    Reject {
        /// Device id.
        device: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revoke a device (stolen or retired cart): refused, disconnected, nothing sent to it.
    Revoke {
        /// Device id.
        device: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// List devices with their state.
    List,
}

/// Who did it, for the audit log of CLI actions.
fn cli_user() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Create the repository: root keys (signing threshold) and a targets key in the offline
    /// folder (made if missing), online snapshot and timestamp keys at the hub, root version 1.
    /// Prints where the root is that agents pin.
    Init {
        /// County IT's offline key folder (a USB key).
        #[arg(long)]
        offline_keys: PathBuf,
        /// Number of root keys.
        #[arg(long, default_value_t = 3)]
        root_keys: usize,
        /// Root signatures required.
        #[arg(long, default_value_t = 2)]
        threshold: usize,
    },
    /// Sign and publish a release (an agent binary or a configuration bundle) with the offline
    /// targets key.
    Add {
        /// County IT's offline key folder.
        #[arg(long)]
        offline_keys: PathBuf,
        /// The file to release.
        #[arg(long)]
        file: PathBuf,
        /// `agent` or `config`.
        #[arg(long, default_value = "agent")]
        kind: String,
        /// Target triple of an agent binary.
        #[arg(long, default_value = "x86_64-unknown-linux-gnu")]
        triple: String,
        /// The release's version (major.minor.patch).
        #[arg(long)]
        version: String,
        /// The lowest installed version it may be installed over.
        #[arg(long, default_value = "0.0.0")]
        min_version: String,
        /// Allow installing it over a higher version (a deliberate downgrade).
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Replace one offline root key (lost or leaving with someone): root version N+1 lists a new
    /// key in its place, signed by the other root keys and the new one; agents follow it.
    RotateRoot {
        /// County IT's offline key folder.
        #[arg(long)]
        offline_keys: PathBuf,
        /// Which root key to replace (`root-<slot>.pk8`).
        #[arg(long)]
        slot: usize,
    },
    /// List the signed releases.
    List,
    /// Copy the repository (metadata and targets) to a folder, e.g. a USB stick, for a clinic
    /// without a link: `yilian-agent update --bundle DIR` verifies it exactly as the hub's.
    Bundle {
        /// Where to write `metadata/` and `targets/`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-sign snapshot and timestamp now with the hub's online keys (the running hub does this
    /// by itself before they lapse).
    Refresh,
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// Roll a signed release out to a group of devices in stages.
    Start {
        /// `agent` or `config`.
        #[arg(long, default_value = "agent")]
        kind: String,
        /// The release's version (it must be in the repository, signed offline).
        #[arg(long)]
        version: String,
        /// Target triple of an agent binary.
        #[arg(long, default_value = "x86_64-unknown-linux-gnu")]
        triple: String,
        /// Only the active devices of these sites (comma-separated); default every active device.
        #[arg(long, value_delimiter = ',')]
        sites: Vec<String>,
        /// The first stage's devices (comma-separated), chosen by county IT.
        #[arg(long, value_delimiter = ',')]
        canary: Vec<String>,
        /// The later stages as cumulative percentages of the group.
        #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
        stages: Vec<u8>,
        /// Share of a stage that must commit before the next opens, per cent.
        #[arg(long, default_value_t = 95)]
        advance_at: u8,
        /// Share of a stage failing (rolled back or timed out) above which the rollout halts, per cent.
        #[arg(long, default_value_t = 5)]
        halt_at: u8,
        /// Time a stage's devices have to commit, e.g. `2h`, `30m`, `90s`.
        #[arg(long, default_value = "24h")]
        stage_timeout: String,
        /// Wait for `rollout approve` before each next stage.
        #[arg(long)]
        approval: bool,
    },
    /// List rollouts with their figures.
    List,
    /// One rollout's devices and where each stands.
    Show {
        /// Rollout id.
        id: i64,
    },
    /// Stop opening stages.
    Pause {
        /// Rollout id.
        id: i64,
    },
    /// Go on after a pause or a halt (the failures so far are accepted).
    Resume {
        /// Rollout id.
        id: i64,
    },
    /// Open the next stage of a rollout waiting for approval.
    Approve {
        /// Rollout id.
        id: i64,
    },
    /// Stop for good; devices that have not installed the release are not given it.
    Abort {
        /// Rollout id.
        id: i64,
    },
}

/// Parses `90s`, `30m`, `2h`, `1d` into ms.
fn duration_ms(s: &str) -> anyhow::Result<i64> {
    let (n, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: i64 = n.parse().with_context(|| format!("duration {s:?}: a number and s, m, h or d"))?;
    let per = match unit {
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => anyhow::bail!("duration {s:?}: a number and s, m, h or d"),
    };
    n.checked_mul(per).filter(|ms| *ms > 0).with_context(|| format!("duration {s:?} is out of range"))
}

#[derive(Subcommand)]
enum BrokerConfigCommand {
    /// Mosquitto: TLS listener requiring county-CA client certificates (CN = device id = username
    /// = client id) and an ACL confining each device to its own topics. Start it with
    /// `mosquitto -c DIR/mosquitto.conf` and run the hub with `--broker mqtts://HOST:PORT`.
    Mosquitto {
        /// Folder for mosquitto.conf, acl, ca.pem, broker.pem and broker.key.
        #[arg(long)]
        out: PathBuf,
        /// Listener: `host:port`, or a port alone for every interface.
        #[arg(long, default_value = "8883")]
        listen: String,
        /// Host names or addresses clinics use for the broker (repeatable).
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
        /// The user Mosquitto runs as when started as root (it must be able to read broker.key);
        /// default: Mosquitto's own (`mosquitto`).
        #[arg(long)]
        user: Option<String>,
        /// A hub process that will run with `run --instance NAME` beside others on one store
        /// (repeatable): the ACL gives it the hub's rights.
        #[arg(long = "hub-instance")]
        hub_instances: Vec<String>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the county CA and the hub's server certificate in the data folder (`run` does this
    /// on first start too); prints where they are and how to trust the CA in a browser.
    Init {
        /// Host names or addresses for the server certificate besides localhost (repeatable).
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a console user, or set a new password; the password is read from standard input.
    Add {
        /// Sign-in id, e.g. "li.na".
        #[arg(long)]
        id: String,
        /// Display name, e.g. "李娜".
        #[arg(long)]
        name: String,
        /// `specialist`, `admin` (county IT) or `auditor` (reads the audit log only).
        #[arg(long, default_value = "specialist")]
        role: String,
    },
}

#[derive(Subcommand)]
enum SpecialistCommand {
    /// Add a specialist (or issue a new token) and print the API token once.
    Add {
        /// Id, e.g. "li.na".
        #[arg(long)]
        id: String,
        /// Display name, e.g. "李娜".
        #[arg(long)]
        name: String,
    },
}

fn now_ms() -> i64 {
    yilian_hub::clock::now_ms()
}

fn open_db(data: &std::path::Path, store_key: Option<&std::path::Path>, store: Option<&str>) -> anyhow::Result<Db> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let db = data.join("yilian.db");
    let key = store_key.map_or_else(|| yilian_hub::store::sealed::default_key_path(&db), std::path::Path::to_path_buf);
    // The global --store (or YILIAN_STORE) names the database every command works on.
    let location = store.map_or(yilian_hub::store::Location::Sqlite(db), yilian_hub::store::Location::parse);
    Ok(Db::open_at(&location, &key)?)
}

fn main() -> anyhow::Result<()> {
    // rumqttd logs every ordinary client disconnect at ERROR; the hub logs device connections
    // itself, so the broker is quiet unless RUST_LOG asks for it.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            broker,
            instance,
            broker_crl,
            broker_reload,
            his_mllp,
            his_charset,
            his_application,
            his_facility,
            his_ack_timeout_secs,
            pacs,
            pacs_ae,
            pacs_calling_ae,
            pacs_report_pdf,
            report_font,
            centre,
            critical_escalate_minutes,
            critical_webhook,
            critical_webhook_ca,
            mqtt_listen,
            tls_names,
            insecure_plaintext,
            http,
            claim_minutes,
            device_msgs_per_s,
            device_burst,
            stat_target_minutes,
            urgent_target_minutes,
            routine_target_minutes,
            retain_stream_days,
            retain_device_output_days,
            retain_studies_days,
            retain_images_days,
            retain_quarantine_days,
            key_overlap_hours,
        } => {
            let mode = broker.map_or(BrokerMode::Embedded(mqtt_listen), BrokerMode::External);
            let mut cfg = HubConfig::new(cli.data, mode);
            cfg.store_key = cli.store_key;
            cfg.store = cli.store;
            cfg.instance = instance;
            cfg.retention = yilian_hub::retention::Retention {
                stream_days: retain_stream_days,
                device_output_days: retain_device_output_days,
                studies_days: retain_studies_days,
                images_days: retain_images_days,
                quarantine_days: retain_quarantine_days,
            };
            cfg.tls_names = tls_names;
            cfg.insecure_plaintext = insecure_plaintext;
            cfg.broker_crl = broker_crl;
            cfg.broker_reload = broker_reload;
            cfg.claim_ttl = Duration::from_secs(claim_minutes.max(1) * 60);
            cfg.limits.msgs_per_s = device_msgs_per_s.max(1.0);
            cfg.limits.msg_burst = device_burst.max(1.0);
            cfg.wait_targets = [stat_target_minutes, urgent_target_minutes, routine_target_minutes]
                .map(|m| Duration::from_secs(m.max(1) * 60));
            cfg.key_overlap = Duration::from_secs(key_overlap_hours * 3600);
            if let Some(addr) = his_mllp {
                let mut his = yilian_hub::hl7::sender::HisConfig::new(&addr, &cfg.hub_id);
                his.charset = yilian_hub::hl7::message::Charset::parse(&his_charset)
                    .with_context(|| format!("--his-charset {his_charset}: utf-8 or gb18030"))?;
                his.parties.receiving_application = his_application;
                his.parties.receiving_facility = his_facility;
                his.ack_timeout = Duration::from_secs(his_ack_timeout_secs.max(1));
                cfg.his = Some(his);
            }
            cfg.report_font = report_font;
            cfg.critical.escalate_after = Duration::from_secs(critical_escalate_minutes.max(1) * 60);
            cfg.critical.webhook = critical_webhook;
            cfg.critical.webhook_ca = critical_webhook_ca
                .map(|p| std::fs::read(&p).with_context(|| format!("reading {}", p.display())))
                .transpose()?;
            if let Some(c) = centre {
                cfg.centre = c;
            }
            if let Some(addr) = pacs {
                let mut p = yilian_hub::pacs::PacsConfig::new(&addr, &pacs_ae);
                p.calling_ae = pacs_calling_ae;
                p.report_pdf = pacs_report_pdf;
                cfg.pacs = Some(p);
            }
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(http).await.with_context(|| format!("binding {http}"))?;
                let shutdown = tokio_util::sync::CancellationToken::new();
                let s = shutdown.clone();
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    s.cancel();
                });
                yilian_hub::run(cfg, listener, shutdown).await?;
                anyhow::Ok(())
            })
        }
        Command::Enroll { site, device, public_key, replace, out } => {
            yilian_protocol::topic::Topic::new(&site, &device, yilian_protocol::topic::Channel::Up)?;
            let text =
                std::fs::read_to_string(&public_key).with_context(|| format!("reading {}", public_key.display()))?;
            let key = PublicKey::from_hex(&text).with_context(|| format!("{}", public_key.display()))?;
            open_db(&cli.data, cli.store_key.as_deref(), cli.store.as_deref())?.enroll(
                &site,
                &device,
                &key,
                replace,
                now_ms(),
            )?;
            println!("enrolled {device} at {site}, key id {}", key.id());
            if let Some(out) = out {
                let ca = yilian_hub::ca::CountyCa::load_or_create(&cli.data)?;
                let hub = yilian_hub::keys::load_or_create(&cli.data)?;
                let files = yilian_hub::ca::write_credentials(&ca, &out, &site, &device, &key, &hub.public_key())?;
                println!(
                    "credentials for the agent: ca_certificate = {}, certificate = {}, hub_public_key = {}",
                    files.ca.display(),
                    files.certificate.display(),
                    files.hub_public_key.display()
                );
            }
            Ok(())
        }
        Command::Release { command } => {
            let repo = yilian_update::repo::RepoDir(cli.data.join("tuf"));
            tokio::runtime::Runtime::new()?.block_on(release(&repo, command))
        }
        Command::Rollout { command } => rollout(&cli.data, cli.store_key.as_deref(), cli.store.as_deref(), command),
        Command::BrokerConfig {
            command: BrokerConfigCommand::Mosquitto { out, listen, tls_names, user, hub_instances },
        } => {
            let ca = yilian_hub::ca::CountyCa::load_or_create(&cli.data)?;
            let now = now_ms();
            let revoked = open_db(&cli.data, cli.store_key.as_deref(), cli.store.as_deref())?.revoked_keys(now)?;
            let files = yilian_hub::mosquitto::write_config(
                &ca,
                &out,
                &listen,
                &tls_names,
                true,
                user.as_deref(),
                &revoked,
                now,
                &hub_instances,
            )?;
            println!("mosquitto configuration: {} (ACL {})", files.conf.display(), files.acl.display());
            println!("start it with: mosquitto -c {}", files.conf.display());
            println!(
                "run the hub with: yilian-hub run --broker mqtts://HOST:PORT --broker-crl {} --broker-reload 'systemctl reload mosquitto'",
                files.crl.display()
            );
            Ok(())
        }
        Command::Ca { command: CaCommand::Init { tls_names } } => {
            let ca = yilian_hub::ca::CountyCa::load_or_create(&cli.data)?;
            let server = ca.server_cert(&tls_names)?;
            println!("county CA: {}", ca.ca_pem_path().display());
            println!("hub server certificate: {} (key {})", server.cert.display(), server.key.display());
            println!("{}", yilian_hub::ca::trust_hint(&ca.ca_pem_path()));
            Ok(())
        }
        Command::Specialist { command: SpecialistCommand::Add { id, name } } => {
            let token = yilian_hub::http::auth::new_token().map_err(|_| anyhow::anyhow!("random generator failed"))?;
            let mut db = open_db(&cli.data, cli.store_key.as_deref(), cli.store.as_deref())?;
            db.add_specialist(&id, &name, &yilian_hub::http::auth::token_hash(&token))?;
            db.audit("cli", "issue api token", &id, "", now_ms())?;
            println!("specialist {id} ({name}) token (shown once):\n{token}");
            Ok(())
        }
        Command::User { command: UserCommand::Add { id, name, role } } => {
            anyhow::ensure!(
                matches!(role.as_str(), "specialist" | "admin" | "auditor"),
                "--role must be specialist, admin or auditor"
            );
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(password.chars().count() >= 8, "the password must have at least 8 characters");
            let hash = yilian_hub::http::session::hash_password(password).map_err(|e| anyhow::anyhow!(e))?;
            let mut db = open_db(&cli.data, cli.store_key.as_deref(), cli.store.as_deref())?;
            db.add_user(&id, &name, &role, &hash, now_ms())?;
            db.audit("cli", "set user", &id, &role, now_ms())?;
            println!("user {id} ({name}) is a {role}");
            Ok(())
        }
        Command::LogTag { text } => {
            use yilian_protocol::redact;
            yilian_hub::logkey::install(&cli.data).context("the log key")?;
            println!("patient {}", redact::patient(&text));
            println!("text    {}", redact::text(&text));
            println!("file    {}", redact::file_name(std::path::Path::new(&text)));
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify } => {
            let db = open_db(&cli.data, cli.store_key.as_deref(), cli.store.as_deref())?;
            match db.audit_verify()? {
                Ok(sum) => {
                    println!("audit chain intact: {} entries, last id {}, head {}", sum.entries, sum.last_id, sum.head);
                    Ok(())
                }
                Err(fault) => anyhow::bail!("audit chain BROKEN: {fault}"),
            }
        }
        Command::Audit { command: AuditCommand::Export } => {
            use std::io::Write;
            let db = open_db(&cli.data, cli.store_key.as_deref(), cli.store.as_deref())?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut after = 0;
            loop {
                let batch = db.audit_records(after, 1000)?;
                let Some(last) = batch.last() else { break };
                after = last.id;
                for r in &batch {
                    serde_json::to_writer(&mut out, r)?;
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
            Ok(())
        }
        Command::EnrolToken { site, ttl_hours, hub_url, broker_url, out } => {
            yilian_protocol::topic::check_slug("site", &site)?;
            let t = yilian_hub::lifecycle::new_token().map_err(|_| anyhow::anyhow!("random generator failed"))?;
            let now = now_ms();
            let expires = now.saturating_add((ttl_hours.max(1) * 3_600_000) as i64);
            open_db(&cli.data, cli.store_key.as_deref(), cli.store.as_deref())?.add_enrol_token(
                &t.id,
                &t.secret_sha256,
                &site,
                &cli_user(),
                expires,
                now,
            )?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("bootstrap-{site}-{}.toml", t.id)));
            let ca = yilian_hub::ca::CountyCa::load_or_create(&cli.data)?;
            let b = yilian_hub::lifecycle::Bootstrap {
                hub: hub_url,
                broker: broker_url,
                site: site.clone(),
                token: t.token.clone(),
                ca_certificate: Some(ca.ca_pem().to_string()),
            };
            yilian_hub::lifecycle::write_bootstrap(&out, &b).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "enrolment token for {site} (single use, expires in {ttl_hours} h; shown once):\n{}\nbootstrap file: {}\non the device: yilian-agent enrol --bootstrap {} --device DEVICE",
                t.token,
                out.display(),
                out.display()
            );
            Ok(())
        }
        Command::Device { command } => {
            use yilian_hub::store::lifecycle::Action;
            let mut db = open_db(&cli.data, cli.store_key.as_deref(), cli.store.as_deref())?;
            let (device, action, reason) = match command {
                DeviceCommand::List => {
                    for r in db.lifecycle_devices()? {
                        println!(
                            "{:<20} {:<20} {:<9} key {} quarantined {} {}",
                            r.site_id,
                            r.device_id,
                            r.state.as_str(),
                            r.key_id,
                            r.quarantined,
                            r.state_reason.unwrap_or_default()
                        );
                    }
                    return Ok(());
                }
                DeviceCommand::Approve { device } => (device, Action::Approve, String::new()),
                DeviceCommand::Reject { device, reason } => (device, Action::Reject, reason),
                DeviceCommand::Revoke { device, reason } => (device, Action::Revoke, reason),
            };
            let state =
                db.device_action(&device, action, &cli_user(), &reason, now_ms())?.map_err(anyhow::Error::from)?;
            println!("{device} is now {}", state.as_str());
            if action == Action::Revoke {
                println!(
                    "a running hub disconnects it from the broker within {} s",
                    yilian_hub::lifecycle::REVOCATION_POLL.as_secs()
                );
            }
            Ok(())
        }
        Command::Key { command: Some(KeyCommand::Rotate) } => {
            let (old, new) = yilian_hub::keys::rotate(&cli.data)?;
            open_db(&cli.data, cli.store_key.as_deref(), cli.store.as_deref())?.audit(
                &cli_user(),
                "hub-key-rotate",
                "hub",
                &format!("key id {} → {}", old.key_id(), new.key_id()),
                now_ms(),
            )?;
            println!(
                "hub key rotated: {} → {}\nstart the hub: it signs with the new key and tells each agent to follow;\ndelete {} once every agent has followed",
                old.key_id(),
                new.key_id(),
                yilian_hub::keys::previous_key_path(&cli.data).display()
            );
            Ok(())
        }
        Command::Key { command: None } => {
            let key = yilian_hub::keys::load_or_create(&cli.data)?;
            println!("{}\n{}", yilian_hub::keys::public_key_path(&cli.data).display(), key.public_key().to_hex());
            Ok(())
        }
    }
}

fn rollout(data: &Path, store_key: Option<&Path>, store: Option<&str>, command: RolloutCommand) -> anyhow::Result<()> {
    use yilian_hub::store::rollouts::{Action, Plan, TargetKind};
    let mut db = open_db(data, store_key, store)?;
    let (id, action) = match command {
        RolloutCommand::Start {
            kind,
            version,
            triple,
            sites,
            canary,
            stages,
            advance_at,
            halt_at,
            stage_timeout,
            approval,
        } => {
            let (kind, repo_kind) = match kind.as_str() {
                "agent" => (TargetKind::Agent, yilian_update::Kind::Agent),
                "config" => (TargetKind::Config, yilian_update::Kind::Config),
                other => anyhow::bail!("--kind {other}: agent or config"),
            };
            let v: yilian_update::Version = version.parse().map_err(anyhow::Error::msg)?;
            let repo = yilian_update::repo::RepoDir(data.join("tuf"));
            let found = tokio::runtime::Runtime::new()?
                .block_on(yilian_update::repo::find_release(&repo, repo_kind, v, &triple))
                .context("reading the update repository")?;
            let Some((target_name, _, sha256)) = found else {
                anyhow::bail!(
                    "no signed {} release {version}{} in the repository; sign it first with `yilian-hub release add`",
                    kind.as_str(),
                    if kind == TargetKind::Agent { format!(" for {triple}") } else { String::new() }
                );
            };
            let plan = Plan {
                kind,
                target_name,
                triple: if kind == TargetKind::Agent { triple } else { String::new() },
                version: v.to_string(),
                sha256,
                sites,
                canary,
                stages_pct: stages,
                advance_at_pct: advance_at,
                halt_at_pct: halt_at,
                stage_timeout_ms: duration_ms(&stage_timeout)?,
                approval,
            };
            let id = db.start_rollout(&plan, "cli", now_ms())?;
            let r = db.rollout(id)?.context("the rollout just started")?;
            println!(
                "rollout {id}: {} {} to {} devices in stages {}",
                r.kind.as_str(),
                r.version,
                r.stage_devices.iter().sum::<i64>(),
                r.stages
                    .iter()
                    .zip(&r.stage_devices)
                    .map(|(n, c)| format!("{n} ({c})"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            );
            return Ok(());
        }
        RolloutCommand::List => {
            for r in db.rollouts()? {
                println!(
                    "{:>4}  {:<6} {:<10} {:<9} stage {}/{}  assigned {:>4}  committed {:>4}  failed {:>3}  {}",
                    r.rollout_id,
                    r.kind.as_str(),
                    r.version,
                    r.state,
                    r.stage + 1,
                    r.stages.len(),
                    r.assigned,
                    r.committed,
                    r.failed,
                    r.reason
                );
            }
            return Ok(());
        }
        RolloutCommand::Show { id } => {
            let r = db.rollout(id)?.with_context(|| format!("no rollout {id}"))?;
            println!("rollout {id}: {} {} {} {}", r.kind.as_str(), r.version, r.state, r.reason);
            for d in db.rollout_devices(id)? {
                let stage = r.stages.get(d.stage).map_or("", String::as_str);
                println!("{:<6} {:<20} {:<24} {:<12} {}", stage, d.site_id, d.device_id, d.state, d.detail);
            }
            return Ok(());
        }
        RolloutCommand::Pause { id } => (id, Action::Pause),
        RolloutCommand::Resume { id } => (id, Action::Resume),
        RolloutCommand::Approve { id } => (id, Action::Approve),
        RolloutCommand::Abort { id } => (id, Action::Abort),
    };
    let state = db.rollout_action(id, action, "cli", now_ms())?;
    println!("rollout {id} is {state}");
    Ok(())
}

async fn release(repo: &yilian_update::repo::RepoDir, command: ReleaseCommand) -> anyhow::Result<()> {
    use yilian_update::repo::{self, Lifetimes};
    use yilian_update::{Kind, ReleaseMeta};
    match command {
        ReleaseCommand::Init { offline_keys, root_keys, threshold } => {
            repo::init(repo, &offline_keys, root_keys, threshold, Lifetimes::default(), repo::now()).await?;
            println!(
                "update repository created in {}; root keys {} of {root_keys} required, in {} with the targets key \
                 (keep that folder offline)",
                repo.0.display(),
                threshold,
                offline_keys.display()
            );
            println!("agents pin {}", repo.root().display());
        }
        ReleaseCommand::Add { offline_keys, file, kind, triple, version, min_version, allow_downgrade } => {
            let kind = match kind.as_str() {
                "agent" => Kind::Agent,
                "config" => Kind::Config,
                other => anyhow::bail!("--kind {other}: agent or config"),
            };
            if kind == Kind::Config {
                // Checked here, where county IT can fix it, and again on every agent.
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                yilian_update::overlay::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            }
            let meta = ReleaseMeta {
                kind,
                version: version.parse().map_err(anyhow::Error::msg)?,
                min_version: min_version.parse().map_err(anyhow::Error::msg)?,
                allow_downgrade,
                triple: if kind == Kind::Agent { triple } else { String::new() },
                base_version: None,
                base_sha256: String::new(),
                full: String::new(),
            };
            let name = repo::add_target(repo, &offline_keys, &file, &meta, Lifetimes::default(), repo::now()).await?;
            println!("released {name}");
        }
        ReleaseCommand::RotateRoot { offline_keys, slot } => {
            let v = repo::rotate_root_key(repo, &offline_keys, slot, Lifetimes::default(), repo::now()).await?;
            println!(
                "root version {v}: root-{slot}.pk8 is new; destroy {} once agents have followed",
                offline_keys.join(format!("root-{slot}.retired-{}.pk8", v - 1)).display()
            );
        }
        ReleaseCommand::List => {
            for (name, meta, length) in repo::releases(repo).await? {
                let down = if meta.allow_downgrade { ", downgrade allowed" } else { "" };
                println!("{name}\t{length} bytes\tover {} or later{down}", meta.min_version);
            }
        }
        ReleaseCommand::Bundle { out } => {
            let n = repo::bundle(repo, &out)?;
            println!("bundle of {n} files in {}; copy the folder to the clinic's USB stick", out.display());
        }
        ReleaseCommand::Refresh => {
            repo::refresh(repo, Lifetimes::default(), repo::now(), true).await?;
            println!("snapshot and timestamp re-signed");
        }
    }
    Ok(())
}
