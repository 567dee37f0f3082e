//! Critical results (suspected STEMI, VT, complete heart block): a report the specialist marked
//! critical must be acknowledged by a named clinician at the clinic; one that is not, within the
//! escalation time, is escalated (highlighted in the console and sent to the hospital's
//! notification webhook).

use super::sql::{Conn, OptionalExtension, params};
use super::{Db, StoreError};
use serde::Serialize;
use yilian_protocol::message::{CriticalAck, CriticalNotice};

/// One critical result and where its loop stands.
#[derive(Debug, Clone, Serialize)]
pub struct CriticalRow {
    /// The report.
    pub report_id: String,
    /// Its study.
    pub study_uid: String,
    /// The clinic.
    pub site_id: String,
    /// Its device.
    pub device_id: String,
    /// The patient.
    pub patient_name: String,
    /// The conclusion.
    pub conclusion: String,
    /// The reporting specialist.
    pub specialist_name: String,
    /// Marked (signed), Unix ms.
    pub marked_at_ms: i64,
    /// The clinician who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When, Unix ms.
    pub acknowledged_at_ms: Option<i64>,
    /// When it was escalated, Unix ms.
    pub escalated_at_ms: Option<i64>,
}

impl Db {
    /// Critical results, newest first (`open`: not yet acknowledged only).
    pub fn critical_results(&self, open: bool) -> Result<Vec<CriticalRow>, StoreError> {
        let mut rows: Vec<CriticalRow> = {
            let mut stmt = self.conn.prepare(
                "SELECT report_id, study_uid, site_id, device_id, marked_at_ms, acknowledged_by,
                        acknowledged_at_ms, escalated_at_ms
                 FROM critical_results WHERE (?1 = 0 OR acknowledged_at_ms IS NULL) ORDER BY marked_at_ms DESC",
            )?;
            stmt.query_map([open], |r| {
                Ok(CriticalRow {
                    report_id: r.get(0)?,
                    study_uid: r.get(1)?,
                    site_id: r.get(2)?,
                    device_id: r.get(3)?,
                    patient_name: String::new(),
                    conclusion: String::new(),
                    specialist_name: String::new(),
                    marked_at_ms: r.get(4)?,
                    acknowledged_by: r.get(5)?,
                    acknowledged_at_ms: r.get(6)?,
                    escalated_at_ms: r.get(7)?,
                })
            })?
            .collect::<Result<_, _>>()?
        };
        // Patient and conclusion as signed (sealed at rest, so read through the report).
        for row in &mut rows {
            if let Some(r) = self.report_of(&row.study_uid)? {
                (row.patient_name, row.conclusion, row.specialist_name) =
                    (r.patient_name, r.conclusion, r.specialist_name);
            }
        }
        Ok(rows)
    }

    /// Unacknowledged, unescalated critical results marked at or before `due_ms`.
    pub fn critical_due(&self, due_ms: i64) -> Result<Vec<CriticalRow>, StoreError> {
        Ok(self
            .critical_results(true)?
            .into_iter()
            .filter(|c| c.escalated_at_ms.is_none() && c.marked_at_ms <= due_ms)
            .collect())
    }

    /// The notice a clinic gets for a critical result (None: not a critical result).
    pub fn critical_notice(&self, report_id: &str) -> Result<Option<(CriticalRow, CriticalNotice)>, StoreError> {
        let study: Option<String> = self
            .conn
            .query_row("SELECT study_uid FROM critical_results WHERE report_id = ?1", [report_id], |r| r.get(0))
            .optional()?;
        let Some(study) = study else { return Ok(None) };
        Ok(self.critical_results(false)?.into_iter().find(|c| c.study_uid == study).map(|c| {
            let notice = CriticalNotice {
                report_id: c.report_id.clone(),
                study_uid: c.study_uid.clone(),
                patient_name: c.patient_name.clone(),
                conclusion: c.conclusion.clone(),
                specialist_name: c.specialist_name.clone(),
                reported_at_ms: c.marked_at_ms,
            };
            (c, notice)
        }))
    }

    /// Unacknowledged critical results of one device (or all) with the notice each clinic gets.
    pub fn open_critical_notices(
        &self,
        device: Option<&str>,
    ) -> Result<Vec<(CriticalRow, CriticalNotice)>, StoreError> {
        let mut out = Vec::new();
        for c in self.critical_results(true)? {
            if device.is_none_or(|d| d == c.device_id)
                && let Some(n) = self.critical_notice(&c.report_id)?
            {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Records a clinician's acknowledgement sent by `device` (inside the ingest transaction).
    /// The first acknowledgement counts; `Err` names why one is refused.
    pub(super) fn critical_acknowledged(
        tx: &Conn,
        device: &str,
        ack: &CriticalAck,
        now_ms: i64,
    ) -> Result<Result<bool, String>, StoreError> {
        let row: Option<(String, String, Option<String>)> = tx
            .query_row(
                "SELECT device_id, study_uid, acknowledged_by FROM critical_results WHERE report_id = ?1",
                [&ack.report_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((owner, study, by)) = row else {
            return Ok(Err(format!("critical acknowledgement for {}, which is not a critical result", ack.report_id)));
        };
        if owner != device || study != ack.study_uid {
            return Ok(Err(format!(
                "critical acknowledgement for {}, which was not sent to this device",
                ack.report_id
            )));
        }
        let clinician = ack.clinician.trim();
        if clinician.is_empty() || clinician.chars().count() > 64 {
            return Ok(Err("critical acknowledgement without a clinician's name".into()));
        }
        if by.is_some() {
            return Ok(Ok(false));
        }
        tx.execute(
            "UPDATE critical_results SET acknowledged_by = ?2, acknowledged_at_ms = ?3 WHERE report_id = ?1",
            params![ack.report_id, clinician, ack.acknowledged_at_ms.min(now_ms)],
        )?;
        super::audit::append_clinic(
            tx,
            device,
            "critical-acknowledged",
            &ack.report_id,
            format!("by {clinician} at the clinic, {} ms", ack.acknowledged_at_ms),
            now_ms,
        )?;
        Ok(Ok(true))
    }

    /// Records that `report_id` was escalated, with an audit entry.
    pub fn critical_escalated(&mut self, report_id: &str, detail: &str, now_ms: i64) -> Result<(), StoreError> {
        self.in_transaction(|db| {
            db.conn.execute(
                "UPDATE critical_results SET escalated_at_ms = ?2 WHERE report_id = ?1 AND escalated_at_ms IS NULL",
                params![report_id, now_ms],
            )?;
            db.audit("hub", "critical-escalated", report_id, detail, now_ms)
        })
    }
}
