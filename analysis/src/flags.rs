//! Flags that raise a study's priority, each with its reason (an aid, never a diagnosis; the
//! specialist can always set the priority back): ST elevation meeting the Fourth Universal
//! Definition of Myocardial Infarction's thresholds in two contiguous leads, a heart rate under
//! 40 or over 150 /min, a QTc (Fridericia) over 500 ms, and pauses over 3 s.

use crate::beat::MedianMeasures;
use crate::rhythm::{Rhythm, RhythmReading};
use serde::Serialize;

/// Who the recording is of, as far as the thresholds depend on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatientContext {
    /// Some(true) for a man, Some(false) for a woman.
    pub male: Option<bool>,
    /// Age in years.
    pub age_years: Option<u16>,
}

/// What a flag is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagCode {
    /// ST elevation in two contiguous leads.
    StElevation,
    /// Heart rate under 40 /min.
    Bradycardia,
    /// Heart rate over 150 /min.
    Tachycardia,
    /// A pause over 3 s.
    Pause,
    /// QTc (Fridericia) over 500 ms.
    LongQtc,
    /// Atrial fibrillation over 110 /min, sustained at least 30 s.
    AfRapid,
    /// Three or more ventricular beats in a row.
    VentricularRun,
}

/// AF at over this ventricular rate is rapid, /min.
pub const AF_RAPID_BPM: f64 = 110.0;
/// And must last this long in one segment to be flagged, s.
pub const AF_SUSTAINED_S: f64 = 30.0;

/// One flag with its reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    /// What it is about.
    pub code: FlagCode,
    /// The leads concerned (ST elevation).
    pub leads: Vec<String>,
    /// The reason in Simplified Chinese.
    pub zh: String,
    /// The reason in English.
    pub en: String,
}

/// Leads that count as contiguous: the inferior and lateral limb groups, neighbouring chest leads.
const CONTIGUOUS: &[(&str, &str)] = &[
    ("II", "III"),
    ("II", "aVF"),
    ("III", "aVF"),
    ("I", "aVL"),
    ("V1", "V2"),
    ("V2", "V3"),
    ("V3", "V4"),
    ("V4", "V5"),
    ("V5", "V6"),
    ("V6", "I"),
];

/// The J-point elevation (µV) the Fourth Universal Definition calls significant in `lead`.
fn threshold_uv(lead: &str, p: &PatientContext) -> f64 {
    if lead == "V2" || lead == "V3" {
        match (p.male, p.age_years) {
            (Some(true), Some(age)) if age < 40 => 250.0,
            (Some(true), _) => 200.0,
            // Women, and anyone whose sex is not known: the lowest (most sensitive) threshold.
            _ => 150.0,
        }
    } else {
        100.0
    }
}

