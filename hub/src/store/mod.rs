//! The hub's durable store: SQLite in WAL mode, owned by one thread.
//!
//! Callers send closures to the owner thread with [`Store::call`] and await the answer, so the
//! connection is never shared and no lock is held across an `.await` (mini-redis `db.rs`).

pub mod audit;
pub mod critical;
pub mod hl7;
pub mod images;
pub mod lifecycle;
pub mod pacs;
pub mod postgres;
pub mod preread;
pub mod priors;
pub mod quality;
pub mod retention;
pub mod rollouts;
pub mod schema;
pub mod sealed;
pub mod sql;
pub mod sqlite;
pub mod testing;

use crate::queue::{self, ClaimError, ClaimState};
use sealed::StoreKey;
use serde::Serialize;
use sql::{Conn, OptionalExtension, Row, params};
use std::path::Path;
use tokio::sync::oneshot;
use tracing::{error, info, warn};
use yilian_protocol::envelope::{Envelope, Verified};
use yilian_protocol::keys::PublicKey;
use yilian_protocol::message::{self, Payload, Priority, RefusalReason, Report, Sex, Study, StudyPart};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database said no.
    #[error("database: {0}")]
    Sql(#[from] sql::SqlError),
    /// The owner thread is gone (the hub is stopping).
    #[error("store is closed")]
    Closed,
    /// A device is already enrolled with another key.
    #[error("device {0} is already enrolled with another key (use --replace to rotate it)")]
    AlreadyEnrolled(String),
    /// Stored data that should decode does not.
    #[error("stored data is damaged: {0}")]
    Damaged(String),
    /// The store key is missing, unreadable, or not the one the database was sealed with.
    #[error("store key {path}: {reason}")]
    Key {
        /// Key file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A revoked or rejected device cannot be enrolled again under its old key.
    #[error("device {0} is revoked or rejected; enrol it again only with a new key and --replace")]
    Revoked(String),
    /// A rollout that cannot be started or cannot take that action.
    #[error("{0}")]
    Rollout(String),
}

type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// Where the store's database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An embedded SQLite file (one hub).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL, `postgres://user@host:port/db` (one or several hubs).
    Postgres(String),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL is PostgreSQL; anything else is a SQLite path.
    pub fn parse(s: &str) -> Self {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Self::Postgres(s.to_string())
        } else {
            Self::Sqlite(s.into())
        }
    }
}

/// Handle to the store's owner thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    tx: std::sync::mpsc::Sender<Job>,
}

impl Store {
    /// Opens (or creates) the database at `path` and starts its owner thread; the store key is
    /// `keys/store.key` beside the database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_key(path, &sealed::default_key_path(path))
    }

    /// Opens (or creates) the database at `path` with the store key at `key_path`.
    pub fn open_with_key(path: &Path, key_path: &Path) -> Result<Self, StoreError> {
        Self::open_at(&Location::Sqlite(path.to_path_buf()), key_path)
    }

    /// Opens the store at `location` with the store key at `key_path` and starts its owner
    /// thread, which also opens it (PostgreSQL's client must not be driven from async code).
    pub fn open_at(location: &Location, key_path: &Path) -> Result<Self, StoreError> {
        let (location, key_path) = (location.clone(), key_path.to_path_buf());
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("yilian-store".into())
            .spawn(move || {
                let mut db = match Db::open_at(&location, &key_path) {
                    Ok(db) => {
                        let _ = opened_tx.send(Ok(()));
                        db
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    // A bug that panics on one request must not take the store down for every
                    // later one: the caller of that request sees `Closed`, the rest go on.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut db))).is_err() {
                        error!("a store request panicked; it was abandoned");
                        db.conn.abandon();
                    }
                }
            })
            .map_err(|e| StoreError::Damaged(format!("cannot start store thread: {e}")))?;
        opened.recv().map_err(|_| StoreError::Closed)??;
        Ok(Self { tx })
    }

    /// Runs `f` on the owner thread and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |db| {
                let _ = tx.send(f(db));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }
}

/// The connection and the operations on it (synchronous; used on the owner thread).
pub struct Db {
    conn: Conn,
    key: StoreKey,
}

/// What happened to one uplink envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Newly stored.
    New,
    /// Already stored with the same content: ack again, store nothing.
    Duplicate,
    /// Refused for good; nothing stored; the agent is told why.
    Refused(RefusalReason),
    /// Not stored because the database failed on it; not acked, so it will come again.
    Failed(String),
}

/// One verified uplink envelope to store.
#[derive(Debug)]
pub struct Incoming {
    /// Site from the topic.
    pub site: String,
    /// The verified envelope.
    pub verified: Verified<Payload>,
    /// The envelope's wire bytes.
    pub envelope: Vec<u8>,
}

/// An enrolled device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    /// Device id.
    pub device_id: String,
    /// Site id.
    pub site_id: String,
    /// Key id (hex).
    pub key_id: String,
    /// Last status: online, heartbeat, offline, or unknown.
    pub state: String,
    /// Time of the last status, hub clock... as the agent signed it (Unix ms).
    pub status_at_ms: Option<i64>,
    /// Envelopes waiting in the agent's spool at its last status.
    pub spool_entries: Option<i64>,
    /// Agent version.
    pub agent_version: Option<String>,
    /// Status detail now (empty when all is well).
    pub detail: Option<String>,
    /// The last problem the device reported, even if it has cleared since.
    pub last_problem: Option<String>,
    /// When (device clock, Unix ms).
    pub last_problem_at_ms: Option<i64>,
    /// Highest seq stored.
    pub last_seq: Option<i64>,
    /// Envelopes stored.
    pub messages: i64,
    /// Installed release, from the device's latest fleet report.
    pub installed_version: Option<String>,
    /// Update state: idle, downloading, on trial, committed, rolled back, deferred.
    pub update_state: Option<String>,
    /// The last update result's version and reason (`0.3.0: crashed 3 times …`).
    pub update_detail: Option<String>,
}

/// A study in the consultation queue or history.
#[derive(Debug, Clone, Serialize)]
pub struct StudyRow {
    /// Study id.
    pub study_uid: String,
    /// Site.
    pub site_id: String,
    /// Device.
    pub device_id: String,
    /// Patient id.
    pub patient_id: String,
    /// Patient name.
    pub patient_name: String,
    /// "female", "male" or "unknown".
    pub sex: String,
    /// YYYY-MM-DD.
    pub birth_date: Option<String>,
    /// Clinic's question.
    pub question: String,
    /// "stat", "urgent" or "routine".
    pub priority: String,
    /// Acquisition time (device clock), Unix ms.
    pub acquired_at_ms: i64,
    /// Arrival at the hub (hub clock), Unix ms.
    pub received_at_ms: i64,
    /// Sampling rate, Hz.
    pub sample_rate_hz: i64,
    /// nV per LSB.
    pub resolution_nv: i64,
    /// Lead names.
    pub leads: Vec<String>,
    /// Samples per lead.
    pub samples_per_lead: i64,
    /// Specialist holding the claim.
    pub claimed_by: Option<String>,
    /// Claim expiry, Unix ms.
    pub claim_expires_ms: Option<i64>,
    /// Report id, once reported.
    pub report_id: Option<String>,
    /// When reported.
    pub reported_at_ms: Option<i64>,
    /// When the clinic confirmed receipt of the report.
    pub delivered_at_ms: Option<i64>,
    /// "queued", "claimed", "reported" or "delivered".
    pub state: String,
    /// The pre-read's flags (why the hub raised its priority), empty when none.
    pub preread_flags: Vec<preread::PrereadFlag>,
    /// The priority the clinic sent, when a pre-read flag raised it.
    pub priority_sent: Option<String>,
}

