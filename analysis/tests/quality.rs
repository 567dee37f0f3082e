//! The signal-quality gate on real recordings from ../shared/data, clean and with faults added:
//! mains at several amplitudes (50 Hz and 60 Hz), a lead zeroed, clipping, LA/RA swapped.
//! Clean recordings raise nothing; each fault is flagged on the lead it is on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yilian_analysis::preread;
use yilian_analysis::quality::{LeadProblem, Quality, StudyProblem};
use yilian_formats::{ReadOptions, Recording, contec, scp, wfdb};

fn shared(rel: &str) -> PathBuf {
    std::env::var_os("YILIAN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join(rel)
}

fn wfdb_record(dir: &str, name: &str) -> Recording {
    let dir = shared(dir);
    let header = std::fs::read(dir.join(format!("{name}.hea"))).expect("header");
    let h = wfdb::parse_header(&String::from_utf8_lossy(&header)).expect("parse");
    let mut files = BTreeMap::new();
    for f in wfdb::signal_files(&h) {
        files.insert(f.clone(), std::fs::read(dir.join(&f)).expect("signal"));
    }
    wfdb::read(&header, &files, &ReadOptions::default()).expect("record")
}

/// Leads as (name, µV), at most `seconds` long.
fn leads(rec: &Recording, seconds: usize) -> (Vec<(String, Vec<f64>)>, f64) {
    let fs = rec.leads[0].sample_rate_hz;
    let n = seconds * fs as usize;
    let leads = rec
        .leads
        .iter()
        .map(|l| (l.name.clone(), l.samples.iter().take(n).map(|&s| f64::from(s) * l.resolution_nv / 1000.0).collect()))
        .collect();
    (leads, f64::from(fs))
}

fn gate(leads: &[(String, Vec<f64>)], fs: f64) -> Quality {
    let views: Vec<(&str, &[f64])> = leads.iter().map(|(n, x)| (n.as_str(), x.as_slice())).collect();
    preread::analyze(&views, fs).quality
}

fn problems_of<'a>(q: &'a Quality, lead: &str) -> &'a [LeadProblem] {
    q.leads.iter().find(|l| l.lead == lead).map(|l| l.problems.as_slice()).unwrap_or(&[])
}

/// Named leads in µV.
type Leads = Vec<(String, Vec<f64>)>;

fn clean_recordings() -> Vec<(&'static str, Leads, f64)> {
    let scp_file = std::fs::read(shared("scp/ecgtoolkit_Example.scp")).expect("scp");
    let contec_file = std::fs::read(shared("contec/0000053.ECG")).expect("contec");
    let mut out = Vec::new();
    for (name, rec, seconds) in [
        ("MIT-BIH 100", wfdb_record("wfdb/mitdb", "100"), 1806),
        ("MIT-BIH 119", wfdb_record("wfdb/mitdb", "119"), 1806),
        ("PTB", wfdb_record("wfdb/ptbdb", "s0010_re"), 120),
        ("LUDB 1", wfdb_record("wfdb/ludb", "1"), 10),
        ("SCP example", scp::read(&scp_file, &ReadOptions::default()).expect("scp"), 10),
        ("Contec 12-lead", contec::read(&contec_file, &ReadOptions::default()).expect("contec"), 60),
    ] {
        let (l, fs) = leads(&rec, seconds);
        out.push((name, l, fs));
    }
    out
}

