//! Beat classes: each detected QRS is normal (sinus or supraventricular: conducted through the
//! His-Purkinje system), ventricular (V: wide, shaped unlike the dominant beat, usually
//! premature with a compensatory pause), or paced (a pacing spike just before it).
//!
//! The dominant beat is a template over all leads (±100 ms around the QRS, 1-35 Hz): first the
//! beat most others resemble (the medoid of an evenly spread sample), then a running average of
//! the beats read as normal, so a slow change of the QRS over a long recording is followed. Each
//! beat is compared with it after the best alignment within ±20 ms: correlation, QRS width (the
//! span of the summed slope over the leads) and amplitude; prematurity and the pause after it
//! weigh in when the shape alone is not decisive. Measured on MIT-BIH in tests/mitdb.rs.

use crate::filter::{Biquad, filtfilt};
use serde::{Deserialize, Serialize};

/// What kind of beat a QRS is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeatClass {
    /// Conducted from the atria (sinus or supraventricular), like the dominant beat.
    Normal,
    /// Ventricular: wide and shaped unlike the dominant beat.
    Ventricular,
    /// Preceded by a pacing spike.
    Paced,
}

impl BeatClass {
    /// One letter: N normal, V ventricular, P paced.
    pub fn code(self) -> char {
        match self {
            BeatClass::Normal => 'N',
            BeatClass::Ventricular => 'V',
            BeatClass::Paced => 'P',
        }
    }
}

/// The beat classes as one letter each ([`BeatClass::code`]), e.g. `NNNVNN`.
pub fn codes(classes: &[BeatClass]) -> String {
    classes.iter().map(|c| c.code()).collect()
}

/// What one beat's class was decided on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BeatFeatures {
    /// Correlation with the dominant template after alignment (-1..1).
    pub corr: f64,
    /// QRS width of the beat, ms.
    pub width_ms: f64,
    /// QRS width of the dominant template at that time, ms.
    pub template_width_ms: f64,
    /// RMS of the beat over the RMS of the template.
    pub amplitude_ratio: f64,
    /// RR before the beat over the running normal RR.
    pub rr_prev_ratio: f64,
    /// RR after the beat over the running normal RR.
    pub rr_next_ratio: f64,
    /// The lowest correlation of one lead's window with the template's, over the leads where
    /// the template is at least a third as large as on its largest lead.
    pub corr_min: f64,
    /// Noise before the beat (RMS of the second difference 300-120 ms before it) over the
    /// template QRS's (the same within ±50 ms).
    pub noise_ratio: f64,
}

/// Milliseconds to samples at `fs_hz` (at least one).
fn ms(fs_hz: f64, millis: f64) -> usize {
    ((millis * fs_hz / 1000.0).round() as usize).max(1)
}

/// Pearson correlation of two equally long slices (0 when either is flat).
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let (ma, mb) = (a[..n].iter().sum::<f64>() / n as f64, b[..n].iter().sum::<f64>() / n as f64);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a[..n].iter().zip(&b[..n]) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 { 0.0 } else { sab / (saa * sbb).sqrt() }
}

fn rms(a: &[f64]) -> f64 {
    if a.is_empty() { 0.0 } else { (a.iter().map(|v| v * v).sum::<f64>() / a.len() as f64).sqrt() }
}

/// The leads' windows around `centre` (`half` samples each side), concatenated, each lead's
/// window with its own mean taken out (the baseline offset is not the beat's shape).
fn window(leads: &[Vec<f64>], centre: usize, half: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(leads.len() * (2 * half + 1));
    for x in leads {
        let w = &x[centre - half..=centre + half];
        let mean = w.iter().sum::<f64>() / w.len() as f64;
        out.extend(w.iter().map(|v| v - mean));
    }
    out
}

/// QRS width of a concatenated window (`leads` windows of `len` samples each), ms: the span
/// around the centre where the summed absolute slope over the leads stays above a quarter of
/// its peak.
fn width_ms(w: &[f64], leads: usize, fs_hz: f64) -> f64 {
    let len = w.len() / leads.max(1);
    if len < 3 {
        return 0.0;
    }
    let env: Vec<f64> = (1..len - 1)
        .map(|k| (0..leads).map(|l| (w[l * len + k + 1] - w[l * len + k - 1]).abs()).sum::<f64>())
        .collect();
    let peak = env.iter().copied().fold(0.0, f64::max);
    if peak <= 0.0 {
        return 0.0;
    }
    let above: Vec<usize> = (0..env.len()).filter(|&k| env[k] > 0.25 * peak).collect();
    match (above.first(), above.last()) {
        (Some(a), Some(b)) => (b - a + 2) as f64 * 1000.0 / fs_hz,
        _ => 0.0,
    }
}

