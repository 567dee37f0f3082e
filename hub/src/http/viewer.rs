//! The ECG tracing as SVG, drawn in millimetres so the paper is exact: 1 mm minor and 5 mm major
//! grid, 25 mm/s and 10 mm/mV by default (50 mm/s, 5 and 20 mm/mV on request), a 1 mV
//! calibration pulse on every row. Every sample is a point of the polyline: nothing is smoothed
//! or decimated, so pacing spikes stay visible.
//!
//! Layout: the standard 3×4 (I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6, 2.5 s each) and a
//! lead II rhythm strip; studies without the standard 12 leads get one full-length row per lead.

use std::fmt::Write;

/// Paper speed and gain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paper {
    /// mm per second (25 or 50).
    pub speed_mm_per_s: f64,
    /// mm per mV (5, 10 or 20).
    pub gain_mm_per_mv: f64,
}

impl Paper {
    /// The paper a reader asked for: 50 mm/s or else 25; 5 or 20 mm/mV or else 10.
    pub fn chosen(speed_mm_per_s: Option<f64>, gain_mm_per_mv: Option<f64>) -> Self {
        Self {
            speed_mm_per_s: if speed_mm_per_s == Some(50.0) { 50.0 } else { 25.0 },
            gain_mm_per_mv: match gain_mm_per_mv {
                Some(g) if g == 5.0 || g == 20.0 => g,
                _ => 10.0,
            },
        }
    }
}

impl Default for Paper {
    fn default() -> Self {
        Self { speed_mm_per_s: 25.0, gain_mm_per_mv: 10.0 }
    }
}

/// One lead to draw: name, samples in µV.
pub struct Trace<'a> {
    /// Lead name.
    pub name: &'a str,
    /// Samples, µV.
    pub uv: &'a [f64],
    /// Computed by the cart from other leads: labelled with `*`, so nobody reads it as an
    /// independent electrode.
    pub derived: bool,
}

impl Trace<'_> {
    fn label(&self) -> String {
        let name = super::console::esc(self.name);
        if self.derived { format!("{name}*") } else { name }
    }
}

const ROW_MM: f64 = 30.0;
const LEFT_MM: f64 = 10.0;
const LAYOUT: [[&str; 4]; 3] = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];

fn polyline(out: &mut String, uv: &[f64], rate_hz: f64, x0: f64, y0: f64, paper: Paper) {
    classed_polyline(out, "trace", uv, rate_hz, x0, y0, paper);
}

fn classed_polyline(out: &mut String, class: &str, uv: &[f64], rate_hz: f64, x0: f64, y0: f64, paper: Paper) {
    let _ = write!(out, r#"<polyline class="{class}" points=""#);
    for (i, v) in uv.iter().enumerate() {
        let x = x0 + i as f64 / rate_hz * paper.speed_mm_per_s;
        let y = y0 - v / 1000.0 * paper.gain_mm_per_mv;
        let _ = write!(out, "{x:.3},{y:.3} ");
    }
    out.push_str(r#""/>"#);
}

fn calibration(out: &mut String, x0: f64, y0: f64, paper: Paper) {
    let h = paper.gain_mm_per_mv; // 1 mV
    let w = 0.2 * paper.speed_mm_per_s; // 200 ms
    let _ = write!(
        out,
        r#"<polyline class="cal" points="{:.3},{y0:.3} {:.3},{y0:.3} {:.3},{:.3} {:.3},{:.3} {:.3},{y0:.3} {:.3},{y0:.3}"/>"#,
        x0,
        x0 + 1.0,
        x0 + 1.0,
        y0 - h,
        x0 + 1.0 + w,
        y0 - h,
        x0 + 1.0 + w,
        x0 + 2.0 + w
    );
}

fn svg_open(out: &mut String, width: f64, height: f64, rate_hz: f64, paper: Paper) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="ecg" width="{width}mm" height="{height}mm" viewBox="0 0 {width} {height}"
 data-speed-mm-per-s="{}" data-gain-mm-per-mv="{}" data-rate-hz="{rate_hz}">
<defs><pattern id="minor" width="1" height="1" patternUnits="userSpaceOnUse"><path d="M1 0H0V1" fill="none" stroke="#f4c2c2" stroke-width="0.05"/></pattern>
<pattern id="major" width="5" height="5" patternUnits="userSpaceOnUse"><rect width="5" height="5" fill="url(#minor)"/><path d="M5 0H0V5" fill="none" stroke="#e08080" stroke-width="0.12"/></pattern></defs>
<style>.trace{{fill:none;stroke:#000;stroke-width:0.15;stroke-linejoin:round}}.prior{{fill:none;stroke:#1f5fbf;stroke-width:0.15;stroke-linejoin:round}}.cal{{fill:none;stroke:#000;stroke-width:0.15}}text{{font-size:3px;font-family:sans-serif}}text.prior{{fill:#1f5fbf;stroke:none}}</style>
<rect width="{width}" height="{height}" fill="url(#major)"/>"##,
        paper.speed_mm_per_s, paper.gain_mm_per_mv
    );
}

/// How a prior ECG is shown beside the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareMode {
    /// Each lead's row holds the new tracing, then the prior one.
    SideBySide,
    /// Each lead's row holds both tracings on the same grid, aligned on a QRS complex; the
    /// prior one in blue.
    Overlay,
}

/// One ECG of a comparison: its leads (name, µV), sampling rate, and the sample to start at.
pub struct Side<'a> {
    /// Leads: name, µV.
    pub leads: &'a [(String, Vec<f64>)],
    /// Sampling rate, Hz.
    pub rate_hz: f64,
    /// First sample drawn (a QRS-aligned start for the overlay).
    pub start: usize,
    /// The caption: when and where it was recorded.
    pub caption: &'a str,
}