#[test]
fn clean_recordings_raise_nothing_and_every_added_fault_is_flagged_on_its_lead() {
    let recordings = clean_recordings();
    for (name, l, fs) in &recordings {
        let q = gate(l, *fs);
        assert!(!q.retake(), "{name}: {:?}", q.messages);
    }
    // The faults on the 12-lead recordings (10 s, as a resting ECG).
    for (name, full, fs) in recordings.iter().filter(|(_, l, _)| l.len() >= 12) {
        let ten: Vec<(String, Vec<f64>)> =
            full.iter().map(|(n, x)| (n.clone(), x[..(10.0 * fs) as usize].to_vec())).collect();
        assert!(!gate(&ten, *fs).retake(), "{name} (10 s)");
        let index = |lead: &str| ten.iter().position(|(n, _)| n == lead).expect("lead");
        for (hz, amplitude_uv, problem) in [
            (50.0, 30.0, LeadProblem::Mains50Hz),
            (50.0, 100.0, LeadProblem::Mains50Hz),
            (50.0, 300.0, LeadProblem::Mains50Hz),
            (60.0, 30.0, LeadProblem::Mains60Hz),
            (60.0, 300.0, LeadProblem::Mains60Hz),
        ] {
            let mut noisy = ten.clone();
            for (i, v) in noisy[index("V2")].1.iter_mut().enumerate() {
                *v += amplitude_uv * (2.0 * std::f64::consts::PI * hz * i as f64 / fs).sin();
            }
            let q = gate(&noisy, *fs);
            assert!(problems_of(&q, "V2").contains(&problem), "{name}: {hz} Hz at {amplitude_uv} µV: {:?}", q.leads);
            assert!(problems_of(&q, "V5").is_empty(), "{name}: only V2 has it");
        }
        let mut off = ten.clone();
        off[index("V4")].1.iter_mut().for_each(|v| *v = 0.0);
        let q = gate(&off, *fs);
        assert_eq!(problems_of(&q, "V4"), [LeadProblem::LeadOff], "{name}");
        assert!(
            q.messages.iter().any(|(zh, en)| zh == "请重做：V4 导联脱落" && en == "retake: V4 lead off"),
            "{:?}",
            q.messages
        );
        let mut clipped = ten.clone();
        let x = &mut clipped[index("II")].1;
        let rail = x.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 0.5;
        x.iter_mut().for_each(|v| *v = v.min(rail));
        assert!(problems_of(&gate(&clipped, *fs), "II").contains(&LeadProblem::Clipping), "{name}");
        // LA/RA swapped: I inverts, II and III trade places, aVR and aVL trade places.
        let mut swapped = ten.clone();
        swapped[index("I")].1.iter_mut().for_each(|v| *v = -*v);
        let (ii, iii, avr, avl) = (index("II"), index("III"), index("aVR"), index("aVL"));
        let (a, b) = (swapped[ii].1.clone(), swapped[iii].1.clone());
        (swapped[ii].1, swapped[iii].1) = (b, a);
        let (a, b) = (swapped[avr].1.clone(), swapped[avl].1.clone());
        (swapped[avr].1, swapped[avl].1) = (b, a);
        assert!(gate(&swapped, *fs).study.contains(&StudyProblem::LimbLeadReversal), "{name}: LA/RA swapped");
    }
}

#[test]
fn the_shared_files_faults_are_found() {
    // MIT-BIH 105: high-grade noise and artefact.
    let (l, fs) = leads(&wfdb_record("wfdb/mitdb", "105"), 1806);
    let q = gate(&l, fs);
    let noisy = q.leads.iter().find(|x| x.lead == "MLII").expect("MLII");
    assert!(noisy.problems.contains(&LeadProblem::MuscleNoise) && !noisy.noisy_stretches_s.is_empty(), "{noisy:?}");
    // The Contec file whose chest electrodes were not connected.
    let file = std::fs::read(shared("contec/0000050.ECG")).expect("contec");
    let (l, fs) = leads(&contec::read(&file, &ReadOptions::default()).expect("read"), 60);
    let q = gate(&l, fs);
    let six: Vec<String> = (1..=6).map(|i| format!("V{i}")).collect();
    assert!(q.study.contains(&StudyProblem::MissingChestLeads(six)), "{:?}", q.study);
    assert!(
        q.messages.iter().any(|(_, en)| en == "retake: chest leads missing: V1, V2, V3, V4, V5, V6"),
        "{:?}",
        q.messages
    );
}
