//! Where received instances go on disk: placement with dedup and conflicts, ECGs to the inbox,
//! study completion and the `ready/` hand-over to the uplink.
//!
//! ```text
//! <dir>/tmp/<n>.part                       an instance being received (removed on failure)
//! <dir>/incoming/<study>/<sop>.dcm         stored instances of a study still arriving
//! <dir>/incoming/<study>/<sop>.dcm.json    what the node knows of it (sender, priority, hash)
//! <dir>/incoming/<study>/.complete         hint: the study is complete now
//! <dir>/ready/<study>/study.json + *.dcm   complete studies for the uplink (`ReadyStudy`)
//! <dir>/conflicts/<sop>-<hash8>.dcm        same SOP Instance UID, different content
//! <dir>/conflicts/<sop>-<hash8>.dcm.reason.txt
//! ```
//!
//! Every file is fsynced and renamed into place, and its folder fsynced, before the C-STORE is
//! answered or the next step relies on it. All placements and completions run one at a time
//! under one lock (they are renames and small writes; hashing happens before, while receiving).

use super::part10::{self, Header};
use crate::config::DicomNodeConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::{info, warn};
use yilian_protocol::message::Priority;

const HINT: &str = ".complete";
const STUDY_JSON: &str = "study.json";
const SIDECAR: &str = ".json";
/// A second batch of an already-ready study goes to `ready/<study>+2`, and so on up to this.
const MAX_BATCHES: u32 = 1000;

/// DIMSE priority field values (PS3.7 C.4.2.1.5 / E.1): MEDIUM 0, HIGH 1, LOW 2.
const DIMSE_HIGH: u16 = 1;
const DIMSE_LOW: u16 = 2;

/// SOP classes whose instances are ECGs for the cart-file inbox.
const ECG_CLASSES: [&str; 2] = ["1.2.840.10008.5.1.4.1.1.9.1.1", "1.2.840.10008.5.1.4.1.1.9.1.2"];
/// Hemodynamic Waveform Storage: an ECG when its Modality says so (some GE carts send 12-lead
/// ECGs in it).
const HEMODYNAMIC: &str = "1.2.840.10008.5.1.4.1.1.9.2.1";

/// A filesystem step of the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Creating, writing, syncing or moving a file or folder failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The received dataset's header could not be read.
    #[error("{0}")]
    Header(#[from] part10::Part10Error),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

/// Serialises [`Priority`] as its lower-case name (`"stat"`), as the HTTP API does.
mod priority_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use yilian_protocol::message::Priority;

    pub fn serialize<S: Serializer>(p: &Priority, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Priority, D::Error> {
        let s = String::deserialize(d)?;
        Priority::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown priority {s:?}")))
    }
}

/// One instance of a ready study.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInstance {
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Series Instance UID (empty if the instance had none).
    pub series_uid: String,
    /// Transfer syntax UID the instance was received (and is stored) in.
    pub transfer_syntax: String,
    /// File name inside the study's folder.
    pub file: String,
    /// Size of the Part-10 file in bytes.
    pub size: u64,
    /// SHA-256 of the Part-10 file, lower-case hex.
    pub sha256: String,
}

/// A complete study waiting in `ready/<study>/` for the uplink (its `study.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyStudy {
    /// Study Instance UID.
    pub study_uid: String,
    /// The most urgent priority of its instances.
    #[serde(with = "priority_name")]
    pub priority: Priority,
    /// Modalities in the study, in order of arrival, `\`-separated (usually one).
    pub modality: String,
    /// Patient's Name as sent (first instance).
    pub patient_name: String,
    /// Patient ID as sent (first instance).
    pub patient_id: String,
    /// Calling AE title of the modality that sent the first instance.
    pub calling_ae: String,
    /// When the first instance was stored, ms since the Unix epoch.
    pub received_at_ms: i64,
    /// The instances, by series then SOP Instance UID.
    pub instances: Vec<ReadyInstance>,
    /// The study's folder (not in `study.json`; filled in by [`ready_studies`]).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// An instance re-sent with a known SOP Instance UID but different content, set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// The set-aside file in `conflicts/`.
    pub file: PathBuf,
    /// SHA-256 of the instance stored first.
    pub stored_sha256: String,
    /// SHA-256 of the conflicting instance.
    pub received_sha256: String,
    /// Calling AE title of the conflicting sender.
    pub calling_ae: String,
}

