//! A whole record (header, signal files, annotation files) to a [`Recording`].

use std::collections::BTreeMap;

use crate::lead;
use crate::recording::{Annotation, Format, Lead, ReadOptions, Recording, Sex};

use super::header::{Header, Signal, parse_header};
use super::signal::{self, checksum, invalid_marker};
use super::{WfdbError, annotations, signal_files, symbol};

/// Reads a WFDB record: `header` is the `.hea` file, `files` maps the other files' names (as
/// the header names them) to their bytes.
///
/// Signal files the header names must all be present. Every other `<record>.<ext>` file is read
/// as MIT annotations: for the lead whose description equals `ext` (LUDB's per-lead files such
/// as `1.v6`), else for the record (`100.atr`). An annotation file that cannot be read is left
/// out with a warning; the signals still decode.
///
/// # Errors
/// A malformed header, an unsupported feature, a missing or short signal file, a checksum that
/// does not match (unless `opts.accept_bad_checksums`), or a size over `opts.limits`.
pub fn read(header: &[u8], files: &BTreeMap<String, Vec<u8>>, opts: &ReadOptions) -> Result<Recording, WfdbError> {
    let limits = &opts.limits;
    if header.len() > limits.max_input_bytes {
        return Err(WfdbError::TooLarge { file: "header".into(), size: header.len(), limit: limits.max_input_bytes });
    }
    let mut warnings = Vec::new();
    let h = parse_header(&header_text(header, &mut warnings))?;
    if h.signals.len() > limits.max_leads {
        return Err(WfdbError::TooManySignals { count: h.signals.len(), limit: limits.max_leads });
    }
    if h.samples_per_signal > limits.max_samples_per_lead {
        return Err(WfdbError::TooLong(h.samples_per_signal));
    }
    let rate = whole_rate(h.sample_rate_hz)?;
    signal::check_supported(&h)?;

    let mut raw: Vec<Option<Vec<i32>>> = vec![None; h.signals.len()];
    for file in signal_files(&h) {
        let bytes = files.get(&file).ok_or_else(|| WfdbError::MissingFile(file.clone()))?;
        if bytes.len() > limits.max_input_bytes {
            return Err(WfdbError::TooLarge { file, size: bytes.len(), limit: limits.max_input_bytes });
        }
        let decoded = signal::decode(&h, &file, bytes, limits.max_samples_per_lead)?;
        if decoded.extra_bytes > 0 {
            warnings.push(format!("{file}: {} bytes after the last sample were ignored", decoded.extra_bytes));
        }
        for (i, samples) in decoded.signals {
            if let Some(s) = h.signals.get(i) {
                verify(i, s, &samples, opts, &mut warnings)?;
            }
            if let Some(slot) = raw.get_mut(i) {
                *slot = Some(samples);
            }
        }
    }

    let mut rec = Recording::new(Format::Wfdb, format_version(&h));
    for (i, (s, samples)) in h.signals.iter().zip(raw).enumerate() {
        let Some(samples) = samples else { continue };
        if let Some(l) = to_lead(i, s, samples, rate, &mut warnings)? {
            rec.leads.push(l);
        }
    }
    if let Some(first) = rec.leads.first() {
        let n = first.samples.len();
        if rec.leads.iter().any(|l| l.samples.len() != n) {
            warnings.push("signal files hold different numbers of samples".into());
        }
    }
    apply_comments(&h.comments, &mut rec);
    // A base time without a date says only when in the day the record started; not an acquisition time.
    if let (Some(date), Some(time)) = (h.base_date, h.base_time) {
        rec.acquired_at = Some(date.to_datetime(time));
    }
    read_annotations(&h, files, opts, &mut rec, &mut warnings);
    rec.warnings.extend(warnings);
    Ok(rec)
}

/// WFDB headers are ASCII; anything else is most likely a Chinese cart's GBK comment.
fn header_text(bytes: &[u8], warnings: &mut Vec<String>) -> String {
    match std::str::from_utf8(bytes) {
        Ok(t) => t.to_string(),
        Err(_) => {
            let (text, _, had_errors) = encoding_rs::GB18030.decode(bytes);
            if had_errors {
                warnings.push("header is neither UTF-8 nor GB18030; some characters were replaced".into());
            }
            text.into_owned()
        }
    }
}

