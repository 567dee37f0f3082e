//! The outbox of studies for the hospital PACS: each reported study once, with its delivery
//! state for the console. The DICOM object itself is made again for each attempt (its UIDs come
//! from its content, so every attempt sends the same instance).

use super::sql::params;
use super::{Db, StoreError};
use serde::Serialize;

/// One outbox entry, for the console and the API.
#[derive(Debug, Clone, Serialize)]
pub struct PacsRow {
    /// The study.
    pub study_uid: String,
    /// `pending` or `stored`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: String,
    /// The SOP Instance UID the PACS stored.
    pub sop_instance_uid: Option<String>,
    /// The C-STORE status (0 or a warning).
    pub status: Option<i64>,
    /// Queued, Unix ms.
    pub created_at_ms: i64,
    /// Next attempt, Unix ms.
    pub next_attempt_ms: i64,
    /// Stored, Unix ms.
    pub stored_at_ms: Option<i64>,
}

impl Db {
    /// Queues every study reported since `since_ms` that is not queued yet.
    pub fn pacs_enqueue_new(&mut self, since_ms: i64, now_ms: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "INSERT INTO pacs_outbox (study_uid, state, attempts, last_error, next_attempt_ms, created_at_ms)
             SELECT study_uid, 'pending', 0, '', ?2, ?2 FROM reports WHERE reported_at_ms >= ?1 ON CONFLICT DO NOTHING",
            params![since_ms, now_ms],
        )?)
    }

    /// Studies due by `now_ms` with their attempts so far, oldest first.
    pub fn pacs_due(&self, now_ms: i64, limit: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT study_uid, attempts FROM pacs_outbox WHERE state = 'pending' AND next_attempt_ms <= ?1
             ORDER BY created_at_ms LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records an attempt: stored with `Ok((instance, status))`, or failed with `Err(why)` and
    /// tried again at `retry_at_ms`.
    pub fn pacs_attempt(
        &mut self,
        study_uid: &str,
        result: Result<(String, u16), String>,
        retry_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match result {
            Ok((instance, status)) => self.conn.execute(
                "UPDATE pacs_outbox SET state = 'stored', attempts = attempts + 1, sop_instance_uid = ?2,
                     status = ?3, stored_at_ms = ?4, last_error = '' WHERE study_uid = ?1",
                params![study_uid, instance, status, now_ms],
            )?,
            Err(why) => self.conn.execute(
                "UPDATE pacs_outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3
                 WHERE study_uid = ?1",
                params![study_uid, why, retry_at_ms],
            )?,
        };
        Ok(())
    }

    /// The PACS outbox, newest first (`pending`: not yet stored only).
    pub fn pacs_outbox(&self, pending: bool, limit: i64) -> Result<Vec<PacsRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT study_uid, state, attempts, last_error, sop_instance_uid, status, created_at_ms,
                    next_attempt_ms, stored_at_ms
             FROM pacs_outbox WHERE (?1 = 0 OR state = 'pending') ORDER BY created_at_ms DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![pending, limit], |r| {
            Ok(PacsRow {
                study_uid: r.get(0)?,
                state: r.get(1)?,
                attempts: r.get(2)?,
                last_error: r.get(3)?,
                sop_instance_uid: r.get(4)?,
                status: r.get(5)?,
                created_at_ms: r.get(6)?,
                next_attempt_ms: r.get(7)?,
                stored_at_ms: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
