//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and any crash regressions
//! (`fuzz/regressions/<target>/`) of the cart-file targets through the same calls and checks as
//! the cargo-fuzz targets, on stable and without cargo-fuzz (see `fuzz/README.md`), and every real
//! file of the shared test data through `sniff::read` / `wfdb::read` with the same checks.
//!
//! The checks are written out again here on purpose: this file shares only the input files with
//! the fuzz crate, which is not a workspace member. Keep both copies in step.
//!
//! `write_seed_corpus` (ignored) regenerates the committed `seed-*` inputs, deterministically:
//! `cargo test -p yilian-formats --test corpus_replay -- --ignored write_seed_corpus`.

mod common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use jiff::civil::date;
use yilian_formats::sniff::{self, Detected};
use yilian_formats::wfdb::MitAnnotation;
use yilian_formats::{
    Annotation, Format, Lead, Limits, Measurement, Patient, ReadOptions, Recording, Sex, aecg, contec, dicom, lead,
    scp, wfdb,
};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Feeds every corpus and regression input of `target` to `check`; fails with the list of
/// inputs that panicked, or if the corpus is empty.
fn replay(target: &str, check: impl Fn(&[u8]) -> bool) {
    let corpus = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} holds no inputs: nothing was replayed");
    let regressions = files_in(&fuzz_dir().join("regressions").join(target));
    let failed = run_all(corpus.iter().chain(&regressions), |_, data| {
        check(data);
    });
    assert!(failed.is_empty(), "{target}: {} input(s) panicked: {failed:#?}", failed.len());
    eprintln!("{target}: replayed {} corpus and {} regression inputs", corpus.len(), regressions.len());
}

/// Runs `check` on each file, catching panics; returns the files that panicked.
fn run_all<'a>(paths: impl Iterator<Item = &'a PathBuf>, check: impl Fn(&Path, &[u8])) -> Vec<String> {
    let mut failed = Vec::new();
    for path in paths {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| check(path, &data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    failed
}

// ---- the checks of the fuzz targets, written out again ----

fn check(rec: &Recording, limits: &Limits) {
    assert!(rec.leads.len() <= limits.max_leads, "{} leads", rec.leads.len());
    assert!(rec.median_beat.len() <= limits.max_leads, "{} median leads", rec.median_beat.len());
    assert!(rec.annotations.len() <= limits.max_annotations, "{} annotations", rec.annotations.len());
    for l in rec.leads.iter().chain(&rec.median_beat) {
        assert!(l.samples.len() <= limits.max_samples_per_lead, "{}: {} samples", l.name, l.samples.len());
        assert!(l.resolution_nv.is_finite() && l.resolution_nv > 0.0, "{}: {} nV", l.name, l.resolution_nv);
        assert!(l.sample_rate_hz > 0, "{}: rate 0", l.name);
    }
}

fn same_leads(a: &[Lead], b: &[Lead]) {
    let names = |l: &[Lead]| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b));
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.sample_rate_hz, y.sample_rate_hz, "{}", x.name);
        assert!((x.resolution_nv - y.resolution_nv).abs() <= x.resolution_nv * 1e-9, "{}", x.name);
        assert!(x.samples == y.samples, "{}: samples differ", x.name);
    }
}

fn scp_read(data: &[u8]) -> bool {
    let opts = ReadOptions::default();
    let Ok(rec) = scp::read(data, &opts) else {
        return false;
    };
    check(&rec, &opts.limits);
    if let Ok(bytes) = scp::write(&rec) {
        let again = scp::read(&bytes, &opts).expect("our own SCP-ECG reads back");
        same_leads(&rec.leads, &again.leads);
        same_leads(&rec.median_beat, &again.median_beat);
    }
    true
}

fn dicom_read(data: &[u8]) -> bool {
    let opts = ReadOptions::default();
    let Ok(rec) = dicom::read(data, &opts) else {
        return false;
    };
    check(&rec, &opts.limits);
    if let Ok(bytes) = dicom::write(&rec) {
        let again = dicom::read(&bytes, &opts).expect("our own DICOM reads back");
        same_leads(&rec.leads, &again.leads);
        same_leads(&rec.median_beat, &again.median_beat);
    }
    true
}

