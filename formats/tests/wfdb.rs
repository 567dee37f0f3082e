//! The WFDB reader and writer against the real PhysioNet records of the shared test data
//! (README sections 1-3).

mod common;

use std::collections::{BTreeMap, HashMap};

use common::data;
use proptest::prelude::*;
use yilian_formats::wfdb::{self, WfdbError};
use yilian_formats::{Limits, ReadOptions, Recording, Sex};

/// The header and every other file of a record in `dir`, keyed by file name.
fn record_files(dir: &str, record: &str, exts: &[&str]) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let hea = data(&format!("{dir}/{record}.hea"));
    let files = exts.iter().map(|e| (format!("{record}.{e}"), data(&format!("{dir}/{record}.{e}")))).collect();
    (hea, files)
}

fn read(hea: &[u8], files: &BTreeMap<String, Vec<u8>>) -> Recording {
    wfdb::read(hea, files, &ReadOptions::default()).expect("read record")
}

/// One row of the README's MIT-BIH tables.
struct Mit {
    rec: &'static str,
    v_lead: &'static str,
    init: [i32; 2],
    checksums: [i16; 2],
    age: Option<u16>,
    sex: Sex,
    total: usize,
    beats: usize,
    symbols: &'static [(&'static str, usize)],
    rhythms: &'static [(&'static str, usize)],
    first3: [(u64, &'static str, Option<&'static str>); 3],
    last: u64,
    range: [(i32, i32); 2],
}

const M: Sex = Sex::Male;
const F: Sex = Sex::Female;