/// Seconds of each tracing in a comparison row.
const COMPARE_S: f64 = 5.0;
/// The order leads are compared in.
const COMPARE_ORDER: [&str; 12] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];

/// Renders a new ECG and a prior one lead by lead on one grid (the leads both have, in the
/// standard order, then the rest), every sample drawn, at the same paper speed and gain.
pub fn render_compare(now: &Side<'_>, prior: &Side<'_>, mode: CompareMode, paper: Paper) -> String {
    fn find<'a>(side: &Side<'a>, name: &str) -> Option<&'a [f64]> {
        side.leads.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, x)| x.as_slice())
    }
    let mut names: Vec<&str> = COMPARE_ORDER.iter().copied().filter(|n| find(now, n).is_some()).collect();
    names.extend(
        now.leads.iter().map(|(n, _)| n.as_str()).filter(|n| !COMPARE_ORDER.iter().any(|o| o.eq_ignore_ascii_case(n))),
    );
    names.retain(|n| find(prior, n).is_some());
    let row_mm = ROW_MM;
    let cell_mm = COMPARE_S * paper.speed_mm_per_s;
    let columns = if mode == CompareMode::SideBySide { 2.0 } else { 1.0 };
    let width = LEFT_MM + columns * (cell_mm + 5.0);
    // Captions: side by side, each above its column; overlaid, one under the other.
    let top = if mode == CompareMode::SideBySide { 6.0 } else { 10.0 };
    let height = top + names.len().max(1) as f64 * row_mm + 5.0;
    let mut out =
        String::with_capacity(names.len() * 2 * (COMPARE_S * now.rate_hz.max(prior.rate_hz)) as usize * 16 + 4096);
    svg_open(&mut out, width, height, now.rate_hz, paper);
    let prior_x = if mode == CompareMode::SideBySide { LEFT_MM + cell_mm + 5.0 } else { LEFT_MM };
    let _ = write!(out, r#"<text x="{LEFT_MM:.2}" y="4">{}</text>"#, super::console::esc(now.caption));
    let _ = write!(
        out,
        r#"<text class="prior" x="{prior_x:.2}" y="{}">{}</text>"#,
        if mode == CompareMode::SideBySide { 4.0 } else { 8.5 },
        super::console::esc(prior.caption)
    );
    let window = |side: &Side<'_>, name: &str| -> Vec<f64> {
        let x = find(side, name).unwrap_or_default();
        let n = (COMPARE_S * side.rate_hz.max(1.0)).round() as usize;
        let from = side.start.min(x.len());
        x[from..(from + n).min(x.len())].to_vec()
    };
    for (r, name) in names.iter().enumerate() {
        let y0 = top + r as f64 * row_mm + row_mm / 2.0 + 2.5;
        calibration(&mut out, 1.0, y0, paper);
        classed_polyline(&mut out, "trace", &window(now, name), now.rate_hz.max(1.0), LEFT_MM, y0, paper);
        classed_polyline(&mut out, "prior", &window(prior, name), prior.rate_hz.max(1.0), prior_x, y0, paper);
        let _ = write!(
            out,
            r#"<text x="{:.2}" y="{:.2}">{}</text>"#,
            LEFT_MM + 1.0,
            y0 - row_mm / 2.0 + 4.0,
            super::console::esc(name)
        );
    }
    out.push_str("</svg>");
    out
}