fn aecg_read(data: &[u8]) -> bool {
    let opts = ReadOptions::default();
    let Ok(rec) = aecg::read(data, &opts) else {
        return false;
    };
    check(&rec, &opts.limits);
    if let Ok(bytes) = aecg::write(&rec) {
        let again = aecg::read(&bytes, &opts).expect("our own aECG reads back");
        same_leads(&rec.leads, &again.leads);
        same_leads(&rec.median_beat, &again.median_beat);
    }
    true
}

/// The header and the named files of a `wfdb_read` input: u16 LE header length, header, u32 LE
/// signal length, signal bytes (under every signal file name), rest = `<record>.atr`.
fn wfdb_split(data: &[u8]) -> (&[u8], BTreeMap<String, Vec<u8>>) {
    let (hlen, rest) = data.split_first_chunk::<2>().map_or((0, data), |(h, r)| (u16::from_le_bytes(*h), r));
    let (header, rest) = rest.split_at(usize::from(hlen).min(rest.len()));
    let (dlen, rest) = rest.split_first_chunk::<4>().map_or((0, rest), |(d, r)| (u32::from_le_bytes(*d), r));
    let (dat, atr) = rest.split_at(usize::try_from(dlen).unwrap_or(usize::MAX).min(rest.len()));
    let mut files = BTreeMap::new();
    if let Ok(h) = wfdb::parse_header(&String::from_utf8_lossy(header)) {
        for name in wfdb::signal_files(&h) {
            files.insert(name, dat.to_vec());
        }
        files.insert(format!("{}.atr", wfdb::record_name(&h)), atr.to_vec());
    }
    (header, files)
}

fn wfdb_record(header: &[u8], files: &BTreeMap<String, Vec<u8>>, opts: &ReadOptions) -> Option<Recording> {
    let rec = wfdb::read(header, files, opts).ok()?;
    check(&rec, &opts.limits);
    if let Ok(written) = wfdb::write(&rec, "fuzz") {
        let mut out: BTreeMap<String, Vec<u8>> = written.into_iter().collect();
        let hea = out.remove("fuzz.hea").expect("the writer writes a header");
        let again = wfdb::read(&hea, &out, opts).expect("our own WFDB record reads back");
        same_leads(&rec.leads, &again.leads);
    }
    Some(rec)
}

fn wfdb_read(data: &[u8]) -> bool {
    let (header, files) = wfdb_split(data);
    wfdb_record(header, &files, &ReadOptions::default()).is_some()
}

fn contec_read(data: &[u8]) -> bool {
    let opts = ReadOptions::default();
    let Ok(rec) = contec::read(data, &opts) else {
        return false;
    };
    check(&rec, &opts.limits);
    assert!(rec.leads.len() <= 12, "{} leads", rec.leads.len());
    let n = data.len().saturating_sub(80) / 16;
    for l in &rec.leads {
        assert_eq!((l.sample_rate_hz, l.resolution_nv, l.samples.len()), (800, 5000.0, n), "{}", l.name);
        assert_eq!(l.derived, ["I", "aVR", "aVL", "aVF"].contains(&l.name.as_str()), "{}", l.name);
    }
    true
}

const SNIFF_NAMES: [&str; 4] = ["cart-file", "cart-file.hea", "cart-file.dat", "CART.ECG"];

fn sniff_named(name: &str, data: &[u8]) -> Option<Recording> {
    let opts = ReadOptions::default();
    let detected = sniff::detect(name, data);
    let rec = sniff::read(name, data, &opts).ok()?;
    check(&rec, &opts.limits);
    let expected = match detected {
        Detected::Scp => Format::ScpEcg,
        Detected::Dicom => Format::Dicom,
        Detected::Aecg => Format::Aecg,
        Detected::Contec => Format::Contec,
        other => panic!("{other:?} read as {:?}", rec.format),
    };
    assert_eq!(rec.format, expected);
    Some(rec)
}

fn sniff_read(data: &[u8]) -> bool {
    sniff_named(SNIFF_NAMES[data.len() % SNIFF_NAMES.len()], data).is_some()
}

#[test]
fn scp_read_corpus() {
    replay("scp_read", scp_read);
}

#[test]
fn dicom_read_corpus() {
    replay("dicom_read", dicom_read);
}

