//! Rhythm over time from the QRS positions and their classes: labelled segments (sinus rhythm,
//! sinus bradycardia under 60 /min, sinus tachycardia over 100 /min, atrial fibrillation, paced,
//! other), ventricular ectopy (isolated beats, couplets, runs of three or more) and pauses over
//! 3 s.
//!
//! AF is an irregularly irregular ventricular response with no P waves. The irregularity is
//! measured on the intervals between two normal beats only, so ventricular beats and their
//! coupling and compensatory intervals do not count; what premature atrial beats leave is
//! taken out by the ectopic-pair trim and the turning-point ratio. Successive differences and
//! turning points are taken between intervals that follow each other, never across a left-out
//! one. AF is sustained, and 24 intervals measure it coarsely: a window clearly irregular is AF,
//! and one only weakly irregular (looser bounds) is AF when it joins such a window directly or
//! through other weakly irregular ones (hysteresis). The P-wave check averages
//! the stretch before each normal QRS of a window: a P wave is locked to the QRS and survives
//! the average, fibrillatory waves are not and cancel. "Sinus" needs that P wave; a rhythm
//! without one that is neither AF nor paced is "other" (junctional, flutter, or a baseline too
//! noisy to tell). Measured on MIT-BIH in tests/mitdb.rs (AF by duration).

use crate::classify::BeatClass;
use crate::filter::{Biquad, filtfilt};
use serde::{Deserialize, Serialize};

/// A rhythm label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rhythm {
    /// Sinus (a P wave before the QRS), 60-100 /min.
    SinusRhythm,
    /// Sinus, under 60 /min.
    SinusBradycardia,
    /// Sinus, over 100 /min.
    SinusTachycardia,
    /// Atrial fibrillation: irregularly irregular, no P waves.
    AtrialFibrillation,
    /// Most beats paced.
    Paced,
    /// Neither sinus (no P wave found), AF nor paced.
    Other,
}

impl Rhythm {
    /// The label in Simplified Chinese and in English.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            Rhythm::SinusRhythm => ("窦性心律", "sinus rhythm"),
            Rhythm::SinusBradycardia => ("窦性心动过缓", "sinus bradycardia"),
            Rhythm::SinusTachycardia => ("窦性心动过速", "sinus tachycardia"),
            Rhythm::AtrialFibrillation => ("心房颤动", "atrial fibrillation"),
            Rhythm::Paced => ("起搏心律", "paced rhythm"),
            Rhythm::Other => ("其他节律（未见P波）", "other rhythm (no P wave found)"),
        }
    }
}

/// A heart rate's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateClass {
    /// Under 60 /min.
    Bradycardia,
    /// 60-100 /min.
    Normal,
    /// Over 100 /min.
    Tachycardia,
}

impl RateClass {
    /// The class of `heart_rate_bpm`.
    pub fn of(heart_rate_bpm: f64) -> Self {
        if heart_rate_bpm < 60.0 {
            RateClass::Bradycardia
        } else if heart_rate_bpm > 100.0 {
            RateClass::Tachycardia
        } else {
            RateClass::Normal
        }
    }

    /// The class in Simplified Chinese and in English.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            RateClass::Bradycardia => ("心动过缓", "bradycardia"),
            RateClass::Normal => ("正常", "normal"),
            RateClass::Tachycardia => ("心动过速", "tachycardia"),
        }
    }
}

/// One stretch of one rhythm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    /// First sample (a QRS position).
    pub start: usize,
    /// Last sample (a QRS position).
    pub end: usize,
    /// The label.
    pub rhythm: Rhythm,
    /// Mean ventricular rate over the stretch, /min.
    pub heart_rate_bpm: f64,
}

/// A gap between two beats longer than [`PAUSE_MS`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pause {
    /// The beat before it (sample).
    pub start: usize,
    /// Its length, ms.
    pub length_ms: f64,
}

/// Three or more ventricular beats in a row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VentricularRun {
    /// The first beat of the run (sample).
    pub start: usize,
    /// Beats in the run.
    pub beats: usize,
    /// Rate within the run, /min.
    pub heart_rate_bpm: f64,
}

/// Ventricular ectopic beats, counted.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Ectopy {
    /// Ventricular beats in all.
    pub ventricular: usize,
    /// Single ventricular beats.
    pub isolated: usize,
    /// Two in a row.
    pub couplets: usize,
    /// Three or more in a row.
    pub runs: Vec<VentricularRun>,
}

