//! The image store: one file per instance, `<dir>/<study>/<series>/<sop>.sealed`, the received
//! Part-10 bytes exactly, sealed with the store key ([`super::sealed`]: DICOM headers carry the
//! patient's name, and the pixels are the patient), and an index in `<dir>/images.db` (its own
//! SQLite file, so the imaging volume can live on other storage than the ECG database) whose
//! patient fields are sealed too. A store from before sealing is sealed when it is opened.
//!
//! Methods are blocking (file I/O, SQLite, rendering); async callers use `spawn_blocking`. The
//! connection sits behind a `std::sync::Mutex`, never held across an `.await`.

use super::ImageError;
use super::read::{self, floats, int, text};
use super::render::{self, RenderOptions};
use dicom_dictionary_std::tags;
use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use yilian_protocol::at_rest::{AtRestError, DataKey};

/// Longest side of a series thumbnail, pixels.
pub const THUMBNAIL_SIDE: u32 = 128;
const THUMBNAIL_FILE: &str = "thumbnail.sealed";
/// What a store from before sealing kept its thumbnails in.
const PLAIN_THUMBNAIL_FILE: &str = "thumbnail.png";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_class TEXT NOT NULL,
    modality TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    study_date TEXT NOT NULL,
    study_time TEXT NOT NULL,
    accession_number TEXT NOT NULL,
    study_description TEXT NOT NULL,
    series_number INTEGER,
    series_description TEXT NOT NULL,
    instance_number INTEGER,
    rows INTEGER,
    columns INTEGER,
    frames INTEGER NOT NULL,
    photometric TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    pixel_spacing_row REAL,
    pixel_spacing_col REAL,
    imager_spacing_row REAL,
    imager_spacing_col REAL,
    window_center REAL,
    window_width REAL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances (study_uid, series_uid);
";

const COLUMNS: &str = "sop_uid, study_uid, series_uid, sop_class, modality, patient_name, patient_id, study_date, \
     study_time, accession_number, study_description, series_number, series_description, instance_number, rows, \
     columns, frames, photometric, transfer_syntax, size, sha256, pixel_spacing_row, pixel_spacing_col, \
     imager_spacing_row, imager_spacing_col, window_center, window_width";

/// What the index knows of one instance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstanceMeta {
    /// SOP Instance UID (0008,0018).
    pub sop_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_uid: String,
    /// SOP Class UID (0008,0016).
    pub sop_class: String,
    /// Modality (0008,0060).
    pub modality: String,
    /// Patient's Name (0010,0010), as written (`Family^Given`).
    pub patient_name: String,
    /// Patient ID (0010,0020).
    pub patient_id: String,
    /// Study Date (0008,0020), `YYYYMMDD`.
    pub study_date: String,
    /// Study Time (0008,0030).
    pub study_time: String,
    /// Accession Number (0008,0050).
    pub accession_number: String,
    /// Study Description (0008,1030).
    pub study_description: String,
    /// Series Number (0020,0011).
    pub series_number: Option<i64>,
    /// Series Description (0008,103E).
    pub series_description: String,
    /// Instance Number (0020,0013).
    pub instance_number: Option<i64>,
    /// Rows (0028,0010), for images.
    pub rows: Option<u32>,
    /// Columns (0028,0011), for images.
    pub columns: Option<u32>,
    /// Number of Frames (0028,0008), 1 when absent.
    pub frames: u32,
    /// Photometric Interpretation (0028,0004).
    pub photometric: String,
    /// Transfer syntax UID of the stored file.
    pub transfer_syntax: String,
    /// File size, bytes.
    pub size: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Pixel Spacing (0028,0030), mm: row spacing, column spacing.
    pub pixel_spacing: Option<(f64, f64)>,
    /// Imager Pixel Spacing (0018,1164), mm (CR/DX: at the detector).
    pub imager_pixel_spacing: Option<(f64, f64)>,
    /// The file's first Window Center/Width.
    pub window: Option<(f64, f64)>,
}

