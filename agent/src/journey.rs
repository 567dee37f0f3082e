//! Each ECG study's journey as the clinic sees it: recorded, stored at the hub, claimed by a
//! specialist, reported, delivered to the clinic, printed, and any critical result with who
//! acknowledged it. One small JSON file per study in `<reports_dir>/journey/`, written whole
//! (crash-safe), so the clinic page can show what is pending while the hub is out of reach.
//!
//! "Stored at the hub" comes from the hub's signed acks: the uplink notes the spool seq of every
//! part, and a study is stored once the last of them is acked.

use crate::durable;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tracing::warn;
use yilian_protocol::message::{CriticalNotice, Report, Study, StudyClaim};

/// How long a journey is kept (the reports themselves stay in the reports folder).
const KEEP_MS: i64 = 90 * 24 * 3600 * 1000;

/// One study's journey.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Journey {
    /// The study.
    pub study_uid: String,
    /// The patient's name as recorded.
    pub patient_name: String,
    /// The patient's identifier as recorded (to know a retake of the same patient).
    pub patient_id: String,
    /// `stat`, `urgent` or `routine`.
    pub priority: String,
    /// The clinic's question.
    pub question: String,
    /// Where it came from: the cart file's name or the serial port.
    pub source: String,
    /// Warnings from the cart file or the agent's checks.
    pub warnings: Vec<String>,
    /// Acquisition start on the cart's clock, Unix ms.
    pub recorded_at_ms: i64,
    /// When the agent took it up, Unix ms.
    pub queued_at_ms: i64,
    /// Parts the study was split into.
    pub parts: u32,
    /// Spool seqs of parts not yet acked by the hub.
    pub pending_seqs: Vec<u64>,
    /// When the hub acked the last part, Unix ms (agent clock).
    pub stored_at_ms: Option<i64>,
    /// When a specialist claimed it, Unix ms (hub clock).
    pub claimed_at_ms: Option<i64>,
    /// Who claimed it.
    pub claimed_by: String,
    /// The report answering it.
    pub report_id: Option<String>,
    /// When the report was signed, Unix ms (hub clock).
    pub reported_at_ms: Option<i64>,
    /// The reporting specialist.
    pub specialist: String,
    /// The report's conclusion.
    pub conclusion: String,
    /// When the report was stored here, Unix ms.
    pub delivered_at_ms: Option<i64>,
    /// When the report's PDF was first opened from the clinic page for printing, Unix ms.
    pub printed_at_ms: Option<i64>,
    /// A critical result on this study.
    pub critical: Option<Critical>,
    /// The clinic sent it as it is despite the quality gate's findings.
    pub quality_override: Option<QualityDecision>,
    /// A later recording of the same patient that replaced this one (a retake).
    pub retaken_by: Option<String>,
}

/// The clinic's decision not to retake a study the quality gate flagged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QualityDecision {
    /// The clinician who decided.
    pub clinician: String,
    /// Why.
    pub reason: String,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// A flagged study asks for a retake this long after it was recorded; after that the patient
/// is long gone and the banner would only be noise.
pub const RETAKE_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A critical result and its acknowledgement at the clinic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Critical {
    /// The report.
    pub report_id: String,
    /// Its conclusion.
    pub conclusion: String,
    /// When the notice arrived, Unix ms.
    pub notified_at_ms: i64,
    /// The clinician who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When, Unix ms.
    pub acknowledged_at_ms: Option<i64>,
}

impl Journey {
    /// True while a critical result waits for a clinician.
    pub fn alarm(&self) -> bool {
        self.critical.as_ref().is_some_and(|c| c.acknowledged_at_ms.is_none())
    }

    /// The quality gate's findings (zh / en lines), without the gate's prefix.
    pub fn quality_findings(&self) -> Vec<&str> {
        self.warnings.iter().filter_map(|w| w.strip_prefix(crate::gate::PREFIX)).collect()
    }

    /// True while a flagged study waits for the clinic to retake it or send it as it is.
    pub fn retake_pending(&self, now_ms: i64) -> bool {
        !self.quality_findings().is_empty()
            && self.quality_override.is_none()
            && self.retaken_by.is_none()
            && self.report_id.is_none()
            && now_ms - self.queued_at_ms < RETAKE_WINDOW_MS
    }

