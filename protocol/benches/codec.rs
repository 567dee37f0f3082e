//! The sample codec on a real recording: MIT-BIH record 100, lead MLII (360 Hz), as one-second
//! chunks (what a cart streams) and as ten-second leads (a resting study). Throughput is in
//! bytes of raw 16-bit samples, the unit of `examples/codec_ratio.rs`. "decode format 1" reads
//! streams written by the codec before format 2 (the fuzz corpus seeds of the same record).
//!
//! ```text
//! cargo bench -p yilian-protocol --bench codec
//! ```

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::PathBuf;
use yilian_protocol::codec;
use yilian_protocol::message::EncodedSamples;

fn shared_data() -> PathBuf {
    std::env::var_os("YILIAN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

/// Signal 0 (MLII) of MIT-BIH 100: WFDB format 212, two 12-bit samples in three bytes.
fn mitdb_100_mlii() -> Vec<i32> {
    let path = shared_data().join("wfdb/mitdb/100.dat");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mlii: Vec<i32> = bytes
        .chunks_exact(3)
        .map(|b| {
            let v = i32::from(b[0]) | (i32::from(b[1]) & 0x0f) << 8;
            (if v >= 0x800 { v - 0x1000 } else { v }) - 1024
        })
        .collect();
    // The header's checksum of MLII: the low 16 bits of the sum, signed (100.hea: -22131).
    let sum = mlii.iter().map(|&v| v + 1024).fold(0i32, i32::wrapping_add) as i16;
    assert_eq!(sum, -22131, "100.dat read wrongly");
    mlii
}

/// A format-1 stream from the fuzz corpus: 4 bytes of sample count (LE), then the bits.
fn format_1(name: &str) -> EncodedSamples {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/codec_decode").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (count, data) = bytes.split_first_chunk::<4>().expect("count");
    let e = EncodedSamples { count: u32::from_le_bytes(*count), data: data.to_vec() };
    assert_ne!(e.data.first(), Some(&0xFF), "{name} is not format 1");
    e
}

fn bench(c: &mut Criterion) {
    let mlii = mitdb_100_mlii();
    for (what, samples, old) in
        [("1 s", &mlii[..360], "seed-mitdb100-mlii-1s"), ("10 s", &mlii[360 * 60..360 * 70], "seed-mitdb100-v5-10s")]
    {
        let mut g = c.benchmark_group(format!("codec {what}"));
        g.throughput(Throughput::Bytes(2 * samples.len() as u64));
        let enc = codec::encode(samples);
        g.bench_function("encode", |b| b.iter(|| codec::encode(std::hint::black_box(samples))));
        g.bench_function("decode", |b| b.iter(|| codec::decode(std::hint::black_box(&enc), u32::MAX).expect("decode")));
        let enc1 = format_1(old);
        g.throughput(Throughput::Bytes(2 * u64::from(enc1.count)));
        g.bench_function("decode format 1", |b| {
            b.iter(|| codec::decode(std::hint::black_box(&enc1), u32::MAX).expect("decode"))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