/// One study, as the study list shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StudySummary {
    /// Study Instance UID.
    pub study_uid: String,
    /// Patient's Name.
    pub patient_name: String,
    /// Patient ID.
    pub patient_id: String,
    /// Study Date.
    pub study_date: String,
    /// Study Time.
    pub study_time: String,
    /// Accession Number.
    pub accession_number: String,
    /// Study Description.
    pub study_description: String,
    /// Modalities in the study, sorted.
    pub modalities: Vec<String>,
    /// Number of series.
    pub series_count: u32,
    /// Number of instances.
    pub instance_count: u32,
}

/// One series of a study.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesSummary {
    /// Study Instance UID.
    pub study_uid: String,
    /// Series Instance UID.
    pub series_uid: String,
    /// Modality.
    pub modality: String,
    /// Series Number.
    pub series_number: Option<i64>,
    /// Series Description.
    pub series_description: String,
    /// Number of instances.
    pub instance_count: u32,
}

/// The hub's image store.
pub struct ImageStore {
    dir: PathBuf,
    db: Mutex<Connection>,
    /// Seals the index's patient fields (the main store's key).
    key: DataKey,
}

/// Associated data of a sealed index field: the column and the instance it belongs to.
fn field_aad(column: &str, sop_uid: &str) -> Vec<u8> {
    format!("yilian images v1\0instances\0{column}\0{sop_uid}").into_bytes()
}

fn seal_field(key: &DataKey, column: &str, sop_uid: &str, value: &str) -> Result<Vec<u8>, ImageError> {
    key.seal(&field_aad(column, sop_uid), value.as_bytes()).map_err(|e| sealed_error(column, sop_uid, e))
}

fn sealed_error(column: &str, sop_uid: &str, e: AtRestError) -> ImageError {
    ImageError::Io {
        what: "opening a sealed index field",
        path: format!("instances.{column} of {sop_uid}"),
        source: std::io::Error::other(e),
    }
}

/// Opens a sealed index field inside a row mapper; a plaintext value (an index from before
/// sealing, sealed on the next open) is read as it is.
fn open_field(key: &DataKey, r: &Row<'_>, idx: usize, column: &str, sop_uid: &str) -> rusqlite::Result<String> {
    let bytes = match r.get_ref(idx)? {
        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t.to_vec(),
        _ => Vec::new(),
    };
    if !yilian_protocol::at_rest::is_sealed(&bytes) {
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    let plain = key
        .open(&field_aad(column, sop_uid), &bytes)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Blob, Box::new(e)))?;
    String::from_utf8(plain)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Blob, Box::new(e)))
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.display().to_string();
    move |source| ImageError::Io { what, path, source }
}

/// Checks that a UID can safely name a file: 1-64 characters, digits and dots.
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn checked<'a>(what: &'static str, uid: &'a str) -> Result<&'a str, ImageError> {
    if valid_uid(uid) { Ok(uid) } else { Err(ImageError::BadUid { what, uid: uid.to_string() }) }
}

fn pair(v: Option<Vec<f64>>) -> Option<(f64, f64)> {
    let v = v?;
    match v.as_slice() {
        [a, b, ..] if *a > 0.0 && *b > 0.0 => Some((*a, *b)),
        [a] if *a > 0.0 => Some((*a, *a)),
        _ => None,
    }
}

fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("syncing folder", dir))
}

fn from_row(key: &DataKey, r: &Row<'_>) -> rusqlite::Result<InstanceMeta> {
    let opt_pair = |a: Option<f64>, b: Option<f64>| a.zip(b);
    let sop_uid: String = r.get(0)?;
    Ok(InstanceMeta {
        patient_name: open_field(key, r, 5, "patient_name", &sop_uid)?,
        patient_id: open_field(key, r, 6, "patient_id", &sop_uid)?,
        sop_uid,
        study_uid: r.get(1)?,
        series_uid: r.get(2)?,
        sop_class: r.get(3)?,
        modality: r.get(4)?,
        study_date: r.get(7)?,
        study_time: r.get(8)?,
        accession_number: r.get(9)?,
        study_description: r.get(10)?,
        series_number: r.get(11)?,
        series_description: r.get(12)?,
        instance_number: r.get(13)?,
        rows: r.get(14)?,
        columns: r.get(15)?,
        frames: r.get(16)?,
        photometric: r.get(17)?,
        transfer_syntax: r.get(18)?,
        size: r.get::<_, i64>(19)?.max(0) as u64,
        sha256: r.get(20)?,
        pixel_spacing: opt_pair(r.get(21)?, r.get(22)?),
        imager_pixel_spacing: opt_pair(r.get(23)?, r.get(24)?),
        window: opt_pair(r.get(25)?, r.get(26)?),
    })
}

