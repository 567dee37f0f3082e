//! The pre-read at the hub: every ECG study that arrives is read by `yilian_analysis` (an aid
//! for the specialist, never a diagnosis), and one with a flag (ST elevation in contiguous
//! leads, a rate under 40 or over 150 /min, a pause over 3 s) jumps the queue to STAT with its
//! reason on the worklist, whatever priority the clinic sent. Restart-safe: the store knows
//! which studies still need it.

use crate::clock::now_ms;
use crate::store::Store;
use crate::store::preread::PrereadFlag;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yilian_analysis::flags::PatientContext;
use yilian_protocol::message::{Sex, Study};

/// The pre-read of `study`, for its patient's sex and age.
pub fn preread_of(study: &Study) -> yilian_analysis::preread::PreRead {
    let leads = study.leads_uv();
    let views: Vec<(&str, &[f64])> = leads.iter().map(|(n, x)| (n.as_str(), x.as_slice())).collect();
    let birth = study.patient.birth_date.map(|d| d.to_string());
    let age = study
        .patient
        .age_years
        .map(i64::from)
        .or_else(|| crate::http::console::age_years(birth.as_deref(), study.acquired_at_ms));
    let patient = PatientContext {
        male: match study.patient.sex {
            Sex::Male => Some(true),
            Sex::Female => Some(false),
            _ => None,
        },
        age_years: age.and_then(|a| u16::try_from(a).ok()),
    };
    yilian_analysis::preread::analyze_for(&views, f64::from(study.sample_rate_hz), &patient)
}

/// The flags of a pre-read as the store keeps them.
pub fn flags_of(pre: &yilian_analysis::preread::PreRead) -> Vec<PrereadFlag> {
    pre.flags
        .iter()
        .cloned()
        .map(|f| PrereadFlag {
            code: serde_json::to_value(f.code).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            zh: f.zh,
            en: f.en,
        })
        .collect()
}

/// Pre-reads new studies every `poll` until `shutdown`.
pub async fn run(store: Store, poll: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        let due = match store.call(|db| db.preread_due(20)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                warn!(error = %e, "pre-read: cannot list studies");
                continue;
            }
            Err(_) => return,
        };
        for uid in due {
            let u = uid.clone();
            let study = match store.call(move |db| db.study(&u, now_ms())).await {
                Ok(Ok(Some((_, s)))) => s,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    // A study that cannot be read is recorded as read without flags, so it does
                    // not block the ones behind it.
                    warn!(study = %uid, error = %e, "pre-read: cannot read the study");
                    let u = uid.clone();
                    let _ = store.call(move |db| db.set_preread(&u, &[], None, now_ms())).await;
                    continue;
                }
                Err(_) => return,
            };
            let (flags, summary) = tokio::task::spawn_blocking(move || {
                let pre = preread_of(&study);
                (flags_of(&pre), serde_json::to_string(&pre.summary()).ok())
            })
            .await
            .unwrap_or_default();
            let (u, f) = (uid.clone(), flags.clone());
            match store.call(move |db| db.set_preread(&u, &f, summary.as_deref(), now_ms())).await {
                Ok(Ok(true)) => {
                    let reasons: Vec<&str> = flags.iter().map(|f| f.en.as_str()).collect();
                    info!(study = %uid, reasons = %reasons.join("; "), "pre-read raised the study to STAT");
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => warn!(study = %uid, error = %e, "pre-read: cannot record"),
                Err(_) => return,
            }
        }
    }
}