    fn same_patient(&self, study: &Study) -> bool {
        if !self.patient_id.trim().is_empty() && !study.patient.id.trim().is_empty() {
            self.patient_id.trim() == study.patient.id.trim()
        } else {
            !self.patient_name.trim().is_empty() && self.patient_name.trim() == study.patient.name.trim()
        }
    }
}

/// What the clinic page shows from one read of the journeys folder.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Unacknowledged critical results, oldest first.
    pub alarms: Vec<Journey>,
    /// Flagged studies waiting for a retake or an override, newest first.
    pub retakes: Vec<Journey>,
    /// The most recent journeys, newest first.
    pub recent: Vec<Journey>,
}

/// Acknowledging a critical result failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    /// No such critical result here.
    #[error("no critical result {0} at this clinic")]
    Unknown(String),
    /// Someone already acknowledged it.
    #[error("already acknowledged by {0}")]
    Already(String),
    /// The journey could not be written.
    #[error("cannot record the acknowledgement: {0}")]
    Io(String),
}

/// The journeys folder, shared by the uplink, the producers and the clinic page.
#[derive(Debug)]
pub struct Journeys {
    dir: PathBuf,
    /// Spool seq → study, for parts not yet acked.
    pending: Mutex<HashMap<u64, String>>,
}

fn stem(uid: &str) -> String {
    // Study uids come from carts and files: never trust them as paths.
    let mut s: String = uid
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    if s.len() > 100 || s != uid {
        // Distinct uids must not share a file: add a short hash when the name was changed.
        use sha2::Digest;
        s.truncate(80);
        s = format!("{s}-{}", &hex::encode(sha2::Sha256::digest(uid.as_bytes()))[..16]);
    }
    s
}

impl Journeys {
    /// Opens (and prunes) the folder `<reports_dir>/journey`.
    pub fn open(reports_dir: &Path, now_ms: i64) -> Self {
        let j = Self { dir: reports_dir.join("journey"), pending: Mutex::new(HashMap::new()) };
        let mut pending = HashMap::new();
        for journey in j.read_all() {
            if journey.queued_at_ms < now_ms - KEEP_MS {
                let _ = std::fs::remove_file(j.path(&journey.study_uid));
                continue;
            }
            for seq in &journey.pending_seqs {
                pending.insert(*seq, journey.study_uid.clone());
            }
        }
        *j.lock() = pending;
        j
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, String>> {
        // Every change on disk is one atomic rename: a poisoned lock leaves nothing half-done.
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{}.json", stem(uid)))
    }

    /// One study's journey.
    pub fn get(&self, uid: &str) -> Option<Journey> {
        serde_json::from_slice(&std::fs::read(self.path(uid)).ok()?).ok()
    }

    fn read_all(&self) -> Vec<Journey> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        rd.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    }

