//! The pre-read's flags on real resting ECGs from ../shared/data: none on normal recordings;
//! ST elevation added to the inferior leads (II, III, aVF) of the same recordings is flagged with
//! exactly those leads; a pause and extreme rates are flagged with their figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yilian_analysis::flags::FlagCode;
use yilian_analysis::preread::{self, PreRead};
use yilian_analysis::rhythm::Rhythm;
use yilian_formats::{ReadOptions, Recording, scp, wfdb};

fn shared(rel: &str) -> PathBuf {
    std::env::var_os("YILIAN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join(rel)
}

/// Named leads in µV.
type Leads = Vec<(String, Vec<f64>)>;

fn leads(rec: &Recording) -> (Leads, f64) {
    let l = rec
        .leads
        .iter()
        .map(|l| (l.name.clone(), l.samples.iter().map(|&s| f64::from(s) * l.resolution_nv / 1000.0).collect()))
        .collect();
    (l, f64::from(rec.leads[0].sample_rate_hz))
}

fn run(l: &Leads, fs: f64) -> PreRead {
    let views: Vec<(&str, &[f64])> = l.iter().map(|(n, x)| (n.as_str(), x.as_slice())).collect();
    preread::analyze(&views, fs)
}

fn normal_recordings() -> Vec<(&'static str, Leads, f64)> {
    let ludb = {
        let dir = shared("wfdb/ludb");
        let header = std::fs::read(dir.join("1.hea")).expect("header");
        let h = wfdb::parse_header(&String::from_utf8_lossy(&header)).expect("parse");
        let files: BTreeMap<String, Vec<u8>> = wfdb::signal_files(&h)
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(dir.join(&f)).expect("signal")))
            .collect();
        wfdb::read(&header, &files, &ReadOptions::default()).expect("ludb")
    };
    let demo = scp::read(&std::fs::read(shared("scp/ecgviewer_demo.scp")).expect("scp"), &ReadOptions::default());
    let example =
        scp::read(&std::fs::read(shared("scp/ecgtoolkit_Example.scp")).expect("scp"), &ReadOptions::default());
    let mut out = Vec::new();
    for (name, rec) in [("LUDB 1", ludb), ("SCP example", example.expect("scp")), ("SCP demo", demo.expect("scp"))] {
        let (l, fs) = leads(&rec);
        out.push((name, l, fs));
    }
    out
}

#[test]
fn st_elevation_added_to_the_inferior_leads_is_flagged_with_those_leads_and_nothing_else() {
    for (name, clean, fs) in normal_recordings() {
        let p = run(&clean, fs);
        assert!(p.flags.is_empty(), "{name}: {:?}", p.flags);
        // Normal sinus recordings (LUDB 1 is sinus bradycardia by its annotation): P waves found.
        println!("{name}: {:?} {}", p.rhythm, p.beat_classes);
        assert!(
            p.rhythm
                .iter()
                .all(|s| matches!(s.rhythm, Rhythm::SinusRhythm | Rhythm::SinusBradycardia | Rhythm::SinusTachycardia)),
            "{name}: {:?}",
            p.rhythm
        );
        assert!(!p.beat_classes.contains('V'), "{name}: {}", p.beat_classes);
        let m = p.median.as_ref().expect("median beat");
        assert!((50.0..130.0).contains(&m.qrs_ms), "{name}: QRS {} ms", m.qrs_ms);
        // +300 µV from 40 ms after each R to 360 ms after it, with 20 ms ramps: an injury current.
        let mut st = clean.clone();
        let ms = |m: f64| (m * fs / 1000.0) as usize;
        for (lead, x) in st.iter_mut() {
            if !["II", "III", "aVF"].contains(&lead.as_str()) {
                continue;
            }
            for &r in &p.qrs {
                for k in ms(20.0)..ms(380.0) {
                    let Some(v) = x.get_mut(r + k) else { break };
                    let t = k as f64 * 1000.0 / fs;
                    let shape = ((t - 20.0) / 20.0).clamp(0.0, 1.0).min(((380.0 - t) / 20.0).clamp(0.0, 1.0));
                    *v += 300.0 * shape;
                }
            }
        }
        let flagged = run(&st, fs);
        let f = flagged
            .flags
            .iter()
            .find(|f| f.code == FlagCode::StElevation)
            .unwrap_or_else(|| panic!("{name}: {:?}", flagged.median));
        let mut got = f.leads.clone();
        got.sort();
        assert_eq!(got, ["II", "III", "aVF"], "{name}: {f:?}");
        assert!(f.zh.contains("ST段抬高") && f.en.contains("suspected acute MI"));
    }
}

