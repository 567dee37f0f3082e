//! The Contec ECG90A reader against the cart's own recordings (test-data README sections 11, 12).

mod common;

use common::data;
use yilian_formats::contec::{self, ContecError};
use yilian_formats::{ReadOptions, Recording, Sex};

fn read(rel: &str) -> Recording {
    contec::read(&data(rel), &ReadOptions::default()).expect("read contec file")
}

const LIMB: [&str; 6] = ["I", "II", "III", "aVR", "aVL", "aVF"];

#[test]
fn file_50_limb_leads_equal_the_csv_export_and_chest_leads_are_absent() {
    let bytes = data("contec/0000050.ECG");
    assert_eq!(bytes.len(), 605_760);
    assert!(contec::looks_like(&bytes));
    let rec = read("contec/0000050.ECG");
    assert_eq!(rec.acquired_at, Some(jiff::civil::date(2020, 11, 16).at(21, 44, 39, 0)));
    assert_eq!(rec.patient.id, "0000050");
    assert_eq!((rec.patient.name.as_str(), rec.patient.sex, rec.patient.age_years), ("", Sex::Unknown, None));
    let names: Vec<&str> = rec.leads.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, LIMB, "V1-V6 hold only 0x6800: absent, not flat");
    assert_eq!(rec.warnings.len(), 1, "{:?}", rec.warnings);
    assert!(rec.warnings[0].starts_with("V1, V2, V3, V4, V5, V6 not recorded"), "{:?}", rec.warnings);
    for l in &rec.leads {
        assert_eq!((l.samples.len(), l.sample_rate_hz, l.resolution_nv), (37_855, 800, 5000.0), "{}", l.name);
        assert_eq!(l.derived, !matches!(l.name.as_str(), "II" | "III"), "{}", l.name);
    }

    // The CSV has no header row: 12 columns I, II, III, aVR, aVL, aVF, V1..V6 (README section 11),
    // the chest columns empty.
    let csv = String::from_utf8(data("contec/0000050.ECG.csv")).expect("utf-8 csv");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 37_855);
    for (r, row) in rows.iter().enumerate() {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols.len(), 12, "row {r}");
        for (c, name) in LIMB.iter().enumerate() {
            let want: i32 = cols[c].parse().expect("csv integer");
            assert_eq!(rec.lead(name).expect("lead").samples[r], want, "row {r} lead {name}");
        }
        assert!(cols[6..].iter().all(|c| c.is_empty()), "row {r}");
    }
    // First frame as bytes: II 0x07e7, III 0x07fb.
    assert_eq!((rec.lead("II").expect("II").samples[0], rec.lead("III").expect("III").samples[0]), (-25, -5));
}

#[test]
fn file_53_has_all_twelve_leads() {
    let bytes = data("contec/0000053.ECG");
    assert_eq!(bytes.len(), 476_048);
    assert!(contec::looks_like(&bytes));
    let rec = read("contec/0000053.ECG");
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    assert_eq!(rec.acquired_at, Some(jiff::civil::date(2020, 11, 24).at(7, 19, 13, 0)));
    assert_eq!(rec.patient.id, "0000053");
    let names: Vec<&str> = rec.leads.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, yilian_formats::lead::STANDARD_12);
    for l in &rec.leads {
        assert_eq!((l.samples.len(), l.sample_rate_hz), (29_748, 800), "{}", l.name);
    }
    // Frame 0 stored as bytes 43..59: de 07 fe 07 fb 07 ec 07 e8 07 bb 07 ed 07 e7 07.
    let first: Vec<i32> = ["II", "III", "V1", "V2", "V3", "V4", "V5", "V6"]
        .iter()
        .map(|n| rec.lead(n).expect("lead").samples[0])
        .collect();
    assert_eq!(first, vec![-34, -2, -5, -20, -24, -69, -19, -25]);
    assert_eq!(rec.lead("I").expect("I").samples[0], -32);
    assert_eq!(rec.lead("aVF").expect("aVF").samples[0], -18);
}

#[test]
fn other_files_are_not_contec() {
    assert!(!contec::looks_like(&data("contec/0000050.ECG.scp")));
    assert!(!contec::looks_like(&data("wfdb/ludb/1.hea")));
    assert!(!contec::looks_like(b""));
}