    /// The most recent `limit` journeys, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Journey> {
        recent_of(self.read_all(), limit)
    }

    /// Unacknowledged critical results, studies waiting for a retake, and the most recent
    /// `limit` journeys, from one read of the folder.
    pub fn page(&self, limit: usize, now_ms: i64) -> Page {
        let all = self.read_all();
        let retakes = recent_of(all.iter().filter(|j| j.retake_pending(now_ms)).cloned().collect(), limit);
        Page { alarms: alarms_of(&all), retakes, recent: recent_of(all, limit) }
    }

    /// Changes one journey (made empty for `uid` if there is none yet) and writes it back.
    fn update<T>(&self, uid: &str, f: impl FnOnce(&mut Journey) -> T) -> std::io::Result<T> {
        std::fs::create_dir_all(&self.dir)?;
        let mut j = self.get(uid).unwrap_or_else(|| Journey { study_uid: uid.to_string(), ..Journey::default() });
        let out = f(&mut j);
        durable::write_json(&self.path(uid), &j)?;
        Ok(out)
    }

    fn note(&self, what: &str, uid: &str, r: std::io::Result<()>) {
        if let Err(e) = r {
            warn!(study = %uid, error = %e, "cannot record the study's journey ({what}); the page will lag");
        }
    }

    /// A study was recorded and handed to the uplink. A flagged study of the same patient
    /// recorded shortly before is marked as retaken by it.
    pub fn recorded(&self, study: &Study, source: &str, now_ms: i64) {
        let retaken: Vec<String> = self
            .read_all()
            .into_iter()
            .filter(|j| j.study_uid != study.study_uid && j.retake_pending(now_ms) && j.same_patient(study))
            .filter(|j| j.recorded_at_ms <= study.acquired_at_ms)
            .map(|j| j.study_uid)
            .collect();
        for uid in retaken {
            let r = self.update(&uid, |j| j.retaken_by = Some(study.study_uid.clone()));
            self.note("retaken", &uid, r);
        }
        let r = self.update(&study.study_uid, |j| {
            j.patient_name.clone_from(&study.patient.name);
            j.patient_id.clone_from(&study.patient.id);
            j.priority = study.priority.as_str().to_string();
            j.question.clone_from(&study.question);
            j.source = source.to_string();
            j.warnings.clone_from(&study.warnings);
            j.recorded_at_ms = study.acquired_at_ms;
            if j.queued_at_ms == 0 {
                j.queued_at_ms = now_ms;
            }
        });
        self.note("recorded", &study.study_uid, r);
    }

    /// Part `index` of `count` of a study was spooled as `seq`.
    pub fn part_spooled(&self, uid: &str, count: u32, seq: u64) {
        let mut pending = self.lock();
        let r = self.update(uid, |j| {
            j.parts = count;
            if j.stored_at_ms.is_none() && !j.pending_seqs.contains(&seq) {
                j.pending_seqs.push(seq);
            }
            if j.queued_at_ms == 0 {
                j.queued_at_ms = crate::clock::now_ms();
            }
        });
        if r.is_ok() {
            pending.insert(seq, uid.to_string());
        }
        self.note("spooled", uid, r);
    }

    /// A spooled part was sealed again under a new seq (the hub had the old one).
    pub fn resealed(&self, old: u64, new: u64) {
        let mut pending = self.lock();
        let Some(uid) = pending.remove(&old) else { return };
        let r = self.update(&uid, |j| {
            j.pending_seqs.retain(|s| *s != old);
            j.pending_seqs.push(new);
        });
        pending.insert(new, uid.clone());
        self.note("resealed", &uid, r);
    }

    /// The hub acked these seqs: studies whose last part is among them are stored at the hub.
    pub fn acked(&self, is_acked: impl Fn(u64) -> bool, now_ms: i64) {
        let mut pending = self.lock();
        let mut by_study: HashMap<String, Vec<u64>> = HashMap::new();
        for (seq, uid) in pending.iter().filter(|(seq, _)| is_acked(**seq)) {
            by_study.entry(uid.clone()).or_default().push(*seq);
        }
        for (uid, seqs) in by_study {
            let r = self.update(&uid, |j| {
                j.pending_seqs.retain(|s| !seqs.contains(s));
                if j.pending_seqs.is_empty() && j.stored_at_ms.is_none() {
                    j.stored_at_ms = Some(now_ms);
                }
            });
            if r.is_ok() {
                for s in &seqs {
                    pending.remove(s);
                }
            }
            self.note("stored", &uid, r);
        }
    }

    /// A specialist claimed (or released) the study at the hub (only studies recorded here are
    /// followed; image studies have their own table).
    pub fn claimed(&self, c: &StudyClaim) {
        if self.get(&c.study_uid).is_none() {
            return;
        }
        let r = self.update(&c.study_uid, |j| {
            if c.claimed {
                j.claimed_at_ms = Some(c.at_ms);
                j.claimed_by.clone_from(&c.specialist_name);
            } else if j.report_id.is_none() {
                j.claimed_at_ms = None;
                j.claimed_by.clear();
            }
        });
        self.note("claimed", &c.study_uid, r);
    }

    /// The study's report arrived and was stored here.
    pub fn delivered(&self, report: &Report, now_ms: i64) {
        let r = self.update(&report.study_uid, |j| {
            j.report_id = Some(report.report_id.clone());
            j.reported_at_ms = Some(report.reported_at_ms);
            j.specialist.clone_from(&report.specialist_name);
            j.conclusion.clone_from(&report.conclusion);
            if j.claimed_at_ms.is_none() {
                // The claim notice may have been lost; a report implies its author claimed it.
                j.claimed_by.clone_from(&report.specialist_name);
            }
            j.delivered_at_ms.get_or_insert(now_ms);
            if j.patient_name.is_empty() {
                j.patient_name.clone_from(&report.patient_name);
            }
        });
        self.note("delivered", &report.study_uid, r);
    }

    /// The report's PDF was opened from the clinic page for printing.
    pub fn printed(&self, report_id: &str, now_ms: i64) {
        if let Some(j) = self.read_all().into_iter().find(|j| j.report_id.as_deref() == Some(report_id)) {
            let r = self.update(&j.study_uid, |j| {
                j.printed_at_ms.get_or_insert(now_ms);
            });
            self.note("printed", &j.study_uid, r);
        }
    }

    /// A critical result arrived. Returns true when it raises a new alarm (not seen before).
    pub fn critical(&self, n: &CriticalNotice, now_ms: i64) -> bool {
        let r = self.update(&n.study_uid, |j| {
            if j.patient_name.is_empty() {
                j.patient_name.clone_from(&n.patient_name);
            }
            if j.critical.as_ref().is_some_and(|c| c.report_id == n.report_id) {
                return false;
            }
            j.critical = Some(Critical {
                report_id: n.report_id.clone(),
                conclusion: n.conclusion.clone(),
                notified_at_ms: now_ms,
                acknowledged_by: None,
                acknowledged_at_ms: None,
            });
            true
        });
        match r {
            Ok(new) => new,
            Err(e) => {
                warn!(report = %n.report_id, error = %e, "cannot record a critical result; the alarm shows from memory only");
                true
            }
        }
    }

    /// Unacknowledged critical results, oldest first.
    pub fn alarms(&self) -> Vec<Journey> {
        alarms_of(&self.read_all())
    }

    /// A named clinician acknowledged critical result `report_id`; returns its study.
    pub fn acknowledge(&self, report_id: &str, clinician: &str, now_ms: i64) -> Result<String, AckError> {
        let _guard = self.lock();
        let j = self
            .read_all()
            .into_iter()
            .find(|j| j.critical.as_ref().is_some_and(|c| c.report_id == report_id))
            .ok_or_else(|| AckError::Unknown(report_id.to_string()))?;
        if let Some(by) = j.critical.as_ref().and_then(|c| c.acknowledged_by.clone()) {
            return Err(AckError::Already(by));
        }
        self.update(&j.study_uid, |j| {
            if let Some(c) = j.critical.as_mut() {
                c.acknowledged_by = Some(clinician.to_string());
                c.acknowledged_at_ms = Some(now_ms);
            }
        })
        .map_err(|e| AckError::Io(e.to_string()))?;
        Ok(j.study_uid)
    }
}

