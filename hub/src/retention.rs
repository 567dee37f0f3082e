//! Retention: how long each kind of data is kept, and the sweep that deletes what is older, in
//! batches, writing one audit entry (user `system`) per kind with what it deleted.
//!
//! Defaults: ECG studies with their reports, and image studies, are medical records. China's
//! rules on medical records (医疗机构病历管理规定, 2013) keep outpatient records at least 15 years
//! and inpatient records at least 30, and a township consultation may belong to either, so both
//! are kept 30 years. Monitoring stream chunks are raw telemetry that no report rests on; they are
//! kept 90 days. Cart printer output (it names patients) is kept one year.
//!
//! A deleted envelope keeps its row in `messages` (device, seq, digest, times) with the envelope
//! bytes emptied: the row is the dedupe key, so a late resend is still recognised as a duplicate
//! and not stored again, and it holds no patient data.

use crate::store::{Db, StoreError};
use std::time::Duration;

/// Days kept, per kind of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Monitoring stream chunks and declared stream gaps.
    pub stream_days: u32,
    /// Lines the carts printed.
    pub device_output_days: u32,
    /// ECG studies, their parts and their reports.
    pub studies_days: u32,
    /// Image studies: chunks, instances, the image store's files, and their reports.
    pub images_days: u32,
    /// Messages of pending devices held in quarantine (kept for the security officer; never
    /// clinical data, and an approved device sends its own again).
    pub quarantine_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            stream_days: 90,
            device_output_days: 365,
            studies_days: 30 * 365,
            images_days: 30 * 365,
            quarantine_days: 30,
        }
    }
}

/// The kinds of data, as the audit log names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monitoring stream chunks.
    Stream,
    /// Printed lines.
    DeviceOutput,
    /// ECG studies.
    Studies,
    /// Image studies.
    Images,
    /// Quarantined messages of pending devices.
    Quarantine,
}

impl Kind {
    /// Every kind, in sweep order.
    pub const ALL: [Kind; 5] = [Kind::Stream, Kind::DeviceOutput, Kind::Studies, Kind::Images, Kind::Quarantine];

    /// The audit log's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stream => "stream chunks",
            Kind::DeviceOutput => "device output",
            Kind::Studies => "ECG studies",
            Kind::Images => "image studies",
            Kind::Quarantine => "quarantined messages",
        }
    }

    fn days(self, r: &Retention) -> u32 {
        match self {
            Kind::Stream => r.stream_days,
            Kind::DeviceOutput => r.device_output_days,
            Kind::Studies => r.studies_days,
            Kind::Images => r.images_days,
            Kind::Quarantine => r.quarantine_days,
        }
    }
}

/// Rows deleted per transaction, so a first sweep over years of data never holds the store's
/// thread (and ingest) for long.
pub const BATCH: usize = 500;
/// How often the hub sweeps.
pub const INTERVAL: Duration = Duration::from_secs(60 * 60);

/// What one sweep deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Per kind: how many were deleted.
    pub deleted: Vec<(Kind, u64)>,
    /// Image studies deleted from the database whose files the image store must delete.
    pub image_studies: Vec<String>,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Deletes everything older than its kind's limit, batch by batch, and audits each kind.
pub fn sweep(db: &mut Db, policy: &Retention, now_ms: i64) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    for kind in Kind::ALL {
        let days = kind.days(policy);
        let cutoff = now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS));
        let mut total = 0u64;
        loop {
            let (n, uids) = db.delete_expired(kind, cutoff, BATCH)?;
            total += n;
            swept.image_studies.extend(uids);
            if n < BATCH as u64 {
                break;
            }
        }
        if total > 0 {
            let detail = format!("{total} deleted: received before {cutoff} (Unix ms), older than {days} days");
            db.audit("system", "retention delete", kind.as_str(), &detail, now_ms)?;
            tracing::info!(kind = kind.as_str(), deleted = total, days, "retention: expired data deleted");
            swept.deleted.push((kind, total));
        }
    }
    Ok(swept)
}
