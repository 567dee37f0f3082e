//! A signed envelope of one second of 12-lead 500 Hz monitoring (PTB s0010_re at every other
//! sample, as `examples/wire_cost.rs` builds it): bincode-encoding the payload, sealing (encode
//! and sign), checking the signature, and decoding, separately and as the hub's whole path.
//!
//! ```text
//! cargo bench -p yilian-protocol --bench envelope
//! ```

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::PathBuf;
use yilian_protocol::envelope::{Envelope, Header, seal};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::{Lane, LeadSamples, Payload, StreamChunk};
use yilian_protocol::topic::{Channel, Topic};

const LEADS: [&str; 12] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];

/// One second at 500 Hz of the 12 standard leads of PTB s0010_re (format 16, 12 interleaved
/// little-endian i16 signals at 1000 Hz).
fn ptb_second() -> Vec<Vec<i32>> {
    let dir = std::env::var_os("YILIAN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let path = dir.join("wfdb/ptbdb/s0010_re.dat");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let frames: Vec<&[u8]> = bytes.chunks_exact(24).take(1000).collect();
    (0..12)
        .map(|l| frames.iter().step_by(2).map(|f| i32::from(i16::from_le_bytes([f[2 * l], f[2 * l + 1]]))).collect())
        .collect()
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate().expect("rng");
    let public = key.public_key();
    let topic = Topic::new("xiangzhen-1", "cart-1", Channel::Up).expect("topic");
    let leads = ptb_second();
    let payload = Payload::StreamChunk(StreamChunk {
        stream_id: 0,
        sample_rate_hz: 500,
        resolution_nv: 500,
        first_sample: 0,
        start_time_ms: 1_764_000_000_000,
        leads: LEADS.iter().zip(&leads).map(|(n, s)| LeadSamples::encode(n, s)).collect(),
    });
    let header = Header::new(&key, "cart-1", 1, 1_764_000_000_000, Lane::Stream);
    let sealed = seal(&key, header.clone(), &topic, &payload).expect("seal");
    let signature = key.sign(&sealed);

    let mut g = c.benchmark_group("envelope 1 s 12-lead");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode payload", |b| b.iter(|| std::hint::black_box(&payload).encode().expect("encode")));
    g.bench_function("seal (encode + sign)", |b| {
        b.iter(|| seal(&key, header.clone(), &topic, std::hint::black_box(&payload)).expect("seal"))
    });
    g.bench_function("Ed25519 sign", |b| b.iter(|| key.sign(std::hint::black_box(&sealed))));
    g.bench_function("Ed25519 verify", |b| b.iter(|| public.verify(std::hint::black_box(&sealed), &signature)));
    g.bench_function("decode", |b| b.iter(|| Envelope::decode(std::hint::black_box(&sealed)).expect("decode")));
    g.bench_function("decode + verify", |b| {
        b.iter(|| {
            Envelope::decode(std::hint::black_box(&sealed))
                .expect("decode")
                .verify(&public, &topic, None)
                .expect("verify")
        })
    });
    g.bench_function("hub path (decode, verify, decode samples)", |b| {
        b.iter(|| {
            let v = Envelope::decode(&sealed).expect("decode").verify(&public, &topic, None).expect("verify");
            if let Payload::StreamChunk(c) = v.payload() {
                for l in &c.leads {
                    std::hint::black_box(l.decode().expect("samples"));
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
