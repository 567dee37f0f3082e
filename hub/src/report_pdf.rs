//! The signed report as a printable PDF (A4 landscape): clinic, patient (Chinese names in an
//! embedded, subset CJK font), the clinic's question, the 12-lead tracing as vectors on the
//! standard grid at 25 mm/s and 10 mm/mV (3 × 4 leads of 2.5 s and a 10 s lead II rhythm strip),
//! the cart's measurements, the specialist's findings and conclusion, who signed and when, the
//! hub key's fingerprint and a verification code (the signed report's SHA-256).

use crate::hl7::message::vitals;
use crate::store::StudyRow;
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use yilian_protocol::message::{Report, Study};

/// Paper speed, mm/s.
pub const SPEED_MM_PER_S: f32 = 25.0;
/// Gain, mm/mV.
pub const GAIN_MM_PER_MV: f32 = 10.0;
/// The rhythm strip's length, s.
pub const STRIP_S: f32 = 10.0;

const PAGE_W_MM: f32 = 297.0;
const PAGE_H_MM: f32 = 210.0;
const LEFT_MM: f32 = 24.0;
const GRID_TOP_MM: f32 = 47.0;
const ROW_H_MM: f32 = 27.0;
const ROWS: usize = 4;

/// Where CJK fonts usually are on Debian (fonts-wqy-microhei, fonts-wqy-zenhei, fonts-noto-cjk).
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
];

/// Why no PDF could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PdfError {
    /// No usable CJK font.
    #[error("no CJK font for the report (install fonts-wqy-microhei, or give --report-font): {0}")]
    Font(String),
    /// A lead does not decode.
    #[error("lead {lead}: {reason}")]
    Lead {
        /// Lead name.
        lead: String,
        /// Why.
        reason: String,
    },
    /// The PDF writer failed.
    #[error("writing the PDF: {0}")]
    Write(String),
}

/// The report font: `path`, or the first of [`FONT_CANDIDATES`] that exists.
pub fn load_font(path: Option<&Path>) -> Result<Font, PdfError> {
    let candidates: Vec<PathBuf> = match path {
        Some(p) => vec![p.to_path_buf()],
        None => FONT_CANDIDATES.iter().map(PathBuf::from).collect(),
    };
    for p in &candidates {
        if let Ok(bytes) = std::fs::read(p) {
            return Font::new(bytes.into(), 0).ok_or_else(|| PdfError::Font(format!("{} is not a font", p.display())));
        }
    }
    Err(PdfError::Font(candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")))
}

/// The verification code printed on the report: the start of the signed envelope's SHA-256,
/// grouped for reading aloud on the phone.
pub fn verification_code(envelope: &[u8]) -> String {
    let h = hex::encode(Sha256::digest(envelope)).to_uppercase();
    h.as_bytes()[..16].chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
}

fn pt(mm: f32) -> f32 {
    mm * 72.0 / 25.4
}

fn stroke(surface: &mut Surface, color: (u8, u8, u8), width_mm: f32, lines: impl FnOnce(&mut PathBuilder)) {
    let mut pb = PathBuilder::new();
    lines(&mut pb);
    if let Some(path) = pb.finish() {
        surface.set_fill(None);
        surface.set_stroke(Some(Stroke {
            paint: rgb::Color::new(color.0, color.1, color.2).into(),
            width: pt(width_mm),
            ..Default::default()
        }));
        surface.draw_path(&path);
    }
}

fn text(surface: &mut Surface, font: &Font, x_mm: f32, y_mm: f32, size_pt: f32, s: &str) {
    if s.is_empty() {
        return;
    }
    surface.set_stroke(None);
    surface.set_fill(Some(Fill::default()));
    surface.draw_text(Point::from_xy(pt(x_mm), pt(y_mm)), font.clone(), size_pt, s, false, TextDirection::Auto);
}

/// Breaks `s` into lines of at most `width` columns (a CJK character counts two).
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for para in s.lines() {
        let (mut line, mut cols) = (String::new(), 0);
        for c in para.chars() {
            let w = if c.is_ascii() { 1 } else { 2 };
            if cols + w > width {
                out.push(std::mem::take(&mut line));
                cols = 0;
            }
            line.push(c);
            cols += w;
        }
        out.push(line);
    }
    out
}

/// The grid: 1 mm and 5 mm lines over `w` × `h` mm at (`x`, `y`).
fn grid(surface: &mut Surface, x: f32, y: f32, w: f32, h: f32) {
    for (step, color, width) in [(1.0, (250, 210, 210), 0.08), (5.0, (235, 150, 150), 0.2)] {
        stroke(surface, color, width, |pb| {
            let mut gx = 0.0;
            while gx <= w + 0.01 {
                pb.move_to(pt(x + gx), pt(y));
                pb.line_to(pt(x + gx), pt(y + h));
                gx += step;
            }
            let mut gy = 0.0;
            while gy <= h + 0.01 {
                pb.move_to(pt(x), pt(y + gy));
                pb.line_to(pt(x + w), pt(y + gy));
                gy += step;
            }
        });
    }
}

/// One lead from `from_s` to `to_s`, drawn from `x` on the baseline `y` (mm).
fn trace(surface: &mut Surface, samples_uv: &[f32], rate_hz: f32, from_s: f32, to_s: f32, x: f32, y: f32) {
    let first = (from_s * rate_hz) as usize;
    let last = ((to_s * rate_hz) as usize).min(samples_uv.len());
    if first >= last {
        return;
    }
    stroke(surface, (0, 0, 0), 0.25, |pb| {
        for (i, v) in samples_uv[first..last].iter().enumerate() {
            let px = pt(x + (i as f32 / rate_hz) * SPEED_MM_PER_S);
            let py = pt(y - v / 1000.0 * GAIN_MM_PER_MV);
            if i == 0 { pb.move_to(px, py) } else { pb.line_to(px, py) }
        }
    });
}

/// The 1 mV, 200 ms calibration pulse left of a row, ending at `x`.
fn calibration(surface: &mut Surface, x: f32, y: f32) {
    stroke(surface, (0, 0, 0), 0.25, |pb| {
        pb.move_to(pt(x - 7.0), pt(y));
        pb.line_to(pt(x - 6.0), pt(y));
        pb.line_to(pt(x - 6.0), pt(y - GAIN_MM_PER_MV));
        pb.line_to(pt(x - 1.0), pt(y - GAIN_MM_PER_MV));
        pb.line_to(pt(x - 1.0), pt(y));
        pb.line_to(pt(x), pt(y));
    });
}

/// Everything the report shows besides the study: who signed, with which hub key.
pub struct Signature<'a> {
    /// The hub key's id (fingerprint).
    pub hub_key_id: &'a str,
    /// The signed report envelope (its SHA-256 gives the verification code).
    pub envelope: &'a [u8],
    /// The hub's name, printed as the issuing centre.
    pub centre: &'a str,
}