/// Recording the clinic's decision not to retake failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OverrideError {
    /// No flagged study waits for a decision under that id.
    #[error("study {0} is not waiting for a retake")]
    NotWaiting(String),
    /// The journey could not be written.
    #[error("cannot record the decision: {0}")]
    Io(String),
}

impl Journeys {
    /// The clinic sends flagged study `uid` as it is: `clinician` decided, for `reason`.
    pub fn override_quality(&self, uid: &str, clinician: &str, reason: &str, now_ms: i64) -> Result<(), OverrideError> {
        let _guard = self.lock();
        match self.get(uid) {
            Some(j) if j.retake_pending(now_ms) => {}
            _ => return Err(OverrideError::NotWaiting(uid.to_string())),
        }
        self.update(uid, |j| {
            j.quality_override =
                Some(QualityDecision { clinician: clinician.to_string(), reason: reason.to_string(), at_ms: now_ms });
        })
        .map_err(|e| OverrideError::Io(e.to_string()))
    }
}

fn recent_of(mut all: Vec<Journey>, limit: usize) -> Vec<Journey> {
    all.sort_by(|a, b| b.queued_at_ms.cmp(&a.queued_at_ms).then_with(|| b.study_uid.cmp(&a.study_uid)));
    all.truncate(limit);
    all
}