#[rustfmt::skip]
const MITDB: [Mit; 13] = [
    Mit { rec: "100", v_lead: "V5", init: [995, 1011], checksums: [-22131, 20052], age: Some(69), sex: M, total: 2274, beats: 2273,
        symbols: &[("N", 2239), ("A", 33), ("V", 1), ("+", 1)], rhythms: &[("(N", 1)],
        first3: [(18, "+", Some("(N")), (77, "N", None), (370, "N", None)], last: 649991, range: [(481, 1311), (531, 1269)] },
    Mit { rec: "101", v_lead: "V1", init: [955, 992], checksums: [29832, 19589], age: Some(75), sex: F, total: 1874, beats: 1865,
        symbols: &[("N", 1860), ("A", 3), ("Q", 2), ("+", 1), ("|", 4), ("~", 4)], rhythms: &[("(N", 1)],
        first3: [(7, "+", Some("(N")), (83, "N", None), (396, "N", None)], last: 649751, range: [(389, 1508), (911, 1171)] },
    Mit { rec: "103", v_lead: "V2", init: [949, 1034], checksums: [11457, -31983], age: None, sex: M, total: 2091, beats: 2084,
        symbols: &[("N", 2082), ("A", 2), ("+", 1), ("~", 6)], rhythms: &[("(N", 1)],
        first3: [(21, "+", None), (265, "N", None), (575, "N", None)], last: 649875, range: [(502, 1649), (0, 2047)] },
    Mit { rec: "105", v_lead: "V1", init: [935, 1076], checksums: [-24679, -15565], age: Some(73), sex: F, total: 2691, beats: 2572,
        symbols: &[("N", 2526), ("V", 41), ("Q", 5), ("+", 1), ("|", 30), ("~", 88)], rhythms: &[("(N", 1)],
        first3: [(67, "+", None), (197, "N", None), (459, "N", None)], last: 649740, range: [(281, 1624), (511, 1476)] },
    Mit { rec: "106", v_lead: "V1", init: [962, 1063], checksums: [32452, 6251], age: Some(24), sex: F, total: 2098, beats: 2027,
        symbols: &[("N", 1507), ("V", 520), ("+", 41), ("~", 30)], rhythms: &[("(N", 21), ("(B", 18), ("(VT", 1), ("(T", 1)],
        first3: [(83, "~", None), (229, "+", Some("(N")), (351, "N", None)], last: 649791, range: [(611, 1538), (491, 1383)] },
    Mit { rec: "108", v_lead: "V1", init: [999, 868], checksums: [-24080, -28914], age: Some(87), sex: F, total: 1824, beats: 1763,
        symbols: &[("N", 1739), ("V", 17), ("A", 4), ("F", 2), ("j", 1), ("+", 1), ("x", 11), ("|", 8), ("~", 41)], rhythms: &[("(N", 1)],
        first3: [(23, "+", None), (88, "N", None), (442, "N", None)], last: 649769, range: [(417, 1497), (126, 1654)] },
    Mit { rec: "119", v_lead: "V1", init: [825, 930], checksums: [2943, -26388], age: Some(51), sex: F, total: 2094, beats: 1987,
        symbols: &[("N", 1543), ("V", 444), ("+", 103), ("~", 4)], rhythms: &[("(N", 49), ("(B", 37), ("(T", 17)],
        first3: [(32, "+", None), (309, "N", None), (503, "V", None)], last: 649788, range: [(427, 1524), (195, 1488)] },
    Mit { rec: "200", v_lead: "V1", init: [1094, 1045], checksums: [12838, -25533], age: Some(64), sex: M, total: 2792, beats: 2601,
        symbols: &[("N", 1743), ("V", 826), ("A", 30), ("F", 2), ("+", 148), ("~", 43)], rhythms: &[("(B", 71), ("(N", 70), ("(VT", 7)],
        first3: [(67, "+", Some("(B")), (225, "V", None), (487, "N", None)], last: 649927, range: [(485, 1500), (46, 2012)] },
    Mit { rec: "203", v_lead: "V1", init: [972, 1037], checksums: [5391, 28451], age: Some(43), sex: M, total: 3108, beats: 2980,
        symbols: &[("N", 2529), ("V", 444), ("Q", 4), ("a", 2), ("F", 1), ("+", 45), ("|", 26), ("~", 57)],
        rhythms: &[("(AFIB", 21), ("(VT", 21), ("(AFL", 2), ("(T", 1)],
        first3: [(14, "+", Some("(AFIB")), (24, "~", None), (99, "N", None)], last: 649777, range: [(163, 1752), (711, 1434)] },
    Mit { rec: "208", v_lead: "V1", init: [1003, 1062], checksums: [8074, 20649], age: Some(23), sex: F, total: 3040, beats: 2955,
        symbols: &[("N", 1586), ("V", 992), ("F", 373), ("S", 2), ("Q", 2), ("+", 53), ("|", 8), ("~", 24)], rhythms: &[("(N", 27), ("(T", 26)],
        first3: [(9, "+", Some("(N")), (46, "F", None), (209, "V", None)], last: 649935, range: [(327, 1754), (512, 1598)] },
    Mit { rec: "210", v_lead: "V1", init: [1011, 1051], checksums: [19348, -30580], age: Some(89), sex: M, total: 2685, beats: 2650,
        symbols: &[("N", 2423), ("V", 194), ("a", 22), ("F", 10), ("E", 1), ("+", 17), ("|", 1), ("~", 17)],
        rhythms: &[("(AFIB", 9), ("(B", 5), ("(VT", 2), ("(T", 1)],
        first3: [(13, "+", Some("(AFIB")), (57, "N", None), (250, "N", None)], last: 649962, range: [(700, 1688), (641, 1505)] },
    Mit { rec: "222", v_lead: "V1", init: [996, 949], checksums: [-16993, -25021], age: Some(84), sex: F, total: 2634, beats: 2483,
        symbols: &[("N", 2062), ("j", 212), ("A", 208), ("J", 1), ("+", 136), ("~", 15)],
        rhythms: &[("(AFL", 42), ("(N", 32), ("(NOD", 31), ("(AFIB", 24), ("(SVTA", 4), ("(AB", 3)],
        first3: [(17, "+", Some("(N")), (81, "N", None), (361, "N", None)], last: 649859, range: [(800, 1345), (584, 1377)] },
    Mit { rec: "228", v_lead: "V1", init: [993, 1005], checksums: [-22386, -28691], age: Some(80), sex: F, total: 2141, beats: 2053,
        symbols: &[("N", 1688), ("V", 362), ("A", 3), ("\"", 3), ("+", 41), ("|", 24), ("~", 20)], rhythms: &[("(N", 21), ("(B", 20)],
        first3: [(27, "+", None), (160, "N", None), (433, "N", None)], last: 649761, range: [(549, 1602), (397, 1755)] },
];