/// What the node keeps beside each stored instance until its study is complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstanceRecord {
    study_uid: String,
    sop_instance_uid: String,
    sop_class_uid: String,
    series_uid: String,
    transfer_syntax: String,
    modality: String,
    patient_name: String,
    patient_id: String,
    calling_ae: String,
    #[serde(with = "priority_name")]
    priority: Priority,
    received_at_ms: i64,
    file: String,
    size: u64,
    sha256: String,
}

/// A fully received, fsynced instance in `tmp/`, ready to be placed.
#[derive(Debug)]
pub(crate) struct Received {
    pub temp: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub dataset_offset: u64,
    pub size: u64,
    pub sha256: String,
    pub calling_ae: String,
    /// The C-STORE-RQ Priority field.
    pub dimse_priority: u16,
    pub received_at_ms: i64,
}

/// Where an instance went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placed {
    /// Stored in `incoming/<study>/` (the study folder's name).
    Stored(String),
    /// Already stored with the same content; nothing changed.
    Duplicate,
    /// Same UID, other content: set aside at this path.
    Conflict(PathBuf),
    /// An ECG, handed to the cart-file inbox at this path.
    Inbox(PathBuf),
}

/// The priority of an instance: HIGH per configuration, LOW routine, MEDIUM (or anything else)
/// by the modality rule, else routine.
pub(crate) fn priority_for(cfg: &DicomNodeConfig, dimse_priority: u16, modality: &str) -> Priority {
    match dimse_priority {
        DIMSE_HIGH => cfg.priority_of_high(),
        DIMSE_LOW => Priority::Routine,
        _ => cfg.priority_of_modality(modality).unwrap_or(Priority::Routine),
    }
}

/// Whether an instance goes to the ECG inbox rather than the imaging path.
pub(crate) fn is_ecg(sop_class_uid: &str, modality: &str) -> bool {
    ECG_CLASSES.contains(&sop_class_uid) || (sop_class_uid == HEMODYNAMIC && modality.eq_ignore_ascii_case("ECG"))
}

/// Which studies are complete: sans-I/O, time passed in.
#[derive(Debug)]
pub(crate) struct Tracker {
    quiet: Duration,
    studies: HashMap<String, Activity>,
}

#[derive(Debug)]
struct Activity {
    last_arrival: Instant,
    open: HashSet<u64>,
}

impl Tracker {
    pub fn new(quiet: Duration) -> Self {
        Self { quiet, studies: HashMap::new() }
    }

    /// An instance of `study` arrived on association `assoc`.
    pub fn arrived(&mut self, study: &str, assoc: u64, now: Instant) {
        let a = self.studies.entry(study.into()).or_insert(Activity { last_arrival: now, open: HashSet::new() });
        a.last_arrival = now;
        a.open.insert(assoc);
    }

    /// Association `assoc` ended (released or aborted).
    pub fn ended(&mut self, assoc: u64) {
        for a in self.studies.values_mut() {
            a.open.remove(&assoc);
        }
    }

    /// A study folder found on disk that nothing is sending (left from before a restart):
    /// it completes after a quiet period from now.
    pub fn adopt(&mut self, study: &str, now: Instant) {
        self.studies.entry(study.into()).or_insert(Activity { last_arrival: now, open: HashSet::new() });
    }

    /// Studies whose associations have all ended and that were quiet long enough.
    pub fn due(&self, now: Instant) -> Vec<String> {
        let mut due: Vec<String> = self
            .studies
            .iter()
            .filter(|(_, a)| a.open.is_empty() && now.saturating_duration_since(a.last_arrival) >= self.quiet)
            .map(|(s, _)| s.clone())
            .collect();
        due.sort();
        due
    }

    /// The study was completed (or vanished).
    pub fn forget(&mut self, study: &str) {
        self.studies.remove(study);
    }

    /// Whether the tracker knows this study.
    pub fn knows(&self, study: &str) -> bool {
        self.studies.contains_key(study)
    }
}

/// The node's folder and the one lock that orders placements and completions.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    inbox: Option<PathBuf>,
    lock: Mutex<()>,
    tracker: Mutex<Tracker>,
}

