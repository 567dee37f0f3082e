//! `sniff::read`, the entry point for a file of unknown format dropped into the agent's inbox.
//! The file name (which only breaks ties) is picked from the input's length, so that any real
//! cart file can be a seed as it is. A recording that reads must respect the limits and be of
//! the format `sniff::detect` named.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_formats::sniff::{self, Detected};
use yilian_formats::{Format, Limits, ReadOptions, Recording};

const NAMES: [&str; 4] = ["cart-file", "cart-file.hea", "cart-file.dat", "CART.ECG"];

fuzz_target!(|data: &[u8]| {
    let name = NAMES[data.len() % NAMES.len()];
    let opts = ReadOptions::default();
    let detected = sniff::detect(name, data);
    let Ok(rec) = sniff::read(name, data, &opts) else {
        return;
    };
    check(&rec, &opts.limits);
    let expected = match detected {
        Detected::Scp => Format::ScpEcg,
        Detected::Dicom => Format::Dicom,
        Detected::Aecg => Format::Aecg,
        Detected::Contec => Format::Contec,
        other => panic!("{other:?} read as {:?}", rec.format),
    };
    assert_eq!(rec.format, expected);
});

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