/// Renders the tracing. `rate_hz` is the sampling rate.
pub fn render(traces: &[Trace<'_>], rate_hz: f64, paper: Paper) -> String {
    let find = |name: &str| traces.iter().find(|t| t.name.eq_ignore_ascii_case(name));
    let standard = LAYOUT.iter().flatten().all(|n| find(n).is_some());
    let seconds = traces.first().map_or(0.0, |t| t.uv.len() as f64 / rate_hz);
    let cell_s = if standard { (seconds / 4.0).min(2.5) } else { seconds };
    let strip_s = if standard { seconds.min(10.0) } else { seconds };
    let rows = if standard { 4 } else { traces.len() };
    let width = LEFT_MM + strip_s * paper.speed_mm_per_s + 5.0;
    let height = rows as f64 * ROW_MM + 5.0;
    let mut out = String::with_capacity(traces.iter().map(|t| t.uv.len() * 16).sum::<usize>() + 4096);
    svg_open(&mut out, width, height, rate_hz, paper);
    let rate = rate_hz.max(1.0);
    if standard {
        let per_cell = (cell_s * rate).round() as usize;
        for (r, row) in LAYOUT.iter().enumerate() {
            let y0 = r as f64 * ROW_MM + ROW_MM / 2.0 + 2.5;
            calibration(&mut out, 1.0, y0, paper);
            for (c, name) in row.iter().enumerate() {
                let Some(t) = find(name) else { continue };
                let from = (c * per_cell).min(t.uv.len());
                let to = ((c + 1) * per_cell).min(t.uv.len());
                let x0 = LEFT_MM + c as f64 * cell_s * paper.speed_mm_per_s;
                polyline(&mut out, &t.uv[from..to], rate, x0, y0, paper);
                let _ =
                    write!(out, r#"<text x="{:.2}" y="{:.2}">{}</text>"#, x0 + 1.0, y0 - ROW_MM / 2.0 + 4.0, t.label());
            }
        }
        if let Some(t) = find("II") {
            let y0 = 3.0 * ROW_MM + ROW_MM / 2.0 + 2.5;
            calibration(&mut out, 1.0, y0, paper);
            let n = ((strip_s * rate).round() as usize).min(t.uv.len());
            polyline(&mut out, &t.uv[..n], rate, LEFT_MM, y0, paper);
            let _ = write!(
                out,
                r#"<text x="{:.2}" y="{:.2}">{}</text>"#,
                LEFT_MM + 1.0,
                y0 - ROW_MM / 2.0 + 4.0,
                t.label()
            );
        }
    } else {
        for (r, t) in traces.iter().enumerate() {
            let y0 = r as f64 * ROW_MM + ROW_MM / 2.0 + 2.5;
            calibration(&mut out, 1.0, y0, paper);
            polyline(&mut out, t.uv, rate, LEFT_MM, y0, paper);
            let _ = write!(
                out,
                r#"<text x="{:.2}" y="{:.2}">{}</text>"#,
                LEFT_MM + 1.0,
                y0 - ROW_MM / 2.0 + 4.0,
                t.label()
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split(r#"<polyline class="trace" points=""#)
            .skip(1)
            .map(|p| {
                p.split('"')
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|xy| {
                        let (x, y) = xy.split_once(',')?;
                        Some((x.parse().ok()?, y.parse().ok()?))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn one_millivolt_is_ten_millimetres_and_one_second_twenty_five() {
        let names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];
        // A 1 mV step at 1 s, 500 Hz, 10 s.
        let uv: Vec<f64> = (0..5000).map(|i| if i >= 500 { 1000.0 } else { 0.0 }).collect();
        let traces: Vec<Trace<'_>> = names.iter().map(|n| Trace { name: n, uv: &uv, derived: false }).collect();
        let svg = render(&traces, 500.0, Paper::default());
        let lines = points(&svg);
        assert_eq!(lines.len(), 13, "12 cells and the rhythm strip");
        let strip = &lines[12];
        assert_eq!(strip.len(), 5000, "every sample drawn");
        let (x0, y0) = strip[0];
        let (x1, y1) = strip[500];
        assert!(((x1 - x0) - 25.0).abs() < 1e-6, "1 s = 25 mm");
        assert!(((y0 - y1) - 10.0).abs() < 1e-6, "1 mV = 10 mm");
        let fast = points(&render(&traces, 500.0, Paper { speed_mm_per_s: 50.0, gain_mm_per_mv: 20.0 }));
        let s = &fast[12];
        assert!(((s[500].0 - s[0].0) - 50.0).abs() < 1e-6 && ((s[0].1 - s[500].1) - 20.0).abs() < 1e-6);
        assert!(svg.contains(r#"class="cal""#), "calibration pulse");
    }

    #[test]
    fn a_prior_ecg_is_drawn_on_the_same_grid_beside_or_over_the_new_one() {
        let step = |at: usize, n: usize| -> Vec<f64> { (0..n).map(|i| if i >= at { 1000.0 } else { 0.0 }).collect() };
        let now = vec![("II".to_string(), step(600, 5000)), ("V1".to_string(), step(600, 5000))];
        // The prior at another rate, with V1 missing and a lead the new one lacks.
        let prior = vec![("II".to_string(), step(500, 3600)), ("V9".to_string(), step(0, 3600))];
        let side = |leads, rate_hz, start, caption| Side { leads, rate_hz, start, caption };
        let a = side(&now, 500.0, 100, "2026-12-07");
        let b = side(&prior, 360.0, 140, "2025-03-01");
        let svg = render_compare(&a, &b, CompareMode::Overlay, Paper::default());
        let traces = points(&svg);
        assert_eq!(traces.len(), 1, "only II is in both");
        let priors: Vec<&str> = svg.split(r#"<polyline class="prior" points=""#).skip(1).collect();
        assert_eq!(priors.len(), 1);
        // Both steps sit 1 s after their start (600-100 at 500 Hz; 500-140 at 360 Hz), so on the
        // same grid they rise at the same x.
        let rise = |pts: &[(f64, f64)]| pts.windows(2).find(|w| w[1].1 < w[0].1 - 5.0).map(|w| w[1].0);
        let prior_pts = points(&svg.replace("class=\"prior\"", "class=\"trace\""));
        let (x_now, x_prior) = (rise(&traces[0]).expect("now rises"), rise(&prior_pts[1]).expect("prior rises"));
        assert!((x_now - x_prior).abs() < 0.1, "{x_now} vs {x_prior}");
        assert!((x_now - (LEFT_MM + 25.0)).abs() < 0.1, "1 s = 25 mm from the row start");
        let side_by_side = render_compare(&a, &b, CompareMode::SideBySide, Paper::default());
        let both = points(&side_by_side.replace("class=\"prior\"", "class=\"trace\""));
        let gap = rise(&both[1]).expect("prior") - rise(&both[0]).expect("now");
        assert!((gap - (5.0 * 25.0 + 5.0)).abs() < 0.1, "the prior starts one 5 s cell later: {gap}");
        assert!(side_by_side.contains("2025-03-01") && side_by_side.contains("2026-12-07"));
    }

    #[test]
    fn a_single_spike_survives_and_other_lead_sets_get_full_rows() {
        let mut uv = vec![0.0; 3600];
        uv[1800] = 5000.0; // a pacing-like spike of one sample
        let traces = [Trace { name: "II", uv: &uv, derived: false }, Trace { name: "V5<b>", uv: &uv, derived: true }];
        let svg = render(&traces, 360.0, Paper::default());
        let lines = points(&svg);
        assert_eq!(lines.len(), 2);
        let min_y = lines[0].iter().map(|p| p.1).fold(f64::MAX, f64::min);
        assert!((lines[0][0].1 - min_y - 50.0).abs() < 1e-6, "the 5 mV spike is drawn 50 mm high");
        assert!(svg.contains("V5&lt;b&gt;") && !svg.contains("V5<b>"));
    }
}
