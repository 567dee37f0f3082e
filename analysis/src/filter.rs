//! Second-order IIR sections (the Audio EQ Cookbook's Butterworth low- and high-pass) and
//! zero-phase filtering, so a detected wave is where the tracing shows it.

use std::f64::consts::PI;

/// One biquad section, normalised so that a0 = 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    fn design(fs_hz: f64, cutoff_hz: f64, q: f64, high: bool) -> Self {
        // A cutoff at or above Nyquist cannot be designed: clamp just below it.
        let f = cutoff_hz.clamp(1e-3, fs_hz * 0.49);
        let w = 2.0 * PI * f / fs_hz;
        let (sin, cos) = w.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0 = 1.0 + alpha;
        let b = if high {
            [(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0]
        } else {
            [(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0]
        };
        Self { b: [b[0] / a0, b[1] / a0, b[2] / a0], a: [-2.0 * cos / a0, (1.0 - alpha) / a0] }
    }

    /// A Butterworth (Q = 1/√2) low-pass at `cutoff_hz`.
    pub fn lowpass(fs_hz: f64, cutoff_hz: f64) -> Self {
        Self::design(fs_hz, cutoff_hz, std::f64::consts::FRAC_1_SQRT_2, false)
    }

    /// A Butterworth (Q = 1/√2) high-pass at `cutoff_hz`.
    pub fn highpass(fs_hz: f64, cutoff_hz: f64) -> Self {
        Self::design(fs_hz, cutoff_hz, std::f64::consts::FRAC_1_SQRT_2, true)
    }

    /// Filters `x` forward (direct form II transposed), starting from rest at `x[0]`'s level
    /// so a DC offset does not ring.
    fn run(&self, x: &mut [f64]) {
        let Some(&first) = x.first() else { return };
        // Steady state for a constant input `first`: output = gain · first.
        let gain = (self.b[0] + self.b[1] + self.b[2]) / (1.0 + self.a[0] + self.a[1]);
        let y0 = gain * first;
        let mut z1 = y0 - self.b[0] * first;
        let mut z2 = self.b[2] * first - self.a[1] * y0;
        for v in x.iter_mut() {
            let input = *v;
            let out = self.b[0] * input + z1;
            z1 = self.b[1] * input - self.a[0] * out + z2;
            z2 = self.b[2] * input - self.a[1] * out;
            *v = out;
        }
    }
}

/// Runs `sections` over `x` forward and then backward: zero phase, twice the attenuation.
pub fn filtfilt(sections: &[Biquad], x: &[f64]) -> Vec<f64> {
    let mut y = x.to_vec();
    for s in sections {
        s.run(&mut y);
    }
    y.reverse();
    for s in sections {
        s.run(&mut y);
    }
    y.reverse();
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(x: &[f64]) -> f64 {
        (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn sine(fs: f64, f: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| (2.0 * PI * f * i as f64 / fs).sin()).collect()
    }

    #[test]
    fn a_band_pass_keeps_the_qrs_band_and_drops_wander_and_mains() {
        let fs = 360.0;
        let band = [Biquad::highpass(fs, 5.0), Biquad::lowpass(fs, 15.0)];
        let middle = |x: &[f64]| rms(&x[720..x.len() - 720]);
        assert!(middle(&filtfilt(&band, &sine(fs, 10.0, 7200))) > 0.45, "a sine of rms 0.71 in the QRS band");
        assert!(middle(&filtfilt(&band, &sine(fs, 0.3, 7200))) < 0.02, "baseline wander");
        assert!(middle(&filtfilt(&band, &sine(fs, 50.0, 7200))) < 0.1, "mains");
        let flat = filtfilt(&band, &[1000.0; 100]);
        assert!(flat.iter().all(|v| v.abs() < 1e-6), "a DC offset does not ring: {flat:?}");
    }
}