/// A study's claim and where its report goes.
struct ClaimRow {
    by: Option<String>,
    until: Option<i64>,
    reported: bool,
    device: String,
    site: String,
    patient_name: String,
}

/// What a specialist submits.
#[derive(Debug, Clone)]
pub struct ReportDraft {
    /// Study.
    pub study_uid: String,
    /// Specialist id.
    pub specialist_id: String,
    /// Specialist name.
    pub specialist_name: String,
    /// Findings.
    pub findings: String,
    /// Conclusion.
    pub conclusion: String,
    /// A critical result: the clinic must acknowledge it, or it is escalated.
    pub critical: bool,
}

/// A report as the hub keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    /// Report id.
    pub report_id: String,
    /// Study.
    pub study_uid: String,
    /// Device to deliver to.
    pub device_id: String,
    /// Site.
    pub site_id: String,
    /// Specialist.
    pub specialist_id: String,
    /// Findings.
    pub findings: String,
    /// Conclusion.
    pub conclusion: String,
    /// Signed, Unix ms.
    pub reported_at_ms: i64,
    /// Last published, Unix ms.
    pub published_at_ms: Option<i64>,
    /// Receipt from the clinic, Unix ms.
    pub receipt_at_ms: Option<i64>,
    /// Signed envelope (not serialised).
    #[serde(skip)]
    pub envelope: Vec<u8>,
}

/// One audit log entry: who did what to which subject, when.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Entry id (chain order).
    pub id: i64,
    /// Hub time, Unix ms.
    pub at_ms: i64,
    /// User id.
    pub user: String,
    /// What (e.g. "view study", "report").
    pub action: String,
    /// On what (a study id).
    pub subject: String,
    /// More.
    pub detail: String,
    /// The user's role, or empty.
    pub role: String,
    /// `ok`, `denied`, `failed`.
    pub result: String,
    /// Source address, or `local`.
    pub source: String,
}

/// A line of device text output.
#[derive(Debug, Clone, Serialize)]
pub struct OutputLine {
    /// Envelope seq.
    pub seq: i64,
    /// Serial port name.
    pub port: String,
    /// The line (UTF-8).
    pub line: String,
    /// Hub arrival, Unix ms.
    pub received_at_ms: i64,
}

/// A continuous range of stored stream samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamRun {
    /// First sample index.
    pub first_sample: i64,
    /// One past the last sample index.
    pub end_sample: i64,
}

/// What the hub holds of one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// Stream id on the device.
    pub stream_id: i64,
    /// Sampling rate, Hz.
    pub sample_rate_hz: i64,
    /// Leads.
    pub leads: i64,
    /// Chunks stored.
    pub chunks: i64,
    /// Samples per lead stored.
    pub samples_per_lead: i64,
    /// Continuous runs; more than one means there are gaps between them.
    pub runs: Vec<StreamRun>,
    /// Ranges the device said it dropped, and why.
    pub declared_gaps: Vec<DeclaredGap>,
}

/// A range of a stream the device declared lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeclaredGap {
    /// First dropped sample.
    pub first_sample: i64,
    /// One past the last dropped sample.
    pub end_sample: i64,
    /// Why.
    pub reason: String,
}

/// Hub-wide counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Studies waiting (not claimed).
    pub queued: i64,
    /// Studies claimed, not reported.
    pub claimed: i64,
    /// Reported, receipt pending.
    pub reported: i64,
    /// Report receipt confirmed by the clinic.
    pub delivered: i64,
    /// All studies.
    pub studies: i64,
    /// Samples stored (all leads, studies and streams).
    pub samples_received: i64,
    /// Stream chunks stored.
    pub chunks: i64,
    /// Envelopes stored.
    pub messages: i64,
    /// Duplicate envelopes acked again.
    pub duplicates: i64,
    /// Device output lines.
    pub device_output: i64,
    /// Image chunk bytes stored (a chunk sent twice under two seqs counts twice).
    pub image_bytes_received: i64,
}

fn decode_part(bytes: &[u8]) -> Result<StudyPart, StoreError> {
    yilian_protocol::wire::decode::<StudyPart, { yilian_protocol::limits::STUDY_PART_MAX }>("study part", bytes)
        .map_err(|e| StoreError::Damaged(e.to_string()))
}

fn sex_str(s: Sex) -> &'static str {
    match s {
        Sex::Female => "female",
        Sex::Male => "male",
        Sex::Unknown => "unknown",
    }
}

fn priority_of(rank: i64) -> &'static str {
    match rank {
        0 => Priority::Stat.as_str(),
        1 => Priority::Urgent.as_str(),
        _ => Priority::Routine.as_str(),
    }
}

const STUDY_COLUMNS: &str = "study_uid, site_id, device_id, patient_id, patient_name, sex, birth_date, question, priority, \
     acquired_at_ms, received_at_ms, sample_rate_hz, resolution_nv, leads, samples_per_lead, claimed_by, \
     claim_expires_ms, report_id, reported_at_ms, delivered_at_ms, preread_flags, priority_sent";

/// Opens a sealed column inside a row mapper (a failure is a conversion error of that column).
fn sealed_text(key: &StoreKey, r: &Row, idx: usize, table: &str, column: &str, row: &str) -> sql::Result<String> {
    let bytes: Vec<u8> = r.get(idx)?;
    key.open_text(table, column, row, &bytes).map_err(|e| sql::SqlError::column(idx, e))
}

/// Like [`sealed_text`] for a column that may be NULL.
fn sealed_text_opt(
    key: &StoreKey,
    r: &Row,
    idx: usize,
    table: &str,
    column: &str,
    row: &str,
) -> sql::Result<Option<String>> {
    match r.value(idx)? {
        sql::Value::Null => Ok(None),
        _ => sealed_text(key, r, idx, table, column, row).map(Some),
    }
}

/// Like [`sealed_text`] for bytes.
fn sealed_bytes(key: &StoreKey, r: &Row, idx: usize, table: &str, column: &str, row: &str) -> sql::Result<Vec<u8>> {
    let bytes: Vec<u8> = r.get(idx)?;
    key.open(table, column, row, &bytes).map_err(|e| sql::SqlError::column(idx, e))
}

