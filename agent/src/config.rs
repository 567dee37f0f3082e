//! Agent configuration (TOML). See `agent/agent.example.toml` for every field with comments.

use crate::driver::DriverKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yilian_protocol::message::Priority;

/// The agent's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Site (clinic) id, a short slug.
    pub site: String,
    /// Device id, a short slug; also the MQTT client id.
    pub device: String,
    /// The device's private key (PKCS#8 file from `yilian-agent keygen`).
    pub key: PathBuf,
    /// The hub's public key (hex file); reports and acks must be signed by it.
    pub hub_public_key: PathBuf,
    /// Broker address, `mqtts://host:port` (TLS; `mqtt://` only with `insecure_plaintext`).
    #[serde(default = "default_broker")]
    pub broker: String,
    /// The county CA certificate (`ca.pem` from enrolment): the only CA the agent trusts for
    /// the broker. Required with `mqtts://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PathBuf>,
    /// This device's certificate (`<device>.crt` from enrolment), presented with `key`.
    /// Required with `mqtts://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<PathBuf>,
    /// Allow a plaintext `mqtt://` broker. For debugging only; logged loudly. Default false.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Spool folder: envelopes wait here until the hub acks them.
    pub spool_dir: PathBuf,
    /// Where received reports are kept (one `.json` and one `.txt` each).
    pub reports_dir: PathBuf,
    /// Length of a monitoring stream chunk in ms.
    #[serde(default = "default_chunk_ms")]
    pub chunk_ms: u32,
    /// Resend an envelope if its ack has not come within this many seconds.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_secs: u64,
    /// Heartbeat interval on the status topic, in seconds.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Envelopes published and not yet acked, at most.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Spool size in bytes past which monitoring data gives way (oldest first); resting studies
    /// are never dropped. See the `quota` module.
    #[serde(default = "default_spool_max")]
    pub spool_max_bytes: u64,
    /// Serial ports to read.
    #[serde(default)]
    pub serial: Vec<SerialConfig>,
    /// The watched folder where the cart (or a nurse) drops ECG files; none if absent.
    #[serde(default)]
    pub inbox: Option<InboxConfig>,
    /// The clinic's DICOM node (C-STORE SCP for modalities); none if absent.
    #[serde(default)]
    pub dicom: Option<DicomNodeConfig>,
    /// The clinic page (what the agent holds, conflicts, refused files, reports); none if absent.
    #[serde(default)]
    pub clinic_page: Option<ClinicPageConfig>,
    /// The spool's encryption key (32 bytes, owner-only, made on first start); default
    /// `spool.key` beside the spool folder. Not the signing key.
    #[serde(default)]
    pub spool_key: Option<PathBuf>,
    /// Fleet updates from the county's signed repository; none if absent.
    #[serde(default)]
    pub update: Option<UpdateConfig>,
    /// The hub's HTTPS address (`https://hub.county:8443`), where the agent fetches each report's
    /// printable PDF; default `update.hub`. None of either: reports stay text only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_url: Option<String>,
    /// The configuration bundle laid over this file, if any (its version).
    #[serde(skip)]
    pub bundle_version: Option<String>,
}

/// Which configuration bundle [`AgentConfig::load_with`] lays over the file.
#[derive(Debug, Clone, Copy)]
pub enum Bundle<'a> {
    /// The one in effect (`<update dir>/config/current`), if any.
    Current,
    /// None: the device's own file alone.
    Without,
    /// A staged one, to check it before it replaces the current one.
    Candidate(&'a Path),
}

/// A configuration bundle's file name inside its release folder.
pub const BUNDLE_FILE: &str = "agent.toml";

/// The update folder's part for configuration bundles (`releases/<version>/agent.toml`,
/// `current`, `previous`, `trial.json`, as for the agent binary).
pub fn bundles_dir(update_dir: &Path) -> PathBuf {
    update_dir.join("config")
}

/// Where fleet updates come from and where they are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// The hub's HTTPS address, e.g. `https://hub.county:8443` (the repository is at `/tuf/`).
    pub hub: String,
    /// The repository's root metadata county IT shipped (`root.json`): where trust starts.
    pub root: PathBuf,
    /// Update state: the verified-metadata datastore (`tuf/`), staged releases (`releases/`),
    /// and the highest version ever installed (`state.json`).
    pub dir: PathBuf,
    /// The clinic's maintenance window, local time, `HH:MM-HH:MM` (may cross midnight, e.g.
    /// `22:00-06:00`); releases are installed only inside it. None: any time the cart is idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
    /// Install only what the hub's rollouts assign to this device (its signed assignment at
    /// `/fleet/assignment/<device>`), instead of the newest signed release.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
}