#[test]
fn aecg_read_corpus() {
    replay("aecg_read", aecg_read);
}

#[test]
fn wfdb_read_corpus() {
    replay("wfdb_read", wfdb_read);
}

#[test]
fn contec_read_corpus() {
    replay("contec_read", contec_read);
}

#[test]
fn sniff_read_corpus() {
    replay("sniff_read", sniff_read);
}

// ---- every real file ----

fn real_files(folder: &str) -> Vec<PathBuf> {
    let files = files_in(&common::data_dir().join(folder));
    assert!(!files.is_empty(), "no test data in {folder}");
    files
}

/// Every single-file cart record of the shared data reads through `sniff::read` and passes the
/// fuzz checks (and the writer round trip of its format); images, the CSV export and WFDB parts
/// are refused, not misread.
#[test]
fn real_single_files_through_sniff() {
    let mut paths = Vec::new();
    for folder in ["aecg", "contec", "dicom-ecg", "dicom-img", "scp"] {
        paths.extend(real_files(folder));
    }
    let read_ok = std::cell::Cell::new(0);
    let failed = run_all(paths.iter(), |path, data| {
        let name = path.file_name().and_then(|n| n.to_str()).expect("file name");
        let folder = path.parent().and_then(Path::file_name).and_then(|n| n.to_str()).expect("folder");
        let rec = sniff_named(name, data);
        let is_ecg = matches!(folder, "aecg" | "dicom-ecg" | "scp") || name.ends_with(".ECG") || name.ends_with(".scp");
        assert_eq!(rec.is_some(), is_ecg, "{name}: read or refused as expected");
        let Some(rec) = rec else { return };
        read_ok.set(read_ok.get() + 1);
        assert!(!rec.leads.is_empty(), "{name}: no leads");
        match rec.format {
            Format::ScpEcg => scp_read(data),
            Format::Dicom => dicom_read(data),
            Format::Aecg => aecg_read(data),
            Format::Contec => contec_read(data),
            Format::Wfdb => panic!("{name}: sniff read WFDB"),
        };
    });
    assert!(failed.is_empty(), "{} real file(s) failed: {failed:#?}", failed.len());
    // 2 aECG + 2 Contec + its SCP export + 3 DICOM ECG + 2 SCP.
    assert_eq!(read_ok.get(), 10);
}

/// Every real WFDB record reads through `wfdb::read` with the fuzz checks and the writer round
/// trip, and its files given alone to `sniff::read` are refused as WFDB parts or headers.
#[test]
fn real_wfdb_records() {
    let mut records = 0;
    for folder in ["wfdb/mitdb", "wfdb/ptbdb", "wfdb/ludb"] {
        let paths = real_files(folder);
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for p in &paths {
            let name = p.file_name().and_then(|n| n.to_str()).expect("file name").to_string();
            let data = std::fs::read(p).expect("read");
            // Sniffing every part of a record costs nothing: only the header's start is looked at.
            assert!(sniff_named(&name, &data).is_none(), "{name} read alone");
            files.insert(name, data);
        }
        let headers: Vec<String> = files.keys().filter(|n| n.ends_with(".hea")).cloned().collect();
        for hea in headers {
            let header = files.get(&hea).expect("header").clone();
            let rec = wfdb_record(&header, &files, &ReadOptions::default());
            let rec = rec.unwrap_or_else(|| panic!("{folder}/{hea} does not read"));
            assert!(!rec.leads.is_empty(), "{hea}");
            records += 1;
        }
    }
    assert_eq!(records, 15);
}

// ---- the seed corpus ----

/// Largest seed committed.
const MAX_SEED: usize = 64 * 1024;

/// A deterministic ECG-ish integer: a slow wave plus a spike every beat, different per lead.
fn wave(lead: usize, i: usize, beat: usize) -> i32 {
    let k = lead as i32 + 1;
    let phase = ((i * 7 + lead * 13) % 100) as i32;
    let slow = if phase < 50 { phase } else { 100 - phase } - 25;
    let spike = match i % beat {
        0 => 40 * k,
        1 => -15 * k,
        _ => 0,
    };
    slow * k / 3 + spike
}