#[test]
fn a_pause_and_extreme_rates_are_flagged_with_their_figures() {
    let fs = 500.0;
    let tracing = |rr_ms: &[f64]| -> Leads {
        let total: f64 = rr_ms.iter().sum::<f64>() + 2000.0;
        let mut x = vec![0.0; (total * fs / 1000.0) as usize];
        let mut at = 1000.0;
        for r in std::iter::once(&0.0).chain(rr_ms) {
            at += r;
            let c = (at * fs / 1000.0) as usize;
            for k in 0..20 {
                x[c + k] += 1200.0 * (1.0 - (k as f64 - 10.0).abs() / 10.0);
            }
        }
        vec![("II".into(), x)]
    };
    let slow = run(&tracing(&[1800.0; 12]), fs);
    assert!(slow.flags.iter().any(|f| f.code == FlagCode::Bradycardia && f.en.contains("33 /min")), "{:?}", slow.flags);
    let fast = run(&tracing(&[350.0; 40]), fs);
    assert!(
        fast.flags.iter().any(|f| f.code == FlagCode::Tachycardia && f.en.contains("171 /min")),
        "{:?}",
        fast.flags
    );
    let mut rr = vec![800.0; 10];
    rr.push(3600.0);
    rr.extend([800.0; 10]);
    let paused = run(&tracing(&rr), fs);
    assert!(paused.flags.iter().any(|f| f.code == FlagCode::Pause && f.en == "pause of 3.6 s"), "{:?}", paused.flags);
    assert!(run(&tracing(&[800.0; 20]), fs).flags.is_empty());
}

/// The leads (µV) and rate of a shared SCP-ECG or DICOM cart file.
fn cart_file(rel: &str) -> (Vec<(String, Vec<f64>)>, f64) {
    let bytes = std::fs::read(shared(rel)).expect("file");
    let rec = if rel.ends_with(".scp") {
        scp::read(&bytes, &ReadOptions::default()).expect("scp")
    } else {
        yilian_formats::dicom::read(&bytes, &ReadOptions::default()).expect("dicom")
    };
    leads(&rec)
}

#[test]
fn qt_agrees_with_what_the_carts_measured() {
    // The carts' own QT (their measurements in the files): Mortara 420 ms, the DICOM example 368 ms.
    for (rel, cart_qt_ms) in [("scp/ecgtoolkit_Example.scp", 420.0), ("dicom-ecg/waveform_ecg.dcm", 368.0)] {
        let (l, fs) = cart_file(rel);
        let m = run(&l, fs).median.expect("median beat");
        let qt = m.qt_ms.expect("QT");
        assert!((qt - cart_qt_ms).abs() <= 35.0, "{rel}: QT {qt:.0} ms, the cart said {cart_qt_ms} ms");
        let qtc = m.qtc_bazett_ms.expect("QTc");
        assert!((qtc - qt / (m.rr_ms / 1000.0).sqrt()).abs() < 1e-6);
    }
}

#[test]
fn pr_agrees_with_what_the_carts_measured() {
    // The carts' PR: Mortara 148 ms (P onset 143, QRS onset 217 at 500 Hz), the DICOM example
    // 161 ms; this reads 150 and 150. 20 ms: both ends are found on a median beat, each within a sample or two of 10 ms
    // smoothing, and carts themselves differ by 10-20 ms on the same ECG (P onset is gradual).
    for (rel, cart_pr_ms) in [("scp/ecgtoolkit_Example.scp", 148.0), ("dicom-ecg/waveform_ecg.dcm", 161.0)] {
        let (l, fs) = cart_file(rel);
        let pr = run(&l, fs).median.expect("median beat").pr_ms.expect("PR");
        println!("{rel}: PR {pr:.0} ms, the cart {cart_pr_ms} ms");
        assert!((pr - cart_pr_ms).abs() <= 20.0, "{rel}: PR {pr:.0} ms, the cart said {cart_pr_ms} ms");
    }
}
