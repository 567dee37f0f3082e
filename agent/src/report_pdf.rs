//! Each received report's printable PDF, fetched from the hub over HTTPS with a request signed
//! by this device's key, checked against the hub's signature, and kept beside the report with
//! that signature, so it can be verified again later, offline (`yilian-agent verify-report`).

use crate::config::AgentConfig;
use crate::reports::ReportStore;
use base64::Engine;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yilian_protocol::document::{PdfSignature, fetch_statement};
use yilian_protocol::keys::PublicKey;

/// How often reports without their PDF are looked for.
pub const EVERY: Duration = Duration::from_secs(5);
/// The longest wait before trying one report's PDF again.
pub const RETRY_MAX: Duration = Duration::from_secs(600);

/// A PDF could not be fetched or did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PdfFetchError {
    /// The hub did not answer, or answered with an error.
    #[error("the hub: {0}")]
    Hub(String),
    /// The answer is not what the hub signs.
    #[error("the report PDF does not verify: {0}")]
    Invalid(String),
    /// Keys or the reports folder.
    #[error("{0}")]
    Local(String),
}

#[derive(serde::Deserialize)]
struct Answer {
    pdf: String,
    signature: PdfSignature,
}

/// Checks `pdf` against `sig` with the hub key, and that it was made for this device's report.
pub fn verify(
    sig: &PdfSignature,
    hub_key: &PublicKey,
    pdf: &[u8],
    site: &str,
    device: &str,
    report_id: &str,
) -> Result<(), PdfFetchError> {
    if sig.report_id != report_id || sig.device != device || sig.site != site {
        return Err(PdfFetchError::Invalid(format!(
            "signed for {} of {}/{}, not {report_id} of {site}/{device}",
            sig.report_id, sig.site, sig.device
        )));
    }
    sig.verify(hub_key, pdf).map_err(|e| PdfFetchError::Invalid(e.to_string()))
}

/// Fetches, verifies and keeps the PDF of `report_id`.
pub async fn fetch(cfg: &AgentConfig, http: &reqwest::Client, hub: &str, report_id: &str) -> Result<(), PdfFetchError> {
    let (key, hub_key) = crate::run::load_keys(cfg).map_err(|e| PdfFetchError::Local(e.to_string()))?;
    let at_ms = crate::clock::now_ms();
    let sig = hex::encode(key.sign(&fetch_statement(&cfg.device, report_id, at_ms)));
    let url = format!(
        "{}/api/device-reports/{}/{}?at_ms={at_ms}&sig={sig}",
        hub.trim_end_matches('/'),
        cfg.device,
        report_id
    );
    let resp = http.get(&url).send().await.map_err(|e| PdfFetchError::Hub(e.to_string()))?;
    if !resp.status().is_success() {
        let status = resp.status();
        return Err(PdfFetchError::Hub(format!("HTTP {status}: {}", resp.text().await.unwrap_or_default())));
    }
    let answer: Answer = resp.json().await.map_err(|e| PdfFetchError::Invalid(e.to_string()))?;
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(&answer.pdf)
        .map_err(|e| PdfFetchError::Invalid(e.to_string()))?;
    verify(&answer.signature, &hub_key, &pdf, &cfg.site, &cfg.device, report_id)?;
    let path = ReportStore::new(&cfg.reports_dir)
        .store_pdf(report_id, &pdf, &answer.signature)
        .map_err(|e| PdfFetchError::Local(e.to_string()))?;
    info!(report = report_id, path = %path.display(), bytes = pdf.len(), "report PDF kept");
    Ok(())
}

/// Fetches the PDF of every held report that lacks one, every [`EVERY`], until `shutdown`.
pub async fn run(cfg: AgentConfig, hub: String, shutdown: CancellationToken) {
    let pem = cfg.ca_certificate.as_ref().and_then(|p| std::fs::read(p).ok());
    let http =
        match crate::enrol::county_client(pem.as_deref()).and_then(|b| b.timeout(Duration::from_secs(60)).build()) {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, "report PDFs: no HTTPS client");
                return;
            }
        };
    let store = ReportStore::new(&cfg.reports_dir);
    let mut tick = tokio::time::interval(EVERY);
    // After a failure the next try waits longer (up to RETRY_MAX), so an offline clinic or a hub
    // without a font is not asked every few seconds; a new report is still fetched at once.
    let mut retry: std::collections::HashMap<String, (tokio::time::Instant, Duration)> = Default::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        for id in store.missing_pdfs() {
            if retry.get(&id).is_some_and(|(at, _)| *at > now) {
                continue;
            }
            match fetch(&cfg, &http, &hub, &id).await {
                Ok(()) => {
                    retry.remove(&id);
                }
                Err(e) => {
                    let wait = retry.get(&id).map_or(EVERY, |(_, w)| (*w * 2).min(RETRY_MAX));
                    warn!(report = %id, error = %e, retry_in_s = wait.as_secs(), "report PDF not fetched now");
                    retry.insert(id, (now + wait, wait));
                    // The hub is likely unreachable for the others too.
                    break;
                }
            }
        }
    }
}

/// `verify-report`: checks `pdf_path` against the hub signature kept beside it, with the hub
/// key this agent pins. Returns the signature on success.
pub fn verify_file(cfg: &AgentConfig, pdf_path: &Path) -> Result<PdfSignature, PdfFetchError> {
    let (_, hub_key) = crate::run::load_keys(cfg).map_err(|e| PdfFetchError::Local(e.to_string()))?;
    let pdf = std::fs::read(pdf_path).map_err(|e| PdfFetchError::Local(format!("{}: {e}", pdf_path.display())))?;
    let sig_path = pdf_path.with_extension("pdf.sig.json");
    let sig: PdfSignature =
        std::fs::read(&sig_path).map_err(|e| PdfFetchError::Local(format!("{}: {e}", sig_path.display()))).and_then(
            |b| serde_json::from_slice(&b).map_err(|e| PdfFetchError::Invalid(format!("{}: {e}", sig_path.display()))),
        )?;
    verify(&sig, &hub_key, &pdf, &cfg.site, &cfg.device, &sig.report_id.clone())?;
    Ok(sig)
}
