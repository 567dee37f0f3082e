//! The tamper-evident audit log.
//!
//! Every entry stores `prev` (the hash of the entry before it; 32 zero bytes for the first) and
//! `hash = H(prev ‖ canonical(entry))`, where the canonical encoding holds the algorithm id, the
//! row id and every field, each length-prefixed. The hash function is named per entry (`alg`,
//! today only `sha256`) so a national algorithm (SM3) can be added later; an unknown id fails
//! verification. The chain's head (entry count, last id, last hash) is kept in `audit_head` and
//! updated in the same transaction as the insert, so removing the newest entries is detected too.
//!
//! Residual risk: the chain holds no secret. Someone who can write the database file can rewrite
//! every hash and the head consistently; the chain then catches edits made with ordinary tools
//! (an SQL client, a restored row), not a deliberate forger with the file in hand. Against that,
//! `yilian-hub audit verify` prints the head hash and entry count, and `yilian-hub audit export`
//! copies the entries: a head written down or exported elsewhere (a checkpoint) is a fixed point
//! a rewritten chain no longer reaches.

use super::sql::{Conn, OptionalExtension, Row, params};
use super::{Db, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash algorithm id of new entries.
pub const ALG_SHA256: &str = "sha256";

/// Role recorded when a caller of [`Db::audit`] does not give one.
pub const ROLE_UNKNOWN: &str = "";
/// Result recorded when a caller of [`Db::audit`] does not give one.
pub const RESULT_OK: &str = "ok";
/// Source address recorded for actions taken on the hub itself (the command line, timers).
pub const SOURCE_LOCAL: &str = "local";

/// One auditable action, as the caller knows it.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    /// Hub time, Unix ms.
    pub at_ms: i64,
    /// User id (or `system`, or a device id).
    pub user: String,
    /// The user's role (`specialist`, `admin`, `auditor`, `api`), or empty.
    pub role: String,
    /// What was done, e.g. `view study`, `sign in`, `revoke`.
    pub action: String,
    /// On what (a study uid, a device id), or empty.
    pub object: String,
    /// `ok`, `denied`, `failed`, ...
    pub result: String,
    /// Where the request came from (`ip:port`), or `local`.
    pub source: String,
    /// More, free text (no patient names).
    pub detail: String,
}

/// One stored audit entry, with its chain fields.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// Row id (the chain order).
    pub id: i64,
    /// Hub time, Unix ms.
    pub at_ms: i64,
    /// User id.
    pub user: String,
    /// Role.
    pub role: String,
    /// Action.
    pub action: String,
    /// Object.
    pub object: String,
    /// Result.
    pub result: String,
    /// Source address.
    pub source: String,
    /// Detail.
    pub detail: String,
    /// Hash algorithm id.
    pub alg: Option<String>,
    /// Hash of the previous entry (hex).
    pub prev: Option<String>,
    /// This entry's hash (hex).
    pub hash: Option<String>,
}

/// What is wrong with the chain at an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    /// The entry has no hash: it was inserted around the chain.
    #[error("entry {id} is not chained (inserted around the log)")]
    Unchained {
        /// Row id.
        id: i64,
    },
    /// The entry names a hash algorithm this hub does not know.
    #[error("entry {id} uses unknown hash algorithm {alg:?}")]
    UnknownAlgorithm {
        /// Row id.
        id: i64,
        /// The id found.
        alg: String,
    },
    /// The entry's content no longer matches its hash.
    #[error("entry {id} was edited (its content does not match its hash)")]
    Edited {
        /// Row id.
        id: i64,
    },
    /// The entry (or entries) before this one are missing.
    #[error("entry {id}: the entry before it was removed")]
    Removed {
        /// Row id of the first entry after the gap.
        id: i64,
    },
    /// The entry follows an entry that is now stored after it.
    #[error("entry {id} was reordered (it follows entry {follows}, which now comes later)")]
    Reordered {
        /// Row id.
        id: i64,
        /// The entry it was chained after.
        follows: i64,
    },
    /// The newest entries are missing: the head records more than the table holds.
    #[error(
        "the last entries were removed: the head records {expected} entries ending at id {last_id}, the log has {found}"
    )]
    TailRemoved {
        /// Entries the head records.
        expected: i64,
        /// Entries found.
        found: i64,
        /// Id of the last entry the head records.
        last_id: i64,
    },
    /// The head record itself is missing or damaged while entries exist.
    #[error("the chain head is missing or damaged: {0}")]
    Head(String),
}

/// A verified chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    /// Entries checked.
    pub entries: i64,
    /// Id of the last entry (0 when empty).
    pub last_id: i64,
    /// Hash of the last entry (hex; zeros when empty).
    pub head: String,
}

const GENESIS: [u8; 32] = [0; 32];

