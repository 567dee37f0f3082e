//! The hub's pre-read of each ECG study: which studies still need one, and recording its flags.
//! A flag raises the study to STAT and keeps the priority the clinic sent, so the specialist
//! sees why and can set it back ([`Db::set_priority`]).

use super::sql::params;
use super::{Db, StoreError};
use serde::{Deserialize, Serialize};
use yilian_protocol::message::Priority;

/// One pre-read flag as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrereadFlag {
    /// What it is about (`st_elevation`, `bradycardia`, `tachycardia`, `pause`).
    pub code: String,
    /// The reason in Simplified Chinese.
    pub zh: String,
    /// The reason in English.
    pub en: String,
}

impl Db {
    /// ECG studies waiting for the pre-read (unreported ones only), oldest first.
    pub fn preread_due(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT study_uid FROM studies WHERE preread_at_ms IS NULL AND reported_at_ms IS NULL
             ORDER BY received_at_ms LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(rows)
    }

    /// Records the pre-read of `uid`: its flags and its summary (JSON, for comparing a later
    /// ECG). With flags, a study not already STAT is raised to STAT (audited, with the
    /// reasons). Returns true when it was raised.
    pub fn set_preread(
        &mut self,
        uid: &str,
        flags: &[PrereadFlag],
        summary: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let json = serde_json::to_string(flags).map_err(|e| StoreError::Damaged(e.to_string()))?;
        tx.execute(
            "UPDATE studies SET preread_at_ms = ?2, preread_flags = ?3, preread_summary = coalesce(?4, preread_summary)
             WHERE study_uid = ?1",
            params![uid, now_ms, json, summary],
        )?;
        let stat = Priority::Stat.rank();
        let raised = !flags.is_empty()
            && tx.execute(
                "UPDATE studies SET priority_sent = priority, priority = ?2
                 WHERE study_uid = ?1 AND priority > ?2 AND reported_at_ms IS NULL",
                params![uid, stat],
            )? == 1;
        if raised {
            let reasons: Vec<&str> = flags.iter().map(|f| f.en.as_str()).collect();
            super::audit::append(
                &tx,
                &super::audit::AuditEvent {
                    at_ms: now_ms,
                    user: "hub".into(),
                    role: super::audit::ROLE_UNKNOWN.into(),
                    action: "preread-raised".into(),
                    object: uid.to_string(),
                    result: super::audit::RESULT_OK.into(),
                    source: super::audit::SOURCE_LOCAL.into(),
                    detail: format!("raised to stat: {}", reasons.join("; ")),
                },
            )?;
        }
        tx.commit()?;
        Ok(raised)
    }

    /// Sets the priority of an unreported ECG study (the specialist overrides the pre-read).
    /// False when there is no such study waiting.
    pub fn set_priority(&mut self, uid: &str, priority: Priority) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE studies SET priority = ?2 WHERE study_uid = ?1 AND reported_at_ms IS NULL",
            params![uid, priority.rank()],
        )? == 1)
    }
}