impl Store {
    /// Creates the folders and clears `tmp/` of partial instances from before a restart.
    pub fn open(dir: &Path, inbox: Option<PathBuf>, quiet: Duration) -> Result<Self, StoreError> {
        for sub in ["tmp", "incoming", "ready", "conflicts"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
        }
        let tmp = dir.join("tmp");
        for e in std::fs::read_dir(&tmp).map_err(io_err("listing", &tmp))?.flatten() {
            // A partial instance was never acknowledged: the modality sends it again.
            let _ = std::fs::remove_file(e.path());
        }
        if let Some(inbox) = &inbox {
            for p in ["stat", "urgent", "routine"].map(|d| inbox.join(d)) {
                std::fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
            }
        }
        Ok(Self { dir: dir.into(), inbox, lock: Mutex::new(()), tracker: Mutex::new(Tracker::new(quiet)) })
    }

    /// The folder for instances being received.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        // A panic elsewhere cannot leave the unit lock inconsistent: it guards no data.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The completion tracker (never held across an await).
    pub fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Places a received instance (blocking). On error the temp file is removed.
    pub fn place(&self, cfg: &DicomNodeConfig, r: Received) -> Result<Placed, StoreError> {
        let temp = r.temp.clone();
        let out = self.place_inner(cfg, r);
        if out.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        out
    }

    fn place_inner(&self, cfg: &DicomNodeConfig, r: Received) -> Result<Placed, StoreError> {
        let header = part10::read_header(&r.temp, &r.transfer_syntax, r.dataset_offset)?;
        if header.sop_instance_uid != r.sop_instance_uid {
            warn!(
                command = %r.sop_instance_uid, dataset = %header.sop_instance_uid,
                "the C-STORE names another SOP Instance UID than its dataset; filed under the command's"
            );
        }
        let priority = priority_for(cfg, r.dimse_priority, &header.modality);
        let sop = part10::sanitize(&r.sop_instance_uid);
        let _g = self.guard();
        if is_ecg(&r.sop_class_uid, &header.modality)
            && let Some(inbox) = &self.inbox
        {
            return self.place_ecg(inbox, &r, &sop, priority);
        }
        let study = part10::sanitize(&header.study_uid);
        let study_dir = self.dir.join("incoming").join(&study);
        let file = format!("{sop}.dcm");
        if let Some(stored) = self.existing_hash(&study, &file)? {
            return self.same_or_conflict(&r, &stored);
        }
        if !study_dir.exists() {
            std::fs::create_dir(&study_dir).map_err(io_err("creating", &study_dir))?;
            fsync_dir(&self.dir.join("incoming"))?;
        }
        let record = record(&r, &header, priority, &file);
        let json = serde_json::to_vec_pretty(&record).map_err(|e| StoreError::Io {
            what: "encoding the record of",
            path: study_dir.join(&file),
            source: std::io::Error::other(e),
        })?;
        // The record first: a crash between the two leaves a record without a file (ignored),
        // never a file the completion cannot describe.
        write_atomic(&study_dir.join(format!("{file}{SIDECAR}")), &json)?;
        let target = study_dir.join(&file);
        std::fs::rename(&r.temp, &target).map_err(io_err("moving into place", &target))?;
        fsync_dir(&study_dir)?;
        Ok(Placed::Stored(study))
    }

    fn place_ecg(&self, inbox: &Path, r: &Received, sop: &str, priority: Priority) -> Result<Placed, StoreError> {
        let target = inbox.join(priority.as_str()).join(format!("{sop}.dcm"));
        if target.exists() {
            let stored = hash_file(&target)?;
            return self.same_or_conflict(r, &stored);
        }
        // `.part` names are left alone by the inbox watcher until renamed.
        let part = inbox.join(priority.as_str()).join(format!("{sop}.dcm.part"));
        if std::fs::rename(&r.temp, &part).is_err() {
            // The inbox may be on another filesystem: copy, sync, then drop the temp file.
            std::fs::copy(&r.temp, &part).map_err(io_err("copying to the inbox", &part))?;
            std::fs::File::open(&part).and_then(|f| f.sync_all()).map_err(io_err("syncing", &part))?;
            let _ = std::fs::remove_file(&r.temp);
        }
        std::fs::rename(&part, &target).map_err(io_err("moving into the inbox", &target))?;
        fsync_dir(&inbox.join(priority.as_str()))?;
        Ok(Placed::Inbox(target))
    }

