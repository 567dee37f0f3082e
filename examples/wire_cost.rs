//! What one second of 12-lead 500 Hz monitoring costs on the wire and at the hub's CPU:
//! - bytes of our signed envelope (bincode, the lossless codec, Ed25519) next to the typical IoT
//!   JSON payload of the same samples (integers in arrays per lead), with and without a
//!   signature;
//! - ring's raw Ed25519 sign and verify rates for messages of that size on this machine (the
//!   ceiling), and the hub's whole path per envelope: decode, check the topic and verify the
//!   signature, decode the samples.
//!
//! The samples are PTB s0010_re (1000 Hz) taken at every other sample, ten 1 s chunks.
//! Figures go to stdout and, as JSON, to `target/bench/wire_cost.json`.
//!
//! ```text
//! cargo run --release --example wire_cost
//! ```

use base64::Engine;
use std::time::Instant;
use yilian::records;
use yilian_protocol::envelope::{Envelope, Header, seal};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::lead;
use yilian_protocol::message::{Lane, LeadSamples, Payload, StreamChunk};
use yilian_protocol::topic::{Channel, Topic};

/// Calls per second of `f`, run for about `seconds`.
fn rate(seconds: f64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < seconds {
        for _ in 0..50 {
            f();
        }
        n += 50;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let ptb = records::ptb_12_lead()?;
    let uv = f64::from(ptb.resolution_nv) / 1000.0;
    let key = SigningKey::generate()?;
    let public = key.public_key();
    let topic = Topic::new("xiangzhen-1", "cart-1", Channel::Up)?;
    let (mut ours, mut json_plain, mut json_signed) = (Vec::new(), Vec::new(), Vec::new());
    let mut envelopes = Vec::new();
    for s in 0..10usize {
        // 500 Hz: every other sample of the 1000 Hz record, 1 s per chunk.
        let range = s * 1000..(s + 1) * 1000;
        let leads: Vec<(String, Vec<i32>)> = ptb
            .leads
            .iter()
            .map(|(c, x)| {
                (
                    lead::name_of(*c).unwrap_or("?").to_string(),
                    x[range.clone()].iter().step_by(2).map(|v| i32::from(*v)).collect(),
                )
            })
            .collect();
        let chunk = StreamChunk {
            stream_id: 0,
            sample_rate_hz: 500,
            resolution_nv: ptb.resolution_nv,
            first_sample: (s * 500) as u64,
            start_time_ms: 1_764_000_000_000 + s as i64 * 1000,
            leads: leads.iter().map(|(n, x)| LeadSamples::encode(n, x)).collect(),
        };
        let bytes = seal(
            &key,
            Header::new(&key, "cart-1", s as u64 + 1, 0, Lane::Stream),
            &topic,
            &Payload::StreamChunk(chunk),
        )?;
        ours.push(bytes.len());
        envelopes.push(bytes);
        // What most MQTT telemetry sends: device, time, rate, unit, and each lead's integers.
        let body = serde_json::json!({
            "device": "cart-1",
            "ts": 1_764_000_000_000i64 + s as i64 * 1000,
            "rate_hz": 500,
            "uv_per_lsb": uv,
            "leads": leads.iter().map(|(n, x)| (n.clone(), serde_json::json!(x))).collect::<serde_json::Map<_, _>>(),
        });
        let text = serde_json::to_vec(&body)?;
        json_plain.push(text.len());
        let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&text));
        json_signed.push(text.len() + sig.len() + r#","sig":"""#.len());
    }
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    let (o, j, js) = (mean(&ours), mean(&json_plain), mean(&json_signed));
    let raw16 = 12.0 * 500.0 * 2.0;
    println!("one second of 12-lead 500 Hz ({raw16:.0} bytes as raw 16-bit samples):");
    println!("  ours (signed envelope)       {o:>8.0} bytes/s  {:>5.1}% of raw", 100.0 * o / raw16);
    println!(
        "  JSON integers, unsigned      {j:>8.0} bytes/s  {:>5.1}% of raw  ({:.1}x ours)",
        100.0 * j / raw16,
        j / o
    );
    println!(
        "  JSON integers + Ed25519 sig  {js:>8.0} bytes/s  {:>5.1}% of raw  ({:.1}x ours)",
        100.0 * js / raw16,
        js / o
    );

    let message = envelopes[0].clone();
    let signature = key.sign(&message);
    let sign_rate = rate(1.0, || {
        std::hint::black_box(key.sign(std::hint::black_box(&message)));
    });
    let verify_rate = rate(1.0, || {
        std::hint::black_box(public.verify(std::hint::black_box(&message), &signature));
    });
    let mut i = 0;
    let hub_rate = rate(1.0, || {
        let e = &envelopes[i % envelopes.len()];
        i += 1;
        if let Ok(d) = Envelope::decode(e)
            && let Ok(v) = d.verify(&public, &topic, None)
            && let Payload::StreamChunk(c) = v.payload()
        {
            for l in &c.leads {
                std::hint::black_box(l.decode().ok());
            }
        }
    });
    println!("on this machine, one core, messages of {} bytes:", message.len());
    println!("  ring Ed25519 sign            {sign_rate:>8.0} /s");
    println!("  ring Ed25519 verify          {verify_rate:>8.0} /s  (the ceiling)");
    println!(
        "  hub path (decode, verify, decode samples) {hub_rate:>8.0} /s = {:.0}% of the ceiling, {:.0} 12-lead streams per core",
        100.0 * hub_rate / verify_rate,
        hub_rate
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let out = serde_json::json!({
        "raw16_bytes_per_s": raw16, "ours_bytes_per_s": o, "json_bytes_per_s": j, "json_signed_bytes_per_s": js,
        "message_bytes": message.len(), "ed25519_sign_per_s": sign_rate, "ed25519_verify_per_s": verify_rate,
        "hub_envelopes_per_s": hub_rate,
    });
    std::fs::write(dir.join("wire_cost.json"), serde_json::to_vec_pretty(&out)?)?;
    Ok(())
}
