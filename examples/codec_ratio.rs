//! Prints the lossless codec's compressed size as a percentage of raw 16-bit samples, per lead
//! and per record, for the real recordings in `../shared/data`, and checks every round trip.
//!
//! ```text
//! cargo run --release --example codec_ratio
//! ```

use std::time::Instant;
use yilian::records;
use yilian_protocol::codec;

fn main() -> anyhow::Result<()> {
    let mitdb = ["100", "101", "103", "105", "106", "108", "119", "200", "203", "208", "210", "222", "228"];
    let mut recs = vec![("ptbdb/s0010_re".to_string(), records::ptb_12_lead()?)];
    for r in mitdb {
        recs.push((format!("mitdb/{r}"), records::mitdb(r)?));
    }
    println!(
        "{:<16} {:>6} {:>6} {:>10} {:>12} {:>8} {:>10} {:>10}",
        "record", "leads", "Hz", "samples", "raw16 bytes", "ratio", "enc MS/s", "dec MS/s"
    );
    let (mut all_raw, mut all_enc) = (0usize, 0usize);
    for (name, rec) in &recs {
        let (mut raw, mut enc, mut n) = (0usize, 0usize, 0usize);
        let (mut t_enc, mut t_dec) = (0f64, 0f64);
        for (_, lead) in &rec.leads {
            let samples: Vec<i32> = lead.iter().map(|v| i32::from(*v)).collect();
            let t = Instant::now();
            let e = codec::encode(&samples);
            t_enc += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let back = codec::decode(&e, u32::MAX)?;
            t_dec += t.elapsed().as_secs_f64();
            anyhow::ensure!(back == samples, "{name}: round trip differs");
            raw += samples.len() * 2;
            enc += e.data.len() + 4;
            n += samples.len();
        }
        all_raw += raw;
        all_enc += enc;
        println!(
            "{:<16} {:>6} {:>6} {:>10} {:>12} {:>7.1}% {:>10.1} {:>10.1}",
            name,
            rec.leads.len(),
            rec.sample_rate_hz,
            n,
            raw,
            100.0 * enc as f64 / raw as f64,
            n as f64 / t_enc / 1e6,
            n as f64 / t_dec / 1e6
        );
    }
    println!("{:<16} {:>48} {:>7.1}%", "all", "", 100.0 * all_enc as f64 / all_raw as f64);
    Ok(())
}