impl ImageStore {
    /// Opens (creating) the store in `dir`, sealing patient fields with the store key at
    /// `keys/store.key` beside `dir` (the main database's default).
    pub fn open(dir: &Path) -> Result<ImageStore, ImageError> {
        let key_path = dir.parent().unwrap_or(Path::new(".")).join("keys").join("store.key");
        let key = crate::store::sealed::load_or_create_key_file(&key_path).map_err(|e| ImageError::Io {
            what: "reading the store key",
            path: key_path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Self::open_with_key(dir, key)
    }

    /// Opens (creating) the store in `dir`, sealing patient fields in its index with `key`.
    pub fn open_with_key(dir: &Path, key: DataKey) -> Result<ImageStore, ImageError> {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let conn = Connection::open(dir.join("images.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // As the main store: a commit is on disk when it returns, since the ingest acks after it.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.execute_batch(SCHEMA)?;
        seal_plaintext_fields(&conn, &key)?;
        let store = ImageStore { dir: dir.to_path_buf(), db: Mutex::new(conn), key };
        store.seal_plaintext_files()?;
        Ok(store)
    }

    /// Seals instance files and drops thumbnails a store from before sealing kept in the clear.
    fn seal_plaintext_files(&self) -> Result<(), ImageError> {
        let all: Vec<InstanceMeta> = {
            let db = self.db();
            let mut st = db.prepare(&format!("SELECT {COLUMNS} FROM instances"))?;
            st.query_map([], |r| from_row(&self.key, r))?.collect::<Result<_, _>>()?
        };
        let mut sealed = 0usize;
        for m in &all {
            let series = self.series_dir(&m.study_uid, &m.series_uid);
            let _ = std::fs::remove_file(series.join(PLAIN_THUMBNAIL_FILE));
            let plain = series.join(format!("{}.dcm", m.sop_uid));
            let Ok(bytes) = std::fs::read(&plain) else { continue };
            super::sealed::write(&self.path_of(m), &self.key, &m.sop_uid, &bytes)?;
            sync_dir(&series)?;
            std::fs::remove_file(&plain).map_err(io_err("removing the plaintext", &plain))?;
            sealed += 1;
        }
        if sealed > 0 {
            tracing::info!(files = sealed, "image files from before sealing are now sealed");
        }
        Ok(())
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn series_dir(&self, study: &str, series: &str) -> PathBuf {
        self.dir.join(study).join(series)
    }

    /// Stores a complete Part-10 file and removes it: see [`ImageStore::insert_bytes`]. On an
    /// error the file stays where it is.
    pub fn insert_file(&self, file: &Path) -> Result<InstanceMeta, ImageError> {
        let size = std::fs::metadata(file).map_err(io_err("reading metadata of", file))?.len();
        if size > read::MAX_FILE_BYTES {
            return Err(read::ReadError::TooLarge { path: file.display().to_string(), size }.into());
        }
        let bytes = std::fs::read(file).map_err(io_err("reading", file))?;
        let meta = self.insert_bytes(&file.display().to_string(), &bytes)?;
        std::fs::remove_file(file).map_err(io_err("removing the stored", file))?;
        Ok(meta)
    }

    /// Stores a work file sealed for `label` by a [`super::sealed::SealedWriter`] made with
    /// [`ImageStore::work_writer`] (the rebuild of an instance from its chunks), and removes it.
    pub fn insert_work_file(&self, file: &Path, label: &str) -> Result<InstanceMeta, ImageError> {
        let bytes = super::sealed::read(file, &self.key, label, read::MAX_FILE_BYTES)?;
        let meta = self.insert_bytes(&file.display().to_string(), &bytes)?;
        std::fs::remove_file(file).map_err(io_err("removing the stored", file))?;
        Ok(meta)
    }

    /// A writer for a work file sealed with the store key for `label`, so an instance being
    /// rebuilt is never on disk in the clear.
    pub fn work_writer(&self, file: &Path, label: &str) -> Result<super::sealed::SealedWriter, ImageError> {
        Ok(super::sealed::SealedWriter::create(file, &self.key, label)?)
    }

    /// Stores a complete Part-10 file held in memory (`name` says where it came from, in
    /// errors): checks it parses (header only), seals it to `<dir>/<study>/<series>/<sop>.sealed`
    /// (written whole, synced, renamed), and indexes it. The same bytes again are accepted and
    /// change nothing; other bytes under a stored SOP Instance UID are refused with
    /// [`ImageError::Conflict`].
    pub fn insert_bytes(&self, name: &str, bytes: &[u8]) -> Result<InstanceMeta, ImageError> {
        let parsed = read::read_bytes(name, bytes, false)?;
        let obj = &parsed.obj;
        let (sha256, size) = (hex::encode(Sha256::digest(bytes)), bytes.len() as u64);
        let study_uid = checked("Study Instance UID", &text(obj, tags::STUDY_INSTANCE_UID))?.to_string();
        let series_uid = checked("Series Instance UID", &text(obj, tags::SERIES_INSTANCE_UID))?.to_string();
        let mut sop_uid = text(obj, tags::SOP_INSTANCE_UID);
        if sop_uid.is_empty() {
            sop_uid = obj.meta().media_storage_sop_instance_uid().trim_end_matches(['\0', ' ']).to_string();
        }
        checked("SOP Instance UID", &sop_uid)?;
        let meta = InstanceMeta {
            sop_class: {
                let c = text(obj, tags::SOP_CLASS_UID);
                if c.is_empty() {
                    obj.meta().media_storage_sop_class_uid().trim_end_matches(['\0', ' ']).into()
                } else {
                    c
                }
            },
            modality: text(obj, tags::MODALITY),
            patient_name: text(obj, tags::PATIENT_NAME),
            patient_id: text(obj, tags::PATIENT_ID),
            study_date: text(obj, tags::STUDY_DATE),
            study_time: text(obj, tags::STUDY_TIME),
            accession_number: text(obj, tags::ACCESSION_NUMBER),
            study_description: text(obj, tags::STUDY_DESCRIPTION),
            series_number: int(obj, tags::SERIES_NUMBER),
            series_description: text(obj, tags::SERIES_DESCRIPTION),
            instance_number: int(obj, tags::INSTANCE_NUMBER),
            rows: int(obj, tags::ROWS).and_then(|v| u32::try_from(v).ok()),
            columns: int(obj, tags::COLUMNS).and_then(|v| u32::try_from(v).ok()),
            frames: int(obj, tags::NUMBER_OF_FRAMES).and_then(|v| u32::try_from(v).ok()).unwrap_or(1).max(1),
            photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION),
            transfer_syntax: parsed.transfer_syntax.clone(),
            size,
            sha256,
            pixel_spacing: pair(floats(obj, tags::PIXEL_SPACING)),
            imager_pixel_spacing: pair(floats(obj, tags::IMAGER_PIXEL_SPACING)),
            window: render::file_window(obj).map(|w| (w.center, w.width)),
            study_uid,
            series_uid,
            sop_uid,
        };
        let dest_dir = self.series_dir(&meta.study_uid, &meta.series_uid);
        let dest = self.path_of(&meta);
        if let Some(stored) = self.instance(&meta.sop_uid)? {
            if stored.sha256 != meta.sha256 {
                return Err(ImageError::Conflict { sop_uid: meta.sop_uid, stored: stored.sha256 });
            }
            if dest.exists() {
                return Ok(stored);
            }
        }
        std::fs::create_dir_all(&dest_dir).map_err(io_err("creating", &dest_dir))?;
        super::sealed::write(&dest, &self.key, &meta.sop_uid, bytes)?;
        sync_dir(&dest_dir)?;
        // A new instance may change which one is in the middle of the series.
        let _ = std::fs::remove_file(dest_dir.join(THUMBNAIL_FILE));
        let db = self.db();
        let m = &meta;
        db.execute(
            &format!(
                "INSERT OR REPLACE INTO instances ({COLUMNS}) VALUES \
                 (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27)"
            ),
            params![
                m.sop_uid,
                m.study_uid,
                m.series_uid,
                m.sop_class,
                m.modality,
                seal_field(&self.key, "patient_name", &m.sop_uid, &m.patient_name)?,
                seal_field(&self.key, "patient_id", &m.sop_uid, &m.patient_id)?,
                m.study_date,
                m.study_time,
                m.accession_number,
                m.study_description,
                m.series_number,
                m.series_description,
                m.instance_number,
                m.rows,
                m.columns,
                m.frames,
                m.photometric,
                m.transfer_syntax,
                m.size as i64,
                m.sha256,
                m.pixel_spacing.map(|p| p.0),
                m.pixel_spacing.map(|p| p.1),
                m.imager_pixel_spacing.map(|p| p.0),
                m.imager_pixel_spacing.map(|p| p.1),
                m.window.map(|w| w.0),
                m.window.map(|w| w.1),
            ],
        )?;
        Ok(meta)
    }

    /// Every study, newest study date first.
    pub fn studies(&self) -> Result<Vec<StudySummary>, ImageError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT study_uid, MIN(sop_uid), MIN(sop_uid), MAX(study_date), MAX(study_time), \
             MAX(accession_number), MAX(study_description), GROUP_CONCAT(DISTINCT modality), \
             COUNT(DISTINCT series_uid), COUNT(*) FROM instances GROUP BY study_uid \
             ORDER BY MAX(study_date) DESC, MAX(study_time) DESC, study_uid",
        )?;
        // The patient fields are sealed per instance: they come from the study's first instance.
        let names = |sop: &str| {
            db.query_row("SELECT patient_name, patient_id FROM instances WHERE sop_uid = ?1", [sop], |r| {
                Ok((open_field(&self.key, r, 0, "patient_name", sop)?, open_field(&self.key, r, 1, "patient_id", sop)?))
            })
        };
        let rows = st.query_map([], |r| {
            let first: String = r.get(1)?;
            let (patient_name, patient_id) = names(&first)?;
            let mods: Option<String> = r.get(7)?;
            let mut modalities: Vec<String> =
                mods.unwrap_or_default().split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
            modalities.sort();
            Ok(StudySummary {
                study_uid: r.get(0)?,
                patient_name,
                patient_id,
                study_date: r.get(3)?,
                study_time: r.get(4)?,
                accession_number: r.get(5)?,
                study_description: r.get(6)?,
                modalities,
                series_count: r.get(8)?,
                instance_count: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The series of a study, by series number.
    pub fn series(&self, study: &str) -> Result<Vec<SeriesSummary>, ImageError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT study_uid, series_uid, MAX(modality), MAX(series_number), MAX(series_description), COUNT(*) \
             FROM instances WHERE study_uid = ?1 GROUP BY series_uid \
             ORDER BY MAX(series_number) IS NULL, MAX(series_number), series_uid",
        )?;
        let rows = st.query_map([study], |r| {
            Ok(SeriesSummary {
                study_uid: r.get(0)?,
                series_uid: r.get(1)?,
                modality: r.get(2)?,
                series_number: r.get(3)?,
                series_description: r.get(4)?,
                instance_count: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The instances of a series, by instance number.
    pub fn instances(&self, study: &str, series: &str) -> Result<Vec<InstanceMeta>, ImageError> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {COLUMNS} FROM instances WHERE study_uid = ?1 AND series_uid = ?2 \
             ORDER BY instance_number IS NULL, instance_number, sop_uid"
        ))?;
        let rows = st.query_map([study, series], |r| from_row(&self.key, r))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every instance of a study, by series then instance number.
    pub fn study_instances(&self, study: &str) -> Result<Vec<InstanceMeta>, ImageError> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {COLUMNS} FROM instances WHERE study_uid = ?1 \
             ORDER BY series_number IS NULL, series_number, series_uid, instance_number IS NULL, instance_number, sop_uid"
        ))?;
        let rows = st.query_map([study], |r| from_row(&self.key, r))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One instance by SOP Instance UID.
    pub fn instance(&self, sop: &str) -> Result<Option<InstanceMeta>, ImageError> {
        let db = self.db();
        Ok(db
            .query_row(&format!("SELECT {COLUMNS} FROM instances WHERE sop_uid = ?1"), [sop], |r| {
                from_row(&self.key, r)
            })
            .optional()?)
    }

    /// The stored file of an instance, if it is in that study and series.
    pub fn instance_file(&self, study: &str, series: &str, sop: &str) -> Result<Option<PathBuf>, ImageError> {
        Ok(self.instance(sop)?.filter(|m| m.study_uid == study && m.series_uid == series).map(|m| self.path_of(&m)))
    }

    /// Deletes a study's files and index rows (retention); returns how many instances went.
    pub fn delete_study(&self, study: &str) -> Result<usize, ImageError> {
        let study = checked("Study Instance UID", study)?;
        let dir = self.dir.join(study);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("deleting", &dir)(e)),
        }
        Ok(self.db().execute("DELETE FROM instances WHERE study_uid = ?1", [study])?)
    }

    /// Where an indexed instance's sealed file is.
    pub fn path_of(&self, m: &InstanceMeta) -> PathBuf {
        // The UIDs were checked to be digits and dots when the instance was inserted.
        self.series_dir(&m.study_uid, &m.series_uid).join(format!("{}.sealed", m.sop_uid))
    }

    /// An instance's Part-10 bytes, exactly as received (opened from its sealed file).
    pub fn read_instance(&self, m: &InstanceMeta) -> Result<Vec<u8>, ImageError> {
        Ok(super::sealed::read(&self.path_of(m), &self.key, &m.sop_uid, read::MAX_FILE_BYTES)?)
    }

    /// An instance parsed: its header only, or with `whole` the entire object.
    pub fn parse_instance(&self, m: &InstanceMeta, whole: bool) -> Result<read::Parsed, ImageError> {
        let bytes = self.read_instance(m)?;
        Ok(read::read_bytes(&format!("instance {}", m.sop_uid), &bytes, whole)?)
    }

    /// Renders a frame of an instance to PNG.
    pub fn render_instance(&self, m: &InstanceMeta, opts: &RenderOptions) -> Result<render::Rendered, ImageError> {
        let parsed = self.parse_instance(m, true)?;
        Ok(render::render(&parsed.obj, &parsed.transfer_syntax, opts)?)
    }

    /// A small PNG of the middle instance of a series (its middle frame), rendered once and kept
    /// sealed next to the series' files.
    pub fn thumbnail(&self, study: &str, series: &str) -> Result<Vec<u8>, ImageError> {
        let (study, series) = (checked("Study Instance UID", study)?, checked("Series Instance UID", series)?);
        let path = self.series_dir(study, series).join(THUMBNAIL_FILE);
        let label = format!("thumbnail {study} {series}");
        match super::sealed::read(&path, &self.key, &label, 16 << 20) {
            Ok(png) => return Ok(png),
            // A cache: missing or damaged, it is rendered again.
            Err(super::sealed::SealedFileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            }
            Err(e) => tracing::warn!(error = %e, "thumbnail cache unreadable; rendering it again"),
        }
        let all = self.instances(study, series)?;
        let Some(mid) = all.get(all.len() / 2) else {
            return Err(ImageError::NotFound(format!("series {series} of study {study}")));
        };
        let opts = RenderOptions { frame: mid.frames / 2, max_side: Some(THUMBNAIL_SIDE), ..Default::default() };
        let png = self.render_instance(mid, &opts)?.png;
        super::sealed::write(&path, &self.key, &label, &png)?;
        Ok(png)
    }
}

/// Seals index fields written before sealing (a store from an earlier version).
fn seal_plaintext_fields(conn: &Connection, key: &DataKey) -> Result<(), ImageError> {
    for column in ["patient_name", "patient_id"] {
        let rows: Vec<(String, String)> = {
            let mut st =
                conn.prepare(&format!("SELECT sop_uid, {column} FROM instances WHERE typeof({column}) = 'text'"))?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        for (sop, value) in rows {
            conn.execute(
                &format!("UPDATE instances SET {column} = ?1 WHERE sop_uid = ?2"),
                params![seal_field(key, column, &sop, &value)?, sop],
            )?;
        }
    }
    Ok(())
}
