//! DICOM waveform reader and writer against the real files of `shared/data` (README section 4).

mod common;

use jiff::civil::{Date, DateTime};
use yilian_formats::dicom::{self, DicomError};
use yilian_formats::{ReadOptions, Recording, Sex};

const WAVEFORM_ECG: &str = "dicom-ecg/waveform_ecg.dcm";
const ECGTOOLKIT: &str = "dicom-ecg/ecgtoolkit_Example.dcm";
const WEB_VIEWER: &str = "dicom-ecg/ecg-dicom-web-viewer_test_ecg.dcm";
const ORDER: [&str; 12] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];

fn read(rel: &str) -> Recording {
    dicom::read(&common::data(rel), &ReadOptions::default()).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn names(leads: &[yilian_formats::Lead]) -> Vec<&str> {
    leads.iter().map(|l| l.name.as_str()).collect()
}

fn measurement(rec: &Recording, name: &str) -> (f64, String) {
    let m = rec.measurements.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no measurement {name}"));
    (m.value, m.unit.clone())
}

#[test]
fn smoke() {
    for f in [WAVEFORM_ECG, ECGTOOLKIT, WEB_VIEWER] {
        let r = read(f);
        println!("{f}: {} {:?} {:?} {:?}", r.format_version, r.patient, r.acquired_at, r.device);
        println!(
            "  leads {:?} {:?}",
            names(&r.leads),
            r.leads.iter().map(|l| (l.samples.len(), l.sample_rate_hz, l.resolution_nv, l.sum())).collect::<Vec<_>>()
        );
        println!(
            "  median {:?} {:?}",
            names(&r.median_beat),
            r.median_beat.iter().map(|l| l.samples.len()).collect::<Vec<_>>()
        );
        println!("  meas {:?}", r.measurements);
        println!("  interp {:?}", r.interpretation);
        println!("  ann {} {:?}", r.annotations.len(), r.annotations.iter().take(5).collect::<Vec<_>>());
        println!("  warn {:?}", r.warnings);
    }
    let ct = dicom::read(&common::data("dicom-img/CT_small.dcm"), &ReadOptions::default());
    println!("{ct:?}");
    let _ = (
        Date::new(2000, 1, 1),
        DateTime::new(2000, 1, 1, 0, 0, 0, 0),
        Sex::Male,
        measurement,
        ORDER,
        std::marker::PhantomData::<DicomError>,
    );
}