/// RMS of the second difference of `leads` over samples `a..b`, all leads together.
fn hf(leads: &[Vec<f64>], a: usize, b: usize) -> f64 {
    let d: Vec<f64> = leads
        .iter()
        .flat_map(|x| (a.max(1)..b.min(x.len().saturating_sub(1))).map(move |k| x[k + 1] - 2.0 * x[k] + x[k - 1]))
        .collect();
    rms(&d)
}

/// Beats sampled for the first template.
const SAMPLE: usize = 120;

/// Classifies the beats at `qrs` (ascending sample indices) of `leads` (µV at `fs_hz`), with the
/// features each decision was made on. Beats too near either end are normal unless paced.
pub fn classify_with_features(leads: &[&[f64]], fs_hz: f64, qrs: &[usize]) -> (Vec<BeatClass>, Vec<BeatFeatures>) {
    let mut classes = vec![BeatClass::Normal; qrs.len()];
    let mut features = vec![BeatFeatures::default(); qrs.len()];
    let n = leads.iter().map(|x| x.len()).min().unwrap_or(0);
    if qrs.is_empty() || n == 0 || !fs_hz.is_finite() || fs_hz < 50.0 {
        return (classes, features);
    }
    let spikes = pacing_spikes(leads, fs_hz);
    mark_paced(&spikes, qrs, fs_hz, &mut classes);
    let bands = [Biquad::highpass(fs_hz, 1.0), Biquad::lowpass(fs_hz, 35.0)];
    let filtered: Vec<Vec<f64>> = leads.iter().map(|x| filtfilt(&bands, &x[..n])).collect();
    let half = ms(fs_hz, 100.0);
    let shift = ms(fs_hz, 20.0);
    let margin = half + shift;
    let usable: Vec<usize> = (0..qrs.len()).filter(|&i| qrs[i] >= margin && qrs[i] + margin < n).collect();
    if usable.is_empty() {
        return (classes, features);
    }
    let nl = filtered.len();
    // The first template: the medoid of an even sample of beats (the one most others resemble).
    let step = usable.len().div_ceil(SAMPLE).max(1);
    let sample: Vec<Vec<f64>> = usable.iter().step_by(step).map(|&i| window(&filtered, qrs[i], half)).collect();
    let medoid = (0..sample.len())
        .max_by_key(|&a| sample.iter().filter(|b| correlation(&sample[a], b) > 0.9).count())
        .unwrap_or(0);
    let close: Vec<&Vec<f64>> = sample.iter().filter(|b| correlation(&sample[medoid], b) > 0.9).collect();
    let mut template = vec![0.0; sample[medoid].len()];
    for b in &close {
        for (t, v) in template.iter_mut().zip(b.iter()) {
            *t += v / close.len() as f64;
        }
    }
    let template_hf = {
        let len = 2 * half + 1;
        let c = ms(fs_hz, 50.0);
        let d: Vec<f64> = (0..nl)
            .flat_map(|l| {
                let t = &template[l * len..(l + 1) * len];
                (half - c..half + c).map(move |k| t[k + 1] - 2.0 * t[k] + t[k - 1])
            })
            .collect();
        rms(&d)
    };
    let mut rr_ref: Option<f64> = None;
    let rr = |i: usize, j: usize| (qrs[j] - qrs[i]) as f64 * 1000.0 / fs_hz;
    for &i in &usable {
        if classes[i] == BeatClass::Paced {
            continue;
        }
        // Best alignment with the template.
        let (mut best, mut best_at) = (f64::NEG_INFINITY, qrs[i]);
        for c in qrs[i] - shift..=qrs[i] + shift {
            let r = correlation(&window(&filtered, c, half), &template);
            if r > best {
                best = r;
                best_at = c;
            }
        }
        let w = window(&filtered, best_at, half);
        let len = 2 * half + 1;
        let lead_rms: Vec<f64> = (0..nl).map(|l| rms(&template[l * len..(l + 1) * len])).collect();
        let top = lead_rms.iter().copied().fold(0.0, f64::max);
        let corr_min = (0..nl)
            .filter(|&l| lead_rms[l] >= top / 3.0)
            .map(|l| correlation(&w[l * len..(l + 1) * len], &template[l * len..(l + 1) * len]))
            .fold(1.0, f64::min);
        let noise = hf(&filtered, qrs[i].saturating_sub(ms(fs_hz, 300.0)), qrs[i].saturating_sub(ms(fs_hz, 120.0)));
        let f = BeatFeatures {
            corr_min,
            noise_ratio: noise / template_hf.max(1e-9),
            corr: best,
            width_ms: width_ms(&w, nl, fs_hz),
            template_width_ms: width_ms(&template, nl, fs_hz),
            amplitude_ratio: rms(&w) / rms(&template).max(1e-9),
            rr_prev_ratio: match (i.checked_sub(1), rr_ref) {
                (Some(p), Some(r)) => rr(p, i) / r,
                _ => 1.0,
            },
            rr_next_ratio: match (qrs.get(i + 1), rr_ref) {
                (Some(_), Some(r)) => rr(i, i + 1) / r,
                _ => 1.0,
            },
        };
        features[i] = f;
        if is_ventricular(&f) {
            classes[i] = BeatClass::Ventricular;
            continue;
        }
        // A beat like the template teaches it; a slow drift is followed, a single odd beat not.
        if f.corr > 0.9 {
            for (t, v) in template.iter_mut().zip(&w) {
                *t = 0.95 * *t + 0.05 * v;
            }
        }
        if i > 0 && classes[i - 1] != BeatClass::Ventricular {
            let r = rr(i - 1, i);
            rr_ref = Some(rr_ref.map_or(r, |x| 0.9 * x + 0.1 * r));
        }
    }
    (classes, features)
}

