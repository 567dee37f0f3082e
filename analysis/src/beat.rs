//! The median beat of each lead and what is measured on it: QRS onset and end (the J point)
//! from the spatial velocity of all leads together, QRS duration, and the ST deviation of each
//! lead at J and J+60 ms against its PR segment, in µV; the PR interval (P onset by the spatial
//! magnitude of the P hump, to QRS onset); the end of the T wave by the tangent
//! method (the median over leads with a clear T), QT, and QTc by Bazett and Fridericia.

use serde::Serialize;

/// Measurements on the median beat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MedianMeasures {
    /// Beats that went into the median.
    pub beats: usize,
    /// QRS duration, ms.
    pub qrs_ms: f64,
    /// The typical RR interval, ms.
    pub rr_ms: f64,
    /// PR (P onset to QRS onset), ms; None when the median beat has no clear P wave (AF, junctional
    /// rhythm, or a P lost in the previous T at fast rates).
    pub pr_ms: Option<f64>,
    /// QT (QRS onset to T end), ms; None when no lead has a clear T wave.
    pub qt_ms: Option<f64>,
    /// QTc by Bazett (QT / √RR), ms.
    pub qtc_bazett_ms: Option<f64>,
    /// QTc by Fridericia (QT / ∛RR), ms.
    pub qtc_fridericia_ms: Option<f64>,
    /// Per lead, in input order.
    pub leads: Vec<LeadSt>,
}

/// One lead's ST deviation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadSt {
    /// Lead name.
    pub lead: String,
    /// At the J point, µV (positive: elevation).
    pub st_j_uv: f64,
    /// At J+60 ms, µV.
    pub st_j60_uv: f64,
}

/// Before and after the QRS in a median beat, ms.
const BEFORE_MS: f64 = 300.0;
const AFTER_MS: f64 = 700.0;
/// A T wave smaller than this (µV) gives no T end.
const T_MIN_UV: f64 = 100.0;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A P wave this large (spatial magnitude from the PR baseline, µV) counts as clear.
const P_MIN_UV: f64 = 50.0;