fn synthetic_leads(names: &[&str], n: usize, rate: u32, nv: f64) -> Vec<Lead> {
    names
        .iter()
        .enumerate()
        .map(|(k, name)| Lead {
            name: (*name).into(),
            derived: false,
            sample_rate_hz: rate,
            resolution_nv: nv,
            samples: (0..n).map(|i| wave(k, i, rate as usize * 4 / 5)).collect(),
        })
        .collect()
}

/// 12 leads × `n` samples at 500 Hz, 2.5 µV, with a Chinese patient, a median beat, measurements
/// and an interpretation.
fn synthetic(n: usize, median: bool) -> Recording {
    let mut rec = Recording::new(Format::ScpEcg, "synthetic");
    rec.patient = Patient {
        id: "ZJ-0042".into(),
        name: "张伟".into(),
        sex: Sex::Male,
        birth_date: Some(date(1958, 3, 14)),
        age_years: None,
    };
    rec.acquired_at = Some(date(2025, 11, 3).at(9, 26, 53, 0));
    rec.device = "Yilian synthetic".into();
    rec.leads = synthetic_leads(&lead::STANDARD_12, n, 500, 2500.0);
    if median {
        rec.median_beat = synthetic_leads(&lead::STANDARD_12, 300, 500, 2500.0);
    }
    rec.measurements = vec![
        Measurement { name: "PR".into(), value: 160.0, unit: "ms".into() },
        Measurement { name: "QRS".into(), value: 92.0, unit: "ms".into() },
        Measurement { name: "QT".into(), value: 380.0, unit: "ms".into() },
    ];
    rec.interpretation = vec!["窦性心律".into(), "Normal ECG".into()];
    rec
}

/// A Contec ECG90A file: `frames` of 8 stored series; `precordial` false writes the invalid
/// marker for V1-V6 (chest electrodes off); `gaps` marks every 97th II sample invalid.
fn contec_file(frames: usize, precordial: bool, gaps: bool, name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + 16 * frames);
    out.extend_from_slice(b"0000123\0\0\0");
    out.extend_from_slice(b"2025-11-03 09:26:53\0");
    out.extend_from_slice(&[0, 0]);
    let mut field = name.to_vec();
    field.resize(8, 0);
    out.extend_from_slice(&field);
    out.extend_from_slice(&[1, 67, 70]);
    assert_eq!(out.len(), 43);
    for i in 0..frames {
        for k in 0..8 {
            let stored = if (k >= 2 && !precordial) || (gaps && k == 0 && i % 97 == 50) {
                0x6800
            } else {
                u16::try_from(wave(k, i, 640) + 2048).expect("12-bit")
            };
            out.extend_from_slice(&stored.to_le_bytes());
        }
    }
    out.extend_from_slice(&[0; 37]);
    out
}

/// A `wfdb_read` input from a header, one signal file and an annotation file.
fn wfdb_input(header: &str, dat: &[u8], atr: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(header.len()).expect("short header").to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&u32::try_from(dat.len()).expect("short").to_le_bytes());
    out.extend_from_slice(dat);
    out.extend_from_slice(atr);
    out
}

/// A `wfdb_read` input of what our writer makes of `rec`.
fn wfdb_written(rec: &Recording) -> Vec<u8> {
    let files: BTreeMap<String, Vec<u8>> = wfdb::write(rec, "seed").expect("write").into_iter().collect();
    let hea = String::from_utf8(files.get("seed.hea").expect("header").clone()).expect("UTF-8");
    let dat = files.get("seed.dat").expect("signals");
    wfdb_input(&hea, dat, files.get("seed.atr").map_or(&[][..], Vec::as_slice))
}

