//! Checks every cart-file fuzz target makes of a recording that read (included with `#[path]`:
//! each target is its own binary).
#![allow(dead_code)]

use yilian_formats::{Lead, Limits, Recording};

/// The limits held, and rates and resolutions are usable.
pub fn check(rec: &Recording, limits: &Limits) {
    assert!(rec.leads.len() <= limits.max_leads, "{} leads", rec.leads.len());
    assert!(rec.median_beat.len() <= limits.max_leads, "{} median leads", rec.median_beat.len());
    assert!(rec.annotations.len() <= limits.max_annotations, "{} annotations", rec.annotations.len());
    for l in rec.leads.iter().chain(&rec.median_beat) {
        assert!(l.samples.len() <= limits.max_samples_per_lead, "{}: {} samples", l.name, l.samples.len());
        assert!(l.resolution_nv.is_finite() && l.resolution_nv > 0.0, "{}: {} nV", l.name, l.resolution_nv);
        assert!(l.sample_rate_hz > 0, "{}: rate 0", l.name);
    }
}

/// Same leads, rates, resolutions (to 1e-9) and samples.
pub fn same_leads(a: &[Lead], b: &[Lead]) {
    let names = |l: &[Lead]| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b));
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.sample_rate_hz, y.sample_rate_hz, "{}", x.name);
        assert!((x.resolution_nv - y.resolution_nv).abs() <= x.resolution_nv * 1e-9, "{}", x.name);
        assert!(x.samples == y.samples, "{}: samples differ", x.name);
    }
}
