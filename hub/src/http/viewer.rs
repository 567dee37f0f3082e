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
    out.push_str(r#"<polyline class="trace" points=""#);
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
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="ecg" width="{width}mm" height="{height}mm" viewBox="0 0 {width} {height}"
 data-speed-mm-per-s="{}" data-gain-mm-per-mv="{}" data-rate-hz="{rate_hz}">
<defs><pattern id="minor" width="1" height="1" patternUnits="userSpaceOnUse"><path d="M1 0H0V1" fill="none" stroke="#f4c2c2" stroke-width="0.05"/></pattern>
<pattern id="major" width="5" height="5" patternUnits="userSpaceOnUse"><rect width="5" height="5" fill="url(#minor)"/><path d="M5 0H0V5" fill="none" stroke="#e08080" stroke-width="0.12"/></pattern></defs>
<style>.trace{{fill:none;stroke:#000;stroke-width:0.15;stroke-linejoin:round}}.cal{{fill:none;stroke:#000;stroke-width:0.15}}text{{font-size:3px;font-family:sans-serif}}</style>
<rect width="{width}" height="{height}" fill="url(#major)"/>"##,
        paper.speed_mm_per_s, paper.gain_mm_per_mv
    );
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
