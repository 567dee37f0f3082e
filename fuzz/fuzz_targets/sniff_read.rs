//! `sniff::read`, the entry point for a file of unknown format dropped into the agent's inbox.
//! The file name (which only breaks ties) is picked from the input's length, so that any real
//! cart file can be a seed as it is. A recording that reads must respect the limits and be of
//! the format `sniff::detect` named.
#![no_main]

#[path = "shared/recording.rs"]
mod recording;

use libfuzzer_sys::fuzz_target;
use recording::check;
use yilian_formats::sniff::{self, Detected};
use yilian_formats::{Format, ReadOptions};

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
