//! QRS detection against the reference annotations of every MIT-BIH Arrhythmia record in
//! ../shared/data, scored as ANSI/AAMI EC57 does: a detection matches a reference beat within
//! 150 ms, over the whole record. Prints the table; asserts the figures this detector reached,
//! so a regression fails CI (the goal, Se ≥ 99.8% and +P ≥ 99.6%, is in the README).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yilian_analysis::qrs;
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
    let af_s = af_agreement(&rec, &got, fs);
    let truth: Vec<usize> =
        rec.annotations.iter().filter(|a| BEATS.contains(&a.label.as_str())).map(|a| a.sample as usize).collect();
    let tol = (0.150 * fs) as usize;
    // Greedy in time order: each reference beat takes the nearest unused detection in reach.
    let mut used = vec![false; got.len()];
    let mut tp = 0;
    let mut j = 0;
    for &t in &truth {
        while j < got.len() && got[j] + tol < t {
            j += 1;
        }
        let best =
            (j..got.len()).take_while(|&k| got[k] <= t + tol).filter(|&k| !used[k]).min_by_key(|&k| got[k].abs_diff(t));
        if let Some(k) = best {
            used[k] = true;
            tp += 1;
        }
    }
    Score { record: record.into(), af_s, beats: truth.len(), tp, fn_: truth.len() - tp, fp: got.len() - tp }
}

/// Seconds of AF by the reference rhythm labels, by ours, and by both.
fn af_agreement(rec: &yilian_formats::Recording, beats: &[usize], fs: f64) -> (f64, f64, f64) {
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
    let (segments, _) = yilian_analysis::rhythm::label(beats, fs);
    for s in segments.iter().filter(|s| s.rhythm == yilian_analysis::rhythm::Rhythm::AtrialFibrillation) {
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
    println!("record  AF ref s  AF ours s   both s");
    for s in &scores {
        println!("{:<6} {:>9.0} {:>10.0} {:>8.0}", s.record, s.af_s.0, s.af_s.1, s.af_s.2);
    }
    let (r, o, b) = scores.iter().fold((0.0, 0.0, 0.0), |(a, c, d), s| (a + s.af_s.0, c + s.af_s.1, d + s.af_s.2));
    let (af_se, af_ppv) = (100.0 * b / r.max(1.0), 100.0 * b / o.max(1.0));
    println!("AF by duration: Se {af_se:.1}%, +P {af_ppv:.1}% ({r:.0} s of reference AF)");
    // Not yet good enough to raise a study's priority (ectopy-heavy records read as AF); kept
    // here so every change to the AF detector is measured, and none makes it worse.
    assert!(af_se >= 85.0 && af_ppv >= 30.0, "AF Se {af_se:.1}%, +P {af_ppv:.1}%: worse than before");
    // What this detector reaches now (Se 99.51%, +P 99.18%); the goal is higher.
    assert!(se >= 99.5 && ppv >= 99.1, "Se {se:.2}%, +P {ppv:.2}%: worse than the detector reached before");
}
