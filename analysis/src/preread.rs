//! The pre-read of one recording: what the specialist sees before reading (an aid, never a
//! diagnosis): the signal-quality gate, the QRS positions, heart rate and RR statistics, pauses,
//! the median beat's QRS duration and ST deviation per lead, and the flags that raise priority.

use serde::Serialize;

/// RR interval statistics, ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RrStats {
    /// Mean RR, ms.
    pub mean_ms: f64,
    /// Shortest RR, ms.
    pub min_ms: f64,
    /// Longest RR, ms.
    pub max_ms: f64,
    /// Standard deviation of RR (SDNN over all beats), ms.
    pub sd_ms: f64,
}

/// The pre-read of one recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreRead {
    /// Sampling rate the positions refer to, Hz.
    pub sample_rate_hz: f64,
    /// The leads analysed, in input order.
    pub leads: Vec<String>,
    /// QRS positions, sample indices at `sample_rate_hz`.
    pub qrs: Vec<usize>,
    /// Mean heart rate over the recording, beats per minute (None under two beats).
    pub heart_rate_bpm: Option<f64>,
    /// RR statistics (None under two beats).
    pub rr: Option<RrStats>,
    /// The signal-quality gate's verdict.
    pub quality: crate::quality::Quality,
    /// Pauses over 3 s.
    pub pauses: Vec<crate::rhythm::Pause>,
    /// The median beat's measures (None under three regular beats).
    pub median: Option<crate::beat::MedianMeasures>,
    /// Flags that raise the study's priority, with their reasons.
    pub flags: Vec<crate::flags::Flag>,
}

/// Analyses `leads` (name, µV samples), all at `fs_hz`, for a patient of unknown sex and age.
pub fn analyze(leads: &[(&str, &[f64])], fs_hz: f64) -> PreRead {
    analyze_for(leads, fs_hz, &crate::flags::PatientContext::default())
}

/// A limb lead from I and II.
type Derive = fn(f64, f64) -> f64;

/// The limb leads a recording of I and II lacks, derived as a cart derives them (Einthoven,
/// Goldberger): III = II − I, aVR = −(I + II)/2, aVL = I − II/2, aVF = II − I/2.
fn derived_limb_leads(leads: &[(&str, &[f64])]) -> Vec<(&'static str, Vec<f64>)> {
    let find = |name: &str| leads.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, x)| *x);
    let (Some(i), Some(ii)) = (find("I"), find("II")) else { return Vec::new() };
    let formulas: [(&'static str, Derive); 4] = [
        ("III", |i, ii| ii - i),
        ("aVR", |i, ii| -(i + ii) / 2.0),
        ("aVL", |i, ii| i - ii / 2.0),
        ("aVF", |i, ii| ii - i / 2.0),
    ];
    formulas
        .iter()
        .filter(|(name, _)| find(name).is_none())
        .map(|(name, f)| (*name, i.iter().zip(ii).map(|(a, b)| f(*a, *b)).collect()))
        .collect()
}

/// Analyses `leads` (name, µV samples), all at `fs_hz`, of patient `p`. Limb leads the
/// recording lacks are derived from I and II for the measurements.
pub fn analyze_for(leads: &[(&str, &[f64])], fs_hz: f64, p: &crate::flags::PatientContext) -> PreRead {
    let derived = derived_limb_leads(leads);
    let all: Vec<(&str, &[f64])> =
        leads.iter().copied().chain(derived.iter().map(|(n, x)| (*n, x.as_slice()))).collect();
    // Beats and quality from what was recorded; the median beat from every limb lead.
    let views: Vec<&[f64]> = leads.iter().map(|(_, x)| *x).collect();
    let qrs = crate::qrs::detect(&views, fs_hz).beats;
    let rr: Vec<f64> = qrs.windows(2).map(|w| (w[1] - w[0]) as f64 * 1000.0 / fs_hz).collect();
    let stats = (!rr.is_empty()).then(|| {
        let mean = rr.iter().sum::<f64>() / rr.len() as f64;
        let var = rr.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rr.len() as f64;
        RrStats {
            mean_ms: mean,
            min_ms: rr.iter().copied().fold(f64::INFINITY, f64::min),
            max_ms: rr.iter().copied().fold(0.0, f64::max),
            sd_ms: var.sqrt(),
        }
    });
    let quality = crate::quality::assess(leads, fs_hz, &qrs);
    let (_, pauses) = crate::rhythm::label(&qrs, fs_hz);
    let median = crate::beat::measure(&all, fs_hz, &qrs);
    let heart_rate_bpm = stats.as_ref().map(|s| 60_000.0 / s.mean_ms);
    let flags = crate::flags::flags(median.as_ref(), heart_rate_bpm, &pauses, p);
    PreRead {
        quality,
        pauses,
        median,
        flags,
        sample_rate_hz: fs_hz,
        leads: leads.iter().map(|(n, _)| (*n).to_string()).collect(),
        heart_rate_bpm,
        rr: stats,
        qrs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seventy_five_per_minute_reads_as_seventy_five() {
        let fs = 500.0;
        let mut x = vec![0.0; 20 * 500];
        for beat in (200..x.len() - 100).step_by(400) {
            for k in 0..20 {
                x[beat + k] += 1000.0 * (1.0 - (k as f64 - 10.0).abs() / 10.0);
            }
        }
        let p = analyze(&[("II", &x)], fs);
        assert!(p.qrs.len() >= 23, "{:?}", p.qrs);
        let hr = p.heart_rate_bpm.expect("rate");
        assert!((hr - 75.0).abs() < 0.5, "{hr}");
        assert!(p.rr.expect("rr").sd_ms < 5.0);
    }
}