    /// The hash of an instance already stored under this name, in `incoming/` or `ready/`.
    fn existing_hash(&self, study: &str, file: &str) -> Result<Option<String>, StoreError> {
        let incoming = self.dir.join("incoming").join(study).join(file);
        if incoming.exists() {
            let sidecar = self.dir.join("incoming").join(study).join(format!("{file}{SIDECAR}"));
            if let Some(rec) = read_json::<InstanceRecord>(&sidecar) {
                return Ok(Some(rec.sha256));
            }
            return hash_file(&incoming).map(Some);
        }
        for n in 1..=MAX_BATCHES {
            let dir = self.dir.join("ready").join(batch_name(study, n));
            if !dir.exists() {
                break;
            }
            let path = dir.join(file);
            if path.exists() {
                if let Some(s) = read_json::<ReadyStudy>(&dir.join(STUDY_JSON))
                    && let Some(i) = s.instances.iter().find(|i| i.file == file)
                {
                    return Ok(Some(i.sha256.clone()));
                }
                return hash_file(&path).map(Some);
            }
        }
        Ok(None)
    }

    fn same_or_conflict(&self, r: &Received, stored: &str) -> Result<Placed, StoreError> {
        if stored == r.sha256 {
            std::fs::remove_file(&r.temp).map_err(io_err("removing", &r.temp))?;
            info!(sop = %r.sop_instance_uid, "instance received again with the same content: stored once");
            return Ok(Placed::Duplicate);
        }
        let dir = self.dir.join("conflicts");
        let name = format!("{}-{}.dcm", part10::sanitize(&r.sop_instance_uid), &r.sha256[..8.min(r.sha256.len())]);
        let target = dir.join(&name);
        let reason = format!(
            "sop_instance_uid: {}\nstored_sha256: {stored}\nreceived_sha256: {}\ncalling_ae: {}\nreceived_at_ms: {}\n\
             reason: an instance with this SOP Instance UID was already stored with different content; \
             the first one is kept, this one is set aside here\n",
            r.sop_instance_uid, r.sha256, r.calling_ae, r.received_at_ms
        );
        write_atomic(&dir.join(format!("{name}.reason.txt")), reason.as_bytes())?;
        std::fs::rename(&r.temp, &target).map_err(io_err("moving aside", &target))?;
        fsync_dir(&dir)?;
        warn!(
            sop = %r.sop_instance_uid, stored, received = %r.sha256, calling_ae = %r.calling_ae,
            file = %target.display(), "same SOP Instance UID, different content: set aside as a conflict"
        );
        Ok(Placed::Conflict(target))
    }

