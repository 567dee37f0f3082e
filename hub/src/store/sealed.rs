//! Patient data at rest: patient-identifying fields and waveforms are sealed (ChaCha20-Poly1305,
//! see [`yilian_protocol::at_rest`]) under the store key, a file kept outside the database, so
//! the database file (and its WAL, and a copy of either) yields no patient name, identity
//! number, birth date, question, report text or waveform.
//!
//! Each value's associated data is its table, column and row, so a sealed value copied to
//! another row or column fails to open instead of showing one patient's data under another's
//! study. The database holds a key check value, so the hub refuses to start with the wrong key
//! or without its key (instead of making a new one and being unable to read what it holds).

use super::StoreError;
use super::sql::{Conn, OptionalExtension, params};
use std::path::{Path, PathBuf};
use yilian_protocol::at_rest::{AtRestError, DataKey, is_sealed};

/// What the key check value holds, sealed.
const CHECK_PLAINTEXT: &[u8] = b"yilian store key check";
/// Where the key check value is bound.
const CHECK_AAD: &[u8] = b"yilian store key check v1";

/// The store key (cheap to clone).
#[derive(Clone, Debug)]
pub struct StoreKey {
    key: DataKey,
}

/// The default store key file for a database: `keys/store.key` beside it.
pub fn default_key_path(db_path: &Path) -> PathBuf {
    db_path.parent().unwrap_or(Path::new(".")).join("keys").join("store.key")
}

fn key_error(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Key { path: path.to_path_buf(), reason: reason.into() }
}

fn aad(table: &str, column: &str, row: &str) -> Vec<u8> {
    let mut a = b"yilian store v1".to_vec();
    for part in [table, column, row] {
        a.push(0);
        a.extend_from_slice(part.as_bytes());
    }
    a
}

fn read_key_file(path: &Path) -> Result<Option<DataKey>, StoreError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path).map_err(|e| key_error(path, e.to_string()))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(key_error(path, format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777)));
            }
            let raw: [u8; 32] = bytes
                .try_into()
                .map_err(|b: Vec<u8>| key_error(path, format!("{} bytes, a store key is 32", b.len())))?;
            Ok(Some(DataKey::from_bytes(raw)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(key_error(path, e.to_string())),
    }
}

fn write_key_file(path: &Path, key: &DataKey) -> Result<(), StoreError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        f.write_all(key.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| key_error(path, e.to_string()))
}

/// Reads the key file at `path`, making it (mode 0600) if it does not exist. For stores that
/// keep no check value of their own (the image index); the main database checks the key.
pub fn load_or_create_key_file(path: &Path) -> Result<DataKey, StoreError> {
    if let Some(key) = read_key_file(path)? {
        return Ok(key);
    }
    let key = DataKey::generate().map_err(|e| key_error(path, e.to_string()))?;
    match write_key_file(path, &key) {
        Ok(()) => Ok(key),
        // Made by the other store opening at the same moment: use that one.
        Err(e) => read_key_file(path)?.ok_or(e),
    }
}

impl StoreKey {
    /// Loads the key at `path` and checks it against the database's key check value. With no
    /// key file: a database that already holds a check value is refused (its data would be
    /// unreadable); otherwise a new key is made (mode 0600) and its check value stored.
    /// The flag is true when the database had no check value yet (new, or from before sealing).
    pub fn load(conn: &Conn, path: &Path) -> Result<(Self, bool), StoreError> {
        let check: Option<Vec<u8>> =
            conn.query_row("SELECT check_value FROM store_key WHERE id = 1", [], |r| r.get(0)).optional()?;
        let key = match (read_key_file(path)?, &check) {
            (Some(key), _) => key,
            (None, Some(_)) => {
                return Err(key_error(
                    path,
                    "missing, but the database holds data sealed under a store key; restore the key file \
                     (or pass --store-key with its path); a new key could not read that data",
                ));
            }
            (None, None) => {
                let key = DataKey::generate().map_err(|e| key_error(path, e.to_string()))?;
                write_key_file(path, &key)?;
                key
            }
        };
        let first = check.is_none();
        match check {
            Some(c) => {
                if key.open(CHECK_AAD, &c).as_deref() != Ok(CHECK_PLAINTEXT) {
                    return Err(key_error(path, "is not the key this database was sealed with"));
                }
            }
            None => {
                let c = key.seal(CHECK_AAD, CHECK_PLAINTEXT).map_err(|e| key_error(path, e.to_string()))?;
                // Hubs sharing one database may start together: the first check value stays, and
                // a hub that made another key finds out here.
                conn.execute(
                    "INSERT INTO store_key (id, check_value) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
                    [&c],
                )?;
                let stored: Vec<u8> =
                    conn.query_row("SELECT check_value FROM store_key WHERE id = 1", [], |r| r.get(0))?;
                if stored != c && key.open(CHECK_AAD, &stored).as_deref() != Ok(CHECK_PLAINTEXT) {
                    return Err(key_error(path, "is not the key this database was sealed with"));
                }
            }
        }
        Ok((Self { key }, first))
    }