fn study_row(key: &StoreKey, r: &Row, now_ms: i64) -> sql::Result<StudyRow> {
    let uid: String = r.get(0)?;
    let leads: String = r.get(13)?;
    let claimed_by: Option<String> = r.get(15)?;
    let claim_expires_ms: Option<i64> = r.get(16)?;
    let reported_at_ms: Option<i64> = r.get(18)?;
    let delivered_at_ms: Option<i64> = r.get(19)?;
    let claim = queue::claim_state(claimed_by.as_deref(), claim_expires_ms, now_ms);
    let state = if delivered_at_ms.is_some() {
        "delivered"
    } else if reported_at_ms.is_some() {
        "reported"
    } else if matches!(claim, ClaimState::Held { .. }) {
        "claimed"
    } else {
        "queued"
    };
    let (claimed_by, claim_expires_ms) = match claim {
        ClaimState::Held { .. } => (claimed_by, claim_expires_ms),
        ClaimState::Free => (None, None),
    };
    Ok(StudyRow {
        site_id: r.get(1)?,
        device_id: r.get(2)?,
        patient_id: sealed_text(key, r, 3, "studies", "patient_id", &uid)?,
        patient_name: sealed_text(key, r, 4, "studies", "patient_name", &uid)?,
        sex: r.get(5)?,
        birth_date: sealed_text_opt(key, r, 6, "studies", "birth_date", &uid)?,
        question: sealed_text(key, r, 7, "studies", "question", &uid)?,
        study_uid: uid,
        priority: priority_of(r.get(8)?).to_string(),
        acquired_at_ms: r.get(9)?,
        received_at_ms: r.get(10)?,
        sample_rate_hz: r.get(11)?,
        resolution_nv: r.get(12)?,
        leads: serde_json::from_str(&leads).unwrap_or_default(),
        samples_per_lead: r.get(14)?,
        claimed_by,
        claim_expires_ms,
        report_id: r.get(17)?,
        reported_at_ms,
        delivered_at_ms,
        state: state.to_string(),
        preread_flags: r.get::<Option<String>>(20)?.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default(),
        priority_sent: r.get::<Option<i64>>(21)?.map(|p| priority_of(p).to_string()),
    })
}

