//! Received diagnosis reports, kept at the clinic: one JSON file (the report and the signed
//! envelope it came in, for later verification) and one human-readable text file each.

use jiff::Timestamp;
use jiff::tz::{self, TimeZone};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};
use yilian_protocol::message::Report;

/// The reports folder.
#[derive(Debug, Clone)]
pub struct ReportStore {
    dir: PathBuf,
}

/// Storing a report failed.
#[derive(Debug, thiserror::Error)]
#[error("storing report {path}: {source}")]
pub struct ReportError {
    /// File.
    pub path: PathBuf,
    /// Cause.
    pub source: std::io::Error,
}

#[derive(Serialize)]
struct StoredReport<'a> {
    report: &'a Report,
    /// The signed envelope as received, hex, so anyone can verify it later with the hub's key.
    envelope_hex: String,
}

/// China Standard Time (UTC+8, no daylight saving): what clinic staff read on the printout.
fn local_time(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned_datetime(TimeZone::fixed(tz::offset(8))).strftime("%Y-%m-%d %H:%M:%S (UTC+8)").to_string())
        .unwrap_or_else(|_| format!("{ms} ms"))
}

/// The printable text of a report (Chinese first, English labels beside).
pub fn render_text(r: &Report) -> String {
    format!(
        "医联 Yilian 心电图诊断报告 / ECG consultation report\n\
         报告编号 Report:      {}\n\
         检查编号 Study:       {}\n\
         患者 Patient:         {}\n\
         诊断医师 Specialist:  {} ({})\n\
         报告时间 Reported:    {}\n\
         \n所见 Findings:\n{}\n\
         \n结论 Conclusion:\n{}\n",
        r.report_id,
        r.study_uid,
        r.patient_name,
        r.specialist_name,
        r.specialist_id,
        local_time(r.reported_at_ms),
        r.findings,
        r.conclusion
    )
}

impl ReportStore {
    /// A store in `dir` (created on first use).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    /// File stem for a report id: ids come from the hub, but never trust them as paths.
    fn stem(report_id: &str) -> String {
        report_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(64)
            .collect()
    }

    /// Path of the JSON file of a report.
    pub fn json_path(&self, report_id: &str) -> PathBuf {
        self.dir.join(format!("{}.json", Self::stem(report_id)))
    }

    /// Path of a report's printable PDF, and of the hub's signature over it beside it.
    pub fn pdf_paths(&self, report_id: &str) -> (PathBuf, PathBuf) {
        let stem = Self::stem(report_id);
        (self.dir.join(format!("{stem}.pdf")), self.dir.join(format!("{stem}.pdf.sig.json")))
    }

    /// Reports held without their PDF yet (ids), oldest file first.
    pub fn missing_pdfs(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut held: Vec<(std::time::SystemTime, String)> = rd
            .flatten()
            .filter(|e| {
                e.path().extension().is_some_and(|x| x == "json") && !e.path().to_string_lossy().ends_with(".sig.json")
            })
            .filter_map(|e| {
                let bytes = fs::read(e.path()).ok()?;
                let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
                let id = v["report"]["report_id"].as_str()?.to_string();
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                (!self.pdf_paths(&id).0.exists()).then_some((modified, id))
            })
            .collect();
        held.sort();
        held.into_iter().map(|(_, id)| id).collect()
    }

    /// Keeps a report's PDF and the hub's signature over it (the signature first, so a PDF is
    /// never there without it).
    pub fn store_pdf(
        &self,
        report_id: &str,
        pdf: &[u8],
        signature: &yilian_protocol::document::PdfSignature,
    ) -> Result<PathBuf, ReportError> {
        let (pdf_path, sig_path) = self.pdf_paths(report_id);
        let json = serde_json::to_vec_pretty(signature)
            .map_err(|e| ReportError { path: sig_path.clone(), source: std::io::Error::other(e) })?;
        crate::durable::write_atomic(&sig_path, &json)
            .map_err(|source| ReportError { path: sig_path.clone(), source })?;
        crate::durable::write_atomic(&pdf_path, pdf)
            .map_err(|source| ReportError { path: pdf_path.clone(), source })?;
        Ok(pdf_path)
    }

    /// Stores a verified report with its envelope; storing the same report again is harmless.
    pub fn store(&self, report: &Report, envelope: &[u8]) -> Result<PathBuf, ReportError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ReportError { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(err(&self.dir))?;
        let json_path = self.json_path(&report.report_id);
        let json = serde_json::to_vec_pretty(&StoredReport { report, envelope_hex: hex::encode(envelope) })
            .map_err(|e| ReportError { path: json_path.clone(), source: std::io::Error::other(e) })?;
        let txt_path = json_path.with_extension("txt");
        crate::durable::write_atomic(&txt_path, render_text(report).as_bytes()).map_err(err(&txt_path))?;
        crate::durable::write_atomic(&json_path, &json).map_err(err(&json_path))?;
        Ok(json_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_text_keeps_chinese_and_shows_local_time() {
        let r = Report {
            report_id: "R-1/../x".into(),
            study_uid: "s".into(),
            patient_name: "张伟".into(),
            specialist_id: "li".into(),
            specialist_name: "李医生".into(),
            findings: "窦性心律，心率72次/分".into(),
            conclusion: "正常心电图".into(),
            reported_at_ms: 0,
        };
        let dir = tempfile::tempdir().expect("tmp");
        let store = ReportStore::new(dir.path());
        let p = store.store(&r, b"env").expect("store");
        assert_eq!(p.parent(), Some(dir.path()), "id cannot escape the folder");
        let txt = fs::read_to_string(p.with_extension("txt")).expect("txt");
        assert!(
            txt.contains("张伟") && txt.contains("正常心电图") && txt.contains("1970-01-01 08:00:00 (UTC+8)"),
            "{txt}"
        );
    }
}