/// A daily window of local time, from `start` to `end` minutes after midnight (crossing
/// midnight when `end <= start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes after midnight it opens.
    pub start_min: u16,
    /// Minutes after midnight it closes.
    pub end_min: u16,
}

/// Minutes after midnight now, in the PC's local time zone (what a maintenance window means).
pub fn local_minute() -> u16 {
    let now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::system());
    u16::try_from(i32::from(now.hour()) * 60 + i32::from(now.minute())).unwrap_or(0)
}

impl Window {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let minutes = |t: &str| -> Result<u16, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(|| format!("{t:?} is not HH:MM"))?;
            let (h, m): (u16, u16) = (
                h.parse().map_err(|_| format!("{t:?} is not HH:MM"))?,
                m.parse().map_err(|_| format!("{t:?} is not HH:MM"))?,
            );
            if h > 23 || m > 59 {
                return Err(format!("{t:?} is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not HH:MM-HH:MM"))?;
        let w = Window { start_min: minutes(a)?, end_min: minutes(b)? };
        if w.start_min == w.end_min {
            return Err(format!("{s:?} is an empty window"));
        }
        Ok(w)
    }

    /// True if `minute` (after midnight) is inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start_min < self.end_min {
            (self.start_min..self.end_min).contains(&minute)
        } else {
            minute >= self.start_min || minute < self.end_min
        }
    }
}

/// The clinic page's listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicPageConfig {
    /// `host:port`; keep it on the clinic PC (`127.0.0.1:8090`) unless the clinic's LAN is trusted.
    pub listen: String,
    /// Who may acknowledge a critical result here (name and PIN hash each).
    #[serde(default)]
    pub clinicians: Vec<crate::clinicians::Clinician>,
}

/// The DICOM node that clinic modalities (CR, DX, CT, MR, US, ECG carts) push studies to (see the
/// `dicom_node` module).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomNodeConfig {
    /// This node's AE title; associations calling another title are rejected. Default `YILIAN`.
    #[serde(default = "default_ae_title")]
    pub ae_title: String,
    /// Address to listen on, `host:port`. Default `0.0.0.0:11112` (the registered DICOM port).
    #[serde(default = "default_dicom_listen")]
    pub listen: String,
    /// Folder for received instances: `tmp/`, `incoming/<study>/`, `ready/<study>/`, `conflicts/`.
    pub dir: PathBuf,
    /// A study is complete once its associations are released and nothing more came for this
    /// many seconds. Default 30.
    #[serde(default = "default_quiet_secs")]
    pub quiet_secs: u64,
    /// Priority by modality when the C-STORE asks for MEDIUM (what most modalities send),
    /// e.g. `CR = "urgent"`; values `stat`, `urgent`, `routine`. Default: none (routine).
    #[serde(default)]
    pub modality_priority: BTreeMap<String, String>,
    /// Priority of a C-STORE sent with priority HIGH: `stat` or `urgent`. Default `urgent`.
    #[serde(default = "default_high_priority")]
    pub high_priority: String,
    /// Associations served at once; more are rejected as "local limit exceeded". Default 8.
    #[serde(default = "default_max_associations")]
    pub max_associations: usize,
    /// The largest instance accepted, in bytes; larger ones are refused (out of resources).
    /// Default 4 GiB.
    #[serde(default = "default_max_instance_bytes")]
    pub max_instance_bytes: u64,
    /// An association that sends nothing for this many seconds is aborted. Default 120.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
}

impl DicomNodeConfig {
    /// A node with every default, storing under `dir` and listening on `listen`.
    pub fn new(dir: PathBuf, listen: &str) -> Self {
        Self {
            ae_title: default_ae_title(),
            listen: listen.into(),
            dir,
            quiet_secs: default_quiet_secs(),
            modality_priority: BTreeMap::new(),
            high_priority: default_high_priority(),
            max_associations: default_max_associations(),
            max_instance_bytes: default_max_instance_bytes(),
            idle_timeout_secs: default_idle_timeout(),
        }
    }

