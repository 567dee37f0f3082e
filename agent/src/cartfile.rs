//! A cart file's [`Recording`] → the [`Study`] the agent signs and sends, with the original
//! bytes packed inside it. Pure: the inbox and the CLI do the reading and the clock.

use yilian_formats::{Format, Recording};
use yilian_protocol::codec;
use yilian_protocol::limits;
use yilian_protocol::message::{
    Annotation, Date, Measurement, MedianBeat, OriginalFile, Patient, Priority, Sex, SourceFile, Study, StudyLead,
};

/// A recording cannot become a study.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CartFileError {
    /// The file holds no rhythm leads at all.
    #[error("the file holds no ECG leads")]
    NoLeads,
    /// More leads than a study carries.
    #[error("{0} leads; a study carries at most {max}", max = limits::LEADS_MAX)]
    TooManyLeads(usize),
    /// Rhythm leads at different sampling rates.
    #[error("leads are sampled at different rates ({0}); Yilian does not resample")]
    MixedRates(String),
    /// Rhythm leads of different lengths.
    #[error("leads have different lengths ({0})")]
    UnequalLengths(String),
    /// The study does not fit the protocol's limits (samples, size with the original).
    #[error("too large to send: {0}")]
    TooLarge(String),
}

/// What the file does not say and the agent knows.
#[derive(Debug, Clone)]
pub struct FileContext {
    /// This agent's device id.
    pub device_id: String,
    /// Priority chosen by the clinic (inbox subfolder, `send --priority`).
    pub priority: Priority,
    /// The clinic's question (sidecar, `send --question`); overrides one found in the file.
    pub question: Option<String>,
    /// The clinic's UTC offset in minutes (carts write local time; China is +480).
    pub utc_offset_minutes: i32,
    /// When the file arrived, Unix ms: the acquisition time if the file has none.
    pub received_at_ms: i64,
}

/// One original file as dropped.
#[derive(Debug, Clone)]
pub struct Original {
    /// File name without folders.
    pub name: String,
    /// Its bytes, untouched.
    pub bytes: Vec<u8>,
}