/// Two signals in format 212 (12-bit pairs in 3 bytes) with their checksums, and beats.
fn wfdb_212() -> Vec<u8> {
    let leads = synthetic_leads(&["MLII", "V5"], 720, 360, 5000.0);
    let mut dat = Vec::new();
    for i in 0..720 {
        let a = (leads[0].samples[i] + 1024) as u16 & 0x0fff;
        let b = (leads[1].samples[i] + 1024) as u16 & 0x0fff;
        dat.extend_from_slice(&[(a & 0xff) as u8, ((a >> 8) as u8) | (((b >> 8) as u8) << 4), (b & 0xff) as u8]);
    }
    let mut header = "s212 2 360 720\n".to_string();
    for l in &leads {
        let sum = l.samples.iter().map(|&v| v + 1024).fold(0i16, |acc, v| acc.wrapping_add(v as i16));
        let init = l.samples[0] + 1024;
        header += &format!("s212.dat 212 200 11 1024 {init} {sum} 0 {}\n", l.name);
    }
    header += "# 69 M 1085 1629 x1\n";
    let beats: Vec<MitAnnotation> = (0..720)
        .step_by(288)
        .map(|s| MitAnnotation { sample: s as u64, code: 1, subtype: 0, chan: 0, num: 0, aux: String::new() })
        .chain([MitAnnotation { sample: 3, code: 28, subtype: 0, chan: 0, num: 0, aux: "(N".into() }])
        .collect::<Vec<_>>();
    let mut sorted = beats;
    sorted.sort_by_key(|a| a.sample);
    wfdb_input(&header, &dat, &wfdb::write_annotations(&sorted).expect("annotations"))
}

/// Format 80 (8-bit offset binary), one signal, no annotations.
fn wfdb_80() -> Vec<u8> {
    let lead = &synthetic_leads(&["ECG"], 500, 250, 10_000.0)[0];
    let dat: Vec<u8> = lead.samples.iter().map(|&v| (v + 128).clamp(0, 255) as u8).collect();
    let sum = lead.samples.iter().fold(0i16, |acc, &v| acc.wrapping_add(v as i16));
    let header = format!("f80 1 250 500 10:15:00 03/11/2025\nf80.dat 80 100 8 0 {} {sum} 0 ECG\n", lead.samples[0]);
    wfdb_input(&header, &dat, &[])
}

/// Every line of `<digits>` cut to its first `keep` values, and the first (beat-level, largest)
/// annotation set dropped when `drop_first_set`: the real document's structure in a small seed.
fn shrink_aecg(xml: &str, keep: usize, drop_first_set: bool) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(at) = rest.find("<digits>") {
        let (head, tail) = rest.split_at(at + "<digits>".len());
        out.push_str(head);
        let end = tail.find("</digits>").expect("closed digits");
        let digits: Vec<&str> = tail[..end].split_whitespace().take(keep).collect();
        out.push_str(&digits.join(" "));
        rest = &tail[end..];
    }
    out.push_str(rest);
    if drop_first_set && let (Some(a), Some(b)) = (out.find("<annotationSet>"), out.find("</annotationSet>")) {
        out.replace_range(a..b + "</annotationSet>".len(), "");
    }
    out
}

