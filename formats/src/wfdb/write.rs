//! A [`Recording`] as a WFDB record: `<record>.hea`, `<record>.dat` in format 16, and MIT
//! annotation files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::recording::{Lead, Recording, Sex};

use super::annotation::to_mit;
use super::header::valid_record_name;
use super::signal::checksum;
use super::{MitAnnotation, WfdbWriteError, write_annotations};

/// Writes `rec` as WFDB record `record`: `(file name, bytes)` for the header, the signal file,
/// and annotation files when the recording has annotations (`<record>.atr` for the record's,
/// `<record>.<lead>` for a lead's, as LUDB does).
///
/// Samples are written in format 16 with baseline 0 and gain 1e6 / `resolution_nv` adu/mV, so
/// reading the record back gives the same integers and resolutions. A recording whose samples do
/// not all fit 16 bits is written in format 32 instead. Patient fields, the device, derived
/// leads and the interpretation go into `#` comments that [`super::read`] understands.
///
/// # Errors
/// No leads, leads at different rates or of different lengths, an unusable resolution, a record
/// or lead name a header cannot hold, or an annotation that MIT format cannot say.
pub fn write(rec: &Recording, record: &str) -> Result<Vec<(String, Vec<u8>)>, WfdbWriteError> {
    if !valid_record_name(record) {
        return Err(WfdbWriteError::RecordName(record.to_string()));
    }
    let first = rec.leads.first().ok_or(WfdbWriteError::NoLeads)?;
    check_leads(rec, first)?;
    let wide = rec.leads.iter().flat_map(|l| &l.samples).any(|&v| i16::try_from(v).is_err());
    let format = if wide { 32 } else { 16 };
    let dat_name = format!("{record}.dat");

    let nsamp = first.samples.len();
    let mut hea = format!("{record} {} {} {nsamp}", rec.leads.len(), first.sample_rate_hz);
    // WFDB dates are DD/MM/YYYY: a year outside 1..=9999 could not be read back.
    if let Some(at) = rec.acquired_at.filter(|at| (1..=9999).contains(&at.year())) {
        let t = at.time();
        let _ = write!(hea, " {:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
        if t.subsec_nanosecond() != 0 {
            let _ = write!(hea, ".{:03}", t.subsec_nanosecond() / 1_000_000);
        }
        let _ = write!(hea, " {:02}/{:02}/{:04}", at.day(), at.month(), at.year());
    }
    hea.push('\n');
    for l in &rec.leads {
        let gain = gain_text(1e6 / l.resolution_nv);
        let init = l.samples.first().copied().unwrap_or(0);
        let bits = if wide { 32 } else { 16 };
        let _ = writeln!(hea, "{dat_name} {format} {gain}(0)/mV {bits} 0 {init} {} 0 {}", checksum(&l.samples), l.name);
    }
    comments(rec, &mut hea);

    let width = if wide { 4 } else { 2 };
    let mut dat = Vec::with_capacity(nsamp.saturating_mul(rec.leads.len()).saturating_mul(width));
    for i in 0..nsamp {
        for l in &rec.leads {
            let v = l.samples.get(i).copied().unwrap_or(0);
            if wide {
                dat.extend_from_slice(&v.to_le_bytes());
            } else {
                // `wide` is false only when every sample fits.
                dat.extend_from_slice(&i16::try_from(v).unwrap_or(i16::MIN).to_le_bytes());
            }
        }
    }
    let mut out = vec![(format!("{record}.hea"), hea.into_bytes()), (dat_name, dat)];
    out.extend(annotation_files(rec, record)?);
    Ok(out)
}

fn check_leads(rec: &Recording, first: &Lead) -> Result<(), WfdbWriteError> {
    for l in &rec.leads {
        if l.name.is_empty() || l.name.chars().any(|c| c.is_control()) || l.name.trim() != l.name {
            return Err(WfdbWriteError::LeadName(l.name.clone()));
        }
        if l.sample_rate_hz == 0 {
            return Err(WfdbWriteError::ZeroRate(l.name.clone()));
        }
        if l.sample_rate_hz != first.sample_rate_hz {
            return Err(WfdbWriteError::MixedRates {
                first_lead: first.name.clone(),
                first_rate: first.sample_rate_hz,
                lead: l.name.clone(),
                rate: l.sample_rate_hz,
            });
        }
        if l.samples.len() != first.samples.len() {
            return Err(WfdbWriteError::MixedLengths {
                first_lead: first.name.clone(),
                first_len: first.samples.len(),
                lead: l.name.clone(),
                len: l.samples.len(),
            });
        }
        let gain = 1e6 / l.resolution_nv;
        if !(l.resolution_nv > 0.0 && l.resolution_nv.is_finite() && gain.is_finite()) {
            return Err(WfdbWriteError::Resolution { lead: l.name.clone(), resolution_nv: l.resolution_nv });
        }
    }
    Ok(())
}

/// The gain in full precision, without the float noise of 1e6 / (1e6 / 1716).
fn gain_text(gain: f64) -> String {
    let rounded = gain.round();
    if (gain - rounded).abs() <= gain.abs() * 1e-12 { format!("{rounded}") } else { format!("{gain}") }
}

/// Free text on one comment line.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string()
}

fn comments(rec: &Recording, hea: &mut String) {
    let p = &rec.patient;
    let mut line = |k: &str, v: &str| {
        if !v.trim().is_empty() {
            let _ = writeln!(hea, "# {k}: {}", one_line(v));
        }
    };
    line("patient id", &p.id);
    line("name", &p.name);
    line("age", &p.age_years.map(|a| a.to_string()).unwrap_or_default());
    let sex = match p.sex {
        Sex::Male => "male",
        Sex::Female => "female",
        Sex::Unknown => "",
    };
    line("sex", sex);
    line("birth date", &p.birth_date.map(|d| d.to_string()).unwrap_or_default());
    line("device", &rec.device);
    let derived: Vec<&str> = rec.leads.iter().filter(|l| l.derived).map(|l| l.name.as_str()).collect();
    line("derived leads", &derived.join(" "));
    // LUDB's form, which the reader takes as the interpretation; it has to come last.
    if !rec.interpretation.is_empty() {
        hea.push_str("# <diagnoses>:\n");
        for s in &rec.interpretation {
            let _ = writeln!(hea, "# {}", one_line(s));
        }
    }
}

fn annotation_files(rec: &Recording, record: &str) -> Result<Vec<(String, Vec<u8>)>, WfdbWriteError> {
    let mut by_file: BTreeMap<String, Vec<MitAnnotation>> = BTreeMap::new();
    for a in &rec.annotations {
        let ext = match &a.lead {
            None => "atr".to_string(),
            Some(name) => {
                let known = rec.leads.iter().any(|l| &l.name == name);
                let safe = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !known || !safe || name.eq_ignore_ascii_case("atr") || name.eq_ignore_ascii_case("dat") {
                    return Err(WfdbWriteError::AnnotationLead { sample: a.sample, lead: name.clone() });
                }
                name.clone()
            }
        };
        by_file.entry(format!("{record}.{ext}")).or_default().push(to_mit(a));
    }
    let mut out = Vec::new();
    for (name, mut anns) in by_file {
        anns.sort_by_key(|a| a.sample);
        out.push((name, write_annotations(&anns)?));
    }
    Ok(out)
}
