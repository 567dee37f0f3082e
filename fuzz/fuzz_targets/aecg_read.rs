//! `aecg::read` with the default limits. A recording that reads must respect the limits and have
//! usable rates and resolutions; one the aECG writer accepts must read back with the same
//! leads and median beat, sample for sample (the writer refuses what the format cannot hold, a lead
//! without a rate).
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_formats::{Lead, Limits, ReadOptions, Recording, aecg};

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions::default();
    let Ok(rec) = aecg::read(data, &opts) else {
        return;
    };
    check(&rec, &opts.limits);
    if let Ok(bytes) = aecg::write(&rec) {
        let again = aecg::read(&bytes, &opts).expect("our own aECG reads back");
        same_leads(&rec.leads, &again.leads);
        same_leads(&rec.median_beat, &again.median_beat);
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

fn same_leads(a: &[Lead], b: &[Lead]) {
    let names = |l: &[Lead]| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b));
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.sample_rate_hz, y.sample_rate_hz, "{}", x.name);
        assert!((x.resolution_nv - y.resolution_nv).abs() <= x.resolution_nv * 1e-9, "{}", x.name);
        assert!(x.samples == y.samples, "{}: samples differ", x.name);
    }
}
