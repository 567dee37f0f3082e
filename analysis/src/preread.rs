//! The pre-read of one recording: what the specialist sees before reading (an aid, never a
//! diagnosis): the signal-quality gate, the QRS positions, heart rate and RR statistics, pauses,
//! the median beat's QRS duration and ST deviation per lead, and the flags that raise priority.
//! Also a small [`Summary`] of the pre-read, stable enough to store, and [`changes`] between two
//! summaries of the same patient.

use crate::classify::BeatClass;
use crate::rhythm::{RateClass, Rhythm};
use serde::{Deserialize, Serialize};

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
    /// Each beat's class, one letter per QRS in `qrs` (N normal, V ventricular, P paced).
    pub beat_classes: String,
    /// Rhythm segments in time order.
    pub rhythm: Vec<crate::rhythm::Segment>,
    /// Ventricular ectopy: isolated beats, couplets, runs.
    pub ectopy: crate::rhythm::Ectopy,
    /// Pauses over 3 s.
    pub pauses: Vec<crate::rhythm::Pause>,
    /// The median beat's measures, over normal beats (None under three regular ones).
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
    let classes = crate::classify::classify(&views, fs_hz, &qrs);
    let rhythm = crate::rhythm::analyze(&views, fs_hz, &qrs, &classes);
    // The median beat of the normal beats: a ventricular one would widen the QRS and shift ST.
    let normal: Vec<usize> =
        qrs.iter().zip(&classes).filter(|(_, c)| **c != BeatClass::Ventricular).map(|(q, _)| *q).collect();
    let median = crate::beat::measure(&all, fs_hz, &normal);
    let heart_rate_bpm = stats.as_ref().map(|s| 60_000.0 / s.mean_ms);
    let flags = crate::flags::flags(median.as_ref(), heart_rate_bpm, &rhythm, fs_hz, p);
    PreRead {
        quality,
        beat_classes: crate::classify::codes(&classes),
        pauses: rhythm.pauses,
        rhythm: rhythm.segments,
        ectopy: rhythm.ectopy,
        median,
        flags,
        sample_rate_hz: fs_hz,
        leads: leads.iter().map(|(n, _)| (*n).to_string()).collect(),
        heart_rate_bpm,
        rr: stats,
        qrs,
    }
}

/// What two ECGs of one patient are compared on: small and stable, so the hub can store it as
/// JSON and compare a later ECG with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The rhythm that lasted longest (None without rhythm segments).
    pub rhythm: Option<Rhythm>,
    /// The mean heart rate's class.
    pub rate_class: Option<RateClass>,
    /// Mean heart rate, /min.
    pub heart_rate_bpm: Option<f64>,
    /// QRS duration of the median beat, ms.
    pub qrs_ms: Option<f64>,
    /// Leads with flagged ST elevation.
    pub st_leads: Vec<String>,
}

/// One difference between two summaries, in Simplified Chinese and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// In Simplified Chinese.
    pub zh: String,
    /// In English.
    pub en: String,
}

impl PreRead {
    /// The summary to compare with a later ECG of the same patient.
    pub fn summary(&self) -> Summary {
        let mut longest: Vec<(Rhythm, usize)> = Vec::new();
        for s in &self.rhythm {
            let len = s.end - s.start;
            match longest.iter_mut().find(|(r, _)| *r == s.rhythm) {
                Some((_, total)) => *total += len,
                None => longest.push((s.rhythm, len)),
            }
        }
        // Ties go to the earlier rhythm, so the answer does not depend on the sort.
        let rhythm = longest.iter().rev().max_by_key(|(_, len)| *len).map(|(r, _)| *r);
        let st_leads = self
            .flags
            .iter()
            .filter(|f| f.code == crate::flags::FlagCode::StElevation)
            .flat_map(|f| f.leads.iter().cloned())
            .collect();
        Summary {
            rhythm,
            rate_class: self.heart_rate_bpm.map(RateClass::of),
            heart_rate_bpm: self.heart_rate_bpm,
            qrs_ms: self.median.as_ref().map(|m| m.qrs_ms),
            st_leads,
        }
    }
}

/// QRS at least this long is wide, ms.
const WIDE_QRS_MS: f64 = 120.0;
/// A QRS change this large counts even within one class, ms.
const QRS_CHANGE_MS: f64 = 20.0;