fn whole_rate(fs: f64) -> Result<u32, WfdbError> {
    if fs > 0.0 && fs.fract() == 0.0 && fs <= f64::from(u32::MAX) {
        // Whole and in range: the cast is exact.
        Ok(fs as u32)
    } else {
        Err(WfdbError::SampleRate(fs.to_string()))
    }
}

fn format_version(h: &Header) -> String {
    let mut formats: Vec<u32> = h.signals.iter().map(|s| s.format).collect();
    formats.sort_unstable();
    formats.dedup();
    let list: Vec<String> = formats.iter().map(u32::to_string).collect();
    format!("format {}", list.join(", "))
}

fn verify(
    i: usize,
    s: &Signal,
    samples: &[i32],
    opts: &ReadOptions,
    warnings: &mut Vec<String>,
) -> Result<(), WfdbError> {
    if let Some(stated) = s.checksum {
        let computed = checksum(samples);
        if computed != stated {
            let err = WfdbError::Checksum { signal: i, description: s.description.clone(), stated, computed };
            if !opts.accept_bad_checksums {
                return Err(err);
            }
            warnings.push(format!("{err}; the samples may not be what the cart wrote"));
        }
    }
    if let (Some(init), Some(&first)) = (s.initial_value, samples.first())
        && init != first
    {
        warnings.push(format!("signal {i} ({}): header initial value {init}, first sample {first}", s.description));
    }
    Ok(())
}

/// nV per adu for the signal's units, or None (with a warning) when they are not a voltage.
fn resolution_nv(i: usize, s: &Signal, warnings: &mut Vec<String>) -> Option<f64> {
    let per_unit = match s.units.trim() {
        u if u.eq_ignore_ascii_case("mV") => 1e6,
        "uV" | "µV" | "μV" | "UV" => 1e3,
        "nV" => 1.0,
        "V" => 1e9,
        other => {
            warnings.push(format!("signal {i} ({}) is in {other:?}, not a voltage; left out", s.description));
            return None;
        }
    };
    if s.gain <= 0.0 {
        warnings.push(format!("signal {i} ({}) has gain {}; left out", s.description, s.gain));
        return None;
    }
    if !s.calibrated {
        warnings.push(format!(
            "signal {i} ({}) is uncalibrated (gain 0); WFDB's default of 200 adu/{} is assumed",
            s.description, s.units
        ));
    }
    Some(per_unit / s.gain)
}

/// WFDB descriptions that are lead names under another spelling.
fn lead_name(description: &str) -> String {
    match description.trim().to_ascii_lowercase().as_str() {
        // PTB writes the Frank leads as vx, vy, vz.
        "vx" => "X".into(),
        "vy" => "Y".into(),
        "vz" => "Z".into(),
        _ => lead::canonical(description),
    }
}

fn to_lead(
    i: usize,
    s: &Signal,
    raw: Vec<i32>,
    rate: u32,
    warnings: &mut Vec<String>,
) -> Result<Option<Lead>, WfdbError> {
    let Some(resolution_nv) = resolution_nv(i, s, warnings) else { return Ok(None) };
    if let Some(marker) = invalid_marker(s.format) {
        let n = raw.iter().filter(|&&v| v == marker).count();
        if n > 0 {
            warnings
                .push(format!("signal {i} ({}): {n} samples hold WFDB's missing-sample value {marker}", s.description));
        }
    }
    let mut samples = raw;
    for v in &mut samples {
        *v = v.checked_sub(s.baseline).ok_or_else(|| WfdbError::SampleRange {
            signal: i,
            description: s.description.clone(),
            value: *v,
            baseline: s.baseline,
        })?;
    }
    let name = if s.description.trim().is_empty() { format!("signal {i}") } else { lead_name(&s.description) };
    Ok(Some(Lead { name, derived: false, sample_rate_hz: rate, resolution_nv, samples }))
}