/// The rhythm of a recording.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RhythmReading {
    /// Labelled stretches, in time order.
    pub segments: Vec<Segment>,
    /// Pauses over 3 s.
    pub pauses: Vec<Pause>,
    /// Ventricular ectopy.
    pub ectopy: Ectopy,
}

/// An RR gap this long is a pause, ms.
pub const PAUSE_MS: f64 = 3000.0;
/// Beats per analysis window.
const WINDOW: usize = 24;
/// A P wave in the averaged stretch before the QRS stands at least this far from the line
/// joining the stretch's ends on some lead, µV, for "sinus".
const P_SINUS_UV: f64 = 50.0;
/// And at least this far to rule out AF: averaged coarse fibrillatory waves and the previous
/// T wave at irregular RR leave up to about this much (the threshold where the ectopy-heavy
/// MIT-BIH records stopped reading as AF).
const P_NOT_AF_UV: f64 = 90.0;

/// A window's RR intervals speak clearly for AF with a normalised RMSSD over this (after the
/// ectopic-pair trim) and a turning-point ratio in [`AF_TPR`] (random order: 2/3; a trend is
/// lower, an alternating pattern such as bigeminy higher).
const AF_NRMSSD: f64 = 0.15;
const AF_TPR: std::ops::RangeInclusive<f64> = 0.5..=0.85;
/// And weakly with these (about ±2.5 standard deviations of the turning-point ratio of 20
/// random intervals instead of ±1.8), which makes a window AF only next to AF (hysteresis).
const AF_WEAK_NRMSSD: f64 = 0.12;
const AF_WEAK_TPR: std::ops::RangeInclusive<f64> = 0.4..=0.9;

/// The irregularity of RR intervals given as runs of consecutive intervals (a run ends where an
/// interval was left out, e.g. at a ventricular beat): (normalised RMSSD of the intervals left
/// after taking out ectopic pairs, share of intervals taken out, turning-point ratio, intervals
/// in all). Successive differences and turning points are taken within a run only, never across
/// a gap, where they would compare intervals that were never next to each other.
fn irregularity(runs: &[Vec<f64>]) -> (f64, f64, f64, usize) {
    let count: usize = runs.iter().map(Vec::len).sum();
    if count == 0 {
        return (0.0, 0.0, 0.0, 0);
    }
    let mut sorted: Vec<f64> = runs.iter().flatten().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let (mut kept, mut kept_n, mut removed) = (0.0, 0usize, 0usize);
    let (mut sq, mut diffs) = (0.0, 0usize);
    let (mut turns, mut triples) = (0usize, 0usize);
    for rr in runs {
        // An ectopic beat: a premature RR followed by a compensatory one. Both leave the
        // statistics.
        let mut out = vec![false; rr.len()];
        for i in 0..rr.len().saturating_sub(1) {
            let compensated = ((rr[i] + rr[i + 1]) - 2.0 * median).abs() < 0.1 * median;
            if rr[i] < 0.85 * median && rr[i + 1] > 1.1 * median && compensated {
                out[i] = true;
                out[i + 1] = true;
            }
        }
        for (r, o) in rr.iter().zip(&out) {
            if *o {
                removed += 1;
            } else {
                kept += r;
                kept_n += 1;
            }
        }
        for (w, o) in rr.windows(2).zip(out.windows(2)) {
            if !o[0] && !o[1] {
                sq += (w[1] - w[0]).powi(2);
                diffs += 1;
            }
        }
        triples += rr.len().saturating_sub(2);
        turns += rr.windows(3).filter(|w| (w[1] > w[0] && w[1] > w[2]) || (w[1] < w[0] && w[1] < w[2])).count();
    }
    let mean = kept / kept_n.max(1) as f64;
    let rmssd = if diffs == 0 { 0.0 } else { (sq / diffs as f64).sqrt() };
    (rmssd / mean.max(1.0), removed as f64 / count as f64, turns as f64 / triples.max(1) as f64, count)
}