    /// The key itself (the image store seals its own database with it).
    pub fn data_key(&self) -> &DataKey {
        &self.key
    }

    /// Seals `plain` as the value of `table.column` in row `row`.
    pub fn seal(&self, table: &str, column: &str, row: &str, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.key.seal(&aad(table, column, row), plain).map_err(|e| sealed_error(table, column, row, e))
    }

    /// Seals text.
    pub fn seal_text(&self, table: &str, column: &str, row: &str, plain: &str) -> Result<Vec<u8>, StoreError> {
        self.seal(table, column, row, plain.as_bytes())
    }

    /// Opens the value of `table.column` in row `row`.
    pub fn open(&self, table: &str, column: &str, row: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.key.open(&aad(table, column, row), sealed).map_err(|e| sealed_error(table, column, row, e))
    }

    /// Opens text.
    pub fn open_text(&self, table: &str, column: &str, row: &str, sealed: &[u8]) -> Result<String, StoreError> {
        String::from_utf8(self.open(table, column, row, sealed)?)
            .map_err(|_| StoreError::Damaged(format!("{table}.{column} of {row} is not UTF-8")))
    }

    /// Keyed hash (hex) of a patient field, for searching and joining without the plaintext.
    pub fn blind_index(&self, field: &str, value: &str) -> Result<String, StoreError> {
        self.key
            .keyed_hash(&format!("blind index {field}"), value.as_bytes())
            .map(hex::encode)
            .map_err(|e| StoreError::Damaged(e.to_string()))
    }
}

fn sealed_error(table: &str, column: &str, row: &str, e: AtRestError) -> StoreError {
    StoreError::Damaged(format!("{table}.{column} of {row}: {e}"))
}

/// A column sealed at rest and how its row is named in the associated data.
struct SealedColumn {
    table: &'static str,
    column: &'static str,
    /// SQL expression naming the row; the same text the Rust code builds, and what the UPDATE
    /// matches the row by.
    row: &'static str,
}

/// Every sealed column of the main database.
const SEALED: &[SealedColumn] = &[
    SealedColumn { table: "studies", column: "patient_id", row: "study_uid" },
    SealedColumn { table: "studies", column: "patient_name", row: "study_uid" },
    SealedColumn { table: "studies", column: "birth_date", row: "study_uid" },
    SealedColumn { table: "studies", column: "question", row: "study_uid" },
    SealedColumn { table: "studies", column: "body", row: "study_uid" },
    SealedColumn { table: "messages", column: "envelope", row: "device_id || '/' || seq" },
    SealedColumn { table: "study_parts", column: "part", row: "study_uid || '/' || idx" },
    SealedColumn { table: "device_output", column: "line", row: "device_id || '/' || seq" },
    SealedColumn { table: "reports", column: "findings", row: "report_id" },
    SealedColumn { table: "reports", column: "conclusion", row: "report_id" },
    SealedColumn { table: "reports", column: "envelope", row: "report_id" },
    SealedColumn { table: "image_studies", column: "patient_name", row: "study_uid" },
    SealedColumn { table: "image_studies", column: "patient_id", row: "study_uid" },
    SealedColumn { table: "image_chunks", column: "bytes", row: "study_uid || '/' || sop_uid || '/' || idx" },
];

/// Seals every value still in plaintext (rows from before encryption), in one transaction.
/// Values already sealed are left alone. It scans every sealed column, so it runs only when the
/// database first gets its key (see [`StoreKey::load`]). Returns how many values it sealed.
pub fn seal_existing(conn: &Conn, key: &StoreKey) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let mut sealed = 0;
    for c in SEALED {
        // NULLs stay NULL (an unknown birth date); empty blobs stay empty (an image chunk's
        // envelope is not kept). Everything else not starting with the magic is plaintext.
        let select = format!(
            "SELECT {row}, {col} FROM {table} WHERE {col} IS NOT NULL AND length({col}) > 0
             AND substr(CAST({col} AS BLOB), 1, 3) != CAST('YLE' AS BLOB)",
            row = c.row,
            col = c.column,
            table = c.table
        );
        let rows: Vec<(String, Vec<u8>)> = {
            let mut stmt = tx.prepare(&select)?;
            stmt.query_map([], |r| {
                let value = match r.value(1)? {
                    super::sql::Value::Int(i) => i.to_string().into_bytes(),
                    other => other.as_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
                };
                Ok((r.get(0)?, value))
            })?
            .collect::<Result<_, _>>()?
        };
        for (row, plain) in rows {
            if is_sealed(&plain) {
                continue;
            }
            let value = key.seal(c.table, c.column, &row, &plain)?;
            tx.execute(&format!("UPDATE {} SET {} = ?1 WHERE {} = ?2", c.table, c.column, c.row), params![value, row])?;
            sealed += 1;
        }
    }
    tx.commit()?;
    Ok(sealed)
}
