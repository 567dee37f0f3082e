//! Lossless compression of integer ECG samples.
//!
//! The scheme is Shorten/FLAC's: fixed polynomial prediction followed by Rice coding, chosen per
//! block of [`BLOCK`] samples.
//!
//! Bit stream (most significant bit first), per block:
//! - 2 bits: predictor order `p` in 0..=3, predicting from the previous samples
//!   (order 0: 0; 1: x₋₁; 2: 2x₋₁ − x₋₂; 3: 3x₋₁ − 3x₋₂ + x₋₃; samples before the start count
//!   as 0);
//! - 6 bits: Rice parameter `k` in 0..=[`MAX_K`];
//! - per sample, the zigzag-mapped residual `u` as: `q = u >> k` one-bits and a zero-bit followed
//!   by the low `k` bits of `u` when `q <` [`ESCAPE`], otherwise [`ESCAPE`] one-bits followed by `u`
//!   in [`RAW_BITS`] bits.
//!
//! The last byte is zero-padded. Residuals are computed in 64 bits, so any `i32` sequence
//! round-trips exactly, including full-scale steps.

use crate::error::CodecError;
use crate::message::EncodedSamples;

/// Samples per block.
pub const BLOCK: usize = 64;
/// Largest Rice parameter.
pub const MAX_K: u32 = 40;
/// Unary length at which a residual is written raw.
pub const ESCAPE: u64 = 24;
/// Width of a raw residual (the zigzag of an order-3 residual of i32 samples needs 36 bits).
pub const RAW_BITS: u32 = 40;

fn predict(order: u32, h: &[i64; 3]) -> i64 {
    match order {
        0 => 0,
        1 => h[0],
        2 => 2 * h[0] - h[1],
        _ => 3 * h[0] - 3 * h[1] + h[2],
    }
}