/// What prints reports at this hub: the CJK font, the centre's name and the signing hub key's id.
#[derive(Clone)]
pub struct Printer {
    /// The CJK font, loaded once at start.
    pub font: Font,
    /// The issuing centre, printed in the header.
    pub centre: String,
    /// The hub key's id, printed beside the verification code.
    pub hub_key_id: String,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer").field("centre", &self.centre).field("hub_key_id", &self.hub_key_id).finish()
    }
}

impl Printer {
    /// Renders `report` on `study` (signed as `envelope`) off the async workers.
    pub async fn render(
        &self,
        row: StudyRow,
        study: Study,
        report: Report,
        envelope: Vec<u8>,
    ) -> Result<Vec<u8>, PdfError> {
        let p = self.clone();
        tokio::task::spawn_blocking(move || {
            let sig = Signature { hub_key_id: &p.hub_key_id, envelope: &envelope, centre: &p.centre };
            render(&p.font, &row, &study, &report, &sig)
        })
        .await
        .map_err(|e| PdfError::Write(format!("the render task failed: {e}")))?
    }
}

/// Renders the report.
pub fn render(
    font: &Font,
    row: &StudyRow,
    study: &Study,
    report: &Report,
    sig: &Signature<'_>,
) -> Result<Vec<u8>, PdfError> {
    let mut leads: Vec<(String, Vec<f32>)> = Vec::new();
    for l in &study.leads {
        let s = l.decode().map_err(|e| PdfError::Lead { lead: l.lead.clone(), reason: e.to_string() })?;
        let scale = (l.resolution_nv / 1000.0) as f32;
        leads.push((l.lead.clone(), s.iter().map(|v| *v as f32 * scale).collect()));
    }
    let rate = study.sample_rate_hz.max(1) as f32;
    let mut doc = Document::new();
    let settings = PageSettings::from_wh(pt(PAGE_W_MM), pt(PAGE_H_MM)).ok_or_else(|| PdfError::Write("page".into()))?;
    let mut page = doc.start_page_with(settings);
    let mut s = page.surface();
    let f = font;

    // Header: who, what was asked.
    text(&mut s, f, LEFT_MM, 14.0, 15.0, &format!("心电图诊断报告  ECG report · {}", sig.centre));
    let sex = match row.sex.as_str() {
        "female" => "女 F",
        "male" => "男 M",
        _ => "未知",
    };
    let born = row.birth_date.clone().unwrap_or_default();
    text(
        &mut s,
        f,
        LEFT_MM,
        22.0,
        10.0,
        &format!(
            "姓名 Name: {}    性别 Sex: {sex}    出生日期 Born: {born}    编号 ID: {}",
            row.patient_name, row.patient_id
        ),
    );
    let acquired = crate::http::console::local_time(row.acquired_at_ms);
    text(
        &mut s,
        f,
        LEFT_MM,
        28.0,
        10.0,
        &format!(
            "卫生院 Clinic: {}    设备 Device: {} {}    采集 Recorded: {acquired}",
            row.site_id, row.device_id, study.device_model
        ),
    );
    text(&mut s, f, LEFT_MM, 34.0, 10.0, &format!("会诊问题 Question: {}", row.question));
    let measured: Vec<String> = vitals(&study.measurements)
        .iter()
        .map(|v| {
            format!(
                "{} {} {}",
                v.name,
                if v.value.fract() == 0.0 { format!("{:.0}", v.value) } else { format!("{:.1}", v.value) },
                v.unit
            )
        })
        .collect();
    text(&mut s, f, LEFT_MM, 40.0, 9.0, &format!("25 mm/s  10 mm/mV  {rate:.0} Hz    {}", measured.join("   ")));

    // The tracing.
    let width = STRIP_S * SPEED_MM_PER_S;
    grid(&mut s, LEFT_MM, GRID_TOP_MM, width, ROW_H_MM * ROWS as f32);
    let find = |name: &str| leads.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice());
    let standard = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];
    let has_12 = standard.iter().flatten().all(|n| find(n).is_some());
    for r in 0..ROWS {
        let base = GRID_TOP_MM + ROW_H_MM * r as f32 + ROW_H_MM * 0.6;
        calibration(&mut s, LEFT_MM, base);
        if let (true, Some(row_leads)) = (has_12, standard.get(r)) {
            for (c, name) in row_leads.iter().enumerate() {
                let from = c as f32 * STRIP_S / 4.0;
                let x = LEFT_MM + from * SPEED_MM_PER_S;
                if let Some(v) = find(name) {
                    trace(&mut s, v, rate, from, from + STRIP_S / 4.0, x, base);
                }
                text(&mut s, f, x + 1.0, base - ROW_H_MM * 0.45, 8.0, name);
                if c > 0 {
                    stroke(&mut s, (0, 0, 0), 0.3, |pb| {
                        pb.move_to(pt(x), pt(base - 3.0));
                        pb.line_to(pt(x), pt(base + 3.0));
                    });
                }
            }
        } else {
            // The rhythm strip (lead II), or without the 12 standard leads, one lead per row.
            let (name, v) = if has_12 {
                ("II".to_string(), find("II"))
            } else {
                match leads.get(r) {
                    Some((n, v)) => (n.clone(), Some(v.as_slice())),
                    None => (String::new(), None),
                }
            };
            if let Some(v) = v {
                trace(&mut s, v, rate, 0.0, STRIP_S, LEFT_MM, base);
                text(&mut s, f, LEFT_MM + 1.0, base - ROW_H_MM * 0.45, 8.0, &name);
            }
        }
    }

    // The specialist's words and signature.
    let mut y = GRID_TOP_MM + ROW_H_MM * ROWS as f32 + 7.0;
    let mut block = |label: &str, body: &str, y: &mut f32| {
        let lines = wrap(body, 150);
        for (i, l) in lines.iter().enumerate() {
            let line = if i == 0 { format!("{label}: {l}") } else { format!("    {l}") };
            text(&mut s, f, LEFT_MM, *y, 10.0, &line);
            *y += 4.8;
        }
    };
    block("所见 Findings", &report.findings, &mut y);
    block("结论 Conclusion", &report.conclusion, &mut y);
    let signed = crate::http::console::local_time(report.reported_at_ms);
    text(
        &mut s,
        f,
        LEFT_MM,
        PAGE_H_MM - 9.0,
        8.5,
        &format!(
            "报告医师 Specialist: {}    报告时间 Signed: {signed}    报告编号 Report: {}    签名密钥 Hub key: {}    验证码 Verification: {}",
            report.specialist_name,
            report.report_id,
            sig.hub_key_id,
            verification_code(sig.envelope)
        ),
    );
    s.finish();
    page.finish();
    doc.finish().map_err(|e| PdfError::Write(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wrap_by_display_width_and_codes_are_stable() {
        assert_eq!(wrap("窦性心律正常", 6), ["窦性心", "律正常"]);
        assert_eq!(wrap("ab\ncd", 10), ["ab", "cd"]);
        let code = verification_code(b"envelope");
        assert_eq!(code.len(), 19);
        assert_eq!(code, verification_code(b"envelope"));
        assert_ne!(code, verification_code(b"envelope2"));
    }
}
