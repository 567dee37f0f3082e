//! `contec::read` with the default limits. A recording that reads must respect the limits, hold
//! at most the 12 leads a Contec cart has (8 stored, 4 derived and marked so), all at 800 Hz,
//! 5000 nV, of one length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_formats::{Limits, ReadOptions, Recording, contec};

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