    /// Study folders in `incoming/` and whether each carries the completion hint.
    pub fn incoming(&self) -> Vec<(String, bool)> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("incoming")) else { return Vec::new() };
        let mut out: Vec<(String, bool)> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|name| {
                let hinted = self.dir.join("incoming").join(&name).join(HINT).exists();
                (name, hinted)
            })
            .collect();
        out.sort();
        out
    }

    /// Moves a study from `incoming/` to `ready/` with its `study.json` (blocking). Returns the
    /// ready study, or `None` if the folder held no instance (it is removed).
    pub fn complete(&self, study: &str) -> Result<Option<ReadyStudy>, StoreError> {
        let _g = self.guard();
        let src = self.dir.join("incoming").join(study);
        let mut records: Vec<InstanceRecord> = Vec::new();
        let mut unexplained = 0usize;
        let entries = std::fs::read_dir(&src).map_err(io_err("listing", &src))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(base) = name.strip_suffix(SIDECAR).filter(|b| b.ends_with(".dcm")) {
                match read_json::<InstanceRecord>(&e.path()) {
                    Some(rec) if rec.file == base => records.push(rec),
                    _ => warn!(file = %e.path().display(), "unreadable instance record; left in place"),
                }
            } else if name.ends_with(".dcm") && !src.join(format!("{name}{SIDECAR}")).exists() {
                unexplained += 1;
            }
        }
        if unexplained > 0 {
            warn!(
                study,
                unexplained, "files without a record in the study folder (not received by this node); left in place"
            );
        }
        let target = self.ready_target(study);
        // Records whose file is neither here nor already moved (a crash mid-completion) are dropped.
        records.retain(|r| src.join(&r.file).exists() || target.join(&r.file).exists());
        if records.is_empty() {
            if unexplained == 0 {
                let _ = std::fs::remove_dir_all(&src);
                fsync_dir(&self.dir.join("incoming"))?;
            }
            return Ok(None);
        }
        records.sort_by(|a, b| (&a.series_uid, &a.sop_instance_uid).cmp(&(&b.series_uid, &b.sop_instance_uid)));
        std::fs::create_dir_all(&target).map_err(io_err("creating", &target))?;
        fsync_dir(&self.dir.join("ready"))?;
        for r in &records {
            let from = src.join(&r.file);
            if from.exists() {
                let to = target.join(&r.file);
                std::fs::rename(&from, &to).map_err(io_err("moving to ready", &to))?;
            }
        }
        fsync_dir(&target)?;
        let Some(ready) = ready_study(&records, target.clone()) else { return Ok(None) };
        let json = serde_json::to_vec_pretty(&ready).map_err(|e| StoreError::Io {
            what: "encoding",
            path: target.join(STUDY_JSON),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&target.join(STUDY_JSON), &json)?;
        if unexplained == 0 {
            std::fs::remove_dir_all(&src).map_err(io_err("removing", &src))?;
        } else {
            for r in &records {
                let _ = std::fs::remove_file(src.join(format!("{}{SIDECAR}", r.file)));
            }
            let _ = std::fs::remove_file(src.join(HINT));
        }
        fsync_dir(&self.dir.join("incoming"))?;
        info!(
            study = %ready.study_uid, instances = ready.instances.len(), priority = ready.priority.as_str(),
            dir = %target.display(), "study complete and ready to send"
        );
        Ok(Some(ready))
    }

    /// `ready/<study>`, or the first `ready/<study>+n` that holds no finished batch yet.
    fn ready_target(&self, study: &str) -> PathBuf {
        let ready = self.dir.join("ready");
        (1..=MAX_BATCHES)
            .map(|n| ready.join(batch_name(study, n)))
            .find(|d| !d.join(STUDY_JSON).exists())
            .unwrap_or_else(|| ready.join(batch_name(study, MAX_BATCHES + 1)))
    }
}

fn batch_name(study: &str, n: u32) -> String {
    if n == 1 { study.to_string() } else { format!("{study}+{n}") }
}

fn record(r: &Received, h: &Header, priority: Priority, file: &str) -> InstanceRecord {
    InstanceRecord {
        study_uid: h.study_uid.clone(),
        sop_instance_uid: r.sop_instance_uid.clone(),
        sop_class_uid: r.sop_class_uid.clone(),
        series_uid: h.series_uid.clone(),
        transfer_syntax: r.transfer_syntax.clone(),
        modality: h.modality.clone(),
        patient_name: h.patient_name.clone(),
        patient_id: h.patient_id.clone(),
        calling_ae: r.calling_ae.clone(),
        priority,
        received_at_ms: r.received_at_ms,
        file: file.into(),
        size: r.size,
        sha256: r.sha256.clone(),
    }
}

fn ready_study(records: &[InstanceRecord], dir: PathBuf) -> Option<ReadyStudy> {
    // Study-level facts come from the first instance received.
    let first = records.iter().min_by_key(|r| r.received_at_ms)?;
    let mut modalities: Vec<(i64, &str)> = Vec::new();
    for r in records.iter().filter(|r| !r.modality.is_empty()) {
        match modalities.iter_mut().find(|(_, m)| *m == r.modality) {
            Some(entry) => entry.0 = entry.0.min(r.received_at_ms),
            None => modalities.push((r.received_at_ms, &r.modality)),
        }
    }
    modalities.sort();
    Some(ReadyStudy {
        study_uid: first.study_uid.clone(),
        priority: records.iter().map(|r| r.priority).min().unwrap_or(Priority::Routine),
        modality: modalities.iter().map(|(_, m)| *m).collect::<Vec<_>>().join("\\"),
        patient_name: first.patient_name.clone(),
        patient_id: first.patient_id.clone(),
        calling_ae: first.calling_ae.clone(),
        received_at_ms: first.received_at_ms,
        instances: records
            .iter()
            .map(|r| ReadyInstance {
                sop_instance_uid: r.sop_instance_uid.clone(),
                sop_class_uid: r.sop_class_uid.clone(),
                series_uid: r.series_uid.clone(),
                transfer_syntax: r.transfer_syntax.clone(),
                file: r.file.clone(),
                size: r.size,
                sha256: r.sha256.clone(),
            })
            .collect(),
        dir,
    })
}

