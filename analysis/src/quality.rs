//! The signal-quality gate: what makes a tracing worth retaking while the patient is still on
//! the couch. Per lead: lead off or flat, clipping at the amplifier's rail, mains interference
//! (50 Hz and 60 Hz with their harmonics), baseline wander, muscle noise. Per study: suspected
//! LA/RA reversal and missing chest leads. Every figure carries its unit; every finding has a
//! message in Simplified Chinese and English.

use crate::filter::{Biquad, filtfilt};
use serde::Serialize;

/// A lead's peak-to-peak (µV) under which a 1 s stretch counts as flat.
pub const FLAT_UV: f64 = 20.0;
/// Mains amplitude (µV, peak, fundamental and harmonics together) that is flagged.
pub const MAINS_UV: f64 = 20.0;
/// Baseline excursion (µV, peak-to-peak of the under-0.5 Hz part in a typical 10 s) that is
/// flagged.
pub const WANDER_UV: f64 = 1500.0;
/// Muscle noise (µV RMS above 35 Hz, between beats, mains removed) that is flagged.
pub const MUSCLE_UV: f64 = 35.0;
/// Share of samples pinned at the rail (%) that is flagged as clipping.
pub const CLIPPED_PERCENT: f64 = 0.5;

/// One problem of one lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadProblem {
    /// Flat for over half the recording: electrode off or not connected.
    LeadOff,
    /// Samples pinned at the amplifier's limits.
    Clipping,
    /// 50 Hz mains interference.
    Mains50Hz,
    /// 60 Hz mains interference.
    Mains60Hz,
    /// The baseline drifts (breathing, movement, a loose electrode).
    BaselineWander,
    /// High-frequency noise from muscle (a cold or trembling patient).
    MuscleNoise,
}

impl LeadProblem {
    /// What the clinic reads, Chinese and English.
    pub fn message(self) -> (&'static str, &'static str) {
        match self {
            LeadProblem::LeadOff => ("导联脱落", "lead off"),
            LeadProblem::Clipping => ("信号饱和削顶", "clipped"),
            LeadProblem::Mains50Hz => ("50 Hz 工频干扰", "50 Hz mains interference"),
            LeadProblem::Mains60Hz => ("60 Hz 工频干扰", "60 Hz mains interference"),
            LeadProblem::BaselineWander => ("基线漂移", "baseline wander"),
            LeadProblem::MuscleNoise => ("肌电干扰", "muscle noise"),
        }
    }
}

/// One lead's measures and problems.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadQuality {
    /// Lead name.
    pub lead: String,
    /// Share of 1 s stretches flatter than [`FLAT_UV`], %.
    pub flat_percent: f64,
    /// Share of samples pinned at the rail, %.
    pub clipped_percent: f64,
    /// 50 Hz mains amplitude (fundamental and harmonics), µV.
    pub mains_50hz_uv: f64,
    /// 60 Hz mains amplitude (fundamental and harmonics), µV.
    pub mains_60hz_uv: f64,
    /// Typical baseline excursion in 10 s, µV peak-to-peak.
    pub wander_uv: f64,
    /// Muscle noise between beats in the noisiest 10 s, µV RMS.
    pub muscle_uv: f64,
    /// Where the noise is: the 10 s stretches over [`MUSCLE_UV`], as (start, end) in seconds.
    pub noisy_stretches_s: Vec<(f64, f64)>,
    /// What is wrong with it.
    pub problems: Vec<LeadProblem>,
}

/// A problem of the study as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyProblem {
    /// Lead I's QRS is inverted and aVR's upright: the LA and RA electrodes are probably swapped
    /// (or the heart is on the right).
    LimbLeadReversal,
    /// A 12-lead recording without these chest leads.
    MissingChestLeads(Vec<String>),
}

impl StudyProblem {
    /// What the clinic reads, Chinese and English.
    pub fn message(&self) -> (String, String) {
        match self {
            StudyProblem::LimbLeadReversal => (
                "疑似左右手电极接反（I 导联倒置、aVR 直立）".into(),
                "suspected LA/RA electrode reversal (lead I inverted, aVR upright)".into(),
            ),
            StudyProblem::MissingChestLeads(v) => {
                (format!("缺少胸导联 {}", v.join("、")), format!("chest leads missing: {}", v.join(", ")))
            }
        }
    }
}