/// Where a stepwise chain check has got to ([`Db::audit_verify_step`]).
#[derive(Debug, Clone, Default)]
pub struct ChainCheck {
    running: [u8; 32],
    count: i64,
    last_id: i64,
    after: i64,
}

/// The bytes that are hashed for one entry: a tag, then every field length-prefixed.
fn canonical(alg: &str, id: i64, e: &AuditEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"yilian-audit-v1");
    push_text(&mut out, alg);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&e.at_ms.to_be_bytes());
    for text in [&e.user, &e.role, &e.action, &e.object, &e.result, &e.source, &e.detail] {
        push_text(&mut out, text);
    }
    out
}

fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// `H(prev ‖ canonical)`, or `None` for an algorithm id this build does not know.
fn link(alg: &str, prev: &[u8; 32], canon: &[u8]) -> Option<[u8; 32]> {
    match alg {
        ALG_SHA256 => {
            let mut h = Sha256::new();
            h.update(prev);
            h.update(canon);
            Some(h.finalize().into())
        }
        _ => None,
    }
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// (entries, last id, last hash) from the head row.
fn head(conn: &Conn) -> Result<Option<(i64, i64, String)>, StoreError> {
    Ok(conn
        .query_row("SELECT entries, last_id, hash FROM audit_head WHERE one = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
}

/// Appends what a clinic did through its device (acknowledged a critical result, sent a flagged
/// study without a retake), inside the ingest transaction.
pub fn append_clinic(
    tx: &Conn,
    device: &str,
    action: &str,
    object: &str,
    detail: String,
    now_ms: i64,
) -> Result<i64, StoreError> {
    append(
        tx,
        &AuditEvent {
            at_ms: now_ms,
            user: format!("device:{device}"),
            role: "clinic".into(),
            action: action.into(),
            object: object.into(),
            result: RESULT_OK.into(),
            source: "mqtt".into(),
            detail,
        },
    )
}

/// Appends one entry and moves the head, on a connection the caller has in a transaction (so an
/// action and its audit entry commit together).
pub fn append(tx: &Conn, e: &AuditEvent) -> Result<i64, StoreError> {
    let (entries, prev) = match head(tx)? {
        Some((n, _, h)) => (n, unhex32(&h).ok_or_else(|| StoreError::Damaged("audit head hash".into()))?),
        None => {
            // No head yet: continue from the newest chained entry, or start the chain.
            let last: Option<String> = tx
                .query_row("SELECT hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| r.get::<Option<String>>(0))
                .optional()?
                .flatten();
            match last {
                Some(h) => {
                    let n: i64 = tx.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
                    (n, unhex32(&h).ok_or_else(|| StoreError::Damaged("audit hash".into()))?)
                }
                None => (0, GENESIS),
            }
        }
    };
    let id: i64 = tx.query_row(
        "INSERT INTO audit (at_ms, user_id, role, action, subject, result, source, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
        params![e.at_ms, e.user, e.role, e.action, e.object, e.result, e.source, e.detail],
        |r| r.get(0),
    )?;
    let hash = link(ALG_SHA256, &prev, &canonical(ALG_SHA256, id, e)).unwrap_or(GENESIS);
    let hash = hex::encode(hash);
    tx.execute(
        "UPDATE audit SET alg = ?1, prev = ?2, hash = ?3 WHERE id = ?4",
        params![ALG_SHA256, hex::encode(prev), hash, id],
    )?;
    tx.execute(
        "INSERT INTO audit_head (one, entries, last_id, hash) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT(one) DO UPDATE SET entries = ?1, last_id = ?2, hash = ?3",
        params![entries + 1, id, hash],
    )?;
    Ok(id)
}

fn record(r: &Row) -> super::sql::Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        user: r.get(2)?,
        role: r.get(3)?,
        action: r.get(4)?,
        object: r.get(5)?,
        result: r.get(6)?,
        source: r.get(7)?,
        detail: r.get(8)?,
        alg: r.get(9)?,
        prev: r.get(10)?,
        hash: r.get(11)?,
    })
}

const COLUMNS: &str = "id, at_ms, user_id, role, action, subject, result, source, detail, alg, prev, hash";

impl AuditRecord {
    fn event(&self) -> AuditEvent {
        AuditEvent {
            at_ms: self.at_ms,
            user: self.user.clone(),
            role: self.role.clone(),
            action: self.action.clone(),
            object: self.object.clone(),
            result: self.result.clone(),
            source: self.source.clone(),
            detail: self.detail.clone(),
        }
    }
}

impl Db {
    /// Appends one audit entry with every field, chained to the one before, in one transaction.
    /// Returns its id.
    pub fn audit_event(&mut self, e: &AuditEvent) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        let id = append(&tx, e)?;
        tx.commit()?;
        Ok(id)
    }

    /// Audit entries with id greater than `after_id`, oldest first, at most `limit`.
    pub fn audit_records(&self, after_id: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS} FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2"))?;
        let rows = stmt.query_map(params![after_id, limit], record)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The newest audit entries, newest first.
    pub fn audit_latest(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY id DESC LIMIT ?1"))?;
        let rows = stmt.query_map([limit], record)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Checks the whole chain and its head. `Ok(Err(fault))` names the first bad entry and why.
    pub fn audit_verify(&self) -> Result<Result<ChainSummary, ChainFault>, StoreError> {
        let mut check = ChainCheck::default();
        loop {
            if let Some(done) = self.audit_verify_step(&mut check, 1000)? {
                return Ok(done);
            }
        }
    }

    /// Checks up to `limit` more entries; `Some` once the chain is checked to its head (or
    /// broken). The hub's console calls this in steps, so a long log does not hold up the store
    /// thread that also takes the clinics' uplink.
    pub fn audit_verify_step(
        &self,
        check: &mut ChainCheck,
        limit: i64,
    ) -> Result<Option<Result<ChainSummary, ChainFault>>, StoreError> {
        let batch = self.audit_records(check.after, limit)?;
        for r in &batch {
            check.after = r.id;
            let (Some(alg), Some(prev), Some(hash)) = (&r.alg, &r.prev, &r.hash) else {
                return Ok(Some(Err(ChainFault::Unchained { id: r.id })));
            };
            let (Some(prev_b), Some(hash_b)) = (unhex32(prev), unhex32(hash)) else {
                return Ok(Some(Err(ChainFault::Edited { id: r.id })));
            };
            let Some(own) = link(alg, &prev_b, &canonical(alg, r.id, &r.event())) else {
                return Ok(Some(Err(ChainFault::UnknownAlgorithm { id: r.id, alg: alg.clone() })));
            };
            if own != hash_b {
                return Ok(Some(Err(ChainFault::Edited { id: r.id })));
            }
            if prev_b != check.running {
                let follows: Option<i64> =
                    self.conn.query_row("SELECT id FROM audit WHERE hash = ?1", [prev], |r| r.get(0)).optional()?;
                return Ok(Some(Err(match follows {
                    Some(f) if f > r.id => ChainFault::Reordered { id: r.id, follows: f },
                    _ => ChainFault::Removed { id: r.id },
                })));
            }
            check.running = hash_b;
            check.count += 1;
            check.last_id = r.id;
        }
        if !batch.is_empty() {
            return Ok(None);
        }
        let (count, last_id, head_hex) = (check.count, check.last_id, hex::encode(check.running));
        match head(&self.conn)? {
            None if count == 0 => {}
            None => return Ok(Some(Err(ChainFault::Head("no head record".into())))),
            Some((entries, head_last, hash)) => {
                if entries > count || head_last > last_id {
                    return Ok(Some(Err(ChainFault::TailRemoved {
                        expected: entries,
                        found: count,
                        last_id: head_last,
                    })));
                }
                if entries != count || head_last != last_id || hash != head_hex {
                    return Ok(Some(Err(ChainFault::Head(format!(
                        "head records {entries} entries ending at id {head_last}, the log has {count} ending at id {last_id}"
                    )))));
                }
            }
        }
        Ok(Some(Ok(ChainSummary { entries: count, last_id, head: head_hex })))
    }

    /// Chains the entries written before the log was chained, once: only when no entry has a
    /// hash and there is no head yet (so a later missing head is reported, not silently rebuilt).
    pub(super) fn audit_chain_legacy(&mut self) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let chained: i64 = tx.query_row("SELECT COUNT(*) FROM audit WHERE hash IS NOT NULL", [], |r| r.get(0))?;
        if chained > 0 || head(&tx)?.is_some() {
            return Ok(());
        }
        let rows: Vec<AuditRecord> = {
            let mut stmt = tx.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY id"))?;
            stmt.query_map([], record)?.collect::<Result<_, _>>()?
        };
        let mut prev = GENESIS;
        for r in &rows {
            let hash = link(ALG_SHA256, &prev, &canonical(ALG_SHA256, r.id, &r.event())).unwrap_or(GENESIS);
            tx.execute(
                "UPDATE audit SET alg = ?1, prev = ?2, hash = ?3 WHERE id = ?4",
                params![ALG_SHA256, hex::encode(prev), hex::encode(hash), r.id],
            )?;
            prev = hash;
        }
        if let Some(last) = rows.last() {
            tx.execute(
                "INSERT INTO audit_head (one, entries, last_id, hash) VALUES (1, ?1, ?2, ?3)",
                params![rows.len() as i64, last.id, hex::encode(prev)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