/// Patient fields and diagnoses from the comment lines, in the forms real databases use.
fn apply_comments(comments: &[String], rec: &mut Recording) {
    // MIT-BIH: the first comment is "<age> <sex> ...".
    if let Some(first) = comments.first() {
        let mut f = first.split_whitespace();
        if let (Some(age), Some(sex)) = (f.next(), f.next())
            && let (Ok(age), Some(sex)) = (age.parse::<i32>(), parse_sex(sex))
        {
            rec.patient.age_years = u16::try_from(age).ok();
            rec.patient.sex = sex;
        }
    }
    let mut in_diagnoses = false;
    let mut derived: Vec<String> = Vec::new();
    for c in comments {
        let Some((key, value)) = c.split_once(':') else {
            if in_diagnoses && !c.is_empty() {
                rec.interpretation.push(c.clone());
            }
            continue;
        };
        let bracketed = key.trim().starts_with('<') && key.trim().ends_with('>');
        let key = key.trim().trim_start_matches('<').trim_end_matches('>').trim().to_ascii_lowercase();
        let value = value.trim();
        if in_diagnoses && !bracketed {
            rec.interpretation.push(c.clone());
            continue;
        }
        in_diagnoses = false;
        match key.as_str() {
            "age" => rec.patient.age_years = value.parse().ok().or(rec.patient.age_years),
            "sex" | "gender" => rec.patient.sex = parse_sex(value).unwrap_or(rec.patient.sex),
            "diagnoses" => {
                in_diagnoses = true;
                if !value.is_empty() {
                    rec.interpretation.push(value.to_string());
                }
            }
            // The keys below are the ones this module's writer uses.
            "name" | "patient name" => rec.patient.name = value.to_string(),
            "patient id" => rec.patient.id = value.to_string(),
            "birth date" | "date of birth" => rec.patient.birth_date = value.parse().ok(),
            "device" => rec.device = value.to_string(),
            "derived leads" => derived = value.split_whitespace().map(lead::canonical).collect(),
            _ => {}
        }
    }
    for l in &mut rec.leads {
        l.derived = derived.contains(&l.name);
    }
}

fn parse_sex(s: &str) -> Option<Sex> {
    match s.trim().to_ascii_lowercase().as_str() {
        "m" | "male" => Some(Sex::Male),
        "f" | "female" => Some(Sex::Female),
        "?" | "u" | "unknown" | "n/a" => Some(Sex::Unknown),
        _ => None,
    }
}

