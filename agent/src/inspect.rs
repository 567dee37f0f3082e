//! `yilian-agent inspect` and `send`: read a cart file from disk the way the inbox does, and say
//! what the readers understood (for county IT when a clinic brings a new cart).

use crate::cartfile::Original;
use std::collections::BTreeMap;
use std::path::Path;
use yilian_formats::{ReadOptions, Recording, lead};

/// Reads `path` (and, for a WFDB `.hea`, the record's other files beside it).
pub fn load(path: &Path, opts: &ReadOptions) -> Result<(Recording, Vec<Original>), String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bytes = read_limited(path, opts)?;
    let header = is_wfdb_header(&name, &bytes);
    let mut originals = vec![Original { name: name.clone(), bytes }];
    if header {
        let dir = path.parent().unwrap_or(Path::new("."));
        let record = name.split_once('.').map_or(name.as_str(), |(s, _)| s).to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let other = e.file_name().to_string_lossy().into_owned();
            if other == name || other.split_once('.').map(|(s, _)| s) != Some(record.as_str()) || !e.path().is_file() {
                continue;
            }
            originals.push(Original { name: other, bytes: read_limited(&e.path(), opts)? });
        }
    }
    Ok((recording_of(&originals, opts)?, originals))
}

/// The recording in `originals`: one cart file, or a WFDB record with its header first.
pub fn recording_of(originals: &[Original], opts: &ReadOptions) -> Result<Recording, String> {
    let main = originals.first().ok_or("no files")?;
    if !is_wfdb_header(&main.name, &main.bytes) {
        return yilian_formats::sniff::read(&main.name, &main.bytes, opts).map_err(|e| e.to_string());
    }
    let files: BTreeMap<String, Vec<u8>> =
        originals.iter().skip(1).map(|o| (o.name.clone(), o.bytes.clone())).collect();
    yilian_formats::wfdb::read(&main.bytes, &files, opts).map_err(|e| format!("WFDB: {e}"))
}

fn is_wfdb_header(name: &str, bytes: &[u8]) -> bool {
    name.rsplit_once('.').is_some_and(|(_, e)| e.eq_ignore_ascii_case("hea"))
        || yilian_formats::sniff::detect(name, bytes) == yilian_formats::sniff::Detected::WfdbHeader
}

/// A file's bytes, refused (with the path in the message) past the readers' input limit.
pub fn read_limited(path: &Path, opts: &ReadOptions) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let limit = opts.limits.max_input_bytes as u64;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut buf))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > limit {
        return Err(format!("{}: larger than {limit} bytes", path.display()));
    }
    Ok(buf)
}

/// A human-readable account of a recording.
pub fn describe(rec: &Recording) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "format:      {} {}", rec.format.name(), rec.format_version);
    let p = &rec.patient;
    let _ = writeln!(
        s,
        "patient:     {:?} id {:?} sex {:?} born {} age {}",
        p.name,
        p.id,
        p.sex,
        p.birth_date.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
        p.age_years.map(|a| a.to_string()).unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(
        s,
        "acquired:    {}",
        rec.acquired_at.map(|t| t.to_string()).unwrap_or_else(|| "(not in the file)".into())
    );
    let _ = writeln!(s, "device:      {}", rec.device);
    let _ = writeln!(s, "leads:       {}", rec.leads.len());
    let _ = writeln!(
        s,
        "  {:<6} {:>5} {:<8} {:>7} {:>12} {:>9} {:>14}",
        "lead", "code", "", "Hz", "nV/LSB", "samples", "sum"
    );
    for l in &rec.leads {
        let _ = writeln!(s, "{}", lead_row(l));
    }
    if rec.median_beat.is_empty() {
        let _ = writeln!(s, "median beat: none");
    } else {
        let _ = writeln!(s, "median beat: {} leads", rec.median_beat.len());
        for l in &rec.median_beat {
            let _ = writeln!(s, "{}", lead_row(l));
        }
    }
    let _ = writeln!(s, "annotations: {}", rec.annotations.len());
    for m in &rec.measurements {
        let _ = writeln!(s, "measurement: {} = {} {}", m.name, m.value, m.unit);
    }
    for i in &rec.interpretation {
        let _ = writeln!(s, "statement:   {i}");
    }
    if let Some(q) = &rec.question {
        let _ = writeln!(s, "question:    {q}");
    }
    for w in &rec.warnings {
        let _ = writeln!(s, "WARNING:     {w}");
    }
    s
}

fn lead_row(l: &yilian_formats::Lead) -> String {
    format!(
        "  {:<6} {:>5} {:<8} {:>7} {:>12} {:>9} {:>14}",
        l.name,
        lead::scp_code(&l.name).map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
        if l.derived { "derived" } else { "stored" },
        l.sample_rate_hz,
        trim_float(l.resolution_nv),
        l.samples.len(),
        l.sum()
    )
}

fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.4}") }
}