#[test]
fn truncations_and_flips_never_panic() {
    let bytes = data("contec/0000053.ECG");
    let len = bytes.len();
    // Every length through the header and the first frames, a stride through the middle, and
    // every length across the last frames and the footer.
    let lengths = (0..4096).chain((4096..len - 160).step_by(4999)).chain(len - 160..len);
    for n in lengths {
        match contec::read(&bytes[..n], &ReadOptions::default()) {
            Ok(_) => assert_eq!((n - 80) % 16, 0, "only whole-frame sizes read"),
            Err(ContecError::Size { len, .. }) => assert_eq!(len, n),
            Err(e) => panic!("length {n}: {e}"),
        }
    }
    let mut flipped = bytes[..4096 + 80].to_vec();
    for i in 0..flipped.len() {
        flipped[i] ^= 0xa5;
        let _ = contec::read(&flipped, &ReadOptions::default());
        let _ = contec::looks_like(&flipped);
        flipped[i] ^= 0xa5;
    }
}

#[test]
fn limits_are_enforced() {
    let bytes = data("contec/0000053.ECG");
    let opts = |l: yilian_formats::Limits| ReadOptions { limits: l, ..ReadOptions::default() };
    let small = yilian_formats::Limits { max_samples_per_lead: 1000, ..Default::default() };
    assert_eq!(contec::read(&bytes, &opts(small)), Err(ContecError::TooLong { samples: 29_748, limit: 1000 }));
    let tiny = yilian_formats::Limits { max_input_bytes: 1000, ..Default::default() };
    assert_eq!(contec::read(&bytes, &opts(tiny)), Err(ContecError::TooLarge { size: 476_048, limit: 1000 }));
}

#[test]
fn the_writer_gives_back_the_carts_own_sample_frames() {
    for rel in ["contec/0000050.ECG", "contec/0000053.ECG"] {
        let original = data(rel);
        let rec = read(rel);
        let written = contec::write(&rec).expect("write");
        assert_eq!(written.len(), original.len(), "{rel}");
        // Every frame byte is the cart's, including the invalid marker of absent chest leads.
        assert!(written[43..written.len() - 37] == original[43..original.len() - 37], "{rel}: frames differ");
        let again = contec::read(&written, &ReadOptions::default()).expect("read back");
        assert_eq!(again.leads, rec.leads, "{rel}");
        assert_eq!((again.acquired_at, again.patient.sex), (rec.acquired_at, rec.patient.sex));
        assert_eq!(again.patient.id, rec.patient.id);
    }
}

#[test]
fn the_writer_stores_a_chinese_name_in_gbk_and_refuses_what_the_cart_cannot_hold() {
    let mut rec = read("contec/0000053.ECG");
    rec.patient.name = "张伟".into();
    rec.patient.age_years = Some(67);
    let written = contec::write(&rec).expect("write");
    assert_eq!(&written[32..36], &[0xd5, 0xc5, 0xce, 0xb0], "GBK, as the cart writes it");
    let again = contec::read(&written, &ReadOptions::default()).expect("read");
    assert_eq!((again.patient.name.as_str(), again.patient.age_years), ("张伟", Some(67)));

    let mut long = rec.clone();
    long.patient.name = "欧阳建国同志".into();
    assert!(matches!(contec::write(&long), Err(contec::ContecWriteError::Field { .. })));
    let mut changed = rec.clone();
    if let Some(i) = changed.leads.iter_mut().find(|l| l.name == "I") {
        i.samples[0] += 1;
    }
    assert_eq!(contec::write(&changed), Err(contec::ContecWriteError::NotDerivable("I".into())));
    let mut loud = rec.clone();
    if let Some(v1) = loud.leads.iter_mut().find(|l| l.name == "V1") {
        v1.samples[5] = 0x6800 - 2048;
    }
    assert!(matches!(contec::write(&loud), Err(contec::ContecWriteError::Sample { index: 5, .. })));
    let mut fast = rec;
    fast.leads.iter_mut().for_each(|l| l.sample_rate_hz = 500);
    assert!(matches!(contec::write(&fast), Err(contec::ContecWriteError::Scale { .. })));
}