fn mit_files(rec: &str) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    record_files("wfdb/mitdb", rec, &["dat", "atr"])
}

#[test]
fn mitdb_records_decode_with_the_readme_values() {
    for m in &MITDB {
        let (hea, files) = mit_files(m.rec);
        let header = wfdb::parse_header(std::str::from_utf8(&hea).expect("ascii header")).expect("header");
        assert_eq!(wfdb::record_name(&header), m.rec);
        assert_eq!(wfdb::signal_files(&header), vec![format!("{}.dat", m.rec)]);
        let stated: Vec<Option<i16>> = header.signals.iter().map(|s| s.checksum).collect();
        assert_eq!(stated, vec![Some(m.checksums[0]), Some(m.checksums[1])], "{}", m.rec);

        let rec = read(&hea, &files);
        assert!(rec.warnings.is_empty(), "{}: {:?}", m.rec, rec.warnings);
        assert_eq!(rec.format_version, "format 212");
        let names: Vec<&str> = rec.leads.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["MLII", m.v_lead], "{}", m.rec);
        for (k, l) in rec.leads.iter().enumerate() {
            assert_eq!((l.samples.len(), l.sample_rate_hz, l.resolution_nv), (650_000, 360, 5000.0), "{}", m.rec);
            assert!(!l.derived);
            // Baseline = ADC zero = 1024.
            assert_eq!(l.samples[0], m.init[k] - 1024, "{} lead {k}", m.rec);
            let (min, max) = (l.samples.iter().min().expect("min"), l.samples.iter().max().expect("max"));
            assert_eq!((min + 1024, max + 1024), m.range[k], "{} lead {k}", m.rec);
        }
        assert_eq!((rec.patient.age_years, rec.patient.sex), (m.age, m.sex), "{}", m.rec);
        assert_eq!(rec.acquired_at, None);
        assert!(rec.interpretation.is_empty());

        let anns = &rec.annotations;
        assert_eq!(anns.len(), m.total, "{}", m.rec);
        assert!(anns.iter().all(|a| a.lead.is_none()));
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for a in anns {
            *counts.entry(a.label.as_str()).or_default() += 1;
        }
        let expected: HashMap<&str, usize> = m.symbols.iter().copied().collect();
        assert_eq!(counts, expected, "{}", m.rec);
        let mut rhythms: HashMap<&str, usize> = HashMap::new();
        for a in anns.iter().filter(|a| a.label == "+") {
            *rhythms.entry(a.text.as_deref().expect("rhythm label")).or_default() += 1;
        }
        assert_eq!(rhythms, m.rhythms.iter().copied().collect::<HashMap<_, _>>(), "{}", m.rec);
        for (a, (sample, label, text)) in anns.iter().zip(m.first3) {
            assert_eq!((a.sample, a.label.as_str()), (sample, label), "{}", m.rec);
            if let Some(t) = text {
                assert_eq!(a.text.as_deref(), Some(t), "{}", m.rec);
            }
        }
        let last = anns.last().expect("last");
        assert_eq!((last.sample, last.label.as_str()), (m.last, "N"), "{}", m.rec);

        let typed = wfdb::annotations(&files[&format!("{}.atr", m.rec)], &Limits::default()).expect("annotations");
        assert_eq!(typed.iter().filter(|a| a.is_beat()).count(), m.beats, "{}", m.rec);
        // README: every annotation has chan 0. (The files do use SUB words: 100.atr has one.)
        assert!(typed.iter().all(|a| a.chan == 0 && a.num == 0), "{}", m.rec);
        if m.rec == "100" {
            let subs: Vec<(u64, i8)> = typed.iter().filter(|a| a.subtype != 0).map(|a| (a.sample, a.subtype)).collect();
            assert_eq!(subs, vec![(546_792, 1)]);
        }
    }
}