fn zigzag(r: i64) -> u64 {
    ((r << 1) ^ (r >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn push_history(h: &mut [i64; 3], x: i64) {
    h[2] = h[1];
    h[1] = h[0];
    h[0] = x;
}

fn rice_cost(residuals: &[u64], k: u32) -> u64 {
    residuals
        .iter()
        .map(|&u| {
            let q = u >> k;
            if q < ESCAPE { q + 1 + u64::from(k) } else { ESCAPE + u64::from(RAW_BITS) }
        })
        .sum()
}

/// Best (cost, k) for a block's residuals, searching around the mean's magnitude.
fn best_k(residuals: &[u64]) -> (u64, u32) {
    let mean = residuals.iter().sum::<u64>() / residuals.len().max(1) as u64;
    let guess = 64 - mean.leading_zeros();
    let lo = guess.saturating_sub(2);
    let hi = (guess + 1).min(MAX_K);
    (lo..=hi).map(|k| (rice_cost(residuals, k), k)).min().unwrap_or((0, 0))
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn put(&mut self, value: u64, n: u32) {
        // n <= 40, and at most 7 bits are pending, so 47 bits fit in the accumulator.
        let mut n = n;
        let mut value = value;
        if n > 32 {
            self.put(value >> 32, n - 32);
            value &= 0xFFFF_FFFF;
            n = 32;
        }
        self.acc = (self.acc << n) | (value & ((1u64 << n) - 1));
        self.bits += n;
        while self.bits >= 8 {
            self.bits -= 8;
            self.out.push((self.acc >> self.bits) as u8);
        }
        self.acc &= (1u64 << self.bits) - 1;
    }

    fn ones(&mut self, mut n: u64) {
        while n > 0 {
            let m = n.min(32) as u32;
            self.put((1u64 << m) - 1, m);
            n -= u64::from(m);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.out.push((self.acc << (8 - self.bits)) as u8);
        }
        self.out
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<u64> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(u64::from(b))
    }

    fn take(&mut self, n: u32) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }
}

/// Compresses `samples` losslessly.
pub fn encode(samples: &[i32]) -> EncodedSamples {
    let mut w = BitWriter { out: Vec::with_capacity(samples.len()), acc: 0, bits: 0 };
    let mut hist = [0i64; 3];
    let mut residuals = [[0u64; BLOCK]; 4];
    for block in samples.chunks(BLOCK) {
        for (order, res) in residuals.iter_mut().enumerate() {
            let mut h = hist;
            for (i, &x) in block.iter().enumerate() {
                let x = i64::from(x);
                res[i] = zigzag(x - predict(order as u32, &h));
                push_history(&mut h, x);
            }
        }
        let n = block.len();
        let (order, (_, k)) =
            (0..4).map(|o| (o, best_k(&residuals[o][..n]))).min_by_key(|(_, (cost, _))| *cost).unwrap_or((0, (0, 0)));
        w.put(order as u64, 2);
        w.put(u64::from(k), 6);
        for &u in &residuals[order][..n] {
            let q = u >> k;
            if q < ESCAPE {
                w.ones(q);
                w.put(0, 1);
                w.put(u, k);
            } else {
                w.ones(ESCAPE);
                w.put(u, RAW_BITS);
            }
        }
        for &x in block {
            push_history(&mut hist, i64::from(x));
        }
    }
    EncodedSamples { count: samples.len() as u32, data: w.finish() }
}

/// Decompresses, refusing more than `max_samples` and any malformed or trailing data.
pub fn decode(enc: &EncodedSamples, max_samples: u32) -> Result<Vec<i32>, CodecError> {
    let count = enc.count;
    if count > max_samples {
        return Err(CodecError::TooManySamples { count, limit: max_samples });
    }
    // Every sample takes at least one bit: a tiny input cannot make us allocate a huge vector.
    if u64::from(count) > enc.data.len() as u64 * 8 {
        return Err(CodecError::Truncated { decoded: 0, count });
    }
    let mut r = BitReader { data: &enc.data, pos: 0 };
    let mut out = Vec::with_capacity(count as usize);
    let mut hist = [0i64; 3];
    let truncated = |decoded: usize| CodecError::Truncated { decoded: decoded as u32, count };
    while out.len() < count as usize {
        let index = out.len() as u32;
        let order = r.take(2).ok_or_else(|| truncated(out.len()))? as u32;
        let k = r.take(6).ok_or_else(|| truncated(out.len()))? as u32;
        if k > MAX_K {
            return Err(CodecError::BadBlockHeader { index, field: "rice parameter", value: k });
        }
        let n = (count as usize - out.len()).min(BLOCK);
        for _ in 0..n {
            let mut q = 0u64;
            while q < ESCAPE && r.bit().ok_or_else(|| truncated(out.len()))? == 1 {
                q += 1;
            }
            let u = if q < ESCAPE {
                (q << k) | r.take(k).ok_or_else(|| truncated(out.len()))?
            } else {
                r.take(RAW_BITS).ok_or_else(|| truncated(out.len()))?
            };
            let x = predict(order, &hist) + unzigzag(u);
            let sample = i32::try_from(x).map_err(|_| CodecError::Overflow { index: out.len() as u32 })?;
            out.push(sample);
            push_history(&mut hist, x);
        }
    }
    let used = r.pos.div_ceil(8);
    if used < enc.data.len() {
        return Err(CodecError::TrailingData { extra: enc.data.len() - used });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn extremes_round_trip() {
        let cases: Vec<Vec<i32>> = vec![
            vec![],
            vec![0],
            vec![i32::MIN, i32::MAX, i32::MIN, i32::MAX, 0, i32::MIN],
            (0..1000).map(|i| if i % 2 == 0 { i32::MAX } else { i32::MIN }).collect(),
            vec![7; 1000],
        ];
        for c in cases {
            let e = encode(&c);
            assert_eq!(decode(&e, u32::MAX).expect("decode"), c);
        }
    }

    #[test]
    fn smooth_signal_compresses_well() {
        let s: Vec<i32> = (0..5000).map(|i| (1000.0 * (i as f64 / 40.0).sin()) as i32).collect();
        let e = encode(&s);
        assert!(e.data.len() < s.len() * 2 / 4, "{} bytes for {} samples", e.data.len(), s.len());
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let e = encode(&(0..500).map(|i| i * 3 % 17).collect::<Vec<_>>());
        assert!(matches!(decode(&e, 10), Err(CodecError::TooManySamples { .. })));
        for cut in 0..e.data.len() {
            let t = EncodedSamples { count: e.count, data: e.data[..cut].to_vec() };
            assert!(decode(&t, u32::MAX).is_err(), "cut {cut}");
        }
        let mut extra = e.clone();
        extra.data.push(0);
        assert!(matches!(decode(&extra, u32::MAX), Err(CodecError::TrailingData { extra: 1 })));
        let huge = EncodedSamples { count: u32::MAX, data: vec![0xff; 4] };
        assert!(decode(&huge, u32::MAX).is_err());
    }

    proptest! {
        #[test]
        fn any_i32_sequence_round_trips(s in proptest::collection::vec(any::<i32>(), 0..700)) {
            prop_assert_eq!(decode(&encode(&s), u32::MAX).expect("decode"), s);
        }

        #[test]
        fn small_steps_round_trip(start in any::<i32>(), steps in proptest::collection::vec(-300i32..300, 0..700)) {
            let mut x = start;
            let s: Vec<i32> = steps.iter().map(|d| { x = x.wrapping_add(*d); x }).collect();
            prop_assert_eq!(decode(&encode(&s), u32::MAX).expect("decode"), s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(count in 0u32..5000, data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&EncodedSamples { count, data }, 4000);
        }
    }
}
