//! The clinic's decision to send a study the cart's quality gate flagged without a retake: who
//! decided and why, kept beside the study so the specialist reads the tracing knowing it.

use super::sql::{Conn, OptionalExtension, params};
use super::{Db, StoreError};
use serde::Serialize;
use yilian_protocol::message::QualityOverride;

/// The longest reason kept, characters.
pub const REASON_MAX_CHARS: usize = 200;

/// A recorded override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverrideRow {
    /// The clinician who decided.
    pub clinician: String,
    /// Why.
    pub reason: String,
    /// When, Unix ms (agent clock, never later than its arrival).
    pub overridden_at_ms: i64,
}

impl Db {
    /// Records a quality override sent by `device` (inside the ingest transaction). The first
    /// one counts; `Err` names why one is refused.
    pub(super) fn quality_overridden(
        tx: &Conn,
        device: &str,
        o: &QualityOverride,
        now_ms: i64,
    ) -> Result<Result<bool, String>, StoreError> {
        let clinician = o.clinician.trim();
        if clinician.is_empty() || clinician.chars().count() > 64 {
            return Ok(Err("quality override without a clinician's name".into()));
        }
        if o.reason.chars().count() > REASON_MAX_CHARS {
            return Ok(Err(format!("quality override reason over {REASON_MAX_CHARS} characters")));
        }
        if o.study_uid.is_empty() || o.study_uid.len() > 128 {
            return Ok(Err("quality override without a study".into()));
        }
        let owner: Option<String> = tx
            .query_row("SELECT device_id FROM studies WHERE study_uid = ?1", [&o.study_uid], |r| r.get(0))
            .optional()?;
        if owner.as_deref().is_some_and(|d| d != device) {
            return Ok(Err(format!("quality override for {}, a study of another device", o.study_uid)));
        }
        let n = tx.execute(
            "INSERT INTO quality_overrides (study_uid, device_id, clinician, reason, overridden_at_ms, received_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            params![o.study_uid, device, clinician, o.reason.trim(), o.overridden_at_ms.min(now_ms), now_ms],
        )?;
        if n == 1 {
            super::audit::append_clinic(
                tx,
                device,
                "quality-override",
                &o.study_uid,
                format!("sent without a retake by {clinician}: {}", o.reason.trim()),
                now_ms,
            )?;
        }
        Ok(Ok(n == 1))
    }

    /// The clinic's override of study `uid`'s quality findings, if its device sent one.
    pub fn quality_override(&self, uid: &str) -> Result<Option<OverrideRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT q.clinician, q.reason, q.overridden_at_ms FROM quality_overrides q
                 JOIN studies s ON s.study_uid = q.study_uid AND s.device_id = q.device_id
                 WHERE q.study_uid = ?1",
                [uid],
                |r| Ok(OverrideRow { clinician: r.get(0)?, reason: r.get(1)?, overridden_at_ms: r.get(2)? }),
            )
            .optional()?)
    }
}