/// The gate's verdict on a recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Each lead.
    pub leads: Vec<LeadQuality>,
    /// The study as a whole.
    pub study: Vec<StudyProblem>,
    /// What to tell the clinic, one line each, Chinese then English ("请重做：V4 导联脱落").
    pub messages: Vec<(String, String)>,
}

impl Quality {
    /// True when the clinic should retake the recording (it can still send it).
    pub fn retake(&self) -> bool {
        !self.messages.is_empty()
    }
}

/// The peak amplitude of `x` at `f_hz` (Goertzel over the whole of `x`).
fn amplitude_at(x: &[f64], fs_hz: f64, f_hz: f64) -> f64 {
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * f_hz / fs_hz;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / n as f64
}

/// Mains at `base_hz`: the line above the spectrum around it, fundamental and harmonics below
/// Nyquist together, µV peak.
fn mains(x: &[f64], fs_hz: f64, base_hz: f64) -> f64 {
    let mut total = 0.0;
    for h in 1..=3 {
        let f = base_hz * f64::from(h);
        if f > fs_hz / 2.0 - 3.0 {
            break;
        }
        let line = amplitude_at(x, fs_hz, f);
        let mut around: Vec<f64> = [-2.3, -1.7, 1.7, 2.3].iter().map(|d| amplitude_at(x, fs_hz, f + d)).collect();
        around.sort_by(f64::total_cmp);
        let floor = (around[1] + around[2]) / 2.0;
        total += (line - floor).max(0.0).powi(2);
    }
    total.sqrt()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn lead_quality(name: &str, x: &[f64], fs_hz: f64, qrs: &[usize]) -> LeadQuality {
    let n = x.len();
    let second = (fs_hz as usize).max(1);
    let windows: Vec<&[f64]> = x.chunks(second).filter(|c| c.len() == second).collect();
    let ptp = |c: &[f64]| {
        let (lo, hi) = c.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        hi - lo
    };
    let flat = windows.iter().filter(|c| ptp(c) < FLAT_UV).count();
    let flat_percent = if windows.is_empty() { 100.0 } else { 100.0 * flat as f64 / windows.len() as f64 };
    // Clipping: runs of four or more samples pinned at the lead's own extreme values.
    let (lo, hi) = x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let mut pinned = 0usize;
    let mut run = 0usize;
    for (i, &v) in x.iter().enumerate() {
        let at_rail = hi > lo && (v == hi || v == lo);
        run = if at_rail && i > 0 && x[i - 1] == v {
            run + 1
        } else if at_rail {
            1
        } else {
            0
        };
        if run == 4 {
            pinned += 4;
        } else if run > 4 {
            pinned += 1;
        }
    }
    let clipped_percent = if n == 0 { 0.0 } else { 100.0 * pinned as f64 / n as f64 };
    let mains_50hz_uv = mains(x, fs_hz, 50.0);
    let mains_60hz_uv = mains(x, fs_hz, 60.0);
    // Wander: the under-0.5 Hz part, peak-to-peak per 10 s, the median stretch.
    let slow = filtfilt(&[Biquad::lowpass(fs_hz, 0.5), Biquad::lowpass(fs_hz, 0.5)], x);
    let mut wander: Vec<f64> = slow.chunks(10 * second).filter(|c| c.len() > second).map(ptp).collect();
    let wander_uv = percentile(&mut wander, 0.5);
    // Muscle: above 35 Hz, away from the QRS (±120 ms, room for a wide ectopic beat), with the
    // mains lines taken out.
    let fast = filtfilt(&[Biquad::highpass(fs_hz, 35.0), Biquad::highpass(fs_hz, 35.0)], x);
    let guard = (0.12 * fs_hz) as usize;
    let mut near = vec![false; n];
    for &r in qrs {
        for f in near.iter_mut().take((r + guard).min(n)).skip(r.saturating_sub(guard)) {
            *f = true;
        }
    }
    // Noise comes and goes (a patient moves, shivers): measured per 10 s.
    let mut muscle_uv: f64 = 0.0;
    let mut noisy_stretches_s = Vec::new();
    let stretch = 10 * second;
    for start in (0..n).step_by(stretch) {
        let end = (start + stretch).min(n);
        if end - start < second {
            break;
        }
        let quiet: Vec<f64> = (start..end).filter(|&i| !near[i]).map(|i| fast[i]).collect();
        if quiet.len() < second / 2 {
            continue;
        }
        let rms = (quiet.iter().map(|v| v * v).sum::<f64>() / quiet.len() as f64).sqrt();
        let mains_rms2 = (mains(&quiet, fs_hz, 50.0).powi(2) + mains(&quiet, fs_hz, 60.0).powi(2)) / 2.0;
        let noise = (rms * rms - mains_rms2).max(0.0).sqrt();
        muscle_uv = muscle_uv.max(noise);
        if noise > MUSCLE_UV {
            noisy_stretches_s.push((start as f64 / fs_hz, end as f64 / fs_hz));
        }
    }
    let mut problems = Vec::new();
    if flat_percent > 50.0 {
        problems.push(LeadProblem::LeadOff);
    } else {
        if clipped_percent > CLIPPED_PERCENT {
            problems.push(LeadProblem::Clipping);
        }
        if mains_50hz_uv > MAINS_UV {
            problems.push(LeadProblem::Mains50Hz);
        }
        if mains_60hz_uv > MAINS_UV {
            problems.push(LeadProblem::Mains60Hz);
        }
        if wander_uv > WANDER_UV {
            problems.push(LeadProblem::BaselineWander);
        }
        if muscle_uv > MUSCLE_UV {
            problems.push(LeadProblem::MuscleNoise);
        }
    }
    LeadQuality {
        lead: name.to_string(),
        flat_percent,
        clipped_percent,
        mains_50hz_uv,
        mains_60hz_uv,
        wander_uv,
        muscle_uv,
        noisy_stretches_s,
        problems,
    }
}

/// The mean net deflections of `x` over the beats, µV: (P wave, QRS), each against the PR
/// segment just before the QRS.
fn polarity(x: &[f64], fs_hz: f64, qrs: &[usize]) -> (f64, f64) {
    let ms = |m: f64| (m * fs_hz / 1000.0) as usize;
    let mean = |w: &[f64], base: f64| w.iter().map(|v| v - base).sum::<f64>() / w.len().max(1) as f64;
    let (mut p, mut q, mut count) = (0.0, 0.0, 0usize);
    for &r in qrs {
        if r < ms(260.0) || r + ms(60.0) >= x.len() {
            continue;
        }
        let mut pr: Vec<f64> = x[r - ms(90.0)..r - ms(60.0)].to_vec();
        let base = percentile(&mut pr, 0.5);
        p += mean(&x[r - ms(250.0)..r - ms(120.0)], base);
        q += mean(&x[r - ms(60.0)..r + ms(60.0)], base);
        count += 1;
    }
    if count == 0 { (0.0, 0.0) } else { (p / count as f64, q / count as f64) }
}

/// Assesses `leads` (name, µV), all at `fs_hz`, with the QRS positions found on them.
pub fn assess(leads: &[(&str, &[f64])], fs_hz: f64, qrs: &[usize]) -> Quality {
    let per_lead: Vec<LeadQuality> = leads.iter().map(|(name, x)| lead_quality(name, x, fs_hz, qrs)).collect();
    let mut study = Vec::new();
    let find = |name: &str| leads.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, x)| *x);
    if let (Some(i), Some(avr)) = (find("I"), find("aVR"))
        && qrs.len() >= 3
    {
        // Right axis deviation also turns lead I's QRS down; a reversal turns its P wave too.
        let ((p_i, qrs_i), (p_avr, qrs_avr)) = (polarity(i, fs_hz, qrs), polarity(avr, fs_hz, qrs));
        if qrs_i < 0.0 && p_i < 0.0 && qrs_avr > 0.0 && p_avr > 0.0 {
            study.push(StudyProblem::LimbLeadReversal);
        }
    }
    // A resting 12-lead recording (it has the limb leads) should have all six chest leads.
    let limb = ["I", "II"].iter().all(|n| find(n).is_some());
    let missing: Vec<String> =
        ["V1", "V2", "V3", "V4", "V5", "V6"].iter().filter(|v| find(v).is_none()).map(|v| (*v).to_string()).collect();
    if limb && !missing.is_empty() {
        study.push(StudyProblem::MissingChestLeads(missing));
    }
    let mut messages = Vec::new();
    for l in &per_lead {
        for p in &l.problems {
            let (zh, en) = p.message();
            messages.push((format!("请重做：{} {zh}", l.lead), format!("retake: {} {en}", l.lead)));
        }
    }
    for p in &study {
        let (zh, en) = p.message();
        messages.push((format!("请重做：{zh}"), format!("retake: {en}")));
    }
    Quality { leads: per_lead, study, messages }
}