/// The decision on one beat's features. The thresholds were chosen on the MIT-BIH records in
/// tests/mitdb.rs (a small grid, not a fit: few parameters, but scored on the same records).
fn is_ventricular(f: &BeatFeatures) -> bool {
    let wider_ms = f.width_ms - f.template_width_ms;
    let premature = f.rr_prev_ratio < 0.85;
    let compensated = f.rr_next_ratio > 1.1;
    if f.noise_ratio > 0.4 {
        // Noise before the beat: noise also makes a beat look unlike the template, so only
        // an opposite, wide, premature complex counts.
        return f.corr_min < -0.3 && wider_ms > 50.0 && premature;
    }
    f.corr_min < 0.0
        || (f.corr_min < 0.8 && (wider_ms > 50.0 || (premature && compensated)))
        || (f.corr < 0.85 && wider_ms > 30.0 && premature)
}

/// Classifies the beats at `qrs` (ascending sample indices) of `leads` (µV at `fs_hz`).
pub fn classify(leads: &[&[f64]], fs_hz: f64, qrs: &[usize]) -> Vec<BeatClass> {
    classify_with_features(leads, fs_hz, qrs).0
}

/// A beat with a pacing spike this long before it (or up to 10 ms after its fiducial, which
/// may sit inside the QRS) is paced. Long enough for atrial pacing (spike, P, AV delay).
const SPIKE_BEFORE_MS: f64 = 300.0;

fn mark_paced(spikes: &[usize], qrs: &[usize], fs_hz: f64, classes: &mut [BeatClass]) {
    let (before, after) = (ms(fs_hz, SPIKE_BEFORE_MS), ms(fs_hz, 10.0));
    for (i, &q) in qrs.iter().enumerate() {
        let from = q.saturating_sub(before).max(if i > 0 { qrs[i - 1] + after } else { 0 });
        if spikes.iter().any(|&s| s >= from && s <= q + after) {
            classes[i] = BeatClass::Paced;
        }
    }
}

/// Pacing spike: at least this far from the local baseline, µV.
const SPIKE_MIN_UV: f64 = 400.0;
/// And back within this long, ms (a QRS never is: its narrowest deflection lasts 20 ms).
const SPIKE_MAX_MS: f64 = 2.0;

