//! `contec::read` with the default limits. A recording that reads must respect the limits, hold
//! at most the 12 leads a Contec cart has (8 stored, 4 derived and marked so), all at 800 Hz,
//! 5000 nV, of one length.
#![no_main]

#[path = "shared/recording.rs"]
mod recording;

use libfuzzer_sys::fuzz_target;
use recording::check;
use yilian_formats::{ReadOptions, contec};

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions::default();
    let Ok(rec) = contec::read(data, &opts) else {
        return;
    };
    check(&rec, &opts.limits);
    assert!(rec.leads.len() <= 12, "{} leads", rec.leads.len());
    let n = data.len().saturating_sub(80) / 16;
    for l in &rec.leads {
        assert_eq!((l.sample_rate_hz, l.resolution_nv, l.samples.len()), (800, 5000.0, n), "{}", l.name);
        assert_eq!(l.derived, ["I", "aVR", "aVL", "aVF"].contains(&l.name.as_str()), "{}", l.name);
    }
});