/// The rhythm of beats `qrs` (sample indices at `fs_hz`) of `leads` (µV), with their `classes`
/// (as [`crate::classify::classify`] gives them; beats without a class count as normal).
pub fn analyze(leads: &[&[f64]], fs_hz: f64, qrs: &[usize], classes: &[BeatClass]) -> RhythmReading {
    let class = |i: usize| classes.get(i).copied().unwrap_or(BeatClass::Normal);
    let p_leads: Vec<Vec<f64>> = if fs_hz.is_finite() && fs_hz >= 50.0 {
        let bands = [Biquad::highpass(fs_hz, 0.5), Biquad::lowpass(fs_hz, 25.0)];
        leads.iter().map(|x| filtfilt(&bands, x)).collect()
    } else {
        Vec::new()
    };
    let p_wave = |beats: &[usize]| p_wave_uv(&p_leads, fs_hz, qrs, beats);
    let classes: Vec<BeatClass> = (0..qrs.len()).map(class).collect();
    let (segments, pauses) = label_with(qrs, fs_hz, &classes, &p_wave);
    RhythmReading { segments, pauses, ectopy: ectopy(qrs, fs_hz, &classes) }
}

/// The rhythm of beats `qrs` alone (all normal, P waves not checked): AF or "other" with the
/// rate, and pauses. For callers without the leads; [`analyze`] is the full reading.
pub fn label(qrs: &[usize], fs_hz: f64) -> (Vec<Segment>, Vec<Pause>) {
    label_with(qrs, fs_hz, &vec![BeatClass::Normal; qrs.len()], &|_| None)
}

/// The P wave in the averaged stretch before the normal beats `beats` (indices into `qrs`) of
/// `leads` (filtered 0.5-25 Hz): how far it stands from the line joining the stretch's ends on
/// the lead where it is largest, µV. None when too few beats leave room for it before the
/// previous beat's T wave.
fn p_wave_uv(leads: &[Vec<f64>], fs_hz: f64, qrs: &[usize], beats: &[usize]) -> Option<f64> {
    let n = leads.iter().map(Vec::len).min()?;
    let ms = |m: f64| (m * fs_hz / 1000.0).round() as usize;
    let mut rr: Vec<usize> = beats.iter().filter(|&&i| i > 0).map(|&i| qrs[i] - qrs[i - 1]).collect();
    if rr.len() < 4 {
        return None;
    }
    rr.sort_unstable();
    let typical = rr[rr.len() / 2];
    // From 330 ms before the QRS peak (a PR up to about 280 ms), but not into the previous
    // beat's T wave (which ends by about 55% of the RR); to 60 ms before it (the QRS onset).
    let from = ms(330.0).min(typical * 45 / 100);
    let to = ms(60.0);
    if from < to + ms(80.0) {
        return None;
    }
    let used: Vec<usize> = beats
        .iter()
        .filter(|&&i| i > 0 && qrs[i] - qrs[i - 1] >= typical * 85 / 100 && qrs[i] >= from && qrs[i] < n)
        .map(|&i| qrs[i])
        .collect();
    if used.len() < 4 {
        return None;
    }
    let len = from - to;
    let edge = ms(10.0).max(1);
    let best = leads
        .iter()
        .map(|x| {
            let avg: Vec<f64> =
                (0..len).map(|k| used.iter().map(|&q| x[q - from + k]).sum::<f64>() / used.len() as f64).collect();
            let (a, b) =
                (avg[..edge].iter().sum::<f64>() / edge as f64, avg[len - edge..].iter().sum::<f64>() / edge as f64);
            (0..len).map(|k| (avg[k] - (a + (b - a) * k as f64 / (len - 1) as f64)).abs()).fold(0.0, f64::max)
        })
        .fold(0.0, f64::max);
    Some(best)
}

/// Ventricular ectopy: each maximal stretch of ventricular beats is isolated, a couplet or a run.
fn ectopy(qrs: &[usize], fs_hz: f64, classes: &[BeatClass]) -> Ectopy {
    let mut out = Ectopy::default();
    let mut i = 0;
    while i < classes.len() {
        if classes[i] != BeatClass::Ventricular {
            i += 1;
            continue;
        }
        let start = i;
        while i < classes.len() && classes[i] == BeatClass::Ventricular {
            i += 1;
        }
        let beats = i - start;
        out.ventricular += beats;
        match beats {
            1 => out.isolated += 1,
            2 => out.couplets += 1,
            _ => {
                let span_ms = (qrs[i - 1] - qrs[start]) as f64 * 1000.0 / fs_hz;
                let heart_rate_bpm = if span_ms > 0.0 { 60_000.0 * (beats - 1) as f64 / span_ms } else { 0.0 };
                out.runs.push(VentricularRun { start: qrs[start], beats, heart_rate_bpm });
            }
        }
    }
    out
}