/// SHA-256 over the originals (names and bytes, in name order): the inbox's duplicate key.
pub fn content_hash(originals: &[Original]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut sorted: Vec<&Original> = originals.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for o in sorted {
        ctx.update(o.name.as_bytes());
        ctx.update(&[0]);
        ctx.update(&(o.bytes.len() as u64).to_le_bytes());
        ctx.update(&o.bytes);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Builds the study: samples exactly as read, each lead with its own resolution, the median beat,
/// annotations, measurements and interpretation, and the originals, packed and hashed.
pub fn to_study(rec: &Recording, originals: &[Original], ctx: &FileContext) -> Result<Study, CartFileError> {
    let first = rec.leads.first().ok_or(CartFileError::NoLeads)?;
    if rec.leads.len() > limits::LEADS_MAX {
        return Err(CartFileError::TooManyLeads(rec.leads.len()));
    }
    if rec.leads.iter().any(|l| l.sample_rate_hz != first.sample_rate_hz) {
        let rates: Vec<String> = rec.leads.iter().map(|l| format!("{} {} Hz", l.name, l.sample_rate_hz)).collect();
        return Err(CartFileError::MixedRates(rates.join(", ")));
    }
    if rec.leads.iter().any(|l| l.samples.len() != first.samples.len()) {
        let lens: Vec<String> = rec.leads.iter().map(|l| format!("{} {}", l.name, l.samples.len())).collect();
        return Err(CartFileError::UnequalLengths(lens.join(", ")));
    }
    if first.samples.len() > limits::SAMPLES_PER_LEAD_MAX as usize {
        return Err(CartFileError::TooLarge(format!("{} samples per lead", first.samples.len())));
    }
    let mut warnings = rec.warnings.clone();
    let acquired_at_ms = match rec.acquired_at.and_then(|t| civil_to_ms(t, ctx.utc_offset_minutes)) {
        Some(ms) => ms,
        None => {
            warnings
                .push("文件无采集时间，以接收时间代替 / no acquisition time in the file; time received used".into());
            ctx.received_at_ms
        }
    };
    let leads: Vec<StudyLead> = rec.leads.iter().map(study_lead).collect();
    let median_beat = median(rec, &mut warnings);
    let hash = content_hash(originals);
    let study_uid = format!("{}-{acquired_at_ms}-f{}", ctx.device_id, hex::encode(&hash[..8]));
    let question = ctx.question.clone().or_else(|| rec.question.clone()).unwrap_or_default();
    let mut study = Study {
        study_uid,
        patient: Patient {
            id: rec.patient.id.clone(),
            name: rec.patient.name.clone(),
            sex: match rec.patient.sex {
                yilian_formats::Sex::Male => Sex::Male,
                yilian_formats::Sex::Female => Sex::Female,
                yilian_formats::Sex::Unknown => Sex::Unknown,
            },
            birth_date: rec.patient.birth_date.and_then(|d| {
                Date::new(u16::try_from(d.year()).ok()?, u8::try_from(d.month()).ok()?, u8::try_from(d.day()).ok()?)
            }),
            age_years: rec.patient.age_years,
        },
        question,
        priority: ctx.priority,
        acquired_at_ms,
        sample_rate_hz: first.sample_rate_hz,
        device_model: if rec.device.is_empty() { format_label(rec.format).to_string() } else { rec.device.clone() },
        leads,
        warnings,
        median_beat,
        annotations: rec
            .annotations
            .iter()
            .take(limits::ANNOTATIONS_MAX)
            .map(|a| Annotation {
                sample: a.sample,
                lead: a.lead.clone(),
                label: a.label.clone(),
                text: a.text.clone(),
            })
            .collect(),
        measurements: rec
            .measurements
            .iter()
            .map(|m| Measurement { name: m.name.clone(), value: m.value, unit: m.unit.clone() })
            .collect(),
        interpretation: rec.interpretation.clone(),
        source: (!originals.is_empty()).then(|| SourceFile {
            format: rec.format.name().to_string(),
            format_version: rec.format_version.clone(),
            files: originals.iter().map(|o| OriginalFile::pack(&o.name, &o.bytes)).collect(),
        }),
    };
    study.validate().map_err(CartFileError::TooLarge)?;
    crate::gate::check(&mut study);
    let size = study.encode().map_err(|e| CartFileError::TooLarge(e.to_string()))?.len();
    if size > limits::STUDY_MAX {
        return Err(CartFileError::TooLarge(format!("{size} bytes encoded")));
    }
    Ok(study)
}

fn study_lead(l: &yilian_formats::Lead) -> StudyLead {
    StudyLead {
        lead: l.name.clone(),
        derived: l.derived,
        resolution_nv: l.resolution_nv,
        samples: codec::encode(&l.samples),
    }
}

/// The median beat travels when its leads agree in rate and length (the viewer draws them side
/// by side); otherwise it stays in the original file and the specialist is told.
fn median(rec: &Recording, warnings: &mut Vec<String>) -> Option<MedianBeat> {
    let first = rec.median_beat.first()?;
    let uniform = rec
        .median_beat
        .iter()
        .all(|l| l.sample_rate_hz == first.sample_rate_hz && l.samples.len() == first.samples.len());
    if !uniform || rec.median_beat.len() > limits::LEADS_MAX || first.samples.is_empty() {
        warnings.push("中位心搏各导联长度不一，未显示 / median beat leads differ in rate or length; not shown".into());
        return None;
    }
    Some(MedianBeat { sample_rate_hz: first.sample_rate_hz, leads: rec.median_beat.iter().map(study_lead).collect() })
}

fn format_label(f: Format) -> &'static str {
    match f {
        Format::ScpEcg => "SCP-ECG file",
        Format::Dicom => "DICOM ECG file",
        Format::Aecg => "HL7 aECG file",
        Format::Wfdb => "WFDB record",
        Format::Contec => "Contec ECG90A",
    }
}

/// Local civil time at a fixed UTC offset → Unix ms.
fn civil_to_ms(t: jiff::civil::DateTime, utc_offset_minutes: i32) -> Option<i64> {
    let offset = jiff::tz::Offset::from_seconds(utc_offset_minutes.checked_mul(60)?).ok()?;
    let ts = offset.to_timestamp(t).ok()?;
    Some(ts.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_formats::Lead;

    fn ctx() -> FileContext {
        FileContext {
            device_id: "cart-1".into(),
            priority: Priority::Urgent,
            question: None,
            utc_offset_minutes: 480,
            received_at_ms: 1_000,
        }
    }

    fn lead(name: &str, rate: u32, samples: Vec<i32>) -> Lead {
        Lead { name: name.into(), derived: name == "III", sample_rate_hz: rate, resolution_nv: 582.75, samples }
    }

    #[test]
    fn a_recording_becomes_a_study_with_exact_samples_and_its_original() {
        let mut rec = Recording::new(Format::Contec, "ECG90A");
        rec.patient.name = "张伟".into();
        rec.patient.age_years = Some(67);
        rec.acquired_at = Some(jiff::civil::date(2020, 11, 16).at(21, 44, 39, 0));
        rec.leads = vec![lead("II", 800, vec![1, -2, 3]), lead("III", 800, vec![4, 5, -6])];
        let orig = Original { name: "0000050.ECG".into(), bytes: b"raw cart bytes".to_vec() };
        let s = to_study(&rec, std::slice::from_ref(&orig), &ctx()).expect("study");
        // 21:44:39 at UTC+8 is 13:44:39 UTC.
        assert_eq!(s.acquired_at_ms, 1_605_534_279_000);
        assert_eq!(s.leads[1].decode().expect("decode"), vec![4, 5, -6]);
        assert!(s.leads[1].derived && !s.leads[0].derived);
        assert_eq!(s.leads[0].resolution_nv, 582.75);
        assert_eq!(s.patient.age_years, Some(67));
        let src = s.source.expect("source");
        assert_eq!(src.format, "contec");
        assert_eq!(src.files[0].unpack().expect("unpack"), orig.bytes);
        assert!(s.study_uid.starts_with("cart-1-1605534279000-f"));
    }

    #[test]
    fn leads_that_cannot_share_a_study_are_refused_with_the_reason() {
        let mut rec = Recording::new(Format::Wfdb, "");
        assert_eq!(to_study(&rec, &[], &ctx()), Err(CartFileError::NoLeads));
        rec.leads = vec![lead("I", 500, vec![1, 2]), lead("II", 250, vec![1, 2])];
        assert!(matches!(to_study(&rec, &[], &ctx()), Err(CartFileError::MixedRates(s)) if s.contains("II 250 Hz")));
        rec.leads = vec![lead("I", 500, vec![1, 2]), lead("II", 500, vec![1])];
        assert!(matches!(to_study(&rec, &[], &ctx()), Err(CartFileError::UnequalLengths(_))));
        rec.leads = vec![lead("I", 500, vec![1, 2])];
        let s = to_study(&rec, &[], &ctx()).expect("no time is not fatal");
        assert_eq!(s.acquired_at_ms, 1_000);
        assert!(s.warnings.iter().any(|w| w.contains("no acquisition time")));
    }
}