impl Db {
    /// Opens the database, sets WAL and full fsync on commit, and migrates; the store key is
    /// `keys/store.key` beside the database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_key(path, &sealed::default_key_path(path))
    }

    /// The store key (to seal another database of the hub with it).
    pub fn store_key(&self) -> &StoreKey {
        &self.key
    }

    /// Opens the database with the store key at `key_path` (made on first use; refused if the
    /// database was sealed with another key), migrates, and seals any plaintext left from before.
    pub fn open_with_key(path: &Path, key_path: &Path) -> Result<Self, StoreError> {
        Self::with_conn(Conn::new(Box::new(sqlite::Sqlite::open(path)?)), key_path)
    }

    /// Opens the PostgreSQL database at `url` (shared by several hubs) with the store key at
    /// `key_path`; every hub on one database needs the same key file.
    pub fn open_postgres(url: &str, key_path: &Path) -> Result<Self, StoreError> {
        Self::with_conn(Conn::new(Box::new(postgres::Postgres::connect(url)?)), key_path)
    }

    /// Opens the store at `location` with the store key at `key_path`.
    pub fn open_at(location: &Location, key_path: &Path) -> Result<Self, StoreError> {
        match location {
            Location::Sqlite(path) => Self::open_with_key(path, key_path),
            Location::Postgres(url) => Self::open_postgres(url, key_path),
        }
    }

    fn with_conn(conn: Conn, key_path: &Path) -> Result<Self, StoreError> {
        schema::migrate(&conn)?;
        let (key, first) = StoreKey::load(&conn, key_path)?;
        // A PostgreSQL store is sealed from its first row; only an old SQLite file can hold plaintext.
        let n = if first && conn.dialect() == sql::Dialect::Sqlite { sealed::seal_existing(&conn, &key)? } else { 0 };
        if n > 0 {
            info!(values = n, "patient data stored before encryption is now sealed");
        }
        let mut db = Self { conn, key };
        db.audit_chain_legacy()?;
        let n = db.index_patients()?;
        if n > 0 {
            info!(studies = n, "earlier studies indexed for finding a patient's prior ECGs");
        }
        Ok(db)
    }

    /// Runs `f` in one transaction (a savepoint inside one), committed if it returns `Ok`: what
    /// it reads cannot change before it writes, whichever hub or command writes at the same time.
    pub fn in_transaction<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let depth = self.conn.begin_nested()?;
        match f(self) {
            Ok(r) => {
                self.conn.finish(depth, true)?;
                Ok(r)
            }
            Err(e) => {
                let _ = self.conn.finish(depth, false);
                Err(e)
            }
        }
    }

    /// Which database this store runs on.
    pub fn dialect(&self) -> sql::Dialect {
        self.conn.dialect()
    }

    fn bump(tx: &Conn, name: &str, by: i64) -> sql::Result<i64> {
        tx.query_row(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = counters.value + ?2 RETURNING value",
            params![name, by],
            |r| r.get(0),
        )
    }

    fn counter(&self, name: &str) -> sql::Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// A device's enrolled key (hex) and lifecycle state, if it is enrolled.
    fn device_key_and_state(&self, device: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT public_key, state FROM devices WHERE device_id = ?1", [device], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// Enrols a device. Re-enrolling with the same key is a no-op; another key needs `replace`.
    pub fn enroll(
        &mut self,
        site: &str,
        device: &str,
        key: &PublicKey,
        replace: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.in_transaction(|db| {
            let existing = db.device_key_and_state(device)?;
            if let Some((k, _)) = &existing
                && *k != key.to_hex()
                && !replace
            {
                return Err(StoreError::AlreadyEnrolled(device.to_string()));
            }
            // A stolen cart's key must never come back to life by being enrolled again.
            if let Some((k, state)) = &existing
                && matches!(state.as_str(), "revoked" | "rejected")
                && (*k == key.to_hex() || !replace)
            {
                return Err(StoreError::Revoked(device.to_string()));
            }
            // Pre-provisioning from the CLI is county IT's own act: a replaced key is active at once.
            db.conn.execute(
                "INSERT INTO devices (device_id, site_id, public_key, key_id, enrolled_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(device_id) DO UPDATE SET site_id = ?2, public_key = ?3, key_id = ?4, enrolled_at_ms = ?5,
                     state = CASE WHEN ?6 THEN 'active' ELSE devices.state END,
                     old_public_key = CASE WHEN ?6 THEN NULL ELSE devices.old_public_key END,
                     old_key_until_ms = CASE WHEN ?6 THEN NULL ELSE devices.old_key_until_ms END",
                params![device, site, key.to_hex(), key.id().to_string(), now_ms, replace],
            )?;
            Ok(())
        })
    }

    /// The site and current key of a device that may act now (pending or active); `None` for an
    /// unknown, rejected or revoked device. During a key rotation's overlap the old key is valid
    /// too: see [`Db::device_keys`], the one place that decides.
    pub fn device_key(&self, device: &str) -> Result<Option<(String, PublicKey)>, StoreError> {
        let now = crate::clock::now_ms();
        Ok(self.device_keys(device, now)?.and_then(|d| d.keys.first().copied().map(|k| (d.site, k))))
    }

    /// Stores a batch of verified envelopes in one transaction, each under its own savepoint so
    /// that one envelope the database fails on does not hold back the others.
    pub fn ingest(&mut self, batch: &[Incoming], now_ms: i64) -> Result<Vec<Stored>, StoreError> {
        let tx = self.conn.transaction()?;
        let key = &self.key;
        let mut out = Vec::with_capacity(batch.len());
        for item in batch {
            let sp = tx.savepoint()?;
            match Self::ingest_one(&sp, key, item, now_ms) {
                Ok(stored @ (Stored::New | Stored::Duplicate)) => {
                    sp.commit()?;
                    out.push(stored);
                }
                Ok(other) => out.push(other), // rolled back as `sp` drops
                Err(e) => out.push(Stored::Failed(e.to_string())),
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn refuse(why: impl Into<String>) -> Result<Stored, StoreError> {
        Ok(Stored::Refused(RefusalReason::Inconsistent(why.into())))
    }

    fn ingest_one(tx: &Conn, key: &StoreKey, item: &Incoming, now_ms: i64) -> Result<Stored, StoreError> {
        let h = item.verified.header();
        let device = h.device_id.as_str();
        let Ok(seq) = i64::try_from(h.seq) else { return Self::refuse(format!("seq {} out of range", h.seq)) };
        let existing: Option<Vec<u8>> = tx
            .query_row("SELECT digest FROM messages WHERE device_id = ?1 AND seq = ?2", params![device, seq], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(d) = existing {
            if d == item.verified.digest() {
                Self::bump(tx, "duplicates", 1)?;
                return Ok(Stored::Duplicate);
            }
            let highest: i64 =
                tx.query_row("SELECT MAX(seq) FROM messages WHERE device_id = ?1", [device], |r| r.get(0))?;
            return Ok(Stored::Refused(RefusalReason::SeqReused { highest_seq: highest.max(0) as u64 }));
        }
        // Validate the kind-specific effect first, so a refused body stores nothing.
        match item.verified.payload() {
            Payload::StudyPart(p) => {
                if let Some(reason) = Self::check_part(tx, key, device, p)? {
                    return Self::refuse(reason);
                }
            }
            Payload::StreamChunk(c) => {
                if let Err(why) = c.validate() {
                    return Self::refuse(format!("stream chunk: {why}"));
                }
            }
            Payload::StreamGap(g) if g.first_sample >= g.end_sample || g.end_sample > i64::MAX as u64 => {
                return Self::refuse(format!("stream gap {}..{} is not a range", g.first_sample, g.end_sample));
            }
            Payload::ImageManifest(m) => {
                if let Some(why) = images::check_manifest(tx, device, m)? {
                    return Self::refuse(why);
                }
            }
            Payload::CriticalAck(a) => {
                if let Err(why) = Self::critical_acknowledged(tx, device, a, now_ms)? {
                    return Self::refuse(why);
                }
            }
            Payload::QualityOverride(o) => {
                if let Err(why) = Self::quality_overridden(tx, device, o, now_ms)? {
                    return Self::refuse(why);
                }
            }
            Payload::BlobChunk(c) => {
                if let Some(why) = images::check_chunk(tx, device, c)? {
                    return Self::refuse(why);
                }
            }
            _ => {}
        }
        // A chunk's bytes are kept once, in image_chunks; its provenance is the signed manifest's
        // hash of the whole instance, so the envelope need not be kept twice.
        let row = format!("{device}/{seq}");
        let kept = if matches!(item.verified.payload(), Payload::BlobChunk(_)) {
            Vec::new()
        } else {
            key.seal("messages", "envelope", &row, &item.envelope)?
        };
        tx.execute(
            "INSERT INTO messages (device_id, seq, kind, digest, created_at_ms, received_at_ms, envelope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![device, seq, h.kind, item.verified.digest().to_vec(), h.created_at_ms, now_ms, kept],
        )?;
        Self::bump(tx, "messages", 1)?;
        match item.verified.payload() {
            Payload::StudyPart(p) => {
                if let Some(why) = Self::store_part(tx, key, &item.site, device, seq, p, now_ms)? {
                    return Self::refuse(why);
                }
            }
            Payload::StreamChunk(c) => {
                let per_lead = c.leads.first().map_or(0, |l| l.samples.count);
                tx.execute(
                    "INSERT INTO stream_chunks (device_id, seq, stream_id, first_sample, samples_per_lead, leads, sample_rate_hz, start_time_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![device, seq, c.stream_id, c.first_sample as i64, per_lead, c.leads.len() as i64, c.sample_rate_hz, c.start_time_ms],
                )?;
                Self::bump(tx, "chunks", 1)?;
                Self::bump(tx, "samples_received", i64::from(per_lead) * c.leads.len() as i64)?;
            }
            Payload::DeviceOutput(o) => {
                tx.execute(
                    "INSERT INTO device_output (device_id, seq, port, line, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![device, seq, o.port, key.seal_text("device_output", "line", &row, &o.line)?, now_ms],
                )?;
                Self::bump(tx, "device_output", 1)?;
            }
            Payload::ReportReceipt(r) => {
                // Only the device the report went to can confirm it.
                let n = tx.execute(
                    "UPDATE reports SET receipt_at_ms = COALESCE(receipt_at_ms, ?1) WHERE report_id = ?2 AND device_id = ?3",
                    params![now_ms, r.report_id, device],
                )?;
                if n == 1 {
                    for table in ["studies", "image_studies"] {
                        tx.execute(
                            &format!("UPDATE {table} SET delivered_at_ms = COALESCE(delivered_at_ms, ?1) WHERE report_id = ?2"),
                            params![now_ms, r.report_id],
                        )?;
                    }
                } else {
                    warn!(device, report = %r.report_id, "receipt for a report this device was not sent");
                }
            }
            Payload::StreamGap(g) => {
                tx.execute(
                    "INSERT INTO stream_gaps (device_id, seq, stream_id, first_sample, end_sample, reason, received_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![device, seq, g.stream_id, g.first_sample as i64, g.end_sample as i64, g.reason, now_ms],
                )?;
                warn!(device, stream = g.stream_id, first = g.first_sample, end = g.end_sample, reason = %g.reason, "device declared a stream gap");
            }
            Payload::FleetReport(r) => {
                // Reports can arrive out of order from the spool: the highest seq is the latest.
                tx.execute(
                    "INSERT INTO device_updates (device_id, seq, installed_version, installed_sha256, config_version,
                         trial_version, state, download_per_mille, last_version, last_reason, last_at_ms, received_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT(device_id) DO UPDATE SET seq = excluded.seq, installed_version = excluded.installed_version,
                         installed_sha256 = excluded.installed_sha256, config_version = excluded.config_version,
                         trial_version = excluded.trial_version, state = excluded.state,
                         download_per_mille = excluded.download_per_mille, last_version = excluded.last_version,
                         last_reason = excluded.last_reason, last_at_ms = excluded.last_at_ms,
                         received_at_ms = excluded.received_at_ms
                     WHERE excluded.seq > device_updates.seq",
                    params![
                        device,
                        seq,
                        r.installed_version,
                        hex::encode(r.installed_sha256),
                        r.config_version,
                        r.trial_version,
                        r.state,
                        r.download_per_mille,
                        r.last_version,
                        r.last_reason,
                        r.last_at_ms,
                        now_ms
                    ],
                )?;
            }
            Payload::ImageManifest(m) => images::store_manifest(tx, key, &item.site, device, m, now_ms)?,
            Payload::BlobChunk(c) => images::store_chunk(tx, key, device, c, now_ms)?,
            // A key rotation is kept as evidence here; ingest applies it once this commits.
            Payload::Status(_)
            | Payload::Ack(_)
            | Payload::Report(_)
            | Payload::KeyRotation(_)
            | Payload::HubKeyRotation(_)
            | Payload::UpdateAssignment(_)
            | Payload::StudyClaim(_)
            | Payload::CriticalNotice(_) => {}
            // Recorded with its audit entry in the check above.
            Payload::CriticalAck(_) | Payload::QualityOverride(_) => {}
        }
        Ok(Stored::New)
    }

    fn check_part(tx: &Conn, key: &StoreKey, device: &str, p: &StudyPart) -> Result<Option<String>, StoreError> {
        if p.count == 0 || p.index >= p.count || p.count > yilian_protocol::limits::STUDY_PARTS_MAX {
            return Ok(Some(format!("study part {} of {} is out of range", p.index, p.count)));
        }
        if p.total_len as usize > yilian_protocol::limits::STUDY_MAX {
            return Ok(Some(format!("study of {} bytes exceeds the limit", p.total_len)));
        }
        let earlier: Option<(String, Vec<u8>, i64)> = tx
            .query_row(
                "SELECT device_id, part, idx FROM study_parts WHERE study_uid = ?1 LIMIT 1",
                [&p.study_uid],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((owner, bytes, idx)) = earlier {
            if owner != device {
                return Ok(Some("study uid belongs to another device".into()));
            }
            let e = decode_part(&key.open("study_parts", "part", &format!("{}/{idx}", p.study_uid), &bytes)?)?;
            if (e.count, e.total_len, e.digest_sha256) != (p.count, p.total_len, p.digest_sha256) {
                return Ok(Some(format!("study uid {} reused for another recording", p.study_uid)));
            }
        }
        Ok(None)
    }

    /// Stores a part; with the last one, assembles and queues the study. `Some(why)` refuses.
    #[allow(clippy::too_many_arguments)] // the transaction, the key, and what one part needs
    fn store_part(
        tx: &Conn,
        key: &StoreKey,
        site: &str,
        device: &str,
        seq: i64,
        p: &StudyPart,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let part = yilian_protocol::wire::encode("study part", p, yilian_protocol::limits::STUDY_PART_MAX)
            .map_err(|e| StoreError::Damaged(e.to_string()))?;
        let part = key.seal("study_parts", "part", &format!("{}/{}", p.study_uid, p.index), &part)?;
        // The same part may come again under a new seq (the cart resent the study): keep the first.
        tx.execute(
            "INSERT INTO study_parts (study_uid, idx, count, device_id, seq, part) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            params![p.study_uid, p.index, p.count, device, seq, part],
        )?;
        let have: i64 =
            tx.query_row("SELECT COUNT(*) FROM study_parts WHERE study_uid = ?1", [&p.study_uid], |r| r.get(0))?;
        let exists: bool =
            tx.query_row("SELECT COUNT(*) FROM studies WHERE study_uid = ?1", [&p.study_uid], |r| r.get::<i64>(0))? > 0;
        if have < i64::from(p.count) || exists {
            return Ok(None);
        }
        let mut stmt = tx.prepare("SELECT part, idx FROM study_parts WHERE study_uid = ?1 ORDER BY idx")?;
        let parts: Vec<StudyPart> = stmt
            .query_map([&p.study_uid], |r| Ok((r.get::<Vec<u8>>(0)?, r.get::<i64>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .map(|(b, idx)| decode_part(&key.open("study_parts", "part", &format!("{}/{idx}", p.study_uid), b)?))
            .collect::<Result<_, _>>()?;
        let study = match message::assemble(&parts) {
            Ok(s) => s,
            Err(e) => {
                error!(study = %p.study_uid, device, error = %e, "study parts do not assemble; study not queued");
                return Ok(Some(format!("study parts do not assemble: {e}")));
            }
        };
        if let Err(why) = study.validate() {
            error!(study = %p.study_uid, device, %why, "study refused");
            return Ok(Some(format!("study: {why}")));
        }
        Self::insert_study(tx, key, site, device, &study, now_ms)?;
        Ok(None)
    }

    fn insert_study(
        tx: &Conn,
        key: &StoreKey,
        site: &str,
        device: &str,
        s: &Study,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let per_lead = s.leads.first().map_or(0, |l| l.samples.count);
        let leads: Vec<&str> = s.leads.iter().map(|l| l.lead.as_str()).collect();
        let body = s.encode().map_err(|e| StoreError::Damaged(e.to_string()))?;
        let uid = s.study_uid.as_str();
        let body = key.seal("studies", "body", uid, &body)?;
        let birth_date =
            s.patient.birth_date.map(|d| key.seal_text("studies", "birth_date", uid, &d.to_string())).transpose()?;
        let birth = s.patient.birth_date.map(|d| d.to_string());
        let (patient_index, person_index) = priors::indexes(key, &s.patient.id, &s.patient.name, birth.as_deref())?;
        tx.execute(
            "INSERT INTO studies (study_uid, device_id, site_id, patient_id, patient_name, sex, birth_date, question,
             priority, acquired_at_ms, received_at_ms, sample_rate_hz, resolution_nv, leads, samples_per_lead, body,
             patient_index, person_index)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            params![
                s.study_uid,
                device,
                site,
                key.seal_text("studies", "patient_id", uid, &s.patient.id)?,
                key.seal_text("studies", "patient_name", uid, &s.patient.name)?,
                sex_str(s.patient.sex),
                birth_date,
                key.seal_text("studies", "question", uid, &s.question)?,
                s.priority.rank(),
                s.acquired_at_ms,
                now_ms,
                s.sample_rate_hz,
                // Listing only: the body keeps each lead's exact resolution.
                s.resolution_nv().round() as i64,
                serde_json::to_string(&leads).unwrap_or_default(),
                per_lead,
                body,
                patient_index,
                person_index
            ],
        )?;
        Self::bump(tx, "samples_received", i64::from(per_lead) * s.leads.len() as i64)?;
        Ok(())
    }

    /// Studies not yet reported: most urgent first, then longest waiting.
    pub fn queue(&self, now_ms: i64) -> Result<Vec<StudyRow>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {STUDY_COLUMNS} FROM studies WHERE reported_at_ms IS NULL ORDER BY priority, received_at_ms, study_uid"
        ))?;
        let rows = stmt.query_map([], |r| study_row(&self.key, r, now_ms))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every study, newest first, at most `limit`.
    pub fn studies(&self, now_ms: i64, limit: i64) -> Result<Vec<StudyRow>, StoreError> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {STUDY_COLUMNS} FROM studies ORDER BY received_at_ms DESC LIMIT ?1"))?;
        let rows = stmt.query_map([limit], |r| study_row(&self.key, r, now_ms))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One study's row and its decoded body.
    pub fn study(&self, uid: &str, now_ms: i64) -> Result<Option<(StudyRow, Study)>, StoreError> {
        let row: Option<(StudyRow, Vec<u8>)> = self
            .conn
            .query_row(&format!("SELECT {STUDY_COLUMNS}, body FROM studies WHERE study_uid = ?1"), [uid], |r| {
                let row = study_row(&self.key, r, now_ms)?;
                let body = sealed_bytes(&self.key, r, 22, "studies", "body", &row.study_uid)?;
                Ok((row, body))
            })
            .optional()?;
        row.map(|(row, body)| Study::decode(&body).map(|s| (row, s)).map_err(|e| StoreError::Damaged(e.to_string())))
            .transpose()
    }

    /// The table holding a study: ECG studies and image studies are claimed and reported alike.
    fn table_of(conn: &Conn, uid: &str) -> Result<Option<&'static str>, StoreError> {
        for table in ["studies", "image_studies"] {
            let n: i64 =
                conn.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE study_uid = ?1"), [uid], |r| r.get(0))?;
            if n > 0 {
                return Ok(Some(table));
            }
        }
        Ok(None)
    }

    fn claim_of(conn: &Conn, key: &StoreKey, uid: &str) -> Result<Option<ClaimRow>, StoreError> {
        let Some(table) = Self::table_of(conn, uid)? else { return Ok(None) };
        Ok(conn
            .query_row(
                &format!(
                    "SELECT claimed_by, claim_expires_ms, reported_at_ms IS NOT NULL, device_id, site_id, patient_name
                     FROM {table} WHERE study_uid = ?1"
                ),
                [uid],
                |r| {
                    Ok(ClaimRow {
                        by: r.get(0)?,
                        until: r.get(1)?,
                        reported: r.get(2)?,
                        device: r.get(3)?,
                        site: r.get(4)?,
                        patient_name: sealed_text(key, r, 5, table, "patient_name", uid)?,
                    })
                },
            )
            .optional()?)
    }

    /// The clinic (site, device) that sent study `uid`.
    pub fn study_origin(&self, uid: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(Self::claim_of(&self.conn, &self.key, uid)?.map(|c| (c.site, c.device)))
    }

    /// Claims a study for `who` until `now + ttl`.
    pub fn claim(
        &mut self,
        uid: &str,
        who: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Result<i64, ClaimError>, StoreError> {
        self.in_transaction(|db| {
            let Some(c) = Self::claim_of(&db.conn, &db.key, uid)? else {
                return Ok(Err(ClaimError::NotFound));
            };
            if let Err(e) = queue::can_claim(c.by.as_deref(), c.until, c.reported, who, now_ms) {
                return Ok(Err(e));
            }
            let expires = now_ms + ttl_ms;
            let table = Self::table_of(&db.conn, uid)?.unwrap_or("studies");
            db.conn.execute(
                &format!("UPDATE {table} SET claimed_by = ?1, claim_expires_ms = ?2 WHERE study_uid = ?3"),
                params![who, expires, uid],
            )?;
            Ok(Ok(expires))
        })
    }

    /// Releases `who`'s claim.
    pub fn release(&mut self, uid: &str, who: &str, now_ms: i64) -> Result<Result<(), ClaimError>, StoreError> {
        self.in_transaction(|db| {
            let Some(c) = Self::claim_of(&db.conn, &db.key, uid)? else {
                return Ok(Err(ClaimError::NotFound));
            };
            if let Err(e) = queue::can_release(c.by.as_deref(), c.until, c.reported, who, now_ms) {
                return Ok(Err(e));
            }
            let table = Self::table_of(&db.conn, uid)?.unwrap_or("studies");
            db.conn.execute(
                &format!("UPDATE {table} SET claimed_by = NULL, claim_expires_ms = NULL WHERE study_uid = ?1"),
                [uid],
            )?;
            Ok(Ok(()))
        })
    }

    /// Records a specialist's report, signing it with `sign(report, hub seq, site, device)`
    /// inside the same transaction, so a stored report always has its signed envelope.
    pub fn create_report(
        &mut self,
        draft: &ReportDraft,
        now_ms: i64,
        sign: impl FnOnce(&Report, u64, &str, &str) -> Result<Vec<u8>, String>,
    ) -> Result<Result<ReportRow, ClaimError>, StoreError> {
        let tx = self.conn.transaction()?;
        let (uid, who) = (draft.study_uid.as_str(), draft.specialist_id.as_str());
        let Some(c) = Self::claim_of(&tx, &self.key, uid)? else {
            return Ok(Err(ClaimError::NotFound));
        };
        if let Err(e) = queue::can_report(c.by.as_deref(), c.until, c.reported, who, now_ms) {
            return Ok(Err(e));
        }
        let (findings, conclusion) = (draft.findings.as_str(), draft.conclusion.as_str());
        let (device, site, patient_name) = (c.device, c.site, c.patient_name);
        let n = Self::bump(&tx, "reports", 1)?;
        let hub_seq = Self::bump(&tx, "hub_seq", 1)?;
        let report = Report {
            report_id: format!("R{n:06}"),
            study_uid: uid.to_string(),
            patient_name,
            specialist_id: who.to_string(),
            specialist_name: draft.specialist_name.clone(),
            findings: findings.to_string(),
            conclusion: conclusion.to_string(),
            reported_at_ms: now_ms,
        };
        let envelope = sign(&report, hub_seq as u64, &site, &device).map_err(StoreError::Damaged)?;
        tx.execute(
            "INSERT INTO reports (report_id, study_uid, device_id, site_id, specialist_id, findings, conclusion, reported_at_ms, envelope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                report.report_id,
                uid,
                device,
                site,
                who,
                self.key.seal_text("reports", "findings", &report.report_id, findings)?,
                self.key.seal_text("reports", "conclusion", &report.report_id, conclusion)?,
                now_ms,
                self.key.seal("reports", "envelope", &report.report_id, &envelope)?
            ],
        )?;
        if draft.critical {
            tx.execute(
                "INSERT INTO critical_results (report_id, study_uid, site_id, device_id, marked_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![report.report_id, uid, site, device, now_ms],
            )?;
        }
        let table = Self::table_of(&tx, uid)?.unwrap_or("studies");
        tx.execute(
            &format!(
                "UPDATE {table} SET report_id = ?1, reported_at_ms = ?2, claimed_by = ?3, claim_expires_ms = NULL WHERE study_uid = ?4"
            ),
            params![report.report_id, now_ms, who, uid],
        )?;
        tx.commit()?;
        Ok(Ok(ReportRow {
            report_id: report.report_id,
            study_uid: uid.to_string(),
            device_id: device,
            site_id: site,
            specialist_id: who.to_string(),
            findings: findings.to_string(),
            conclusion: conclusion.to_string(),
            reported_at_ms: now_ms,
            published_at_ms: None,
            receipt_at_ms: None,
            envelope,
        }))
    }

    /// Notes that a report was (re)published.
    pub fn mark_published(&mut self, report_id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE reports SET published_at_ms = ?1 WHERE report_id = ?2", params![now_ms, report_id])?;
        Ok(())
    }

    /// Reports whose receipt has not come, for one device or all.
    pub fn unreceipted_reports(&self, device: Option<&str>) -> Result<Vec<ReportRow>, StoreError> {
        self.report_rows("receipt_at_ms IS NULL AND (CAST(?1 AS TEXT) IS NULL OR device_id = ?1)", [device])
    }

    /// Reports signed before `before_ms` that no hub has published yet (the hub that signed one
    /// stopped before it could): any hub sharing the store sends them.
    pub fn unpublished_reports(&self, before_ms: i64) -> Result<Vec<ReportRow>, StoreError> {
        self.report_rows("published_at_ms IS NULL AND receipt_at_ms IS NULL AND reported_at_ms < ?1", [before_ms])
    }

    fn report_rows(&self, filter: &str, params: impl sql::Params) -> Result<Vec<ReportRow>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT report_id, study_uid, device_id, site_id, specialist_id, findings, conclusion, reported_at_ms,
                    published_at_ms, receipt_at_ms, envelope
             FROM reports WHERE {filter}
                 AND device_id NOT IN (SELECT device_id FROM devices WHERE state IN ('revoked', 'rejected'))
             ORDER BY reported_at_ms"
        ))?;
        let rows = stmt
            .query_map(params, |r| {
                let id: String = r.get(0)?;
                Ok(ReportRow {
                    study_uid: r.get(1)?,
                    device_id: r.get(2)?,
                    site_id: r.get(3)?,
                    specialist_id: r.get(4)?,
                    findings: sealed_text(&self.key, r, 5, "reports", "findings", &id)?,
                    conclusion: sealed_text(&self.key, r, 6, "reports", "conclusion", &id)?,
                    reported_at_ms: r.get(7)?,
                    published_at_ms: r.get(8)?,
                    receipt_at_ms: r.get(9)?,
                    envelope: sealed_bytes(&self.key, r, 10, "reports", "envelope", &id)?,
                    report_id: id,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Adds or updates a console user (role `specialist` or `admin`) with an argon2 hash.
    pub fn add_user(
        &mut self,
        id: &str,
        name: &str,
        role: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO users (user_id, name, role, password_hash, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(user_id) DO UPDATE SET name = ?2, role = ?3, password_hash = ?4",
            params![id, name, role, password_hash, now_ms],
        )?;
        Ok(())
    }

    /// A user's (name, role, argon2 hash).
    pub fn user(&self, id: &str) -> Result<Option<(String, String, String)>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT name, role, password_hash FROM users WHERE user_id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?)
    }

    /// Records a new session (token stored hashed).
    pub fn create_session(
        &mut self,
        token_sha256: &str,
        user: &str,
        csrf: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM sessions WHERE expires_at_ms <= ?1", [now_ms])?;
        self.conn.execute(
            "INSERT INTO sessions (token_sha256, user_id, csrf, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_sha256, user, csrf, now_ms, now_ms + ttl_ms],
        )?;
        Ok(())
    }

    /// The live session of a token hash: (user id, name, role, csrf token).
    pub fn session(
        &self,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<Option<(String, String, String, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT u.user_id, u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.user_id = s.user_id
                 WHERE s.token_sha256 = ?1 AND s.expires_at_ms > ?2",
                params![token_sha256, now_ms],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?)
    }

    /// Ends a session.
    pub fn delete_session(&mut self, token_sha256: &str) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM sessions WHERE token_sha256 = ?1", [token_sha256])?;
        Ok(())
    }

    /// Appends to the audit log: who did what to which subject, when (role empty, result `ok`,
    /// source `local`; see [`Db::audit_event`] for every field).
    pub fn audit(
        &mut self,
        user: &str,
        action: &str,
        subject: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.audit_event(&audit::AuditEvent {
            at_ms: now_ms,
            user: user.into(),
            role: audit::ROLE_UNKNOWN.into(),
            action: action.into(),
            object: subject.into(),
            result: audit::RESULT_OK.into(),
            source: audit::SOURCE_LOCAL.into(),
            detail: detail.into(),
        })?;
        Ok(())
    }

    /// The latest audit entries, newest first.
    pub fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .audit_latest(limit)?
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at_ms: r.at_ms,
                user: r.user,
                role: r.role,
                action: r.action,
                subject: r.object,
                result: r.result,
                source: r.source,
                detail: r.detail,
            })
            .collect())
    }

    /// Adds (or replaces) a specialist with the SHA-256 (hex) of their API token.
    pub fn add_specialist(&mut self, id: &str, name: &str, token_sha256: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO specialists (specialist_id, name, token_sha256) VALUES (?1, ?2, ?3)
             ON CONFLICT(specialist_id) DO UPDATE SET name = ?2, token_sha256 = ?3",
            params![id, name, token_sha256],
        )?;
        Ok(())
    }

    /// The specialist (id, name) holding a token hash.
    pub fn specialist_by_token(&self, token_sha256: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT specialist_id, name FROM specialists WHERE token_sha256 = ?1", [token_sha256], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// Records a device's latest status; false if an equally new or newer one is already stored
    /// (a replayed or reordered status changes nothing).
    pub fn update_status(&mut self, device: &str, s: &message::Status, at_ms: i64) -> Result<bool, StoreError> {
        let state = match s.state {
            message::LinkState::Online => "online",
            message::LinkState::Heartbeat => "online",
            message::LinkState::Offline => "offline",
        };
        let n = self.conn.execute(
            "INSERT INTO device_status (device_id, state, status_at_ms, spool_entries, agent_version, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(device_id) DO UPDATE SET state = ?2, status_at_ms = ?3, spool_entries = ?4, agent_version = ?5, detail = ?6
             WHERE ?3 > device_status.status_at_ms",
            params![device, state, at_ms, s.spool_entries.min(i64::MAX as u64) as i64, s.agent_version, s.detail],
        )?;
        if n == 1 && !s.detail.is_empty() {
            self.conn.execute(
                "UPDATE device_status SET last_problem = ?2, last_problem_at_ms = ?3 WHERE device_id = ?1",
                params![device, s.detail, at_ms],
            )?;
        }
        Ok(n == 1)
    }

    /// Enrolled devices with their status.
    pub fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT d.device_id, d.site_id, d.key_id, COALESCE(s.state, 'unknown'), s.status_at_ms, s.spool_entries,
                    s.agent_version, s.detail, s.last_problem, s.last_problem_at_ms,
                    (SELECT MAX(seq) FROM messages m WHERE m.device_id = d.device_id),
                    (SELECT COUNT(*) FROM messages m WHERE m.device_id = d.device_id),
                    u.installed_version, u.state,
                    CASE WHEN u.last_version = '' THEN NULL
                         WHEN u.last_reason = '' THEN u.last_version
                         ELSE u.last_version || ': ' || u.last_reason END
             FROM devices d LEFT JOIN device_status s ON s.device_id = d.device_id
                  LEFT JOIN device_updates u ON u.device_id = d.device_id
             ORDER BY d.site_id, d.device_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DeviceRow {
                    device_id: r.get(0)?,
                    site_id: r.get(1)?,
                    key_id: r.get(2)?,
                    state: r.get(3)?,
                    status_at_ms: r.get(4)?,
                    spool_entries: r.get(5)?,
                    agent_version: r.get(6)?,
                    detail: r.get(7)?,
                    last_problem: r.get(8)?,
                    last_problem_at_ms: r.get(9)?,
                    last_seq: r.get(10)?,
                    messages: r.get(11)?,
                    installed_version: r.get(12)?,
                    update_state: r.get(13)?,
                    update_detail: r.get(14)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Hub-wide counts.
    pub fn counts(&self, now_ms: i64) -> Result<Counts, StoreError> {
        let (studies, reported, delivered, claimed): (i64, i64, i64, i64) = self.conn.query_row(
            "SELECT COUNT(*),
                    COALESCE(SUM(CASE WHEN reported_at_ms IS NOT NULL AND delivered_at_ms IS NULL THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN delivered_at_ms IS NOT NULL THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN reported_at_ms IS NULL AND claimed_by IS NOT NULL AND claim_expires_ms > ?1 THEN 1 ELSE 0 END), 0)
             FROM studies",
            [now_ms],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        Ok(Counts {
            queued: studies - reported - delivered - claimed,
            claimed,
            reported,
            delivered,
            studies,
            samples_received: self.counter("samples_received")?,
            chunks: self.counter("chunks")?,
            messages: self.counter("messages")?,
            duplicates: self.counter("duplicates")?,
            device_output: self.counter("device_output")?,
            image_bytes_received: self.counter("image_bytes_received")?,
        })
    }

    /// A device's stored messages as (seq, kind, hub arrival ms), in seq order: the journal
    /// that shows in which order a backlog arrived.
    pub fn arrivals(&self, device: &str) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT seq, kind, received_at_ms FROM messages WHERE device_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([device], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The latest `limit` lines a device printed, newest first.
    pub fn device_output(&self, device: &str, limit: i64) -> Result<Vec<OutputLine>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, port, line, received_at_ms FROM device_output WHERE device_id = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![device, limit], |r| {
                let seq: i64 = r.get(0)?;
                let line = sealed_text(&self.key, r, 2, "device_output", "line", &format!("{device}/{seq}"))?;
                Ok(OutputLine { seq, port: r.get(1)?, line, received_at_ms: r.get(3)? })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Streams of a device with their continuous runs (gaps are the spaces between runs).
    pub fn streams(&self, device: &str) -> Result<Vec<StreamSummary>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT stream_id, first_sample, samples_per_lead, leads, sample_rate_hz FROM stream_chunks
             WHERE device_id = ?1 ORDER BY stream_id, first_sample",
        )?;
        let mut out: Vec<StreamSummary> = Vec::new();
        let rows = stmt.query_map([device], |r| {
            Ok((r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?, r.get::<i64>(3)?, r.get::<i64>(4)?))
        })?;
        for row in rows {
            let (stream_id, first, n, leads, rate) = row?;
            if out.last().is_none_or(|s| s.stream_id != stream_id) {
                out.push(StreamSummary {
                    stream_id,
                    sample_rate_hz: rate,
                    leads,
                    chunks: 0,
                    samples_per_lead: 0,
                    runs: vec![],
                    declared_gaps: vec![],
                });
            }
            let Some(s) = out.last_mut() else { continue };
            s.chunks += 1;
            s.samples_per_lead += n;
            let end = first.saturating_add(n);
            match s.runs.last_mut() {
                Some(run) if run.end_sample >= first => run.end_sample = run.end_sample.max(end),
                _ => s.runs.push(StreamRun { first_sample: first, end_sample: end }),
            }
        }
        let mut stmt = self.conn.prepare(
            "SELECT stream_id, first_sample, end_sample, reason FROM stream_gaps WHERE device_id = ?1
             ORDER BY stream_id, first_sample",
        )?;
        let gaps = stmt.query_map([device], |r| {
            Ok((r.get::<i64>(0)?, DeclaredGap { first_sample: r.get(1)?, end_sample: r.get(2)?, reason: r.get(3)? }))
        })?;
        for g in gaps {
            let (stream_id, gap) = g?;
            if let Some(s) = out.iter_mut().find(|s| s.stream_id == stream_id) {
                s.declared_gaps.push(gap);
            }
        }
        Ok(out)
    }

    /// Decoded samples per lead of a stream, `[from, from + count)`; missing samples are absent
    /// (the caller sees a shorter result and the runs say where the gaps are).
    pub fn stream_samples(
        &self,
        device: &str,
        stream_id: i64,
        from: i64,
        count: i64,
    ) -> Result<Vec<(String, u32, Vec<i32>)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT m.envelope, c.seq FROM stream_chunks c JOIN messages m ON m.device_id = c.device_id AND m.seq = c.seq
             WHERE c.device_id = ?1 AND c.stream_id = ?2 AND c.first_sample + c.samples_per_lead > ?3 AND c.first_sample < ?4
             ORDER BY c.first_sample",
        )?;
        let end = from.saturating_add(count);
        let envs: Vec<Vec<u8>> = stmt
            .query_map(params![device, stream_id, from, end], |r| {
                let seq: i64 = r.get(1)?;
                sealed_bytes(&self.key, r, 0, "messages", "envelope", &format!("{device}/{seq}"))
            })?
            .collect::<Result<_, _>>()?;
        let mut leads: Vec<(String, u32, Vec<i32>)> = Vec::new();
        // Samples are appended in index order; an overlapping chunk (a restarted stream) adds
        // only what lies past what is already there, so no index appears twice.
        let mut next = from;
        for bytes in envs {
            let env = Envelope::decode(&bytes).map_err(|e| StoreError::Damaged(e.to_string()))?;
            let Some(Ok(Payload::StreamChunk(c))) = Payload::decode(env.header.kind, &env.body) else {
                return Err(StoreError::Damaged("stored stream chunk does not decode".into()));
            };
            let start = i64::try_from(c.first_sample).map_err(|_| StoreError::Damaged("sample index".into()))?;
            let mut chunk_end = next;
            for (i, l) in c.leads.iter().enumerate() {
                let samples = l.decode().map_err(|e| StoreError::Damaged(e.to_string()))?;
                if leads.len() <= i {
                    leads.push((l.lead.clone(), c.resolution_nv, Vec::new()));
                }
                for (k, v) in samples.into_iter().enumerate() {
                    let idx = start.saturating_add(k as i64);
                    if idx >= next && idx < end {
                        leads[i].2.push(v);
                        chunk_end = chunk_end.max(idx + 1);
                    }
                }
            }
            next = chunk_end;
        }
        Ok(leads)
    }
}
