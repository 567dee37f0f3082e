//! Critical results (suspected STEMI, VT, complete heart block): a report the specialist marked
//! critical must be acknowledged by a named clinician at the clinic; one that is not, within the
//! escalation time, is escalated (highlighted in the console and sent to the hospital's
//! notification webhook).

use super::{Db, StoreError};
use rusqlite::params;
use serde::Serialize;

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
                (row.patient_name, row.conclusion) = (r.patient_name, r.conclusion);
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

    /// Records that `report_id` was escalated, with an audit entry.
    pub fn critical_escalated(&mut self, report_id: &str, detail: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE critical_results SET escalated_at_ms = ?2 WHERE report_id = ?1 AND escalated_at_ms IS NULL",
            params![report_id, now_ms],
        )?;
        self.audit("hub", "critical-escalated", report_id, detail, now_ms)
    }
}