/// The flags of one recording.
pub fn flags(
    median: Option<&MedianMeasures>,
    heart_rate_bpm: Option<f64>,
    rhythm: &RhythmReading,
    fs_hz: f64,
    p: &PatientContext,
) -> Vec<Flag> {
    let pauses = &rhythm.pauses;
    let mut out = Vec::new();
    if let Some(m) = median {
        let elevated = |name: &str| {
            m.leads
                .iter()
                .find(|l| l.lead.eq_ignore_ascii_case(name))
                .is_some_and(|l| l.st_j_uv >= threshold_uv(name, p))
        };
        let mut leads: Vec<String> = Vec::new();
        for (a, b) in CONTIGUOUS {
            if elevated(a) && elevated(b) {
                for l in [a, b] {
                    if !leads.iter().any(|x| x == l) {
                        leads.push((*l).to_string());
                    }
                }
            }
        }
        if !leads.is_empty() {
            let st: Vec<String> = leads
                .iter()
                .filter_map(|l| m.leads.iter().find(|x| &x.lead == l))
                .map(|x| format!("{} {:+.0} µV", x.lead, x.st_j_uv))
                .collect();
            out.push(Flag {
                code: FlagCode::StElevation,
                zh: format!("ST段抬高（相邻导联 {}），疑似急性心梗", st.join("，")),
                en: format!("ST elevation in contiguous leads ({}): suspected acute MI", st.join(", ")),
                leads,
            });
        }
    }
    // Fridericia, not Bazett: Bazett over-corrects at faster rates and would raise ordinary
    // ECGs at 90-100 /min past 500 ms.
    if let Some(qtc) = median.and_then(|m| m.qtc_fridericia_ms).filter(|q| *q > 500.0) {
        out.push(Flag {
            code: FlagCode::LongQtc,
            leads: vec![],
            zh: format!("QTc 延长 {qtc:.0} 毫秒（Fridericia）"),
            en: format!("long QTc {qtc:.0} ms by Fridericia (over 500)"),
        });
    }
    if let Some(hr) = heart_rate_bpm {
        if hr < 40.0 {
            out.push(Flag {
                code: FlagCode::Bradycardia,
                leads: vec![],
                zh: format!("心率过缓 {hr:.0} 次/分"),
                en: format!("heart rate {hr:.0} /min (under 40)"),
            });
        } else if hr > 150.0 {
            out.push(Flag {
                code: FlagCode::Tachycardia,
                leads: vec![],
                zh: format!("心率过速 {hr:.0} 次/分"),
                en: format!("heart rate {hr:.0} /min (over 150)"),
            });
        }
    }
    if let Some(longest) = pauses.iter().map(|p| p.length_ms).reduce(f64::max) {
        out.push(Flag {
            code: FlagCode::Pause,
            leads: vec![],
            zh: format!("长间歇 {:.1} 秒", longest / 1000.0),
            en: format!("pause of {:.1} s", longest / 1000.0),
        });
    }
    let rapid_af = rhythm
        .segments
        .iter()
        .filter(|s| s.rhythm == Rhythm::AtrialFibrillation && s.heart_rate_bpm > AF_RAPID_BPM)
        .filter(|s| (s.end - s.start) as f64 / fs_hz >= AF_SUSTAINED_S)
        .max_by(|a, b| a.heart_rate_bpm.total_cmp(&b.heart_rate_bpm));
    if let Some(s) = rapid_af {
        let (hr, secs) = (s.heart_rate_bpm, (s.end - s.start) as f64 / fs_hz);
        out.push(Flag {
            code: FlagCode::AfRapid,
            leads: vec![],
            zh: format!("心房颤动伴快速心室率 {hr:.0} 次/分（持续 {secs:.0} 秒）"),
            en: format!("atrial fibrillation with rapid ventricular response, {hr:.0} /min over {secs:.0} s"),
        });
    }
    if let Some(run) = rhythm.ectopy.runs.iter().max_by_key(|r| r.beats) {
        let (n, hr, count) = (run.beats, run.heart_rate_bpm, rhythm.ectopy.runs.len());
        out.push(Flag {
            code: FlagCode::VentricularRun,
            leads: vec![],
            zh: format!("室性心搏连发 {n} 次，频率 {hr:.0} 次/分（共 {count} 阵）"),
            en: format!("run of {n} ventricular beats at {hr:.0} /min ({count} run(s) in all)"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beat::{LeadSt, MedianMeasures};

    #[test]
    fn a_qtc_over_500_is_flagged_and_v2_v3_thresholds_follow_sex_and_age() {
        let m = |qtc: f64, v2: f64| MedianMeasures {
            beats: 10,
            qrs_ms: 90.0,
            pr_ms: Some(160.0),
            rr_ms: 1000.0,
            qt_ms: Some(qtc),
            qtc_bazett_ms: Some(qtc),
            qtc_fridericia_ms: Some(qtc),
            leads: ["V2", "V3"].iter().map(|l| LeadSt { lead: (*l).into(), st_j_uv: v2, st_j60_uv: v2 }).collect(),
        };
        let codes = |f: Vec<Flag>| f.into_iter().map(|f| f.code).collect::<Vec<_>>();
        let unknown = PatientContext::default();
        let none = RhythmReading::default();
        assert_eq!(codes(flags(Some(&m(520.0, 0.0)), Some(70.0), &none, 500.0, &unknown)), [FlagCode::LongQtc]);
        assert!(flags(Some(&m(480.0, 0.0)), Some(70.0), &none, 500.0, &unknown).is_empty());
        // 180 µV in V2-V3: elevation for a woman (150), not for a man of 50 (200).
        let woman = PatientContext { male: Some(false), age_years: Some(50) };
        let man = PatientContext { male: Some(true), age_years: Some(50) };
        assert_eq!(codes(flags(Some(&m(400.0, 180.0)), Some(70.0), &none, 500.0, &woman)), [FlagCode::StElevation]);
        assert!(flags(Some(&m(400.0, 180.0)), Some(70.0), &none, 500.0, &man).is_empty());
        let young = PatientContext { male: Some(true), age_years: Some(30) };
        assert!(flags(Some(&m(400.0, 220.0)), Some(70.0), &none, 500.0, &young).is_empty(), "250 µV under 40");
    }

    #[test]
    fn sustained_rapid_af_and_ventricular_runs_are_flagged_with_their_figures() {
        use crate::rhythm::{Ectopy, Segment, VentricularRun};
        let fs = 500.0;
        let seg = |secs: f64, hr: f64| Segment {
            start: 1000,
            end: 1000 + (secs * fs) as usize,
            rhythm: Rhythm::AtrialFibrillation,
            heart_rate_bpm: hr,
        };
        let p = PatientContext::default();
        let reading = |segments: Vec<Segment>, runs: Vec<VentricularRun>| RhythmReading {
            segments,
            pauses: vec![],
            ectopy: Ectopy { ventricular: runs.iter().map(|r| r.beats).sum(), isolated: 0, couplets: 0, runs },
        };
        let f = flags(None, Some(130.0), &reading(vec![seg(45.0, 130.0)], vec![]), fs, &p);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, FlagCode::AfRapid);
        assert!(f[0].en.contains("130 /min over 45 s") && f[0].zh.contains("心房颤动"), "{f:?}");
        // Too short, or not fast: nothing.
        assert!(flags(None, Some(130.0), &reading(vec![seg(20.0, 130.0)], vec![]), fs, &p).is_empty());
        assert!(flags(None, Some(90.0), &reading(vec![seg(60.0, 90.0)], vec![]), fs, &p).is_empty());
        let runs = vec![
            VentricularRun { start: 100, beats: 3, heart_rate_bpm: 140.0 },
            VentricularRun { start: 9000, beats: 7, heart_rate_bpm: 171.4 },
        ];
        let f = flags(None, Some(80.0), &reading(vec![], runs), fs, &p);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, FlagCode::VentricularRun);
        assert_eq!(f[0].en, "run of 7 ventricular beats at 171 /min (2 run(s) in all)");
        assert!(f[0].zh.contains("室性心搏连发 7 次"));
    }
}