#[test]
fn mitdb_100_through_the_agent_api_keeps_raw_integers() {
    let (hea, files) = mit_files("100");
    let header = wfdb::parse_header(std::str::from_utf8(&hea).expect("ascii")).expect("header");
    assert_eq!(header.sample_rate_hz, 360.0);
    assert_eq!(header.samples_per_signal, 650_000);
    let s = &header.signals[0];
    assert_eq!((s.format, s.gain, s.baseline, s.adc_zero, s.adc_resolution), (212, 200.0, 1024, 1024, 11));
    assert_eq!((s.units.as_str(), s.initial_value, s.description.as_str()), ("mV", Some(995), "MLII"));
    assert_eq!(s.resolution_nv(), Some(5000));
    assert_eq!(header.comments[0], "69 M 1085 1629 x1");
    let sig = wfdb::read_signals(&header, "100.dat", &files["100.dat"]).expect("signals");
    assert_eq!(sig.len(), 2);
    assert_eq!((sig[0].0, sig[0].1[0], sig[1].0, sig[1].1[0]), (0, 995, 1, 1011));

    let typed = wfdb::annotations(&files["100.atr"], &Limits::default()).expect("annotations");
    assert_eq!(
        (typed[0].sample, typed[0].code, typed[0].symbol().as_str(), typed[0].aux.as_str()),
        (18, 28, "+", "(N")
    );
    assert_eq!((typed[1].sample, typed[1].code), (77, 1));
}

#[test]
fn ptb_s0010_re_reads_both_signal_files() {
    let (hea, files) = record_files("wfdb/ptbdb", "s0010_re", &["dat", "xyz"]);
    assert_eq!(hea.len(), 2687);
    let rec = read(&hea, &files);
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    let names: Vec<&str> = rec.leads.iter().map(|l| l.name.as_str()).collect();
    let want = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "X", "Y", "Z"];
    assert_eq!(names, want);
    let init = [-489, -458, 31, 474, -260, -214, -88, -241, -112, 212, 393, 390, -3, 120, -18];
    let last = [270, 517, 249, -394, 11, 383, -184, 164, 118, -168, -249, -333, 162, 98, 58];
    for (k, l) in rec.leads.iter().enumerate() {
        assert_eq!((l.samples.len(), l.sample_rate_hz, l.resolution_nv), (38_400, 1000, 500.0), "{}", l.name);
        assert_eq!((l.samples[0], l.samples[38_399]), (init[k], last[k]), "{}", l.name);
    }
    let header = wfdb::parse_header(std::str::from_utf8(&hea).expect("ascii")).expect("header");
    let sums: Vec<i16> = header.signals.iter().filter_map(|s| s.checksum).collect();
    let want_sums =
        [-8337, -16369, 6829, 4582, 11687, -16657, -12469, 5636, -14299, -17916, -6668, -17545, -13009, 7109, -1992];
    assert_eq!(sums, want_sums);
    assert_eq!(wfdb::signal_files(&header), vec!["s0010_re.dat", "s0010_re.xyz"]);
    assert!(header.comments.iter().any(|c| c == "Acute infarction (localization): infero-latera"));
    assert!(header.comments.iter().any(|c| c == "ECG date: 01/10/1990"));
    assert_eq!((rec.patient.age_years, rec.patient.sex), (Some(81), Sex::Female));
    assert!(rec.interpretation.is_empty());
    assert!(rec.annotations.is_empty());
}

const LUDB_LEADS: [&str; 12] = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"];

