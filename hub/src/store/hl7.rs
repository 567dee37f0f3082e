//! The outbox of HL7 messages to the hospital HIS: one message per signed report, built once
//! (so every retry carries the same bytes and control id), sealed at rest like every other
//! patient record, and kept with its delivery state for the console.

use super::sql::{OptionalExtension, params};
use super::{Db, StoreError, StudyRow};
use serde::Serialize;
use yilian_protocol::envelope::Envelope;
use yilian_protocol::message::{Payload, Report, Study};

/// A signed report with its study, as the HIS message needs it.
#[derive(Debug, Clone)]
pub struct Reported {
    /// The study's row.
    pub row: StudyRow,
    /// The study.
    pub study: Study,
    /// The report as signed.
    pub report: Report,
    /// Its signed envelope's wire bytes.
    pub envelope: Vec<u8>,
}

/// A message waiting to go.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The report it carries.
    pub report_id: String,
    /// MSH-10.
    pub control_id: String,
    /// The wire bytes (in the HIS's charset).
    pub message: Vec<u8>,
    /// Attempts so far.
    pub attempts: i64,
}

/// One outbox entry, for the console and the API.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    /// The report.
    pub report_id: String,
    /// Its study.
    pub study_uid: String,
    /// MSH-10.
    pub control_id: String,
    /// `pending` or `delivered`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: String,
    /// The HIS's acknowledgement code once delivered (AA or CA).
    pub ack_code: Option<String>,
    /// Queued, Unix ms.
    pub created_at_ms: i64,
    /// Next attempt, Unix ms.
    pub next_attempt_ms: i64,
    /// Delivered, Unix ms.
    pub delivered_at_ms: Option<i64>,
}

impl Db {
    /// When outbox `name` began (the first call's `now_ms`, kept): reports signed before it are
    /// not sent, so connecting a HIS or PACS does not replay years of history.
    pub fn outbox_since(&mut self, name: &str, now_ms: i64) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![name, now_ms],
        )?;
        Ok(self.conn.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| r.get(0))?)
    }

    /// Reports signed since `since_ms` with no message yet, with their studies, oldest first.
    pub fn hl7_unqueued(&self, since_ms: i64, limit: i64, now_ms: i64) -> Result<Vec<Reported>, StoreError> {
        let rows: Vec<(String, String)> = {
            let mut stmt = self.conn.prepare(
                "SELECT r.report_id, r.study_uid FROM reports r
                 WHERE r.reported_at_ms >= ?1 AND NOT EXISTS (SELECT 1 FROM hl7_outbox o WHERE o.report_id = r.report_id)
                 ORDER BY r.reported_at_ms LIMIT ?2",
            )?;
            stmt.query_map(params![since_ms, limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for (report_id, uid) in rows {
            let Some((report, envelope)) = self.signed_report_of(&uid)? else { continue };
            let Some((row, study)) = self.study(&uid, now_ms)? else {
                return Err(StoreError::Damaged(format!("report {report_id}: study {uid} is gone")));
            };
            out.push(Reported { row, study, report, envelope });
        }
        Ok(out)
    }

    /// Where report `report_id` goes: (device, site, study).
    pub fn report_target(&self, report_id: &str) -> Result<Option<(String, String, String)>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT device_id, site_id, study_uid FROM reports WHERE report_id = ?1", [report_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?)
    }

    /// The signed report on study `uid`, if it has one (as signed: from its envelope).
    pub fn report_of(&self, uid: &str) -> Result<Option<Report>, StoreError> {
        Ok(self.signed_report_of(uid)?.map(|(r, _)| r))
    }

    /// The signed report on study `uid` with its envelope's wire bytes.
    pub fn signed_report_of(&self, uid: &str) -> Result<Option<(Report, Vec<u8>)>, StoreError> {
        let row: Option<(String, Vec<u8>)> = self
            .conn
            .query_row("SELECT report_id, envelope FROM reports WHERE study_uid = ?1", [uid], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((report_id, sealed)) = row else { return Ok(None) };
        let bytes = self.key.open("reports", "envelope", &report_id, &sealed)?;
        let env = Envelope::decode(&bytes).map_err(|e| StoreError::Damaged(format!("report {report_id}: {e}")))?;
        match Payload::decode(env.header.kind, &env.body) {
            Some(Ok(Payload::Report(r))) => Ok(Some((r, bytes))),
            _ => Err(StoreError::Damaged(format!("report {report_id}: not a report envelope"))),
        }
    }

    /// Queues `message` (wire bytes) for `report_id`, due at once.
    pub fn hl7_enqueue(
        &mut self,
        report_id: &str,
        control_id: &str,
        message: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sealed = self.key.seal("hl7_outbox", "message", report_id, message)?;
        self.conn.execute(
            "INSERT INTO hl7_outbox (report_id, control_id, message, state, attempts, last_error,
                 next_attempt_ms, created_at_ms)
             VALUES (?1, ?2, ?3, 'pending', 0, '', ?4, ?4) ON CONFLICT DO NOTHING",
            params![report_id, control_id, sealed, now_ms],
        )?;
        Ok(())
    }

    /// Pending messages due by `now_ms`, oldest first.
    pub fn hl7_due(&self, now_ms: i64, limit: i64) -> Result<Vec<Outgoing>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT report_id, control_id, message, attempts FROM hl7_outbox
             WHERE state = 'pending' AND next_attempt_ms <= ?1 ORDER BY created_at_ms LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![now_ms, limit], |r| {
                Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<Vec<u8>>(2)?, r.get::<i64>(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(report_id, control_id, sealed, attempts)| {
                let message = self.key.open("hl7_outbox", "message", &report_id, &sealed)?;
                Ok(Outgoing { report_id, control_id, message, attempts })
            })
            .collect()
    }

    /// Records an attempt: delivered with the HIS's `Ok(ack code)`, or failed with `Err(why)`
    /// and tried again at `retry_at_ms`.
    pub fn hl7_attempt(
        &mut self,
        report_id: &str,
        result: Result<&str, &str>,
        retry_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match result {
            Ok(code) => self.conn.execute(
                "UPDATE hl7_outbox SET state = 'delivered', attempts = attempts + 1, ack_code = ?2,
                     delivered_at_ms = ?3, last_error = '' WHERE report_id = ?1",
                params![report_id, code, now_ms],
            )?,
            Err(why) => self.conn.execute(
                "UPDATE hl7_outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3
                 WHERE report_id = ?1",
                params![report_id, why, retry_at_ms],
            )?,
        };
        Ok(())
    }

    /// The outbox, newest first (`undelivered`: pending ones only).
    pub fn hl7_outbox(&self, undelivered: bool, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT o.report_id, COALESCE(r.study_uid, ''), o.control_id, o.state, o.attempts, o.last_error,
                    o.ack_code, o.created_at_ms, o.next_attempt_ms, o.delivered_at_ms
             FROM hl7_outbox o LEFT JOIN reports r ON r.report_id = o.report_id
             WHERE (?1 = 0 OR o.state = 'pending') ORDER BY o.created_at_ms DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![undelivered, limit], |r| {
                Ok(OutboxRow {
                    report_id: r.get(0)?,
                    study_uid: r.get(1)?,
                    control_id: r.get(2)?,
                    state: r.get(3)?,
                    attempts: r.get(4)?,
                    last_error: r.get(5)?,
                    ack_code: r.get(6)?,
                    created_at_ms: r.get(7)?,
                    next_attempt_ms: r.get(8)?,
                    delivered_at_ms: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