/// What changed from `prev` to `now` (two ECGs of one patient, earlier first): the rhythm, the
/// rate class, the QRS width (crossing 120 ms or moving by 20 ms or more) and ST elevation.
pub fn changes(prev: &Summary, now: &Summary) -> Vec<Change> {
    let mut out = Vec::new();
    let mut push = |zh: String, en: String| out.push(Change { zh, en });
    match (prev.rhythm, now.rhythm) {
        (Some(a), Some(b)) if a != b => {
            let ((za, ea), (zb, eb)) = (a.names(), b.names());
            if b == Rhythm::AtrialFibrillation {
                push("新出现房颤".into(), "new atrial fibrillation".into());
            } else if a == Rhythm::AtrialFibrillation {
                push(format!("房颤已转为{zb}"), format!("atrial fibrillation no longer present, now {eb}"));
            } else {
                push(format!("节律由{za}变为{zb}"), format!("rhythm changed from {ea} to {eb}"));
            }
        }
        _ => {}
    }
    if let (Some(a), Some(b)) = (prev.rate_class, now.rate_class)
        && a != b
    {
        let ((za, ea), (zb, eb)) = (a.names(), b.names());
        push(format!("心率分级由{za}变为{zb}"), format!("rate class changed from {ea} to {eb}"));
    }
    if let (Some(a), Some(b)) = (prev.qrs_ms, now.qrs_ms) {
        let crossed = (a >= WIDE_QRS_MS) != (b >= WIDE_QRS_MS);
        if crossed || (b - a).abs() >= QRS_CHANGE_MS {
            if b > a {
                push(format!("QRS 由 {a:.0} ms 增宽至 {b:.0} ms"), format!("QRS widened from {a:.0} to {b:.0} ms"));
            } else {
                push(format!("QRS 由 {a:.0} ms 变窄至 {b:.0} ms"), format!("QRS narrowed from {a:.0} to {b:.0} ms"));
            }
        }
    }
    let new: Vec<&str> = now.st_leads.iter().filter(|l| !prev.st_leads.contains(l)).map(String::as_str).collect();
    if !new.is_empty() {
        let l = new.join(" ");
        push(format!("新出现 {l} ST 段抬高"), format!("new ST elevation in {l}"));
    }
    let gone: Vec<&str> = prev.st_leads.iter().filter(|l| !now.st_leads.contains(l)).map(String::as_str).collect();
    if !gone.is_empty() {
        let l = gone.join(" ");
        push(format!("{l} ST 段抬高已消失"), format!("ST elevation in {l} no longer present"));
    }
    out
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

    fn summary(rhythm: Rhythm, hr: f64, qrs_ms: f64, st: &[&str]) -> Summary {
        Summary {
            rhythm: Some(rhythm),
            rate_class: Some(RateClass::of(hr)),
            heart_rate_bpm: Some(hr),
            qrs_ms: Some(qrs_ms),
            st_leads: st.iter().map(|l| (*l).to_string()).collect(),
        }
    }

    #[test]
    fn changes_name_new_af_rate_class_qrs_widening_and_new_st_elevation() {
        let before = summary(Rhythm::SinusRhythm, 72.0, 90.0, &[]);
        assert!(changes(&before, &before).is_empty());
        let after = summary(Rhythm::AtrialFibrillation, 128.0, 140.0, &["V2", "V3"]);
        let c = changes(&before, &after);
        let en: Vec<&str> = c.iter().map(|c| c.en.as_str()).collect();
        assert_eq!(
            en,
            [
                "new atrial fibrillation",
                "rate class changed from normal to tachycardia",
                "QRS widened from 90 to 140 ms",
                "new ST elevation in V2 V3"
            ]
        );
        assert_eq!(c[0].zh, "新出现房颤");
        assert_eq!(c[1].zh, "心率分级由正常变为心动过速");
        assert_eq!(c[2].zh, "QRS 由 90 ms 增宽至 140 ms");
        assert_eq!(c[3].zh, "新出现 V2 V3 ST 段抬高");
        // Small QRS moves within one class do not count; crossing 120 ms does.
        assert!(changes(&before, &summary(Rhythm::SinusRhythm, 75.0, 105.0, &[])).is_empty());
        let c =
            changes(&summary(Rhythm::SinusRhythm, 75.0, 112.0, &[]), &summary(Rhythm::SinusRhythm, 75.0, 124.0, &[]));
        assert_eq!(c.len(), 1, "{c:?}");
        // Back from AF, ST resolved; and the summary survives JSON.
        let c = changes(&after, &before);
        assert!(c.iter().any(|c| c.en == "atrial fibrillation no longer present, now sinus rhythm"), "{c:?}");
        assert!(c.iter().any(|c| c.en == "ST elevation in V2 V3 no longer present"), "{c:?}");
        let json = serde_json::to_string(&after).expect("json");
        assert_eq!(serde_json::from_str::<Summary>(&json).expect("back"), after);
    }
}