fn read_annotations(
    h: &Header,
    files: &BTreeMap<String, Vec<u8>>,
    opts: &ReadOptions,
    rec: &mut Recording,
    warnings: &mut Vec<String>,
) {
    let signal_files = signal_files(h);
    let prefix = format!("{}.", h.record);
    // (header position of the lead, or 0 for the record's own file; annotation).
    let mut anns: Vec<(usize, Annotation)> = Vec::new();
    for (name, bytes) in files {
        if signal_files.contains(name) {
            continue;
        }
        let Some(ext) = name.strip_prefix(&prefix) else {
            warnings.push(format!("{name} is not a file of record {}; ignored", h.record));
            continue;
        };
        if ext.eq_ignore_ascii_case("hea") {
            continue;
        }
        let position = h
            .signals
            .iter()
            .position(|s| !s.description.trim().is_empty() && s.description.trim().eq_ignore_ascii_case(ext));
        let lead = position.and_then(|i| h.signals.get(i)).map(|s| lead_name(&s.description));
        let rank = position.map_or(0, |i| i.saturating_add(1));
        let limits =
            crate::Limits { max_annotations: opts.limits.max_annotations.saturating_sub(anns.len()), ..opts.limits };
        match annotations(bytes, &limits) {
            Ok(list) => anns.extend(list.into_iter().map(|a| {
                let text = (!a.aux.is_empty()).then_some(a.aux);
                (rank, Annotation { sample: a.sample, lead: lead.clone(), label: symbol(a.code), text })
            })),
            Err(e) => warnings.push(format!("annotation file {name} left out: {e}")),
        }
    }
    // Per-lead files arrive one after another; one time-ordered list is what a viewer walks.
    // Ties go by lead order, not file-name order, so the list does not depend on file names.
    anns.sort_by_key(|(rank, a)| (a.sample, *rank));
    rec.annotations = anns.into_iter().map(|(_, a)| a).collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
        list.iter().map(|(n, b)| (n.to_string(), b.clone())).collect()
    }

    #[test]
    fn baseline_units_and_names() {
        let hea = b"r 3 500 2 10:20:30 24/11/2020\nr.dat 16 1716(6)/mV 0 0 7 20 0 avr\nr.dat 16 2(1)/uV 0 0 0 0 0 vx\nr.dat 16 100/mmHg 0 0 0 0 0 ABP\n# 69 M 1085\n";
        let dat = [7, 0, 0, 0, 0, 0, 13, 0, 0, 0, 0, 0];
        let rec = read(hea, &files(&[("r.dat", dat.to_vec())]), &ReadOptions::default()).expect("read");
        assert_eq!(rec.leads.len(), 2);
        assert_eq!((rec.leads[0].name.as_str(), rec.leads[0].samples.as_slice()), ("aVR", &[1, 7][..]));
        assert_eq!(rec.leads[0].resolution_nv, 1e6 / 1716.0);
        assert_eq!((rec.leads[1].name.as_str(), rec.leads[1].resolution_nv), ("X", 500.0));
        assert_eq!(rec.leads[1].samples, vec![-1, -1]);
        assert!(rec.warnings.iter().any(|w| w.contains("mmHg")), "{:?}", rec.warnings);
        assert_eq!(rec.patient.age_years, Some(69));
        assert_eq!(rec.patient.sex, Sex::Male);
        assert_eq!(rec.acquired_at, Some(jiff::civil::date(2020, 11, 24).at(10, 20, 30, 0)));
    }

    #[test]
    fn comments_in_ptb_and_ludb_forms() {
        let mut rec = Recording::new(Format::Wfdb, "");
        let c = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        apply_comments(&c(&["age: 81", "sex: female", "Reason for admission: Myocardial infarction"]), &mut rec);
        assert_eq!((rec.patient.age_years, rec.patient.sex), (Some(81), Sex::Female));
        assert!(rec.interpretation.is_empty());
        let mut rec = Recording::new(Format::Wfdb, "");
        apply_comments(&c(&["<age>: 51", "<sex>: F", "<diagnoses>:", "Rhythm: Sinus bradycardia.", "LVH."]), &mut rec);
        assert_eq!((rec.patient.age_years, rec.patient.sex), (Some(51), Sex::Female));
        assert_eq!(rec.interpretation, vec!["Rhythm: Sinus bradycardia.", "LVH."]);
        let mut rec = Recording::new(Format::Wfdb, "");
        apply_comments(&c(&["-1 M 742 654 x1"]), &mut rec);
        assert_eq!((rec.patient.age_years, rec.patient.sex), (None, Sex::Male));
    }

    #[test]
    fn missing_files_rates_and_bad_annotations() {
        let hea = b"r 1 500 1\nr.dat 16 1000 16 0 1 1 0 I\n";
        assert_eq!(read(hea, &files(&[]), &ReadOptions::default()), Err(WfdbError::MissingFile("r.dat".into())));
        let odd = b"r 1 360.5 1\nr.dat 16 1000 16 0 1 1 0 I\n";
        let f = files(&[("r.dat", vec![1, 0])]);
        assert!(matches!(read(odd, &f, &ReadOptions::default()), Err(WfdbError::SampleRate(_))));
        let f = files(&[("r.dat", vec![1, 0]), ("r.atr", vec![1]), ("x.atr", vec![0, 0])]);
        let rec = read(hea, &f, &ReadOptions::default()).expect("read");
        assert_eq!(rec.leads[0].samples, vec![1]);
        assert_eq!(rec.warnings.len(), 2, "{:?}", rec.warnings);
    }
}