fn ludb_files() -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let mut exts = vec!["dat"];
    exts.extend(LUDB_LEADS);
    record_files("wfdb/ludb", "1", &exts)
}

#[test]
fn ludb_record_1_per_lead_gains_baselines_and_annotations() {
    let (hea, files) = ludb_files();
    let rec = read(&hea, &files);
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    let gains = [1716.0, 1206.0, 1229.0, 1368.0, 1368.0, 698.0, 1372.0, 1572.0, 2259.0, 2317.0, 2074.0, 1457.0];
    let baselines = [6, 2, -5, -5, 5, -1, -1, 2, 3, 4, 4, 1];
    let init = [-120, 25, 145, 47, -132, 85, 150, 62, 65, 145, 105, -25];
    let sums = [-32198, 12402, -20936, -23456, 26680, -4930, -1105, 10564, 15400, 20455, 24979, 7482];
    let first_last = [
        (641, 3996),
        (644, 3996),
        (633, 3985),
        (642, 4002),
        (646, 3996),
        (635, 3998),
        (641, 3997),
        (641, 3990),
        (641, 3989),
        (641, 3990),
        (641, 3989),
        (643, 3986),
    ];
    let names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];
    assert_eq!(rec.leads.len(), 12);
    for (k, l) in rec.leads.iter().enumerate() {
        assert_eq!(l.name, names[k]);
        assert_eq!((l.samples.len(), l.sample_rate_hz), (5000, 500));
        assert_eq!(l.resolution_nv, 1e6 / gains[k], "{}", l.name);
        assert_eq!(l.samples[0], init[k] - baselines[k], "{}", l.name);
        // The header checksum is over the stored values, i.e. before the baseline comes out.
        let stored: i16 = l.samples.iter().fold(0i16, |a, &v| a.wrapping_add((v + baselines[k]) as i16));
        assert_eq!(stored, sums[k], "{}", l.name);

        let mine: Vec<_> = rec.annotations.iter().filter(|a| a.lead.as_deref() == Some(names[k])).collect();
        assert_eq!(mine.len(), 48, "{}", l.name);
        let count = |s: &str| mine.iter().filter(|a| a.label == s).count();
        assert_eq!([count("("), count(")"), count("N"), count("p"), count("t")], [16, 16, 6, 5, 5], "{}", l.name);
        let (first, last) = (mine.first().expect("first"), mine.last().expect("last"));
        assert_eq!((first.sample, last.sample), first_last[k], "{}", l.name);
    }
    assert_eq!(rec.annotations.len(), 12 * 48);
    let lead_i: Vec<_> = rec.annotations.iter().filter(|a| a.lead.as_deref() == Some("I")).take(3).collect();
    let got: Vec<(u64, &str)> = lead_i.iter().map(|a| (a.sample, a.label.as_str())).collect();
    assert_eq!(got, vec![(641, "("), (664, "N"), (690, ")")]);
    assert_eq!(files["1.i"].len(), 98);
    assert_eq!(&files["1.i"][..2], &[0x81, 0x9e]);

    assert_eq!((rec.patient.age_years, rec.patient.sex), (Some(51), Sex::Female));
    assert_eq!(
        rec.interpretation,
        vec![
            "Rhythm: Sinus bradycardia.",
            "Electric axis of the heart: left axis deviation.",
            "Left ventricular hypertrophy.",
            "Left ventricular overload.",
            "Non-specific repolarization abnormalities: posterior wall.",
        ]
    );
}

