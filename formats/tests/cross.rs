//! One ECG, several encodings: the readers must agree sample for sample (README section 7),
//! and sniffing must pick the right reader for every real file.

mod common;

use common::{data, data_dir};
use std::collections::BTreeMap;
use yilian_formats::sniff::{self, Detected};
use yilian_formats::{ReadOptions, Recording, aecg, dicom, scp, wfdb};

fn opts() -> ReadOptions {
    ReadOptions::default()
}

#[test]
fn the_toolkit_example_is_identical_in_scp_dicom_and_aecg() {
    let scp = scp::read(&data("scp/ecgtoolkit_Example.scp"), &opts()).expect("scp");
    let dcm = dicom::read(&data("dicom-ecg/ecgtoolkit_Example.dcm"), &opts()).expect("dicom");
    let xml = aecg::read(&data("aecg/Example_aECG.xml"), &opts()).expect("aecg");
    for name in yilian_formats::lead::STANDARD_12 {
        let a = scp.lead(name).expect("scp lead");
        for other in [&dcm, &xml] {
            let b = other.lead(name).unwrap_or_else(|| panic!("{:?} lead {name}", other.format));
            assert_eq!(a.samples, b.samples, "{name}: SCP vs {:?}", other.format);
            assert_eq!((a.sample_rate_hz, a.resolution_nv), (b.sample_rate_hz, b.resolution_nv));
        }
        // The SCP reference beat is the aECG representative beat, and the DICOM median beat
        // once its padding is masked.
        let beat = scp.median(name).expect("scp beat");
        assert_eq!(beat.samples.len(), 599);
        assert_eq!(beat.samples, xml.median(name).expect("aecg beat").samples, "{name} beat");
        assert_eq!(beat.samples, dcm.median(name).expect("dicom beat").samples, "{name} beat");
    }
    assert_eq!(scp.lead("I").map(|l| l.samples[..5].to_vec()), Some(vec![-2, -2, -2, -2, -3]));
}

#[test]
fn the_contec_file_and_its_scp_export_agree_where_the_export_holds_samples() {
    let ecg = yilian_formats::contec::read(&data("contec/0000050.ECG"), &opts()).expect("contec");
    let exported = scp::read(&data("contec/0000050.ECG.scp"), &opts()).expect("scp");
    assert!(exported.warnings.iter().any(|w| w.contains("declares 37855 samples, holds 32767")));
    for name in ["I", "II", "III", "aVR", "aVL", "aVF"] {
        let a = ecg.lead(name).expect("contec lead");
        let b = exported.lead(name).expect("scp lead");
        assert_eq!(a.samples.len(), 37_855);
        assert_eq!(b.samples.len(), 32_767, "never padded");
        assert_eq!(&a.samples[..32_767], &b.samples[..], "{name}");
    }
    // The cart had no chest electrodes: absent in its own file, zeros in the export.
    assert!(ecg.lead("V1").is_none());
    assert!(exported.lead("V1").is_some_and(|l| l.samples.iter().all(|&s| s == 0)));
}

fn expected_detection(path: &str) -> Detected {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("scp") => Detected::Scp,
        Some("dcm") => Detected::Dicom,
        Some("xml") => Detected::Aecg,
        Some("hea") => Detected::WfdbHeader,
        Some("ECG") => Detected::Contec,
        Some("csv") => Detected::Unknown(String::new()),
        _ => Detected::WfdbPart,
    }
}

#[test]
fn sniffing_picks_the_reader_for_every_real_file() {
    let root = data_dir();
    let mut checked = 0;
    for folder in ["scp", "dicom-ecg", "dicom-img", "aecg", "contec", "wfdb/mitdb", "wfdb/ptbdb"] {
        for e in std::fs::read_dir(root.join(folder)).expect("folder").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = format!("{folder}/{name}");
            let got = sniff::detect(&name, &data(&rel));
            match expected_detection(&rel) {
                Detected::Unknown(_) => assert!(matches!(got, Detected::Unknown(_)), "{rel}: {got:?}"),
                want => assert_eq!(got, want, "{rel}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked} files");
    // DICOM images are DICOM, and the reader says what they are instead of guessing.
    let err = sniff::read("CT_small.dcm", &data("dicom-img/CT_small.dcm"), &opts()).expect_err("not an ECG");
    assert!(err.to_string().contains("CT Image Storage"), "{err}");
    let err = sniff::read("x.csv", &data("contec/0000050.ECG.csv"), &opts()).expect_err("csv");
    assert!(err.to_string().contains("text file"), "{err}");
}

#[test]
fn every_writer_round_trips_the_same_ecg_to_identical_integers() {
    let rec = scp::read(&data("scp/ecgtoolkit_Example.scp"), &opts()).expect("scp");
    let same = |a: &Recording, b: &Recording, what: &str| {
        for l in &a.leads {
            let m = b.lead(&l.name).unwrap_or_else(|| panic!("{what}: lead {}", l.name));
            assert_eq!(l.samples, m.samples, "{what}: {}", l.name);
        }
    };
    same(&rec, &scp::read(&scp::write(&rec).expect("w"), &opts()).expect("r"), "scp");
    same(&rec, &dicom::read(&dicom::write(&rec).expect("w"), &opts()).expect("r"), "dicom");
    same(&rec, &aecg::read(&aecg::write(&rec).expect("w"), &opts()).expect("r"), "aecg");
    let files: BTreeMap<String, Vec<u8>> = wfdb::write(&rec, "ex").expect("w").into_iter().collect();
    let header = files.get("ex.hea").expect("header").clone();
    same(&rec, &wfdb::read(&header, &files, &opts()).expect("r"), "wfdb");
}