    /// Checks the AE title, priorities and limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid { field: field.into(), reason };
        let t = self.ae_title.trim();
        // An AE title is at most 16 characters of the default repertoire, no backslash or control.
        if t.is_empty() || t.len() > 16 || !t.chars().all(|c| (c.is_ascii_graphic() && c != '\\') || c == ' ') {
            return Err(invalid(
                "dicom.ae_title",
                format!("{:?} is not 1-16 printable ASCII characters", self.ae_title),
            ));
        }
        if !self.listen.contains(':') {
            return Err(invalid("dicom.listen", format!("{:?} is not host:port", self.listen)));
        }
        for (m, p) in &self.modality_priority {
            if Priority::parse(p).is_none() {
                return Err(invalid(
                    &format!("dicom.modality_priority.{m}"),
                    format!("{p:?} is not stat, urgent or routine"),
                ));
            }
        }
        if !matches!(self.high_priority.as_str(), "stat" | "urgent") {
            return Err(invalid("dicom.high_priority", format!("{:?} is not stat or urgent", self.high_priority)));
        }
        if self.max_associations == 0 {
            return Err(invalid("dicom.max_associations", "must be at least 1".into()));
        }
        if self.idle_timeout_secs == 0 {
            return Err(invalid("dicom.idle_timeout_secs", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The priority a study of this modality gets when the modality asked for MEDIUM.
    pub fn priority_of_modality(&self, modality: &str) -> Option<Priority> {
        self.modality_priority.get(modality.trim()).and_then(|p| Priority::parse(p))
    }

    /// The priority of a C-STORE sent with priority HIGH.
    pub fn priority_of_high(&self) -> Priority {
        Priority::parse(&self.high_priority).unwrap_or(Priority::Urgent)
    }
}

/// The watched inbox folder (see the `inbox` module).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// The folder. Subfolders `stat/`, `urgent/` and `routine/` set the priority; files go on to
    /// `sent/` or `rejected/`.
    pub dir: PathBuf,
    /// A file is taken once its size and time have not changed for this long, in ms.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// The clinic's offset from UTC in minutes; carts write local time (China: 480).
    #[serde(default = "default_utc_offset")]
    pub utc_offset_minutes: i32,
    /// How long the other files of a multi-file record (WFDB) are waited for, in seconds.
    #[serde(default = "default_parts_wait")]
    pub parts_wait_secs: u64,
}

/// One serial port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// A name for logs and device output (e.g. "cart").
    pub name: String,
    /// Device path; prefer a stable link such as `/dev/serial/by-id/...`.
    pub path: PathBuf,
    /// Baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Which driver decodes the bytes.
    pub driver: DriverKind,
    /// Text encoding for the text driver: `utf-8`, `gbk`, `gb18030`, ...
    #[serde(default = "default_encoding")]
    pub encoding: String,
}

fn default_ae_title() -> String {
    "YILIAN".into()
}
fn default_dicom_listen() -> String {
    "0.0.0.0:11112".into()
}
fn default_quiet_secs() -> u64 {
    30
}
fn default_high_priority() -> String {
    "urgent".into()
}
fn default_max_associations() -> usize {
    8
}
fn default_max_instance_bytes() -> u64 {
    4 * 1024 * 1024 * 1024
}
fn default_idle_timeout() -> u64 {
    120
}
fn default_broker() -> String {
    "mqtts://127.0.0.1:8883".into()
}
fn default_chunk_ms() -> u32 {
    1000
}
fn default_ack_timeout() -> u64 {
    20
}
fn default_heartbeat() -> u64 {
    30
}
fn default_window() -> usize {
    32
}
fn default_spool_max() -> u64 {
    2 * 1024 * 1024 * 1024
}
fn default_settle_ms() -> u64 {
    2000
}
fn default_utc_offset() -> i32 {
    480
}
fn default_parts_wait() -> u64 {
    600
}
fn default_baud() -> u32 {
    115_200
}
fn default_encoding() -> String {
    "utf-8".into()
}

/// The configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown fields.
    #[error("{path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        source: Box<toml::de::Error>,
    },
    /// A value is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// Field.
        field: String,
        /// Why.
        reason: String,
    },
}