/// (target, file name, bytes) of every seed.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let data = common::data;
    let small = synthetic(500, true);
    let mut plain = synthetic(500, false);
    plain.patient.name = "Clark".into();
    plain.interpretation.clear();
    let mut short_rhythm = synthetic(200, false);
    short_rhythm.leads.truncate(3);
    let toolkit = {
        let mut r = dicom::read(&data("dicom-ecg/ecgtoolkit_Example.dcm"), &ReadOptions::default()).expect("toolkit");
        for l in r.leads.iter_mut().chain(&mut r.median_beat) {
            l.samples.truncate(600);
        }
        r
    };
    let mut with_beats = synthetic(1000, false);
    with_beats.annotations =
        (0..1000).step_by(400).map(|s| Annotation { sample: s, lead: None, label: "N".into(), text: None }).collect();
    let mut wide = synthetic(300, false);
    wide.leads.truncate(2);
    wide.leads[0].samples[7] = 70_000;
    let gbk = encoding_rs::GB18030.encode("张伟").0.into_owned();
    let example1 = String::from_utf8(data("aecg/Example_aECG.xml")).expect("UTF-8");
    let example2 = String::from_utf8(data("aecg/hl7aecg-Example2.xml")).expect("UTF-8");

    let scp_small = scp::write(&small).expect("scp");
    let dicom_small = dicom::write(&small).expect("dicom");
    let aecg_small = aecg::write(&small).expect("aecg");
    let contec_small = contec_file(300, false, false, &gbk);
    vec![
        ("scp_read", "seed-ecgtoolkit-example.scp", data("scp/ecgtoolkit_Example.scp")),
        ("scp_read", "seed-synthetic-12x500-median.scp", scp_small.clone()),
        ("scp_read", "seed-synthetic-12x500.scp", scp::write(&plain).expect("scp")),
        ("scp_read", "seed-synthetic-3x200.scp", scp::write(&short_rhythm).expect("scp")),
        ("dicom_read", "seed-web-viewer.dcm", data("dicom-ecg/ecg-dicom-web-viewer_test_ecg.dcm")),
        ("dicom_read", "seed-ecgtoolkit-head.dcm", data("dicom-ecg/ecgtoolkit_Example.dcm")[..16 * 1024].to_vec()),
        ("dicom_read", "seed-waveform-ecg-head.dcm", data("dicom-ecg/waveform_ecg.dcm")[..16 * 1024].to_vec()),
        ("dicom_read", "seed-ecgtoolkit-600.dcm", dicom::write(&toolkit).expect("dicom")),
        ("dicom_read", "seed-synthetic-12x500-median.dcm", dicom_small.clone()),
        ("dicom_read", "seed-cr-image.dcm", data("dicom-img/CR_dicomdirtests_6154.dcm")),
        ("dicom_read", "seed-deflated-image.dcm", data("dicom-img/image_dfl.dcm")),
        ("dicom_read", "seed-mr-implicit.dcm", data("dicom-img/MR_small_implicit.dcm")),
        ("aecg_read", "seed-example-aecg-shrunk.xml", shrink_aecg(&example1, 80, true).into_bytes()),
        ("aecg_read", "seed-hl7aecg-example2-shrunk.xml", shrink_aecg(&example2, 100, false).into_bytes()),
        ("aecg_read", "seed-synthetic-12x500-median.xml", aecg_small.clone()),
        ("aecg_read", "seed-synthetic-3x200.xml", aecg::write(&short_rhythm).expect("aecg")),
        ("wfdb_read", "seed-written-12x500", wfdb_written(&plain)),
        ("wfdb_read", "seed-written-beats", wfdb_written(&with_beats)),
        ("wfdb_read", "seed-written-format32", wfdb_written(&wide)),
        ("wfdb_read", "seed-format212-atr", wfdb_212()),
        ("wfdb_read", "seed-format80", wfdb_80()),
        ("contec_read", "seed-limb-only-gbk-name.ECG", contec_small.clone()),
        ("contec_read", "seed-12-lead.ECG", contec_file(1000, true, false, b"Clark")),
        ("contec_read", "seed-gaps.ECG", contec_file(500, true, true, b"")),
        ("contec_read", "seed-empty.ECG", contec_file(0, true, false, b"")),
        ("sniff_read", "seed-scp", scp_small),
        ("sniff_read", "seed-dicom", dicom_small),
        ("sniff_read", "seed-aecg", aecg_small),
        ("sniff_read", "seed-contec", contec_small),
        (
            "sniff_read",
            "seed-wfdb-header",
            b"r7 2 500 5000\r\nr7.dat 16 200 16 0 -3 1021 0 I\r\nr7.dat 16 200 16 0 5 -77 0 II\r\n".to_vec(),
        ),
        ("sniff_read", "seed-pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec()),
    ]
}

/// Regenerates `fuzz/corpus/<target>/seed-*` (other inputs are left alone).
#[test]
#[ignore = "writes the seed corpus; run by hand"]
fn write_seed_corpus() {
    let mut total = 0;
    for (target, name, bytes) in seeds() {
        assert!(bytes.len() <= MAX_SEED, "{target}/{name} is {} bytes", bytes.len());
        // Cuts, images and the non-ECG sniff inputs are refused; every other seed must read.
        let refused = ["-head.", "-image.", "mr-implicit", "seed-pdf", "seed-wfdb-header"];
        let check = match target {
            "scp_read" => scp_read,
            "dicom_read" => dicom_read,
            "aecg_read" => aecg_read,
            "wfdb_read" => wfdb_read,
            "contec_read" => contec_read,
            _ => sniff_read,
        };
        assert_eq!(check(&bytes), !refused.iter().any(|r| name.contains(r)), "{target}/{name} reads");
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), &bytes).expect("write seed");
        total += bytes.len();
    }
    eprintln!("wrote {total} bytes of seeds");
}
