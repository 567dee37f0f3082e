//! Rhythm over time from the QRS positions: rate class (sinus bradycardia under 60 /min,
//! tachycardia over 100 /min) and atrial fibrillation, labelled per window of beats, with pauses
//! over 3 s. AF is an irregularly irregular RR series: large beat-to-beat differences with no
//! pattern. Ectopic beats make RR irregular too, but in a pattern (bigeminy alternates, a
//! compensatory pause follows a short RR), which the turning-point ratio and the outlier trim
//! keep apart. Measured on MIT-BIH (tests/mitdb.rs): AF by duration Se 87%, +P 34%; records
//! full of ectopic beats still read as AF, so the pre-read does not use it yet.

use serde::Serialize;

/// A rhythm label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rhythm {
    /// Regular, 60-100 /min.
    Regular,
    /// Regular, under 60 /min.
    Bradycardia,
    /// Regular, over 100 /min.
    Tachycardia,
    /// Atrial fibrillation.
    AtrialFibrillation,
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
    /// Mean rate over the stretch, /min.
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

/// An RR gap this long is a pause, ms.
pub const PAUSE_MS: f64 = 3000.0;
/// Beats per analysis window.
const WINDOW: usize = 24;

/// The irregularity of an RR window: (normalised RMSSD of the intervals left after taking out
/// ectopic pairs, share of intervals taken out, turning-point ratio).
fn irregularity(rr: &[f64]) -> (f64, f64, f64) {
    let mut sorted = rr.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    // An ectopic beat: a premature RR followed by a compensatory one. Both leave the statistics.
    let mut out = vec![false; rr.len()];
    for i in 0..rr.len().saturating_sub(1) {
        let compensated = ((rr[i] + rr[i + 1]) - 2.0 * median).abs() < 0.1 * median;
        if rr[i] < 0.85 * median && rr[i + 1] > 1.1 * median && compensated {
            out[i] = true;
            out[i + 1] = true;
        }
    }
    let kept: Vec<f64> = rr.iter().zip(&out).filter(|(_, o)| !**o).map(|(r, _)| *r).collect();
    let diffs: Vec<f64> =
        rr.windows(2).zip(out.windows(2)).filter(|(_, o)| !o[0] && !o[1]).map(|(w, _)| w[1] - w[0]).collect();
    let mean = kept.iter().sum::<f64>() / kept.len().max(1) as f64;
    let rmssd =
        if diffs.is_empty() { 0.0 } else { (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt() };
    let turns = rr.windows(3).filter(|w| (w[1] > w[0] && w[1] > w[2]) || (w[1] < w[0] && w[1] < w[2])).count();
    let removed = out.iter().filter(|o| **o).count() as f64 / rr.len() as f64;
    (rmssd / mean.max(1.0), removed, turns as f64 / rr.len().saturating_sub(2).max(1) as f64)
}

/// The rhythm of beats `qrs` (sample indices at `fs_hz`): labelled segments and pauses.
pub fn label(qrs: &[usize], fs_hz: f64) -> (Vec<Segment>, Vec<Pause>) {
    let rr: Vec<f64> = qrs.windows(2).map(|w| (w[1] - w[0]) as f64 * 1000.0 / fs_hz).collect();
    let pauses = qrs
        .windows(2)
        .zip(&rr)
        .filter(|(_, r)| **r > PAUSE_MS)
        .map(|(w, r)| Pause { start: w[0], length_ms: *r })
        .collect();
    let mut segments: Vec<Segment> = Vec::new();
    if rr.len() < 8 {
        if let (Some(&start), Some(&end)) = (qrs.first(), qrs.last())
            && !rr.is_empty()
        {
            let hr = 60_000.0 * rr.len() as f64 / rr.iter().sum::<f64>();
            segments.push(Segment { start, end, rhythm: rate_class(hr), heart_rate_bpm: hr });
        }
        return (segments, pauses);
    }
    let step = WINDOW / 2;
    let mut i = 0;
    while i < rr.len() {
        let end = (i + WINDOW).min(rr.len());
        let from = end.saturating_sub(WINDOW).min(i);
        let w = &rr[from..end];
        let hr = 60_000.0 * w.len() as f64 / w.iter().sum::<f64>();
        let (nrmssd, removed, tpr) = irregularity(w);
        let af = nrmssd > 0.15 && removed < 0.4 && (0.5..=0.85).contains(&tpr);
        let rhythm = if af { Rhythm::AtrialFibrillation } else { rate_class(hr) };
        let (start, stop) = (qrs[i], qrs[(i + step).min(rr.len())]);
        match segments.last_mut() {
            Some(s) if s.rhythm == rhythm => {
                s.end = stop;
                s.heart_rate_bpm = hr;
            }
            _ => segments.push(Segment { start, end: stop, rhythm, heart_rate_bpm: hr }),
        }
        i += step;
    }
    (segments, pauses)
}

fn rate_class(hr: f64) -> Rhythm {
    if hr < 60.0 {
        Rhythm::Bradycardia
    } else if hr > 100.0 {
        Rhythm::Tachycardia
    } else {
        Rhythm::Regular
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(s.iter().all(|x| x.rhythm == Rhythm::Regular), "{s:?}");
        let (s, _) = label(&beats(std::iter::repeat_n(1200.0, 60), fs), fs);
        assert!(s.iter().all(|x| x.rhythm == Rhythm::Bradycardia), "{s:?}");
        // Irregularly irregular: a deterministic pseudo-random RR series around 700 ms.
        let mut x = 12345u64;
        let af: Vec<f64> = (0..120)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                450.0 + (x >> 33) as f64 % 500.0
            })
            .collect();
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
}
