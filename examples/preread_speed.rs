//! How long the pre-read takes (quality gate, QRS, beat classes, rhythm, median beat, flags) on
//! real recordings: a 10 s 12-lead resting ECG, one 1 s chunk of a 12-lead stream, and whole
//! 30-minute two-lead MIT-BIH records, so "fast enough for every chunk of a live stream" is a
//! figure, not a claim.
//!
//! ```text
//! cargo run --release --example preread_speed
//! ```

use std::time::Instant;
use yilian::records::{self, Recording};
use yilian_analysis::preread;

fn leads(rec: &Recording, from: usize, n: usize) -> Vec<(String, Vec<f64>)> {
    let uv = f64::from(rec.resolution_nv) / 1000.0;
    let name = |code: u8| yilian_protocol::lead::name_of(code).unwrap_or("?").to_string();
    rec.leads
        .iter()
        .map(|(c, x)| {
            (name(*c), x[from.min(x.len())..(from + n).min(x.len())].iter().map(|&s| f64::from(s) * uv).collect())
        })
        .collect()
}

/// Runs the pre-read `times` times; returns ms per run and the last result's beat count.
fn time(leads: &[(String, Vec<f64>)], fs: f64, times: usize) -> (f64, usize) {
    let views: Vec<(&str, &[f64])> = leads.iter().map(|(n, x)| (n.as_str(), x.as_slice())).collect();
    let t = Instant::now();
    let mut beats = 0;
    for _ in 0..times {
        beats = preread::analyze(&views, fs).qrs.len();
    }
    (t.elapsed().as_secs_f64() * 1000.0 / times as f64, beats)
}

fn main() -> anyhow::Result<()> {
    println!(
        "{:<28} {:>6} {:>9} {:>7} {:>10} {:>14}",
        "recording", "leads", "seconds", "beats", "ms/run", "x real time"
    );
    let ptb = records::ptb_12_lead()?;
    let fs = f64::from(ptb.sample_rate_hz);
    let rows = [("ptbdb/s0010_re 10 s", 10.0, 50), ("ptbdb/s0010_re 1 s chunk", 1.0, 500)];
    for (name, seconds, times) in rows {
        let l = leads(&ptb, 0, (seconds * fs) as usize);
        let (ms, beats) = time(&l, fs, times);
        println!("{name:<28} {:>6} {seconds:>9.1} {beats:>7} {ms:>10.2} {:>14.0}", l.len(), seconds * 1000.0 / ms);
    }
    for r in ["100", "203", "208"] {
        let rec = records::mitdb(r)?;
        let fs = f64::from(rec.sample_rate_hz);
        let l = leads(&rec, 0, rec.len());
        let seconds = rec.len() as f64 / fs;
        let (ms, beats) = time(&l, fs, 1);
        println!(
            "{:<28} {:>6} {seconds:>9.1} {beats:>7} {ms:>10.2} {:>14.0}",
            format!("mitdb/{r}"),
            l.len(),
            seconds * 1000.0 / ms
        );
    }
    Ok(())
}
