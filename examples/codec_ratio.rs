//! Prints the lossless codec's compressed size as a percentage of raw 16-bit samples, per record,
//! for the real recordings in `../shared/data`, checks every round trip, and puts the usual
//! alternatives beside it, computed in the same run on the same samples:
//! - FLAC -8, each lead as a mono 16-bit stream (and 2-lead records also as one stereo stream,
//!   the smaller counting), as `flac` from the Debian package compresses them, without the 8 KiB
//!   padding block and the seek table it adds by default (room for tags and seeking, not samples);
//! - xz -9e, zstd -19 and gzip -9 over the raw 16-bit little-endian samples, leads interleaved;
//! - WFDB format 212 (12 bits a sample, what PhysioNet stores these records in): 75% by definition.
//!
//! "ours" compresses each lead whole; "ours 1 s" compresses it in one-second chunks, as the agent
//! streams it, each chunk with its 4-byte sample count. A tool that is not installed shows `—`.
//! Figures go to stdout and, as JSON, to `target/bench/codec_ratio.json`.
//!
//! ```text
//! cargo run --release --example codec_ratio
//! ```

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;
use yilian::records::{self, Recording};
use yilian_protocol::codec;

/// Compressed size of `input` through `tool args`, or None when the tool is missing or fails.
fn through(tool: &str, args: &[&str], input: &[u8]) -> Option<usize> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = input.to_vec();
    // Written from another thread: the tool's output pipe would fill while we still write.
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    out.status.success().then_some(out.stdout.len())
}

fn le16(samples: impl Iterator<Item = i16>) -> Vec<u8> {
    samples.flat_map(i16::to_le_bytes).collect()
}

/// FLAC -8 of raw 16-bit little-endian samples with `channels` interleaved channels.
fn flac(raw: &[u8], channels: usize, rate_hz: u16) -> Option<usize> {
    let (ch, sr) = (format!("--channels={channels}"), format!("--sample-rate={rate_hz}"));
    let args = [
        "-8",
        "-s",
        "-c",
        "--no-padding",
        "--no-seektable",
        "--force-raw-format",
        "--endian=little",
        "--sign=signed",
        "--bps=16",
        &ch,
        &sr,
        "-",
    ];
    through("flac", &args, raw)
}

/// One record's sizes in bytes: (raw 16-bit, ours, ours in 1 s chunks, FLAC, xz, zstd, gzip).
struct Sizes {
    raw: usize,
    ours: usize,
    ours_1s: usize,
    flac: Option<usize>,
    xz: Option<usize>,
    zstd: Option<usize>,
    gzip: Option<usize>,
}

fn peers(rec: &Recording) -> Sizes {
    let n = rec.len();
    let interleaved = le16((0..n).flat_map(|i| rec.leads.iter().map(move |(_, x)| x[i])));
    let mono: Option<usize> =
        rec.leads.iter().map(|(_, x)| flac(&le16(x.iter().copied()), 1, rec.sample_rate_hz)).sum();
    let stereo = (rec.leads.len() == 2).then(|| flac(&interleaved, 2, rec.sample_rate_hz)).flatten();
    let flac = match (mono, stereo) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Sizes {
        raw: interleaved.len(),
        ours: 0,
        ours_1s: 0,
        flac,
        xz: through("xz", &["-9e", "-c"], &interleaved),
        zstd: through("zstd", &["-19", "-c", "-q"], &interleaved),
        gzip: through("gzip", &["-9", "-c"], &interleaved),
    }
}

fn pct(part: Option<usize>, raw: usize) -> String {
    part.map_or_else(|| "—".to_string(), |p| format!("{:.1}%", 100.0 * p as f64 / raw as f64))
}

fn main() -> anyhow::Result<()> {
    let mitdb = ["100", "101", "103", "105", "106", "108", "119", "200", "203", "208", "210", "222", "228"];
    let mut recs = vec![("ptbdb/s0010_re".to_string(), records::ptb_12_lead()?)];
    for r in mitdb {
        recs.push((format!("mitdb/{r}"), records::mitdb(r)?));
    }
    println!(
        "{:<16} {:>5} {:>5} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "record",
        "leads",
        "Hz",
        "samples",
        "ours",
        "ours 1 s",
        "FLAC -8",
        "xz -9e",
        "zstd-19",
        "gzip -9",
        "WFDB212",
        "enc MS/s",
        "dec MS/s"
    );
    let mut json = Vec::new();
    let mut total = Sizes { raw: 0, ours: 0, ours_1s: 0, flac: Some(0), xz: Some(0), zstd: Some(0), gzip: Some(0) };
    let add = |a: Option<usize>, b: Option<usize>| Some(a? + b?);
    let (mut smaller, mut compared) = (0, 0);
    for (name, rec) in &recs {
        let (mut ours, mut ours_1s, mut n) = (0usize, 0usize, 0usize);
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
            ours += e.data.len() + 4;
            for chunk in samples.chunks(usize::from(rec.sample_rate_hz)) {
                let e = codec::encode(chunk);
                anyhow::ensure!(codec::decode(&e, u32::MAX)? == chunk, "{name}: 1 s round trip differs");
                ours_1s += e.data.len() + 4;
            }
            n += samples.len();
        }
        let s = Sizes { ours, ours_1s, ..peers(rec) };
        if let Some(flac) = s.flac {
            compared += 1;
            smaller += usize::from(s.ours < flac);
        }
        println!(
            "{:<16} {:>5} {:>5} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9.1} {:>9.1}",
            name,
            rec.leads.len(),
            rec.sample_rate_hz,
            n,
            pct(Some(s.ours), s.raw),
            pct(Some(s.ours_1s), s.raw),
            pct(s.flac, s.raw),
            pct(s.xz, s.raw),
            pct(s.zstd, s.raw),
            pct(s.gzip, s.raw),
            "75.0%",
            n as f64 / t_enc / 1e6,
            n as f64 / t_dec / 1e6
        );
        json.push(serde_json::json!({
            "record": name, "leads": rec.leads.len(), "sample_rate_hz": rec.sample_rate_hz, "samples": n,
            "raw16_bytes": s.raw, "ours_bytes": s.ours, "ours_1s_bytes": s.ours_1s, "flac8_bytes": s.flac, "xz9e_bytes": s.xz,
            "zstd19_bytes": s.zstd, "gzip9_bytes": s.gzip,
        }));
        total = Sizes {
            raw: total.raw + s.raw,
            ours: total.ours + s.ours,
            ours_1s: total.ours_1s + s.ours_1s,
            flac: add(total.flac, s.flac),
            xz: add(total.xz, s.xz),
            zstd: add(total.zstd, s.zstd),
            gzip: add(total.gzip, s.gzip),
        };
    }
    println!(
        "{:<16} {:>5} {:>5} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "all",
        "",
        "",
        "",
        pct(Some(total.ours), total.raw),
        pct(Some(total.ours_1s), total.raw),
        pct(total.flac, total.raw),
        pct(total.xz, total.raw),
        pct(total.zstd, total.raw),
        pct(total.gzip, total.raw),
        "75.0%"
    );
    if compared > 0 {
        println!("ours is smaller than FLAC -8 on {smaller} of {compared} records");
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("codec_ratio.json"), serde_json::to_vec_pretty(&json)?)?;
    Ok(())
}
