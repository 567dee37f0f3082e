//! A stored study → the canonical [`Recording`] the format writers take, so the county can hand
//! a study to any system in the format it reads (DICOM, HL7 aECG, SCP-ECG, WFDB).

use yilian_formats::{Annotation, Format, Lead, Measurement, Patient, Recording, Sex};
use yilian_protocol::message::{self, Study, StudyLead};

/// The clinics' offset from UTC in minutes. Carts and the files they read keep local civil time;
/// county medical communities are in China, one zone without daylight saving.
pub const LOCAL_UTC_OFFSET_MINUTES: i32 = 480;

/// A study could not be turned back into a recording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A lead's stored samples do not decode (damaged store).
    #[error("lead {lead}: {reason}")]
    Samples {
        /// Lead.
        lead: String,
        /// Codec error.
        reason: String,
    },
}

/// The recording a study holds, with its times in the clinics' local time.
pub fn to_recording(study: &Study) -> Result<Recording, ExportError> {
    let format = match study.source.as_ref().map(|s| s.format.as_str()) {
        Some("scp-ecg") => Format::ScpEcg,
        Some("dicom") => Format::Dicom,
        Some("hl7-aecg") => Format::Aecg,
        Some("wfdb") => Format::Wfdb,
        Some("contec") => Format::Contec,
        // Serial-link studies have no file; WFDB is the neutral choice for "our own samples".
        _ => Format::Wfdb,
    };
    let mut rec = Recording::new(format, study.source.as_ref().map(|s| s.format_version.clone()).unwrap_or_default());
    rec.patient = Patient {
        id: study.patient.id.clone(),
        name: study.patient.name.clone(),
        sex: match study.patient.sex {
            message::Sex::Male => Sex::Male,
            message::Sex::Female => Sex::Female,
            message::Sex::Unknown => Sex::Unknown,
        },
        birth_date: study.patient.birth_date.and_then(|d| {
            jiff::civil::Date::new(i16::try_from(d.year).ok()?, i8::try_from(d.month).ok()?, i8::try_from(d.day).ok()?)
                .ok()
        }),
        age_years: study.patient.age_years,
    };
    rec.acquired_at = local_time(study.acquired_at_ms);
    rec.device = study.device_model.clone();
    rec.leads = leads(&study.leads, study.sample_rate_hz)?;
    if let Some(m) = &study.median_beat {
        rec.median_beat = leads(&m.leads, m.sample_rate_hz)?;
    }
    rec.annotations = study
        .annotations
        .iter()
        .map(|a| Annotation { sample: a.sample, lead: a.lead.clone(), label: a.label.clone(), text: a.text.clone() })
        .collect();
    rec.measurements = study
        .measurements
        .iter()
        .map(|m| Measurement { name: m.name.clone(), value: m.value, unit: m.unit.clone() })
        .collect();
    rec.interpretation = study.interpretation.clone();
    rec.question = (!study.question.is_empty()).then(|| study.question.clone());
    rec.warnings = study.warnings.clone();
    Ok(rec)
}

fn leads(leads: &[StudyLead], rate_hz: u32) -> Result<Vec<Lead>, ExportError> {
    leads
        .iter()
        .map(|l| {
            let samples =
                l.decode().map_err(|e| ExportError::Samples { lead: l.lead.clone(), reason: e.to_string() })?;
            Ok(Lead {
                name: l.lead.clone(),
                derived: l.derived,
                sample_rate_hz: rate_hz,
                resolution_nv: l.resolution_nv,
                samples,
            })
        })
        .collect()
}

/// Unix ms as local time at [`LOCAL_UTC_OFFSET_MINUTES`], in `strftime` format `fmt`; empty if
/// out of range.
pub fn local_format(ms: i64, fmt: &str) -> String {
    local_time(ms).map(|t| t.strftime(fmt).to_string()).unwrap_or_default()
}

/// Unix ms → local civil time at [`LOCAL_UTC_OFFSET_MINUTES`].
pub fn local_time(ms: i64) -> Option<jiff::civil::DateTime> {
    let ts = jiff::Timestamp::from_millisecond(ms).ok()?;
    let offset = jiff::tz::Offset::from_seconds(LOCAL_UTC_OFFSET_MINUTES * 60).ok()?;
    Some(offset.to_datetime(ts))
}