/// Complete studies waiting in `<dir>/ready/`, most urgent first, then oldest first.
pub fn ready_studies(dir: &Path) -> Vec<ReadyStudy> {
    let Ok(entries) = std::fs::read_dir(dir.join("ready")) else { return Vec::new() };
    let mut out: Vec<ReadyStudy> = entries
        .flatten()
        .filter_map(|e| {
            let mut s = read_json::<ReadyStudy>(&e.path().join(STUDY_JSON))?;
            s.dir = e.path();
            Some(s)
        })
        .collect();
    out.sort_by(|a, b| (a.priority, a.received_at_ms, &a.study_uid).cmp(&(b.priority, b.received_at_ms, &b.study_uid)));
    out
}

/// Instances set aside in `<dir>/conflicts/`, by file name.
pub fn conflicts(dir: &Path) -> Vec<Conflict> {
    let dir = dir.join("conflicts");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<Conflict> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".dcm"))
        .filter_map(|e| {
            let text =
                std::fs::read_to_string(dir.join(format!("{}.reason.txt", e.file_name().to_string_lossy()))).ok()?;
            let field = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix(": ")))
                    .unwrap_or("")
                    .to_string()
            };
            Some(Conflict {
                sop_instance_uid: field("sop_instance_uid"),
                file: e.path(),
                stored_sha256: field("stored_sha256"),
                received_sha256: field("received_sha256"),
                calling_ae: field("calling_ae"),
            })
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// Asks for a study to be treated as complete now (the `.complete` hint), e.g. from a modality
/// integration that knows the exam has ended. A study not (yet) in `incoming/` is left alone.
pub fn mark_complete(dir: &Path, study_uid: &str) -> std::io::Result<bool> {
    let study = dir.join("incoming").join(part10::sanitize(study_uid));
    if !study.is_dir() {
        return Ok(false);
    }
    std::fs::write(study.join(HINT), b"")?;
    Ok(true)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// SHA-256 of a file, streamed.
pub(crate) fn hash_file(path: &Path) -> Result<String, StoreError> {
    let mut f = std::fs::File::open(path).map_err(io_err("opening", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::durable::write_atomic(path, bytes).map_err(io_err("writing into place", path))
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    crate::durable::sync_dir(dir).map_err(io_err("syncing folder", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_completes_only_after_release_and_quiet() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Duration::from_secs(30));
        t.arrived("s1", 7, t0);
        assert!(t.due(t0 + Duration::from_secs(60)).is_empty(), "association still open");
        t.arrived("s1", 7, t0 + Duration::from_secs(50));
        t.ended(7);
        assert!(t.due(t0 + Duration::from_secs(79)).is_empty(), "quiet counts from the last arrival");
        assert_eq!(t.due(t0 + Duration::from_secs(80)), vec!["s1".to_string()]);
        t.forget("s1");
        assert!(!t.knows("s1"));
        t.adopt("s2", t0);
        assert_eq!(t.due(t0 + Duration::from_secs(30)), vec!["s2".to_string()]);
    }

    #[test]
    fn priority_follows_dimse_then_modality_rule() {
        let mut cfg = DicomNodeConfig::new(PathBuf::from("/x"), "127.0.0.1:0");
        cfg.modality_priority.insert("CR".into(), "urgent".into());
        assert_eq!(priority_for(&cfg, 0, "CR"), Priority::Urgent);
        assert_eq!(priority_for(&cfg, 0, "MR"), Priority::Routine);
        assert_eq!(priority_for(&cfg, 2, "CR"), Priority::Routine);
        assert_eq!(priority_for(&cfg, 1, "MR"), Priority::Urgent);
        cfg.high_priority = "stat".into();
        assert_eq!(priority_for(&cfg, 1, "MR"), Priority::Stat);
    }

    #[test]
    fn ecg_by_class_or_hemodynamic_with_ecg_modality() {
        assert!(is_ecg("1.2.840.10008.5.1.4.1.1.9.1.1", ""));
        assert!(is_ecg("1.2.840.10008.5.1.4.1.1.9.1.2", "ECG"));
        assert!(is_ecg(HEMODYNAMIC, "ECG"));
        assert!(!is_ecg(HEMODYNAMIC, "HD"));
        assert!(!is_ecg("1.2.840.10008.5.1.4.1.1.2", "CT"));
    }
}
