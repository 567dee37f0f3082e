//! QRS detection against the reference annotations of every MIT-BIH Arrhythmia record in
//! ../shared/data, scored as ANSI/AAMI EC57 does: a detection matches a reference beat within
//! 150 ms, over the whole record. Prints the table; asserts the figures this detector reached,
//! so a regression fails CI (the goal, Se ≥ 99.8% and +P ≥ 99.6%, is in the README). Also the
//! ventricular beat classes against the V and E annotations, and AF by duration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yilian_analysis::{classify, qrs};
use yilian_formats::{ReadOptions, wfdb};

fn shared_data() -> PathBuf {
    std::env::var_os("YILIAN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

/// MIT beat codes (EC57 counts these as beats).
const BEATS: &[&str] = &["N", "L", "R", "B", "A", "a", "J", "S", "V", "r", "F", "e", "j", "n", "E", "/", "f", "Q", "?"];

struct Score {
    record: String,
    /// AF seconds: (reference, detected, both).
    af_s: (f64, f64, f64),
    beats: usize,
    /// Ventricular beats: (TP, FN, FP).
    v: (usize, usize, usize),
    /// Beats read as paced (none of these records is paced).
    paced: usize,
    tp: usize,
    fn_: usize,
    fp: usize,
}

fn score(record: &str) -> Score {
    let dir = shared_data().join("wfdb/mitdb");
    let header = std::fs::read(dir.join(format!("{record}.hea"))).expect("header");
    let mut files = BTreeMap::new();
    for ext in ["dat", "atr"] {
        files.insert(format!("{record}.{ext}"), std::fs::read(dir.join(format!("{record}.{ext}"))).expect("file"));
    }
    let rec = wfdb::read(&header, &files, &ReadOptions::default()).expect("record");
    let fs = f64::from(rec.leads[0].sample_rate_hz);
    let leads: Vec<Vec<f64>> = rec
        .leads
        .iter()
        .map(|l| l.samples.iter().map(|&s| f64::from(s) * l.resolution_nv / 1000.0).collect())
        .collect();
    let views: Vec<&[f64]> = leads.iter().map(Vec::as_slice).collect();
    let got = qrs::detect(&views, fs).beats;
    let reference: Vec<(usize, &str)> = rec
        .annotations
        .iter()
        .filter(|a| BEATS.contains(&a.label.as_str()))
        .map(|a| (a.sample as usize, a.label.as_str()))
        .collect();
    let truth: Vec<usize> = reference.iter().map(|r| r.0).collect();
    let tol = (0.150 * fs) as usize;
    // Greedy in time order: each reference beat takes the nearest unused detection in reach.
    let mut used = vec![false; got.len()];
    let mut matched: Vec<Option<usize>> = vec![None; truth.len()];
    let mut tp = 0;
    let mut j = 0;
    for (ti, &t) in truth.iter().enumerate() {
        while j < got.len() && got[j] + tol < t {
            j += 1;
        }
        let best =
            (j..got.len()).take_while(|&k| got[k] <= t + tol).filter(|&k| !used[k]).min_by_key(|&k| got[k].abs_diff(t));
        if let Some(k) = best {
            used[k] = true;
            matched[ti] = Some(k);
            tp += 1;
        }
    }
    let (classes, features) = classify::classify_with_features(&views, fs, &got);
    let af_s = af_agreement(&rec, &views, &got, &classes, fs);
    let v = ventricular_agreement(&reference, &matched, &classes);
    if let Some(dir) = std::env::var_os("YILIAN_DUMP_FEATURES") {
        let mut out = String::from("record,sample,label,ours,corr,width,twidth,amp,rrp,rrn,cmin,noise\n");
        let mut label_of = vec![""; got.len()];
        for (ti, m) in matched.iter().enumerate() {
            if let Some(k) = m {
                label_of[*k] = reference[ti].1;
            }
        }
        for (k, f) in features.iter().enumerate() {
            out += &format!(
                "{record},{},{},{},{:.3},{:.1},{:.1},{:.3},{:.3},{:.3},{:.3},{:.3}\n",
                got[k],
                label_of[k],
                classes[k].code(),
                f.corr,
                f.width_ms,
                f.template_width_ms,
                f.amplitude_ratio,
                f.rr_prev_ratio,
                f.rr_next_ratio,
                f.corr_min,
                f.noise_ratio
            );
        }
        std::fs::write(Path::new(&dir).join(format!("{record}.csv")), out).expect("dump");
    }
    let paced = classes.iter().filter(|c| **c == classify::BeatClass::Paced).count();
    Score { record: record.into(), af_s, beats: truth.len(), v, paced, tp, fn_: truth.len() - tp, fp: got.len() - tp }
}

/// Ventricular beats ('V' and 'E' in the reference) found as ventricular: (TP, FN, FP). As in
/// EC57, fusion beats ('F') count neither way: one read as V is no false positive, one read as
/// normal no miss. A reference V beat the detector missed is a miss; a detection matching no
/// reference beat and read as V is a false positive.
fn ventricular_agreement(
    reference: &[(usize, &str)],
    matched: &[Option<usize>],
    classes: &[classify::BeatClass],
) -> (usize, usize, usize) {
    let is_v = |l: &str| l == "V" || l == "E";
    let ours_v = |k: usize| classes[k] == classify::BeatClass::Ventricular;
    let (mut tp, mut fn_, mut fp) = (0, 0, 0);
    let mut seen = vec![false; classes.len()];
    for ((_, label), m) in reference.iter().zip(matched) {
        if let Some(k) = *m {
            seen[k] = true;
        }
        match (*label, *m) {
            ("F", _) => {}
            (l, Some(k)) if is_v(l) && ours_v(k) => tp += 1,
            (l, _) if is_v(l) => fn_ += 1,
            (_, Some(k)) if ours_v(k) => fp += 1,
            _ => {}
        }
    }
    fp += (0..classes.len()).filter(|&k| !seen[k] && ours_v(k)).count();
    (tp, fn_, fp)
}

/// Seconds of AF by the reference rhythm labels, by ours, and by both.
fn af_agreement(
    rec: &yilian_formats::Recording,
    leads: &[&[f64]],
    beats: &[usize],
    classes: &[classify::BeatClass],
    fs: f64,
) -> (f64, f64, f64) {
    let n = rec.leads[0].samples.len();
    let mut truth = vec![false; n];
    let mut current = false;
    let mut from = 0usize;
    for a in rec.annotations.iter().filter(|a| a.label == "+") {
        let at = (a.sample as usize).min(n);
        truth[from..at].iter_mut().for_each(|t| *t = current);
        current = a.text.as_deref().is_some_and(|t| t.trim_end_matches('\0').starts_with("(AFIB"));
        from = at;
    }
    truth[from..].iter_mut().for_each(|t| *t = current);
    let mut ours = vec![false; n];
    let reading = yilian_analysis::rhythm::analyze(leads, fs, beats, classes);
    for s in reading.segments.iter().filter(|s| s.rhythm == yilian_analysis::rhythm::Rhythm::AtrialFibrillation) {
        ours[s.start..=s.end.min(n - 1)].iter_mut().for_each(|o| *o = true);
    }
    let count = |f: &dyn Fn(usize) -> bool| (0..n).filter(|&i| f(i)).count() as f64 / fs;
    (count(&|i| truth[i]), count(&|i| ours[i]), count(&|i| truth[i] && ours[i]))
}

#[test]
fn qrs_detection_on_every_mitbih_record_meets_its_recorded_figures() {
    let records = ["100", "101", "103", "105", "106", "108", "119", "200", "203", "208", "210", "222", "228"];
    let scores: Vec<Score> = records.iter().map(|r| score(r)).collect();
    println!("record   beats     TP    FN    FP     Se%     +P%");
    for s in &scores {
        println!(
            "{:<6} {:>7} {:>6} {:>5} {:>5} {:>7.2} {:>7.2}",
            s.record,
            s.beats,
            s.tp,
            s.fn_,
            s.fp,
            100.0 * s.tp as f64 / s.beats as f64,
            100.0 * s.tp as f64 / (s.tp + s.fp).max(1) as f64
        );
    }
    let (tp, fn_, fp): (usize, usize, usize) =
        scores.iter().fold((0, 0, 0), |(a, b, c), s| (a + s.tp, b + s.fn_, c + s.fp));
    let se = 100.0 * tp as f64 / (tp + fn_) as f64;
    let ppv = 100.0 * tp as f64 / (tp + fp) as f64;
    println!("all    {:>7} {tp:>6} {fn_:>5} {fp:>5} {se:>7.2} {ppv:>7.2}", tp + fn_);
    println!("record  V TP    FN    FP     Se%     +P%  paced");
    for s in &scores {
        let (tp, fn_, fp) = s.v;
        println!(
            "{:<6} {:>5} {:>5} {:>5} {:>7.2} {:>7.2} {:>6}",
            s.record,
            tp,
            fn_,
            fp,
            100.0 * tp as f64 / (tp + fn_).max(1) as f64,
            100.0 * tp as f64 / (tp + fp).max(1) as f64,
            s.paced
        );
    }
    let (vtp, vfn, vfp) = scores.iter().fold((0, 0, 0), |(a, b, c), s| (a + s.v.0, b + s.v.1, c + s.v.2));
    let (v_se, v_ppv) =
        (100.0 * vtp as f64 / (vtp + vfn).max(1) as f64, 100.0 * vtp as f64 / (vtp + vfp).max(1) as f64);
    println!("all    {vtp:>5} {vfn:>5} {vfp:>5} {v_se:>7.2} {v_ppv:>7.2}");
    println!("record  AF ref s  AF ours s   both s");
    for s in &scores {
        println!("{:<6} {:>9.0} {:>10.0} {:>8.0}", s.record, s.af_s.0, s.af_s.1, s.af_s.2);
    }
    let (r, o, b) = scores.iter().fold((0.0, 0.0, 0.0), |(a, c, d), s| (a + s.af_s.0, c + s.af_s.1, d + s.af_s.2));
    let (af_se, af_ppv) = (100.0 * b / r.max(1.0), 100.0 * b / o.max(1.0));
    println!("AF by duration: Se {af_se:.1}%, +P {af_ppv:.1}% ({r:.0} s of reference AF)");
    assert!(scores.iter().all(|s| s.paced == 0), "a beat read as paced in an unpaced record");
    // Ventricular beats (V and E; F counts neither way): what the classifier reaches now on the
    // two-pass detector's beats (90.84%, 93.24%; 90.16%, 91.37% on the one-pass detector's).
    assert!(v_se >= 90.5 && v_ppv >= 93.0, "V Se {v_se:.2}%, +P {v_ppv:.2}%: worse than before");
    // With the beat classes and the P-wave check: +P 34% -> 70%, Se 87% -> 82% (the ectopy-heavy
    // records no longer read as AF; 222's flutter and nodal stretches and 200 still do). Still
    // not good enough on its own to raise a study's priority: the AF flag waits for a sustained
    // fast segment (flags.rs). Statistics within runs of consecutive normal intervals and the
    // hysteresis for weakly irregular windows next to AF: Se 82.0% -> 88.4%, +P 69.9% -> 71.4%
    // (the two-pass detector alone, without them, gave Se 77.5%, +P 69.1%).
    assert!(af_se >= 88.0 && af_ppv >= 71.0, "AF Se {af_se:.1}%, +P {af_ppv:.1}%: worse than before");
    // What this detector reaches now (Se 99.83%, +P 99.66%, the goal; the two-pass detector
    // without the noise gates reached Se 99.74%, +P 99.57%, the one-pass one Se 99.51%, +P 99.18%).
    assert!(se >= 99.8 && ppv >= 99.6, "Se {se:.2}%, +P {ppv:.2}%: worse than the detector reached before");
}
