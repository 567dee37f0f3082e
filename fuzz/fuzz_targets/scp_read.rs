//! `scp::read` with the default limits. A recording that reads must respect the limits and have
//! usable rates and resolutions; one the SCP-ECG writer accepts must read back with the same
//! leads and median beat, sample for sample (the writer refuses what SCP cannot hold, e.g.
//! differing rates).
#![no_main]

#[path = "shared/recording.rs"]
mod recording;

use libfuzzer_sys::fuzz_target;
use recording::{check, same_leads};
use yilian_formats::{ReadOptions, scp};

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions::default();
    let Ok(rec) = scp::read(data, &opts) else {
        return;
    };
    check(&rec, &opts.limits);
    if let Ok(bytes) = scp::write(&rec) {
        let again = scp::read(&bytes, &opts).expect("our own SCP-ECG reads back");
        same_leads(&rec.leads, &again.leads);
        same_leads(&rec.median_beat, &again.median_beat);
    }
});