/// The same account as JSON.
pub fn to_json(rec: &Recording) -> serde_json::Value {
    let lead = |l: &yilian_formats::Lead| {
        serde_json::json!({
            "name": l.name,
            "scp_code": lead::scp_code(&l.name),
            "derived": l.derived,
            "sample_rate_hz": l.sample_rate_hz,
            "resolution_nv": l.resolution_nv,
            "samples": l.samples.len(),
            "sum": l.sum(),
        })
    };
    let p = &rec.patient;
    serde_json::json!({
        "format": rec.format.name(),
        "format_version": rec.format_version,
        "patient": {
            "id": p.id, "name": p.name, "sex": format!("{:?}", p.sex).to_lowercase(),
            "birth_date": p.birth_date.map(|d| d.to_string()), "age_years": p.age_years,
        },
        "acquired_at": rec.acquired_at.map(|t| t.to_string()),
        "device": rec.device,
        "leads": rec.leads.iter().map(lead).collect::<Vec<_>>(),
        "median_beat": rec.median_beat.iter().map(lead).collect::<Vec<_>>(),
        "annotations": rec.annotations.len(),
        "measurements": rec.measurements.iter().map(|m| serde_json::json!({"name": m.name, "value": m.value, "unit": m.unit})).collect::<Vec<_>>(),
        "interpretation": rec.interpretation,
        "question": rec.question,
        "warnings": rec.warnings,
    })
}

/// The pre-read of a recording's rhythm leads (those at the first lead's rate).
pub fn preread(rec: &Recording) -> Result<yilian_analysis::preread::PreRead, String> {
    let first = rec.leads.first().ok_or("the file has no rhythm leads")?;
    let rate = first.sample_rate_hz;
    let leads: Vec<(&str, Vec<f64>)> = rec
        .leads
        .iter()
        .filter(|l| l.sample_rate_hz == rate)
        .map(|l| (l.name.as_str(), l.samples.iter().map(|&s| f64::from(s) * l.resolution_nv / 1000.0).collect()))
        .collect();
    let views: Vec<(&str, &[f64])> = leads.iter().map(|(n, x)| (*n, x.as_slice())).collect();
    Ok(yilian_analysis::preread::analyze(&views, f64::from(rate)))
}

/// The pre-read as text.
pub fn describe_preread(p: &yilian_analysis::preread::PreRead) -> String {
    let mut out = format!(
        "pre-read (an aid, not a diagnosis)\nleads: {} at {} Hz\nQRS complexes: {}\n",
        p.leads.join(" "),
        p.sample_rate_hz,
        p.qrs.len()
    );
    if let (Some(hr), Some(rr)) = (p.heart_rate_bpm, &p.rr) {
        out += &format!(
            "heart rate: {hr:.0} /min\nRR: mean {:.0} ms, min {:.0} ms, max {:.0} ms, SD {:.0} ms\n",
            rr.mean_ms, rr.min_ms, rr.max_ms, rr.sd_ms
        );
    }
    for s in &p.rhythm {
        let (zh, en) = s.rhythm.names();
        out += &format!("rhythm: samples {}-{}: {en} / {zh}, {:.0} /min\n", s.start, s.end, s.heart_rate_bpm);
    }
    let e = &p.ectopy;
    out += &format!(
        "ventricular beats: {} (isolated {}, couplets {}, runs {})\n",
        e.ventricular,
        e.isolated,
        e.couplets,
        e.runs.len()
    );
    for r in &e.runs {
        out += &format!("ventricular run: {} beats at {:.0} /min from sample {}\n", r.beats, r.heart_rate_bpm, r.start);
    }
    for pause in &p.pauses {
        out += &format!("pause: {:.1} s after sample {}\n", pause.length_ms / 1000.0, pause.start);
    }
    if let Some(m) = &p.median {
        out += &format!("median beat ({} beats):", m.beats);
        match m.pr_ms {
            Some(pr) => out += &format!(" PR {pr:.0} ms,"),
            None => out += " PR none (no clear P wave),",
        }
        out += &format!(" QRS {:.0} ms", m.qrs_ms);
        if let (Some(qt), Some(b), Some(f)) = (m.qt_ms, m.qtc_bazett_ms, m.qtc_fridericia_ms) {
            out += &format!(", QT {qt:.0} ms, QTc {b:.0} ms (Bazett) / {f:.0} ms (Fridericia)");
        }
        out += "\nST at J / J+60 ms (µV):";
        for l in &m.leads {
            out += &format!(" {} {:+.0}/{:+.0}", l.lead, l.st_j_uv, l.st_j60_uv);
        }
        out += "\n";
    }
    for f in &p.flags {
        out += &format!("FLAG: {} / {}\n", f.zh, f.en);
    }
    if p.quality.retake() {
        for (zh, en) in &p.quality.messages {
            out += &format!("QUALITY: {zh} / {en}\n");
        }
    } else {
        out += "quality: no problem found (lead off, clipping, mains, wander, muscle noise, limb leads, chest leads)\n";
    }
    let positions: Vec<String> = p.qrs.iter().map(usize::to_string).collect();
    out += &format!("QRS positions (samples): {}\n", positions.join(" "));
    out += &format!("beat classes (N normal, V ventricular, P paced): {}\n", p.beat_classes);
    out
}