/// Segments and pauses of beats `qrs` with `classes`; `p_wave` gives the P wave (µV) of the
/// normal beats it is given (indices into `qrs`), None when it cannot tell.
fn label_with(
    qrs: &[usize],
    fs_hz: f64,
    classes: &[BeatClass],
    p_wave: &dyn Fn(&[usize]) -> Option<f64>,
) -> (Vec<Segment>, Vec<Pause>) {
    let rr: Vec<f64> = qrs.windows(2).map(|w| (w[1] - w[0]) as f64 * 1000.0 / fs_hz).collect();
    let pauses = qrs
        .windows(2)
        .zip(&rr)
        .filter(|(_, r)| **r > PAUSE_MS)
        .map(|(w, r)| Pause { start: w[0], length_ms: *r })
        .collect();
    let mut segments: Vec<Segment> = Vec::new();
    if rr.is_empty() || !fs_hz.is_finite() || fs_hz <= 0.0 {
        return (segments, pauses);
    }
    let step = if rr.len() < 8 { rr.len() } else { WINDOW / 2 };
    // Each window: where it labels, its rate, whether mostly paced, its P wave and how strongly
    // its RR intervals speak for AF (0 not, 1 weakly, 2 clearly).
    struct Window {
        start: usize,
        stop: usize,
        hr: f64,
        paced: bool,
        p: Option<f64>,
        af: u8,
    }
    let mut windows: Vec<Window> = Vec::new();
    let mut i = 0;
    while i < rr.len() {
        let end = (i + WINDOW).min(rr.len());
        let from = if rr.len() < 8 { 0 } else { end.saturating_sub(WINDOW).min(i) };
        // Beats from..=end, intervals from..end.
        let w = &rr[from..end];
        let hr = 60_000.0 * w.len() as f64 / w.iter().sum::<f64>();
        let normal: Vec<usize> = (from..=end).filter(|&b| classes[b] == BeatClass::Normal).collect();
        let paced = (from..=end).filter(|&b| classes[b] == BeatClass::Paced).count();
        let ventricular = (from..=end).filter(|&b| classes[b] == BeatClass::Ventricular).count();
        // Irregularity between normal beats only: no coupling or compensatory interval.
        let mut nn: Vec<Vec<f64>> = vec![Vec::new()];
        for k in from..end {
            if classes[k] == BeatClass::Normal && classes[k + 1] == BeatClass::Normal {
                if let Some(run) = nn.last_mut() {
                    run.push(rr[k]);
                }
            } else if nn.last().is_some_and(|r| !r.is_empty()) {
                nn.push(Vec::new());
            }
        }
        let af_level = |runs: &[Vec<f64>]| {
            let (nrmssd, removed, tpr, count) = irregularity(runs);
            if count < 8 || removed >= 0.4 {
                0
            } else if nrmssd > AF_NRMSSD && AF_TPR.contains(&tpr) {
                2
            } else if nrmssd > AF_WEAK_NRMSSD && AF_WEAK_TPR.contains(&tpr) {
                1
            } else {
                0
            }
        };
        // Between normal beats; or all intervals when few ventricular beats disturb them (the
        // classifier misses some AF beats' class, and dropping their intervals hides AF).
        let all = if ventricular <= 3 { af_level(&[w.to_vec()]) } else { 0 };
        let af = af_level(&nn).max(all);
        let p = p_wave(&normal);
        let (start, stop) = (qrs[i], qrs[(i + step).min(rr.len())]);
        windows.push(Window { start, stop, hr, paced: 2 * paced > end + 1 - from, p, af });
        i += step;
    }
    // AF is a sustained rhythm, and 24 intervals measure its irregularity coarsely: a window
    // that speaks for it only weakly is AF when it joins (directly or through other such
    // windows) one that speaks for it clearly. Hysteresis, as in edge tracking.
    let possible = |w: &Window| !w.paced && w.af >= 1 && w.p.is_none_or(|uv| uv < P_NOT_AF_UV);
    let mut is_af: Vec<bool> = windows.iter().map(|w| possible(w) && w.af == 2).collect();
    for k in 1..windows.len() {
        if !is_af[k] && is_af[k - 1] && possible(&windows[k]) {
            is_af[k] = true;
        }
    }
    for k in (0..windows.len().saturating_sub(1)).rev() {
        if !is_af[k] && is_af[k + 1] && possible(&windows[k]) {
            is_af[k] = true;
        }
    }
    for (w, af) in windows.iter().zip(is_af) {
        let rhythm = if w.paced {
            Rhythm::Paced
        } else if af {
            Rhythm::AtrialFibrillation
        } else if w.p.is_some_and(|uv| uv >= P_SINUS_UV) {
            match RateClass::of(w.hr) {
                RateClass::Bradycardia => Rhythm::SinusBradycardia,
                RateClass::Normal => Rhythm::SinusRhythm,
                RateClass::Tachycardia => Rhythm::SinusTachycardia,
            }
        } else {
            Rhythm::Other
        };
        match segments.last_mut() {
            Some(s) if s.rhythm == rhythm => {
                s.end = w.stop;
                s.heart_rate_bpm = w.hr;
            }
            _ => segments.push(Segment { start: w.start, end: w.stop, rhythm, heart_rate_bpm: w.hr }),
        }
    }
    // Each segment's rate over the whole of it, not its last window's.
    for s in &mut segments {
        let inside = qrs.iter().filter(|&&q| q >= s.start && q <= s.end).count();
        if inside >= 2 && s.end > s.start {
            s.heart_rate_bpm = 60_000.0 * (inside - 1) as f64 / ((s.end - s.start) as f64 * 1000.0 / fs_hz);
        }
    }
    (segments, pauses)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Irregularly irregular: a deterministic pseudo-random RR series around 700 ms.
    fn irregular_rr() -> Vec<f64> {
        let mut x = 12345u64;
        (0..120)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                450.0 + (x >> 33) as f64 % 500.0
            })
            .collect()
    }

    fn beats(rr_ms: impl IntoIterator<Item = f64>, fs: f64) -> Vec<usize> {
        let mut at = 100.0;
        let mut out = vec![100];
        for r in rr_ms {
            at += r * fs / 1000.0;
            out.push(at as usize);
        }
        out
    }

    #[test]
    fn regular_brady_tachy_af_and_a_pause() {
        let fs = 500.0;
        let (s, _) = label(&beats(std::iter::repeat_n(800.0, 60), fs), fs);
        assert!(s.iter().all(|x| x.rhythm == Rhythm::Other && (x.heart_rate_bpm - 75.0).abs() < 1.0), "{s:?}");
        let (s, _) = label(&beats(std::iter::repeat_n(1200.0, 60), fs), fs);
        assert!(s.iter().all(|x| RateClass::of(x.heart_rate_bpm) == RateClass::Bradycardia), "{s:?}");
        // Irregularly irregular: a deterministic pseudo-random RR series around 700 ms.
        let af = irregular_rr();
        let (s, _) = label(&beats(af, fs), fs);
        assert!(s.iter().all(|x| x.rhythm == Rhythm::AtrialFibrillation), "{s:?}");
        // Bigeminy: short-long alternating, a pattern, not AF.
        let big: Vec<f64> = (0..120).map(|i| if i % 2 == 0 { 500.0 } else { 1100.0 }).collect();
        let (s, _) = label(&beats(big, fs), fs);
        assert!(s.iter().all(|x| x.rhythm != Rhythm::AtrialFibrillation), "{s:?}");
        let (_, p) = label(&beats([800.0, 800.0, 3500.0, 800.0], fs), fs);
        assert_eq!(p.len(), 1);
        assert!((p[0].length_ms - 3500.0).abs() < 3.0);
    }

    /// A tracing at 500 Hz: a QRS (triangle, 60 ms, 1.2 mV) at each of `beats`, with a P wave
    /// (half sine, 100 ms, 150 µV) 160 ms before it when `p`.
    fn tracing(beats: &[usize], p: bool) -> Vec<f64> {
        let mut x = vec![0.0; beats.last().copied().unwrap_or(0) + 1000];
        for &b in beats {
            for k in 0..30 {
                x[b - 15 + k] += 1200.0 * (1.0 - (k as f64 - 15.0).abs() / 15.0);
            }
            if p && b >= 105 {
                for k in 0..50 {
                    x[b - 105 + k] += 150.0 * (std::f64::consts::PI * k as f64 / 50.0).sin();
                }
            }
        }
        x
    }

    #[test]
    fn sinus_needs_a_p_wave_and_af_ignores_ventricular_beats() {
        let fs = 500.0;
        let qrs = beats(std::iter::repeat_n(800.0, 60), fs);
        let normal = vec![BeatClass::Normal; qrs.len()];
        let with_p = tracing(&qrs, true);
        let r = analyze(&[&with_p], fs, &qrs, &normal);
        assert!(r.segments.iter().all(|s| s.rhythm == Rhythm::SinusRhythm), "{:?}", r.segments);
        let without = tracing(&qrs, false);
        let r = analyze(&[&without], fs, &qrs, &normal);
        assert!(r.segments.iter().all(|s| s.rhythm == Rhythm::Other), "{:?}", r.segments);
        let slow = beats(std::iter::repeat_n(1200.0, 40), fs);
        let r = analyze(&[&tracing(&slow, true)], fs, &slow, &vec![BeatClass::Normal; slow.len()]);
        assert!(r.segments.iter().all(|s| s.rhythm == Rhythm::SinusBradycardia), "{:?}", r.segments);
        // Ventricular trigeminy with P waves: irregular, but not AF.
        let rr: Vec<f64> = (0..90).map(|i| [800.0, 480.0, 1120.0][i % 3]).collect();
        let qrs = beats(rr, fs);
        let classes: Vec<BeatClass> =
            (0..qrs.len()).map(|i| if i % 3 == 2 { BeatClass::Ventricular } else { BeatClass::Normal }).collect();
        let r = analyze(&[&tracing(&qrs, true)], fs, &qrs, &classes);
        assert!(r.segments.iter().all(|s| s.rhythm != Rhythm::AtrialFibrillation), "{:?}", r.segments);
        assert_eq!(r.ectopy.isolated, classes.iter().filter(|c| **c == BeatClass::Ventricular).count());
        // Irregularly irregular without P waves: AF.
        let af = irregular_rr();
        let qrs = beats(af, fs);
        let r = analyze(&[&tracing(&qrs, false)], fs, &qrs, &vec![BeatClass::Normal; qrs.len()]);
        assert!(r.segments.iter().all(|s| s.rhythm == Rhythm::AtrialFibrillation), "{:?}", r.segments);
    }

    #[test]
    fn a_less_irregular_stretch_next_to_af_is_af_a_regular_one_not() {
        let fs = 500.0;
        let mut x = 12345u64;
        let mut rand = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as f64 / (1u64 << 31) as f64
        };
        // Clearly irregular, then less so (normalised RMSSD about 0.14): one AF episode.
        let mut rr: Vec<f64> = (0..96).map(|_| 450.0 + 500.0 * rand()).collect();
        let mild: Vec<f64> = (0..96).map(|_| 660.0 + 280.0 * rand()).collect();
        rr.extend(&mild);
        let (s, _) = label(&beats(rr, fs), fs);
        assert!(s.iter().all(|x| x.rhythm == Rhythm::AtrialFibrillation), "{s:?}");
        // A regular rhythm next to AF stays out of it.
        let mut rr: Vec<f64> = (0..96).map(|_| 450.0 + 500.0 * rand()).collect();
        rr.extend(std::iter::repeat_n(800.0, 96));
        let (s, _) = label(&beats(rr, fs), fs);
        assert_eq!(s.iter().map(|x| x.rhythm).collect::<Vec<_>>(), [Rhythm::AtrialFibrillation, Rhythm::Other]);
    }

    #[test]
    fn ectopy_counts_singles_couplets_and_runs_with_their_rate() {
        use BeatClass::{Normal as N, Ventricular as V};
        let classes = [N, V, N, V, V, N, V, V, V, V, N, N, V];
        let qrs: Vec<usize> = (0..classes.len()).map(|i| 100 + 200 * i).collect();
        let e = ectopy(&qrs, 500.0, &classes);
        assert_eq!((e.ventricular, e.isolated, e.couplets), (8, 2, 1));
        assert_eq!(e.runs, [VentricularRun { start: 1300, beats: 4, heart_rate_bpm: 150.0 }]);
    }

    #[test]
    fn nothing_panics_on_odd_input() {
        assert_eq!(analyze(&[], 500.0, &[], &[]), RhythmReading::default());
        let r = analyze(&[&[0.0; 100]], 500.0, &[50], &[]);
        assert!(r.segments.is_empty());
        let r = analyze(&[&vec![0.0; 2000]], 500.0, &[100, 600, 1100], &[]);
        assert_eq!(r.segments.len(), 1);
        let r = analyze(&[&vec![0.0; 2000]], f64::NAN, &[100, 600, 1100], &[]);
        assert!(r.segments.is_empty());
    }
}
