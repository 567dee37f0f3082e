//! `dicom::read` with the default limits. A recording that reads must respect the limits and have
//! usable rates and resolutions; one the DICOM writer accepts must read back with the same
//! leads and median beat, sample for sample (the writer refuses what the format cannot hold, e.g. more
//! channels or samples than any ECG IOD allows).
#![no_main]

#[path = "shared/recording.rs"]
mod recording;

use libfuzzer_sys::fuzz_target;
use recording::{check, same_leads};
use yilian_formats::{ReadOptions, dicom};

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions::default();
    let Ok(rec) = dicom::read(data, &opts) else {
        return;
    };
    check(&rec, &opts.limits);
    if let Ok(bytes) = dicom::write(&rec) {
        let again = dicom::read(&bytes, &opts).expect("our own DICOM reads back");
        same_leads(&rec.leads, &again.leads);
        same_leads(&rec.median_beat, &again.median_beat);
    }
});