fn alarms_of(all: &[Journey]) -> Vec<Journey> {
    let mut v: Vec<Journey> = all.iter().filter(|j| j.alarm()).cloned().collect();
    v.sort_by_key(|j| j.critical.as_ref().map_or(0, |c| c.notified_at_ms));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_protocol::message::{Patient, Priority, Sex};

    fn study(uid: &str) -> Study {
        Study {
            study_uid: uid.into(),
            patient: Patient {
                id: "1".into(), name: "张伟".into(), sex: Sex::Male, birth_date: None, age_years: None
            },
            question: "胸痛".into(),
            priority: Priority::Stat,
            acquired_at_ms: 1_000,
            sample_rate_hz: 500,
            device_model: String::new(),
            leads: vec![],
            warnings: vec!["V4 missing".into()],
            median_beat: None,
            annotations: vec![],
            measurements: vec![],
            interpretation: vec![],
            source: None,
        }
    }

    #[test]
    fn a_flagged_study_waits_for_a_retake_or_an_override_and_a_retake_closes_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journeys::open(dir.path(), 10_000);
        let mut flagged = study("a");
        flagged.warnings = vec![format!("{}V4 导联脱落 / V4 lead off", crate::gate::PREFIX)];
        j.recorded(&flagged, "a.ecg", 10_000);
        let mut clean = study("clean");
        clean.patient.id = "3".into();
        j.recorded(&clean, "b.ecg", 10_000);
        let page = j.page(10, 20_000);
        assert_eq!(page.retakes.iter().map(|x| x.study_uid.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(page.retakes[0].quality_findings(), ["V4 导联脱落 / V4 lead off"]);
        assert!(j.page(10, 10_000 + RETAKE_WINDOW_MS).retakes.is_empty(), "a day later the patient is gone");
        // Another patient's recording is not a retake; the same patient's is.
        let mut other = study("b");
        other.patient.id = "2".into();
        other.acquired_at_ms = 2_000;
        j.recorded(&other, "c.ecg", 30_000);
        assert_eq!(j.page(10, 30_000).retakes.len(), 1);
        let mut again = study("a2");
        again.acquired_at_ms = 3_000;
        j.recorded(&again, "d.ecg", 40_000);
        assert_eq!(j.get("a").expect("journey").retaken_by.as_deref(), Some("a2"));
        assert!(j.page(10, 40_000).retakes.is_empty());
        assert_eq!(j.override_quality("a", "王芳", "x", 41_000), Err(OverrideError::NotWaiting("a".into())));
        // A second flagged study is sent as it is by a named clinician.
        let mut second = flagged.clone();
        second.study_uid = "s".into();
        second.patient.id = "9".into();
        j.recorded(&second, "e.ecg", 50_000);
        j.override_quality("s", "王芳", "患者已离开 / the patient has left", 51_000).expect("override");
        let got = j.get("s").expect("journey").quality_override.expect("recorded");
        assert_eq!((got.clinician.as_str(), got.at_ms), ("王芳", 51_000));
        assert!(j.page(10, 52_000).retakes.is_empty());
    }

    #[test]
    fn a_study_is_stored_when_its_last_part_is_acked_and_that_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journeys::open(dir.path(), 10_000);
        j.recorded(&study("../evil/uid"), "a.ecg", 10_000);
        for seq in [5, 6, 7] {
            j.part_spooled("../evil/uid", 3, seq);
        }
        assert!(
            std::fs::read_dir(dir.path().join("journey")).expect("dir").count() == 1,
            "one file, inside the folder"
        );
        j.acked(|s| s == 5 || s == 6, 11_000);
        assert_eq!(j.get("../evil/uid").expect("journey").stored_at_ms, None);
        // The agent restarts before the last ack: the pending seq is found again.
        let j = Journeys::open(dir.path(), 12_000);
        j.resealed(7, 9);
        j.acked(|s| s == 9, 13_000);
        let got = j.get("../evil/uid").expect("journey");
        assert_eq!((got.stored_at_ms, got.pending_seqs.len()), (Some(13_000), 0));
        assert_eq!((got.patient_name.as_str(), got.warnings.len()), ("张伟", 1));
    }

    #[test]
    fn a_critical_result_alarms_once_until_one_clinician_acknowledges_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journeys::open(dir.path(), 0);
        let n = CriticalNotice {
            report_id: "R1".into(),
            study_uid: "s1".into(),
            patient_name: "张伟".into(),
            conclusion: "急性下壁心肌梗死".into(),
            specialist_name: "李医生".into(),
            reported_at_ms: 5,
        };
        assert!(j.critical(&n, 10));
        assert!(!j.critical(&n, 20), "a resent notice raises no second alarm");
        assert_eq!(j.alarms().len(), 1);
        assert_eq!(j.acknowledge("R2", "王芳", 30), Err(AckError::Unknown("R2".into())));
        assert_eq!(j.acknowledge("R1", "王芳", 30), Ok("s1".into()));
        assert_eq!(j.acknowledge("R1", "赵强", 40), Err(AckError::Already("王芳".into())));
        assert!(j.alarms().is_empty());
        assert!(!j.critical(&n, 50), "a notice resent after the acknowledgement stays quiet");
        assert!(j.alarms().is_empty());
    }
}