/// Read → write → read gives the same leads, samples, rates, resolutions and annotations.
fn assert_round_trip(hea: &[u8], files: &BTreeMap<String, Vec<u8>>, record: &str) {
    let first = read(hea, files);
    let written = wfdb::write(&first, record).expect("write");
    let mut out: BTreeMap<String, Vec<u8>> = written.into_iter().collect();
    let hea2 = out.remove(&format!("{record}.hea")).expect("header written");
    assert!(wfdb::looks_like_header(&hea2));
    let again = read(&hea2, &out);
    assert!(again.warnings.is_empty(), "{record}: {:?}", again.warnings);
    assert_eq!(again.leads.len(), first.leads.len(), "{record}");
    for (a, b) in first.leads.iter().zip(&again.leads) {
        assert_eq!((&a.name, a.sample_rate_hz, a.derived), (&b.name, b.sample_rate_hz, b.derived), "{record}");
        assert!((a.resolution_nv - b.resolution_nv).abs() <= a.resolution_nv * 1e-9, "{record} {}", a.name);
        assert!(a.samples == b.samples, "{record} {}: samples differ", a.name);
    }
    assert_eq!(again.annotations.len(), first.annotations.len(), "{record}");
    let same = again.annotations.iter().zip(&first.annotations).position(|(a, b)| a != b);
    assert_eq!(same.map(|i| (&again.annotations[i], &first.annotations[i])), None, "{record}: first difference");
    assert_eq!(again.patient, first.patient, "{record}");
    assert_eq!(again.interpretation, first.interpretation, "{record}");
}

#[test]
fn writer_round_trips_every_real_record() {
    for m in &MITDB {
        let (hea, files) = mit_files(m.rec);
        assert_round_trip(&hea, &files, m.rec);
    }
    let (hea, files) = record_files("wfdb/ptbdb", "s0010_re", &["dat", "xyz"]);
    assert_round_trip(&hea, &files, "s0010_re");
    let (hea, files) = ludb_files();
    assert_round_trip(&hea, &files, "1");
}

#[test]
fn written_header_states_gain_baseline_checksum_and_comments() {
    let (hea, files) = ludb_files();
    let mut rec = read(&hea, &files);
    rec.patient.name = "张伟".into();
    rec.patient.id = "A-17".into();
    rec.acquired_at = Some(jiff::civil::date(2020, 11, 24).at(7, 19, 13, 0));
    rec.leads[2].derived = true;
    let out = wfdb::write(&rec, "ludb1").expect("write");
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["ludb1.hea", "ludb1.dat"]);
    assert_eq!(out.len(), 2 + 12, "one annotation file per lead: {names:?}");
    let text = std::str::from_utf8(&out[0].1).expect("utf-8 header");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "ludb1 12 500 5000 07:19:13 24/11/2020");
    assert_eq!(lines[1], "ludb1.dat 16 1716(0)/mV 16 0 -126 3338 0 I");
    assert!(text.contains("# name: 张伟\n") && text.contains("# patient id: A-17\n"), "{text}");
    assert!(text.contains("# <diagnoses>:\n# Rhythm: Sinus bradycardia.\n"), "{text}");
    assert_eq!(out[1].1.len(), 120_000);

    let files: BTreeMap<String, Vec<u8>> = out[1..].iter().cloned().collect();
    let back = wfdb::read(&out[0].1, &files, &ReadOptions::default()).expect("read back");
    assert_eq!(back.patient.name, "张伟");
    assert_eq!(back.patient.id, "A-17");
    assert_eq!(back.acquired_at, rec.acquired_at);
    assert!(back.leads[2].derived && !back.leads[1].derived);
}

#[test]
fn writer_refuses_what_wfdb_cannot_say() {
    let (hea, files) = ludb_files();
    let rec = read(&hea, &files);
    let mut mixed = rec.clone();
    mixed.leads[3].sample_rate_hz = 250;
    let err = wfdb::write(&mixed, "r").expect_err("mixed rates");
    assert!(err.to_string().contains("aVR is at 250 Hz but I is at 500 Hz"), "{err}");
    let mut short = rec.clone();
    short.leads[1].samples.pop();
    assert!(matches!(wfdb::write(&short, "r"), Err(wfdb::WfdbWriteError::MixedLengths { .. })));
    assert!(matches!(wfdb::write(&rec, "bad name"), Err(wfdb::WfdbWriteError::RecordName(_))));
    let mut none = rec.clone();
    none.leads.clear();
    assert!(matches!(wfdb::write(&none, "r"), Err(wfdb::WfdbWriteError::NoLeads)));
    let mut zero = rec;
    zero.leads[0].resolution_nv = 0.0;
    assert!(matches!(wfdb::write(&zero, "r"), Err(wfdb::WfdbWriteError::Resolution { .. })));
}