/// Pacing spikes in `leads` (µV at `fs_hz`): a deflection of at least 400 µV from the level
/// 4 ms either side that is over (below half its height) within 2 ms, on any lead. At low
/// sampling rates a spike may fall between samples; carts that mark pacing do so at a higher
/// internal rate, so this only finds what the samples show.
pub fn pacing_spikes(leads: &[&[f64]], fs_hz: f64) -> Vec<usize> {
    if !fs_hz.is_finite() || fs_hz <= 0.0 {
        return Vec::new();
    }
    let side = ms(fs_hz, 4.0).max(2);
    let max_wide = ((SPIKE_MAX_MS * fs_hz / 1000.0).floor() as usize).max(1);
    let mut out: Vec<usize> = Vec::new();
    for x in leads {
        let n = x.len();
        if n < 2 * side + 1 {
            continue;
        }
        // How far each sample stands from the level `side` samples either side of it.
        let d: Vec<f64> = (side..n - side).map(|i| x[i] - (x[i - side] + x[i + side]) / 2.0).collect();
        for (j, &h) in d.iter().enumerate() {
            let i = j + side;
            // Only the sample standing out most within `side` either side.
            let (a, b) = (j.saturating_sub(side), (j + side).min(d.len() - 1));
            if h.abs() < SPIKE_MIN_UV || (a..=b).any(|k| d[k].abs() > h.abs() || (d[k].abs() == h.abs() && k < j)) {
                continue;
            }
            let base = (x[i - side] + x[i + side]) / 2.0;
            let half_up = |k: usize| (x[k] - base) * h.signum() > h.abs() / 2.0;
            let wide = (i - side + 1..i + side).filter(|&k| half_up(k)).count();
            // Both sides near the same level: a step (a lead coming off) is not a spike.
            let steady = (x[i - side] - x[i + side]).abs() < h.abs() / 2.0;
            // Isolated: measured against the level twice as far out it stands no higher (the
            // apex of a sharp R wave does: its sides keep falling away).
            let far = match (i.checked_sub(2 * side), x.get(i + 2 * side)) {
                (Some(l), Some(r)) => (x[i] - (x[l] + r) / 2.0).abs() < 1.4 * h.abs(),
                _ => false,
            };
            if wide <= max_wide && steady && far {
                out.push(i);
            }
        }
    }
    out.sort_unstable();
    out.dedup_by(|a, b| a.abs_diff(*b) <= side);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A beat: a triangle of `width_ms` and `height` µV centred at `at`.
    fn add_beat(x: &mut [f64], fs: f64, at: usize, width_ms: f64, height: f64) {
        let w = (width_ms * fs / 2000.0) as i64;
        for k in -w..=w {
            if let Some(v) = x.get_mut((at as i64 + k) as usize) {
                *v += height * (1.0 - k.abs() as f64 / w as f64);
            }
        }
    }

    #[test]
    fn a_wide_premature_beat_is_ventricular_and_the_rest_normal() {
        let fs = 360.0;
        let mut x = vec![0.0; (60.0 * fs) as usize];
        let mut qrs = Vec::new();
        let mut at = 400;
        let mut truth = Vec::new();
        for i in 0..70 {
            let v = i % 7 == 5;
            if v {
                add_beat(&mut x, fs, at, 140.0, -1500.0);
                add_beat(&mut x, fs, at + 40, 100.0, 800.0);
            } else {
                add_beat(&mut x, fs, at, 60.0, 1200.0);
            }
            qrs.push(at);
            truth.push(v);
            // Premature V, compensatory pause after it.
            let next_v = (i + 1) % 7 == 5;
            at += if next_v {
                200
            } else if v {
                380
            } else {
                290
            };
        }
        let c = classify(&[&x], fs, &qrs);
        for (i, (c, v)) in c.iter().zip(&truth).enumerate() {
            if qrs[i] < 100 || qrs[i] + 100 > x.len() {
                continue;
            }
            assert_eq!(*c == BeatClass::Ventricular, *v, "beat {i}: {c:?}");
        }
        assert!(codes(&classify(&[&x], fs, &qrs)).contains("NNNNNVN"));
    }

    #[test]
    fn pacing_spikes_are_found_and_mark_the_beat_after_them() {
        for fs in [500.0, 1000.0, 2000.0] {
            let mut x = vec![0.0; (10.0 * fs) as usize];
            let mut qrs = Vec::new();
            let mut at = (0.5 * fs) as usize;
            while at + (0.5 * fs) as usize <= x.len() {
                // A 1 ms, 2 mV spike 20 ms before a wide QRS.
                let spike = at - ms(fs, 20.0);
                for k in 0..((fs / 1000.0) as usize).max(1) {
                    x[spike + k] += 2000.0;
                }
                add_beat(&mut x, fs, at, 140.0, 1200.0);
                qrs.push(at);
                at += (0.8 * fs) as usize;
            }
            let spikes = pacing_spikes(&[&x], fs);
            assert_eq!(spikes.len(), qrs.len(), "{fs} Hz: {spikes:?}");
            let c = classify(&[&x], fs, &qrs);
            assert!(c.iter().all(|c| *c == BeatClass::Paced), "{fs} Hz: {} {spikes:?} {qrs:?}", codes(&c));
            // Ordinary QRS complexes, however tall, are no spikes.
            let mut y = vec![0.0; (10.0 * fs) as usize];
            for &q in &qrs {
                add_beat(&mut y, fs, q, 40.0, 3000.0);
            }
            assert!(pacing_spikes(&[&y], fs).is_empty(), "{fs} Hz");
        }
    }

    #[test]
    fn nothing_panics_on_odd_input() {
        assert!(classify(&[], 360.0, &[]).is_empty());
        assert_eq!(classify(&[&[0.0; 10]], 360.0, &[5]), [BeatClass::Normal]);
        assert_eq!(classify(&[&vec![0.0; 5000]], 360.0, &[1000, 2000, 3000]).len(), 3);
        assert_eq!(classify(&[&vec![0.0; 5000]], f64::NAN, &[1000]).len(), 1);
        assert!(pacing_spikes(&[&[1.0, 2.0]], 500.0).is_empty());
    }
}
