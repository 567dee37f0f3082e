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
    Score { record: record.into(), beats: truth.len(), tp, fn_: truth.len() - tp, fp: got.len() - tp }
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
    // What this detector reaches now (Se 99.51%, +P 99.18%); the goal is higher.
    assert!(se >= 99.5 && ppv >= 99.1, "Se {se:.2}%, +P {ppv:.2}%: worse than the detector reached before");
}
