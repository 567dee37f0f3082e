//! The pre-read of one recording: what the specialist sees before reading (an aid, never a
//! diagnosis). So far: the signal-quality gate, the QRS positions and the heart rate and RR
//! statistics they give.

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
}

/// Analyses `leads` (name, µV samples), all at `fs_hz`.
pub fn analyze(leads: &[(&str, &[f64])], fs_hz: f64) -> PreRead {
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
    PreRead {
        quality,
        sample_rate_hz: fs_hz,
        leads: leads.iter().map(|(n, _)| (*n).to_string()).collect(),
        heart_rate_bpm: stats.as_ref().map(|s| 60_000.0 / s.mean_ms),
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