/// The P onset of the median beats `medians` (each lead's baseline in `bases`) before the QRS
/// `onset` (sample in the beat), at `fs_hz` with the typical RR `typical_rr` (samples): the P
/// is the largest spatial hump 40-300 ms before the QRS (not reaching back past 55% of the RR,
/// where the previous T wave may be); its onset is where, walking back from its peak, the
/// magnitude falls under a tenth of the peak.
fn p_onset(medians: &[Vec<f64>], bases: &[f64], onset: usize, fs_hz: f64, typical_rr: f64) -> Option<usize> {
    let ms = |m: f64| (m * fs_hz / 1000.0).round() as usize;
    let reach = ms(300.0).min((0.55 * typical_rr) as usize);
    // The median beat starts 300 ms before the QRS peak: the window may start at its start.
    let (from, to) = (onset.saturating_sub(reach), onset.checked_sub(ms(40.0))?);
    if to <= from + ms(40.0) {
        return None;
    }
    let smooth = ms(10.0).max(1);
    // Each lead against the line from its level at the window's start to its PR baseline: the
    // TP and PR levels differ (atrial repolarisation, wander), the P stands out of both.
    let len = onset - from;
    let starts: Vec<f64> = medians.iter().map(|m| m[from..from + smooth].iter().sum::<f64>() / smooth as f64).collect();
    let raw: Vec<f64> = (0..len)
        .map(|k| {
            let t = k as f64 / len as f64;
            medians
                .iter()
                .zip(bases.iter().zip(&starts))
                .map(|(m, (b, s))| (m[from + k] - (s + (b - s) * t)).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mag: Vec<f64> = (0..raw.len())
        .map(|k| {
            let (a, b) = (k.saturating_sub(smooth / 2), (k + smooth / 2 + 1).min(raw.len()));
            raw[a..b].iter().sum::<f64>() / (b - a) as f64
        })
        .collect();
    let peak = (0..to - from).max_by(|&i, &j| mag[i].total_cmp(&mag[j]))?;
    let height = mag[peak];
    // A clear hump inside the window, not at its edge.
    if height < P_MIN_UV || peak < ms(20.0) {
        return None;
    }
    let mut k = peak;
    while k > 0 && mag[k] > 0.2 * height {
        k -= 1;
    }
    Some(from + k)
}

/// Measures the median beat of `leads` (name, µV at `fs_hz`) over the QRS positions `qrs`.
/// None when fewer than three regular beats fit.
pub fn measure(leads: &[(&str, &[f64])], fs_hz: f64, qrs: &[usize]) -> Option<MedianMeasures> {
    let ms = |m: f64| (m * fs_hz / 1000.0).round() as usize;
    let (before, after) = (ms(BEFORE_MS), ms(AFTER_MS));
    let n = leads.iter().map(|(_, x)| x.len()).min()?;
    let mut rr: Vec<f64> = qrs.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let typical = median(&mut rr);
    // Regular beats only: neither RR on either side shorter than 80% of the typical one.
    let chosen: Vec<usize> = (1..qrs.len().saturating_sub(1))
        .filter(|&i| {
            let (a, b) = ((qrs[i] - qrs[i - 1]) as f64, (qrs[i + 1] - qrs[i]) as f64);
            a > 0.8 * typical && b > 0.8 * typical && qrs[i] >= before && qrs[i] + after < n
        })
        .map(|i| qrs[i])
        .collect();
    if chosen.len() < 3 {
        return None;
    }
    let len = before + after;
    let medians: Vec<Vec<f64>> = leads
        .iter()
        .map(|(_, x)| {
            (0..len)
                .map(|k| {
                    let mut column: Vec<f64> = chosen.iter().map(|&r| x[r - before + k]).collect();
                    median(&mut column)
                })
                .collect()
        })
        .collect();
    // Spatial velocity: how fast all leads move together, smoothed over 10 ms.
    let step = ms(4.0).max(1);
    let raw: Vec<f64> = (0..len)
        .map(|k| {
            let (a, b) = (k.saturating_sub(step), (k + step).min(len - 1));
            medians.iter().map(|m| (m[b] - m[a]).powi(2)).sum::<f64>().sqrt()
        })
        .collect();
    let smooth = ms(10.0).max(1);
    let velocity: Vec<f64> = (0..len)
        .map(|k| {
            let (a, b) = (k.saturating_sub(smooth / 2), (k + smooth / 2 + 1).min(len));
            raw[a..b].iter().sum::<f64>() / (b - a) as f64
        })
        .collect();
    let (qa, qb) = (before - ms(60.0), before + ms(60.0));
    let peak = velocity[qa..qb].iter().copied().fold(0.0, f64::max);
    if peak <= 0.0 {
        return None;
    }
    let quiet = 0.08 * peak;
    // Onset: walking back from the peak region to where the velocity stays low.
    let onset =
        (before.saturating_sub(ms(150.0))..before).rev().find(|&k| velocity[k] < quiet).unwrap_or(before - ms(50.0));
    let offset = (before..(before + ms(200.0)).min(len)).find(|&k| k > before + ms(20.0) && velocity[k] < quiet)?;
    // Each lead's baseline: its PR segment, 30 to 10 ms before the QRS onset.
    let (a, b) =
        (onset.saturating_sub(ms(30.0)), onset.saturating_sub(ms(10.0)).max(onset.saturating_sub(ms(30.0)) + 1));
    let bases: Vec<f64> = medians.iter().map(|m| median(&mut m[a..b].to_vec())).collect();
    // T end per lead: the tangent at the steepest return of the T wave meets the baseline.
    let t_limit = (before + (0.85 * typical) as usize).min(len - 1);
    let mut t_ends: Vec<f64> = Vec::new();
    for (m, &base) in medians.iter().zip(&bases) {
        let from = offset + ms(80.0);
        if from + ms(40.0) >= t_limit {
            continue;
        }
        let Some(peak) = (from..t_limit).max_by(|&i, &j| (m[i] - base).abs().total_cmp(&(m[j] - base).abs())) else {
            continue;
        };
        let height = m[peak] - base;
        if height.abs() < T_MIN_UV {
            continue;
        }
        let d = ms(8.0).max(1);
        let slope_at = |k: usize| (m[(k + d).min(len - 1)] - m[k.saturating_sub(d)]) / (2 * d) as f64;
        // The steepest point on the way back to baseline (towards it: opposite sign to the peak).
        let Some(steep) = (peak..t_limit.min(peak + ms(250.0)))
            .max_by(|&i, &j| (-slope_at(i) * height.signum()).total_cmp(&(-slope_at(j) * height.signum())))
        else {
            continue;
        };
        let slope = slope_at(steep);
        if slope * height.signum() >= 0.0 {
            continue;
        }
        let end = steep as f64 + (base - m[steep]) / slope;
        if end > steep as f64 && end < t_limit as f64 {
            t_ends.push(end);
        }
    }
    let pr_ms = p_onset(&medians, &bases, onset, fs_hz, typical).map(|p| (onset - p) as f64 * 1000.0 / fs_hz);
    let rr_ms = typical * 1000.0 / fs_hz;
    let qt_ms = (!t_ends.is_empty()).then(|| (median(&mut t_ends) - onset as f64) * 1000.0 / fs_hz);
    let rr_s = rr_ms / 1000.0;
    let measures = leads
        .iter()
        .zip(medians.iter().zip(&bases))
        .map(|((name, _), (m, &base))| {
            let at = |k: usize| m[k.min(len - 1)] - base;
            LeadSt { lead: (*name).to_string(), st_j_uv: at(offset), st_j60_uv: at(offset + ms(60.0)) }
        })
        .collect();
    Some(MedianMeasures {
        beats: chosen.len(),
        qrs_ms: (offset - onset) as f64 * 1000.0 / fs_hz,
        pr_ms,
        rr_ms,
        qt_ms,
        qtc_bazett_ms: qt_ms.map(|qt| qt / rr_s.sqrt()),
        qtc_fridericia_ms: qt_ms.map(|qt| qt / rr_s.cbrt()),
        leads: measures,
    })
}
