//! Escalation of critical results nobody at the clinic has acknowledged: after
//! [`CriticalConfig::escalate_after`] each one is sent once to the hospital's notification
//! webhook (its SMS or phone gateway), audited, and highlighted in the console. Until the webhook
//! takes it (2xx), it is tried again at every poll.

use crate::clock::now_ms;
use crate::store::Store;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// When and where critical results are escalated.
#[derive(Debug, Clone)]
pub struct CriticalConfig {
    /// How long a critical result may wait for a clinician's acknowledgement.
    pub escalate_after: Duration,
    /// Where escalations are POSTed as JSON (none: highlighted in the console only).
    pub webhook: Option<String>,
    /// A CA certificate (PEM) for an https webhook.
    pub webhook_ca: Option<Vec<u8>>,
    /// How often to look.
    pub poll: Duration,
}

impl Default for CriticalConfig {
    fn default() -> Self {
        Self { escalate_after: Duration::from_secs(600), webhook: None, webhook_ca: None, poll: Duration::from_secs(5) }
    }
}

/// Runs until `shutdown`.
pub async fn run(store: Store, cfg: CriticalConfig, shutdown: CancellationToken) {
    let mut http = reqwest::Client::builder().use_rustls_tls().timeout(Duration::from_secs(15));
    if let Some(pem) = &cfg.webhook_ca {
        match reqwest::Certificate::from_pem(pem) {
            Ok(c) => http = http.add_root_certificate(c),
            Err(e) => warn!(error = %e, "critical webhook CA is not PEM"),
        }
    }
    let http = match http.build() {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "critical results: no HTTP client; escalations are shown in the console only");
            reqwest::Client::new()
        }
    };
    let after_ms = cfg.escalate_after.as_millis() as i64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.poll) => {}
        }
        let now = now_ms();
        let due = match store.call(move |db| db.critical_due(now - after_ms)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                warn!(error = %e, "critical results: cannot read");
                continue;
            }
            Err(_) => return,
        };
        for c in due {
            let minutes = (now - c.marked_at_ms) / 60_000;
            let detail = match &cfg.webhook {
                Some(url) => {
                    let body = serde_json::json!({
                        "event": "critical-result-unacknowledged",
                        "report_id": c.report_id,
                        "study_uid": c.study_uid,
                        "site": c.site_id,
                        "device": c.device_id,
                        "patient_name": c.patient_name,
                        "conclusion": c.conclusion,
                        "marked_at_ms": c.marked_at_ms,
                        "minutes_unacknowledged": minutes,
                    });
                    match http.post(url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => format!("webhook {url}: {}", r.status()),
                        Ok(r) => {
                            warn!(report = %c.report_id, status = %r.status(), "critical webhook refused; will retry");
                            continue;
                        }
                        Err(e) => {
                            warn!(report = %c.report_id, error = %e, "critical webhook unreachable; will retry");
                            continue;
                        }
                    }
                }
                None => "no webhook configured; highlighted in the console".to_string(),
            };
            let (id, d) = (c.report_id.clone(), detail.clone());
            match store.call(move |db| db.critical_escalated(&id, &d, now_ms())).await {
                Ok(Ok(())) => {
                    info!(report = %c.report_id, minutes, detail, "critical result escalated: not acknowledged")
                }
                Ok(Err(e)) => warn!(error = %e, "cannot record a critical escalation"),
                Err(_) => return,
            }
        }
    }
}