#[test]
fn samples_beyond_16_bits_are_written_in_format_32() {
    let (hea, files) = ludb_files();
    let mut rec = read(&hea, &files);
    rec.leads[0].samples[10] = 100_000;
    let out: BTreeMap<String, Vec<u8>> = wfdb::write(&rec, "w").expect("write").into_iter().collect();
    assert!(std::str::from_utf8(&out["w.hea"]).expect("text").lines().nth(1).expect("line").starts_with("w.dat 32 "));
    let back = wfdb::read(&out["w.hea"], &out, &ReadOptions::default()).expect("read back");
    assert_eq!(back.leads[0].samples, rec.leads[0].samples);
}

#[test]
fn a_bad_checksum_is_an_error_unless_accepted() {
    let (hea, mut files) = mit_files("100");
    let dat = files.get_mut("100.dat").expect("dat");
    dat[300] ^= 0x01;
    let err = wfdb::read(&hea, &files, &ReadOptions::default()).expect_err("bad checksum");
    assert!(matches!(err, WfdbError::Checksum { signal: 0, stated: -22131, .. }), "{err}");
    assert!(err.to_string().contains("MLII"));
    let lenient = ReadOptions { accept_bad_checksums: true, ..ReadOptions::default() };
    let rec = wfdb::read(&hea, &files, &lenient).expect("accepted");
    assert_eq!(rec.warnings.len(), 1, "{:?}", rec.warnings);
    assert!(rec.warnings[0].contains("checksum"));
}

#[test]
fn a_truncated_signal_file_is_an_error_naming_file_and_byte_counts() {
    let (hea, mut files) = mit_files("100");
    files.get_mut("100.dat").expect("dat").truncate(1_949_999);
    let err = wfdb::read(&hea, &files, &ReadOptions::default()).expect_err("short");
    assert_eq!(err, WfdbError::Short { file: "100.dat".into(), got: 1_949_999, need: 1_950_000 });
    assert_eq!(err.to_string(), "100.dat: 1949999 bytes, header needs 1950000");

    let (hea, mut files) = record_files("wfdb/ptbdb", "s0010_re", &["dat", "xyz"]);
    files.remove("s0010_re.xyz");
    let err = wfdb::read(&hea, &files, &ReadOptions::default()).expect_err("missing");
    assert_eq!(err, WfdbError::MissingFile("s0010_re.xyz".into()));
}

#[test]
fn limits_are_enforced_before_decoding() {
    let (hea, files) = mit_files("100");
    let small = |l: Limits| ReadOptions { limits: l, ..ReadOptions::default() };
    let err = wfdb::read(&hea, &files, &small(Limits { max_samples_per_lead: 1000, ..Limits::default() }));
    assert_eq!(err.expect_err("too long"), WfdbError::TooLong(650_000));
    let err = wfdb::read(&hea, &files, &small(Limits { max_leads: 1, ..Limits::default() }));
    assert_eq!(err.expect_err("too many"), WfdbError::TooManySignals { count: 2, limit: 1 });
    let err = wfdb::read(&hea, &files, &small(Limits { max_input_bytes: 1_000_000, ..Limits::default() }));
    assert!(matches!(err, Err(WfdbError::TooLarge { size: 1_950_000, .. })));
    // The annotation limit drops the annotation file (with a warning), not the ECG.
    let rec = wfdb::read(&hea, &files, &small(Limits { max_annotations: 100, ..Limits::default() })).expect("read");
    assert!(rec.annotations.is_empty());
    assert!(rec.warnings[0].contains("100.atr"), "{:?}", rec.warnings);
}