impl AgentConfig {
    /// Reads and checks a config file with the configuration bundle in effect laid over it;
    /// relative paths are taken relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, Bundle::Current)
    }

    /// Reads and checks a config file with `bundle` laid over it.
    pub fn load_with(path: &Path, bundle: Bundle<'_>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let parse_err = |source| ConfigError::Parse { path: path.into(), source: Box::new(source) };
        let mut table: toml::Table = text.parse().map_err(parse_err)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let update_dir = table.get("update").and_then(|u| u.get("dir")).and_then(|d| d.as_str()).map(|d| base.join(d));
        let bundle_file = match (bundle, &update_dir) {
            (Bundle::Current, Some(dir)) => {
                let f = bundles_dir(dir).join("current").join(BUNDLE_FILE);
                f.exists().then_some(f)
            }
            (Bundle::Candidate(f), _) => Some(f.to_path_buf()),
            _ => None,
        };
        let mut bundle_version = None;
        if let Some(f) = &bundle_file {
            let invalid = |reason: String| ConfigError::Invalid {
                field: format!("configuration bundle {}", f.display()),
                reason,
            };
            let text = std::fs::read_to_string(f).map_err(|source| ConfigError::Read { path: f.clone(), source })?;
            let overlay = yilian_update::overlay::parse(&text).map_err(invalid)?;
            yilian_update::overlay::merge(&mut table, &overlay);
            bundle_version = f
                .canonicalize()
                .ok()
                .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()));
        }
        let mut cfg: Self = toml::Value::Table(table).try_into().map_err(parse_err)?;
        cfg.bundle_version = bundle_version;
        let inbox = cfg.inbox.as_mut().map(|i| &mut i.dir);
        let dicom = cfg.dicom.as_mut().map(|d| &mut d.dir);
        let spool_key = cfg.spool_key.as_mut();
        let tls = cfg.ca_certificate.iter_mut().chain(cfg.certificate.iter_mut());
        let update = cfg.update.iter_mut().flat_map(|u| [&mut u.root, &mut u.dir]);
        for p in [&mut cfg.key, &mut cfg.hub_public_key, &mut cfg.spool_dir, &mut cfg.reports_dir]
            .into_iter()
            .chain(inbox)
            .chain(dicom)
            .chain(spool_key)
            .chain(tls)
            .chain(update)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Everything that would stop this configuration from running, beyond [`AgentConfig::load`]'s
    /// checks: key files that do not load, TLS material that does not make a client
    /// configuration, an update root that is not JSON. Empty when it can run. What
    /// `yilian-agent check-config` reports, and what an update checks before a new configuration
    /// replaces the current one.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = crate::run::load_keys(self) {
            out.push(e.to_string());
        }
        let tls = yilian_protocol::topic::parse_broker_url(&self.broker).map(|u| u.tls).unwrap_or(false);
        if tls && let Err(e) = crate::run::tls_settings(self) {
            out.push(e.to_string());
        }
        if let Some(u) = &self.update {
            match std::fs::read(&u.root) {
                Ok(b) if serde_json::from_slice::<serde_json::Value>(&b).is_ok() => {}
                Ok(_) => out.push(format!("update.root {} is not JSON (the repository's root.json)", u.root.display())),
                Err(e) => out.push(format!("update.root {}: {e}", u.root.display())),
            }
        }
        for c in self.clinic_page.iter().flat_map(|p| &p.clinicians) {
            if !crate::clinicians::is_pin_hash(&c.pin_hash) {
                out.push(format!(
                    "clinic_page.clinicians: the PIN entry of {} is not one `yilian-agent clinician-pin` makes",
                    c.name
                ));
            }
        }
        for port in &self.serial {
            if !port.path.exists() {
                out.push(format!("serial port {} ({}) does not exist now", port.name, port.path.display()));
            }
        }
        out
    }

    /// The hub's HTTPS address: `hub_url`, else the update section's.
    pub fn hub_https(&self) -> Option<String> {
        self.hub_url.clone().or_else(|| self.update.as_ref().map(|u| u.hub.clone()))
    }

    /// The spool key file: `spool_key`, or `spool.key` beside the spool folder.
    pub fn spool_key_path(&self) -> PathBuf {
        self.spool_key.clone().unwrap_or_else(|| crate::spool::default_key_path(&self.spool_dir))
    }

    /// Checks ids, encodings and numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid { field: field.into(), reason };
        if let Some(w) = self.update.as_ref().and_then(|u| u.maintenance.as_deref()) {
            Window::parse(w).map_err(|e| invalid("update.maintenance", e))?;
        }
        yilian_protocol::topic::Topic::new(&self.site, &self.device, yilian_protocol::topic::Channel::Up)
            .map_err(|e| invalid("site/device", e.to_string()))?;
        let url =
            yilian_protocol::topic::parse_broker_url(&self.broker).map_err(|e| invalid("broker", e.to_string()))?;
        if !url.tls && !self.insecure_plaintext {
            return Err(invalid(
                "broker",
                format!(
                    "{} is plaintext; use mqtts:// (or, for debugging only, insecure_plaintext = true)",
                    self.broker
                ),
            ));
        }
        if url.tls && (self.ca_certificate.is_none() || self.certificate.is_none()) {
            return Err(invalid(
                "ca_certificate/certificate",
                "mqtts:// needs the county CA and this device's certificate (from enrolment)".into(),
            ));
        }
        if self.chunk_ms == 0 || self.chunk_ms > 10_000 {
            return Err(invalid("chunk_ms", "must be 1..=10000".into()));
        }
        if self.window == 0 {
            return Err(invalid("window", "must be at least 1".into()));
        }
        if let Some(i) = &self.inbox
            && !(-720..=840).contains(&i.utc_offset_minutes)
        {
            return Err(invalid("inbox.utc_offset_minutes", "must be -720..=840".into()));
        }
        if let Some(d) = &self.dicom {
            d.validate()?;
        }
        for s in &self.serial {
            if encoding_rs::Encoding::for_label(s.encoding.as_bytes()).is_none() {
                return Err(invalid(
                    &format!("serial.{}.encoding", s.name),
                    format!("unknown encoding {:?}", s.encoding),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn maintenance_windows_parse_and_may_cross_midnight() {
        let night = Window::parse("22:00-06:00").expect("night");
        assert!(night.contains(23 * 60) && night.contains(0) && night.contains(5 * 60 + 59));
        assert!(!night.contains(6 * 60) && !night.contains(12 * 60) && !night.contains(21 * 60 + 59));
        let lunch = Window::parse("12:00-13:30").expect("lunch");
        assert!(lunch.contains(12 * 60) && lunch.contains(13 * 60 + 29) && !lunch.contains(13 * 60 + 30));
        for bad in ["", "22:00", "25:00-06:00", "22:60-06:00", "08:00-08:00", "8-9"] {
            assert!(Window::parse(bad).is_err(), "{bad:?}");
        }
    }
    use super::*;

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
        let cfg = AgentConfig::load(&path).expect("example config is valid");
        assert_eq!(cfg.serial.len(), 2);
        assert!(cfg.spool_dir.is_absolute());
        let dicom = cfg.dicom.expect("the example has a [dicom] section");
        assert!(dicom.dir.is_absolute());
        assert_eq!(dicom.ae_title, "YILIAN");
        assert_eq!(dicom.priority_of_modality("CR"), Some(Priority::Urgent));
        assert_eq!(dicom.priority_of_modality("MR"), None);
    }

    #[test]
    fn a_plaintext_broker_needs_insecure_plaintext_and_tls_needs_the_ca_and_certificate() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("a.toml");
        let base = "site='s'\ndevice='d'\nkey='k'\nhub_public_key='h'\nspool_dir='s'\nreports_dir='r'\n";
        let load = |extra: &str| {
            std::fs::write(&p, format!("{base}{extra}")).expect("write");
            AgentConfig::load(&p)
        };
        let refused = load("broker='mqtt://127.0.0.1:1883'\n");
        assert!(matches!(&refused, Err(ConfigError::Invalid { field, .. }) if field == "broker"), "{refused:?}");
        assert!(load("broker='mqtt://127.0.0.1:1883'\ninsecure_plaintext=true\n").is_ok());
        assert!(matches!(load("broker='mqtts://hub:8883'\n"), Err(ConfigError::Invalid { .. })));
        let tls = load("broker='mqtts://hub:8883'\nca_certificate='ca.pem'\ncertificate='d.crt'\n").expect("tls");
        assert_eq!(tls.ca_certificate, Some(dir.path().join("ca.pem")), "relative to the config file");
    }

    #[test]
    fn unknown_fields_and_bad_ids_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("a.toml");
        std::fs::write(
            &p,
            "site='s'\ndevice='d'\nkey='k'\nhub_public_key='h'\nspool_dir='s'\nreports_dir='r'\ncolour='blue'\n",
        )
        .expect("write");
        assert!(matches!(AgentConfig::load(&p), Err(ConfigError::Parse { .. })));
        std::fs::write(&p, "site='a/b'\ndevice='d'\nkey='k'\nhub_public_key='h'\nspool_dir='s'\nreports_dir='r'\n")
            .expect("write");
        assert!(matches!(AgentConfig::load(&p), Err(ConfigError::Invalid { .. })));
    }
}