#[test]
fn truncated_annotation_files_are_refused_at_every_length() {
    let (_, files) = mit_files("100");
    let atr = &files["100.atr"];
    let lengths: Vec<usize> = (0..4096.min(atr.len())).chain((4096..atr.len()).step_by(97)).collect();
    for n in lengths {
        let got = wfdb::annotations(&atr[..n], &Limits::default());
        assert!(got.is_err(), "length {n} of {}", atr.len());
    }
    let (_, files) = ludb_files();
    let v6 = &files["1.v6"];
    for n in 0..v6.len() {
        assert!(wfdb::annotations(&v6[..n], &Limits::default()).is_err(), "length {n}");
    }
    assert_eq!(wfdb::annotations(v6, &Limits::default()).expect("whole").len(), 48);
}

#[test]
fn headers_truncated_at_every_length_never_panic() {
    let (hea, files) = ludb_files();
    let small: BTreeMap<String, Vec<u8>> =
        files.iter().map(|(k, v)| (k.clone(), if k == "1.dat" { v[..240].to_vec() } else { v.clone() })).collect();
    for n in 0..hea.len() {
        let _ = wfdb::read(&hea[..n], &small, &ReadOptions::default());
        let _ = wfdb::looks_like_header(&hea[..n]);
    }
    assert!(wfdb::looks_like_header(&hea));
    assert!(!wfdb::looks_like_header(&files["1.dat"]));
    assert!(!wfdb::looks_like_header(&files["1.i"]));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hostile_header_text_never_panics(text in "[ -~\\n\\r\\t#()/x:+.0-9a-z]{0,300}") {
        let files = BTreeMap::from([("r.dat".to_string(), vec![1u8; 64]), ("r.atr".to_string(), vec![0u8; 2])]);
        let _ = wfdb::looks_like_header(text.as_bytes());
        let _ = wfdb::read(text.as_bytes(), &files, &ReadOptions::default());
        if let Ok(h) = wfdb::parse_header(&text) {
            let _ = wfdb::read_signals(&h, "r.dat", &[7u8; 40]);
        }
    }

    #[test]
    fn plausible_headers_with_random_numbers_never_panic(
        nsig in 0usize..4, fs in "[0-9]{1,4}(\\.[0-9])?", n in 0usize..40, fmt in "(16|212|61|80|160|24|32|8)(x[0-3])?(\\+[0-9]{1,2})?",
        gain in "-?[0-9]{0,5}(\\([-0-9]{1,3}\\))?(/(mV|uV|mmHg))?", dat in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut text = format!("r {nsig} {fs} {n}\n");
        for i in 0..nsig {
            text.push_str(&format!("r.dat {fmt} {gain} 12 0 {i} {i} 0 v{i}\n"));
        }
        let files = BTreeMap::from([("r.dat".to_string(), dat)]);
        let lenient = ReadOptions { accept_bad_checksums: true, ..ReadOptions::default() };
        let _ = wfdb::read(text.as_bytes(), &files, &lenient);
    }

    #[test]
    fn hostile_annotation_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(anns) = wfdb::annotations(&bytes, &Limits::default()) {
            for a in &anns {
                let _ = a.symbol();
            }
        }
    }

    #[test]
    fn written_annotations_read_back(
        steps in proptest::collection::vec((0u64..100_000, 1u8..50, any::<i8>(), any::<u8>(), any::<i8>(), "[ -~]{0,20}"), 0..40),
    ) {
        let mut t = 0u64;
        let anns: Vec<wfdb::MitAnnotation> = steps
            .into_iter()
            .map(|(d, code, subtype, chan, num, aux)| {
                t += d;
                wfdb::MitAnnotation { sample: t, code, subtype, chan, num, aux }
            })
            .collect();
        let bytes = wfdb::write_annotations(&anns).expect("write");
        prop_assert_eq!(wfdb::annotations(&bytes, &Limits::default()).expect("read"), anns);
    }
}
