//! [`Recording`] → DICOM 12-lead ECG (or General ECG) Waveform Storage, explicit VR little
//! endian, UTF-8 text.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use sha2::{Digest, Sha256};

use super::read::DERIVED_MARK;
use super::{DicomWriteError, codes, guard, uid};
use crate::lead;
use crate::recording::{Lead, Recording, Sex};

type Obj = InMemDicomObject;

/// An ECG storage class and the constraints PS3.3 A.34 puts on its Waveform module:
/// (SOP class, name, most multiplex groups, most channels per group, most samples, rates).
type Iod = (&'static str, &'static str, usize, usize, usize, (u32, u32));

/// The ECG storage classes, most specific first.
const IODS: &[Iod] = &[
    (uids::TWELVE_LEAD_ECG_WAVEFORM_STORAGE, "12-lead ECG", 5, 13, 16_384, (200, 1000)),
    (uids::GENERAL_ECG_WAVEFORM_STORAGE, "General ECG", 4, 24, usize::MAX, (200, 1000)),
    (uids::AMBULATORY_ECG_WAVEFORM_STORAGE, "Ambulatory ECG", 1, 12, usize::MAX, (50, 1000)),
];

/// Writes `rec` as a DICOM ECG waveform file (preamble, file meta, data set).
pub fn write(rec: &Recording) -> Result<Vec<u8>, DicomWriteError> {
    if rec.leads.is_empty() {
        return Err(DicomWriteError::NoLeads);
    }
    for (leads, median) in [(&rec.leads, false), (&rec.median_beat, true)] {
        for l in leads.iter() {
            check_lead(l, median)?;
        }
    }
    let rhythm = groups(&rec.leads);
    let median = groups(&rec.median_beat);
    let all: Vec<&[&Lead]> = rhythm.iter().chain(median.iter()).map(Vec::as_slice).collect();
    let (sop_class, _) = choose_iod(&all)?;

    let digest = content_digest(rec);
    let study = uid::derived("study", &digest);
    let series = uid::derived("series", &digest);
    let instance = uid::derived("instance", &digest);

    let mut obj = Obj::new_empty();
    put_str(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put_str(&mut obj, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &instance);
    let (date, time, date_time) = match rec.acquired_at {
        Some(at) => {
            let frac = if at.subsec_nanosecond() == 0 {
                String::new()
            } else {
                format!(".{:06}", at.subsec_nanosecond() / 1000)
            };
            let date = format!("{:04}{:02}{:02}", at.year(), at.month(), at.day());
            let time = format!("{:02}{:02}{:02}{frac}", at.hour(), at.minute(), at.second());
            (date.clone(), time.clone(), format!("{date}{time}"))
        }
        None => (String::new(), String::new(), String::new()),
    };
    put_str(&mut obj, tags::STUDY_DATE, VR::DA, &date);
    put_str(&mut obj, tags::CONTENT_DATE, VR::DA, &date);
    put_str(&mut obj, tags::ACQUISITION_DATE_TIME, VR::DT, &date_time);
    put_str(&mut obj, tags::STUDY_TIME, VR::TM, &time);
    put_str(&mut obj, tags::CONTENT_TIME, VR::TM, &time);
    put_str(&mut obj, tags::ACCESSION_NUMBER, VR::SH, "");
    put_str(&mut obj, tags::MODALITY, VR::CS, "ECG");
    put_str(&mut obj, tags::MANUFACTURER, VR::LO, &checked_text("device", &rec.device, 64)?);
    put_str(&mut obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    put_patient(&mut obj, &rec.patient)?;
    put_str(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, &study);
    put_str(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, &series);
    put_str(&mut obj, tags::STUDY_ID, VR::SH, "");
    put_str(&mut obj, tags::SERIES_NUMBER, VR::IS, "1");
    put_str(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    put_seq(&mut obj, tags::ACQUISITION_CONTEXT_SEQUENCE, vec![]);

    let mut annotations = Vec::new();
    for m in &rec.measurements {
        annotations.push(measurement_item(m.name.as_str(), m.value, &m.unit)?);
    }
    for statement in &rec.interpretation {
        let mut item = Obj::new_empty();
        put_str(
            &mut item,
            tags::UNFORMATTED_TEXT_VALUE,
            VR::ST,
            &checked_text("interpretation statement", statement, 1024)?,
        );
        annotations.push(item);
    }
    let first_group = rhythm.first().map(Vec::as_slice).unwrap_or(&[]);
    for a in &rec.annotations {
        annotations.push(annotation_item(a, first_group)?);
    }
    if !annotations.is_empty() {
        put_seq(&mut obj, tags::WAVEFORM_ANNOTATION_SEQUENCE, annotations);
    }

    let mut waveform = Vec::new();
    for g in &rhythm {
        waveform.push(group_item(g, "RHYTHM", "ORIGINAL"));
    }
    for g in &median {
        waveform.push(group_item(g, "MEDIAN BEAT", "DERIVED"));
    }
    put_seq(&mut obj, tags::WAVEFORM_SEQUENCE, waveform);

    part10(obj, sop_class, &instance)
}

/// The Part 10 bytes of `obj` (preamble, file meta in explicit VR little endian, data set).
fn part10(obj: Obj, sop_class: &str, instance: &str) -> Result<Vec<u8>, DicomWriteError> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(instance)
        .transfer_syntax(guard::EXPLICIT_LE)
        .implementation_class_uid(uid::implementation_class())
        .implementation_version_name("YILIAN_1")
        .build()
        .map_err(|e| DicomWriteError::Encode(e.to_string()))?;
    let mut out = Vec::new();
    obj.with_exact_meta(meta).write_all(&mut out).map_err(|e| DicomWriteError::Encode(e.to_string()))?;
    Ok(out)
}

/// The largest report PDF written into an Encapsulated PDF object (the OB length is 32-bit;
/// a report is a few hundred KB).
pub const PDF_MAX: usize = 64 * 1024 * 1024;

/// Writes `pdf`, the signed report on `rec`, as a DICOM Encapsulated PDF (PS3.3 A.45.1) in the
/// same study as [`write`]'s ECG object, so the PACS files the report beside the tracing.
/// `signed_at` is the report's signing time as the county reads it.
pub fn encapsulated_pdf(
    rec: &Recording,
    pdf: &[u8],
    title: &str,
    signed_at: Option<jiff::civil::DateTime>,
) -> Result<Vec<u8>, DicomWriteError> {
    if !pdf.starts_with(b"%PDF-") {
        return Err(DicomWriteError::Encode("the document is not a PDF".into()));
    }
    if pdf.len() > PDF_MAX {
        return Err(DicomWriteError::TextTooLong {
            what: "the report PDF (bytes)".into(),
            len: pdf.len(),
            max: PDF_MAX,
        });
    }
    let sop_class = uids::ENCAPSULATED_PDF_STORAGE;
    let study = uid::derived("study", &content_digest(rec));
    let doc: [u8; 32] = Sha256::digest(pdf).into();
    let series = uid::derived("report series", &doc);
    let instance = uid::derived("report instance", &doc);
    let mut obj = Obj::new_empty();
    put_str(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put_str(&mut obj, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &instance);
    let day = |d: jiff::civil::DateTime| format!("{:04}{:02}{:02}", d.year(), d.month(), d.day());
    let time = |d: jiff::civil::DateTime| format!("{:02}{:02}{:02}", d.hour(), d.minute(), d.second());
    put_str(&mut obj, tags::STUDY_DATE, VR::DA, &rec.acquired_at.map(day).unwrap_or_default());
    put_str(&mut obj, tags::STUDY_TIME, VR::TM, &rec.acquired_at.map(time).unwrap_or_default());
    put_str(&mut obj, tags::CONTENT_DATE, VR::DA, &signed_at.map(day).unwrap_or_default());
    put_str(&mut obj, tags::CONTENT_TIME, VR::TM, &signed_at.map(time).unwrap_or_default());
    put_str(
        &mut obj,
        tags::ACQUISITION_DATE_TIME,
        VR::DT,
        &signed_at.map(|d| format!("{}{}", day(d), time(d))).unwrap_or_default(),
    );
    put_str(&mut obj, tags::ACCESSION_NUMBER, VR::SH, "");
    put_str(&mut obj, tags::MODALITY, VR::CS, "DOC");
    put_str(&mut obj, tags::CONVERSION_TYPE, VR::CS, "WSD");
    put_str(&mut obj, tags::MANUFACTURER, VR::LO, "Yilian");
    put_str(&mut obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    put_patient(&mut obj, &rec.patient)?;
    put_str(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, &study);
    put_str(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, &series);
    put_str(&mut obj, tags::STUDY_ID, VR::SH, "");
    put_str(&mut obj, tags::SERIES_NUMBER, VR::IS, "2");
    put_str(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    put_str(&mut obj, tags::BURNED_IN_ANNOTATION, VR::CS, "YES");
    put_str(&mut obj, tags::DOCUMENT_TITLE, VR::ST, &checked_text("document title", title, 1024)?);
    put_seq(&mut obj, tags::CONCEPT_NAME_CODE_SEQUENCE, vec![]);
    put_str(&mut obj, tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT, VR::LO, "application/pdf");
    // OB values have even length; the pad byte is not part of the document (PS3.3 C.24.2.1).
    put(&mut obj, tags::ENCAPSULATED_DOCUMENT_LENGTH, VR::UL, PrimitiveValue::from(pdf.len() as u32));
    let mut bytes = pdf.to_vec();
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    put(&mut obj, tags::ENCAPSULATED_DOCUMENT, VR::OB, PrimitiveValue::from(bytes));
    part10(obj, sop_class, &instance)
}

/// The Patient module (and the age the cart recorded instead of a birth date).
fn put_patient(obj: &mut Obj, p: &crate::recording::Patient) -> Result<(), DicomWriteError> {
    put_str(obj, tags::PATIENT_NAME, VR::PN, &checked_text("patient name", &p.name, 64)?);
    put_str(obj, tags::PATIENT_ID, VR::LO, &checked_text("patient id", &p.id, 64)?);
    let birth = p.birth_date.map(|d| format!("{:04}{:02}{:02}", d.year(), d.month(), d.day()));
    put_str(obj, tags::PATIENT_BIRTH_DATE, VR::DA, birth.as_deref().unwrap_or(""));
    let sex = match p.sex {
        Sex::Male => "M",
        Sex::Female => "F",
        Sex::Unknown => "",
    };
    put_str(obj, tags::PATIENT_SEX, VR::CS, sex);
    if let Some(age) = p.age_years.filter(|a| *a <= 999) {
        put_str(obj, tags::PATIENT_AGE, VR::AS, &format!("{age:03}Y"));
    }
    Ok(())
}

fn check_lead(l: &Lead, median: bool) -> Result<(), DicomWriteError> {
    let bad = |what: String| DicomWriteError::BadLead { lead: l.name.clone(), what };
    if l.sample_rate_hz == 0 {
        return Err(bad("sampling rate is 0".into()));
    }
    if !(l.resolution_nv.is_finite() && l.resolution_nv > 0.0) {
        return Err(bad(format!("resolution {} nV is not positive", l.resolution_nv)));
    }
    if l.samples.is_empty() {
        return Err(bad("has no samples".into()));
    }
    if let Some((index, &value)) = l.samples.iter().enumerate().find(|(_, s)| i16::try_from(**s).is_err()) {
        return Err(DicomWriteError::SampleOutOfRange { lead: l.name.clone(), median, index, value });
    }
    Ok(())
}

/// Leads split into multiplex groups: one per (rate, length), in order of first appearance.
fn groups(leads: &[Lead]) -> Vec<Vec<&Lead>> {
    let mut out: Vec<Vec<&Lead>> = Vec::new();
    for l in leads {
        match out.iter_mut().find(|g| g.first().is_some_and(|f| same_shape(f, l))) {
            Some(g) => g.push(l),
            None => out.push(vec![l]),
        }
    }
    out
}

fn same_shape(a: &Lead, b: &Lead) -> bool {
    a.sample_rate_hz == b.sample_rate_hz && a.samples.len() == b.samples.len()
}

/// The first ECG IOD whose constraints the groups meet.
fn choose_iod(groups: &[&[&Lead]]) -> Result<(&'static str, &'static str), DicomWriteError> {
    let mut reasons = Vec::new();
    for &(uid, name, max_groups, max_channels, max_samples, (lo, hi)) in IODS {
        let why = if groups.len() > max_groups {
            Some(format!("{name}: {} multiplex groups, at most {max_groups}", groups.len()))
        } else {
            groups.iter().find_map(|g| {
                let first = g.first()?;
                let (rate, len) = (first.sample_rate_hz, first.samples.len());
                if g.len() > max_channels {
                    Some(format!("{name}: {} channels in a group, at most {max_channels}", g.len()))
                } else if len > max_samples {
                    Some(format!("{name}: {len} samples, at most {max_samples}"))
                } else if rate < lo || rate > hi {
                    Some(format!("{name}: {rate} Hz, {lo}-{hi} Hz allowed"))
                } else {
                    None
                }
            })
        };
        match why {
            None => return Ok((uid, name)),
            Some(why) => reasons.push(why),
        }
    }
    Err(DicomWriteError::DoesNotFit(reasons.join("; ")))
}

/// SHA-256 over everything written, so the UIDs change exactly when the content does.
fn content_digest(rec: &Recording) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(rec.patient.id.as_bytes());
    field(rec.patient.name.as_bytes());
    field(
        format!("{:?}{:?}{:?}{:?}", rec.patient.sex, rec.patient.birth_date, rec.patient.age_years, rec.acquired_at)
            .as_bytes(),
    );
    field(rec.device.as_bytes());
    for (tag, leads) in [(b"R", &rec.leads), (b"M", &rec.median_beat)] {
        for l in leads.iter() {
            field(tag);
            field(l.name.as_bytes());
            field(&[u8::from(l.derived)]);
            field(&l.sample_rate_hz.to_le_bytes());
            field(&l.resolution_nv.to_bits().to_le_bytes());
            let samples: Vec<u8> = l.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            field(&samples);
        }
    }
    for m in &rec.measurements {
        field(format!("{}\0{}\0{}", m.name, m.value, m.unit).as_bytes());
    }
    for s in &rec.interpretation {
        field(s.as_bytes());
    }
    for a in &rec.annotations {
        field(format!("{}\0{:?}\0{}\0{:?}", a.sample, a.lead, a.label, a.text).as_bytes());
    }
    h.finalize().into()
}

fn group_item(leads: &[&Lead], label: &str, originality: &str) -> Obj {
    let first_len = leads.first().map_or(0, |l| l.samples.len());
    let rate = leads.first().map_or(0, |l| l.sample_rate_hz);
    let mut g = Obj::new_empty();
    put_str(&mut g, tags::WAVEFORM_ORIGINALITY, VR::CS, originality);
    put(&mut g, tags::NUMBER_OF_WAVEFORM_CHANNELS, VR::US, PrimitiveValue::from(leads.len() as u16));
    put(&mut g, tags::NUMBER_OF_WAVEFORM_SAMPLES, VR::UL, PrimitiveValue::from(first_len as u32));
    put_str(&mut g, tags::SAMPLING_FREQUENCY, VR::DS, &rate.to_string());
    put_str(&mut g, tags::MULTIPLEX_GROUP_LABEL, VR::SH, label);
    let defs = leads.iter().enumerate().map(|(i, l)| channel_item(l, i + 1)).collect();
    put_seq(&mut g, tags::CHANNEL_DEFINITION_SEQUENCE, defs);
    put(&mut g, tags::WAVEFORM_BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16));
    put_str(&mut g, tags::WAVEFORM_SAMPLE_INTERPRETATION, VR::CS, "SS");
    let mut words = Vec::with_capacity(first_len.saturating_mul(leads.len()));
    for f in 0..first_len {
        for l in leads {
            // check_lead has verified every sample fits i16.
            let s = l.samples.get(f).and_then(|s| i16::try_from(*s).ok()).unwrap_or(0);
            words.push(u16::from_le_bytes(s.to_le_bytes()));
        }
    }
    put(&mut g, tags::WAVEFORM_DATA, VR::OW, PrimitiveValue::U16(words.into()));
    g
}

fn channel_item(l: &Lead, number: usize) -> Obj {
    let mut c = Obj::new_empty();
    put_str(&mut c, tags::WAVEFORM_CHANNEL_NUMBER, VR::IS, &number.to_string());
    let label = if l.derived { format!("{} {DERIVED_MARK}", l.name) } else { l.name.clone() };
    let label = if label.chars().count() <= 16 { label } else { l.name.chars().take(16).collect() };
    put_str(&mut c, tags::CHANNEL_LABEL, VR::SH, &label);
    let (value, scheme, version, meaning) = match lead::dicom_code(&l.name) {
        Some((value, meaning)) => (value, "SCPECG", "1.3", meaning),
        None => (l.name.chars().take(16).collect(), codes::PRIVATE_SCHEME, "1", format!("Lead {}", l.name)),
    };
    put_seq(&mut c, tags::CHANNEL_SOURCE_SEQUENCE, vec![code_item(&value, scheme, Some(version), &meaning)]);
    put_str(&mut c, tags::CHANNEL_SENSITIVITY, VR::DS, &ds_shifted(l.resolution_nv, 3));
    put_seq(&mut c, tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE, vec![code_item("uV", "UCUM", Some("1.4"), "microvolt")]);
    put_str(&mut c, tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR, VR::DS, "1");
    put_str(&mut c, tags::CHANNEL_BASELINE, VR::DS, "0");
    put_str(&mut c, tags::CHANNEL_SAMPLE_SKEW, VR::DS, "0");
    put(&mut c, tags::WAVEFORM_BITS_STORED, VR::US, PrimitiveValue::from(16_u16));
    c
}

fn measurement_item(name: &str, value: f64, unit: &str) -> Result<Obj, DicomWriteError> {
    let mut item = Obj::new_empty();
    let (unit_code, unit_meaning) = codes::unit_to_ucum(unit);
    put_seq(
        &mut item,
        tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
        vec![code_item(&unit_code, "UCUM", Some("1.4"), &unit_meaning)],
    );
    let (v, s, m) = codes::measurement_code(name);
    put_seq(
        &mut item,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code_item(&v, &s, scheme_version(&s), &checked_text("measurement name", &m, 64)?)],
    );
    put(&mut item, tags::REFERENCED_WAVEFORM_CHANNELS, VR::US, PrimitiveValue::U16([1, 0].into()));
    put_str(&mut item, tags::NUMERIC_VALUE, VR::DS, &ds_value(value));
    Ok(item)
}

fn annotation_item(a: &crate::recording::Annotation, first_group: &[&Lead]) -> Result<Obj, DicomWriteError> {
    let mut item = Obj::new_empty();
    let (v, s, m) = codes::annotation_code(&a.label);
    put_seq(
        &mut item,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code_item(&v, &s, scheme_version(&s), &checked_text("annotation label", &m, 64)?)],
    );
    let channel =
        a.lead.as_ref().and_then(|name| first_group.iter().position(|l| &l.name == name)).map_or(0, |i| i + 1);
    put(&mut item, tags::REFERENCED_WAVEFORM_CHANNELS, VR::US, PrimitiveValue::U16([1, channel as u16].into()));
    put_str(&mut item, tags::TEMPORAL_RANGE_TYPE, VR::CS, "POINT");
    let position =
        a.sample.checked_add(1).and_then(|p| u32::try_from(p).ok()).ok_or_else(|| {
            DicomWriteError::DoesNotFit(format!("annotation at sample {} is beyond 32 bits", a.sample))
        })?;
    put(&mut item, tags::REFERENCED_SAMPLE_POSITIONS, VR::UL, PrimitiveValue::from(position));
    if let Some(text) = &a.text {
        put_str(&mut item, tags::UNFORMATTED_TEXT_VALUE, VR::ST, &checked_text("annotation text", text, 1024)?);
    }
    Ok(item)
}

/// The coding scheme version written with a concept (SCP-ECG codes are from version 1.3).
fn scheme_version(scheme: &str) -> Option<&'static str> {
    (scheme == "SCPECG").then_some("1.3")
}

fn code_item(value: &str, scheme: &str, version: Option<&str>, meaning: &str) -> Obj {
    let mut c = Obj::new_empty();
    put_str(&mut c, tags::CODE_VALUE, VR::SH, value);
    put_str(&mut c, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    if let Some(version) = version {
        put_str(&mut c, tags::CODING_SCHEME_VERSION, VR::SH, version);
    }
    put_str(&mut c, tags::CODE_MEANING, VR::LO, meaning);
    c
}

fn checked_text(what: &str, text: &str, max: usize) -> Result<String, DicomWriteError> {
    let len = text.chars().count();
    if len > max {
        return Err(DicomWriteError::TextTooLong { what: what.into(), len, max });
    }
    Ok(text.to_string())
}

fn put(obj: &mut Obj, tag: Tag, vr: VR, value: PrimitiveValue) {
    obj.put(DataElement::new(tag, vr, value));
}

fn put_str(obj: &mut Obj, tag: Tag, vr: VR, value: &str) {
    let value = if value.is_empty() { PrimitiveValue::Empty } else { PrimitiveValue::from(value) };
    put(obj, tag, vr, value);
}

fn put_seq(obj: &mut Obj, tag: Tag, items: Vec<Obj>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// A DS (at most 16 characters) for `value`: the shortest exact form when it fits, else the
/// closest that does.
fn ds_value(value: f64) -> String {
    let exact = value.to_string();
    if exact.len() <= 16 {
        return exact;
    }
    (1..=15).rev().map(|p| format!("{value:.p$e}")).find(|s| s.len() <= 16).unwrap_or_else(|| "0".into())
}

/// A DS for `value / 10^places`, shifting the decimal point of `value`'s shortest form so that
/// the reader's exact decimal scaling gives back the same f64 (1220 nV → "1.22" uV).
fn ds_shifted(value: f64, places: usize) -> String {
    let text = value.to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let digits = format!("{int}{frac}");
    let point = int.len();
    let shifted = if point > places {
        format!("{}.{}", &digits[..point - places], &digits[point - places..])
    } else {
        format!("0.{}{digits}", "0".repeat(places - point))
    };
    let trimmed = if shifted.contains('.') { shifted.trim_end_matches('0').trim_end_matches('.') } else { &shifted };
    let trimmed = trimmed.trim_start_matches('0');
    let out = if trimmed.starts_with('.') { format!("0{trimmed}") } else { trimmed.to_string() };
    if out.len() <= 16 && !out.is_empty() {
        return out;
    }
    ds_value(value / 10f64.powi(places as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitivities_shift_exactly() {
        assert_eq!(ds_shifted(1250.0, 3), "1.25");
        assert_eq!(ds_shifted(2500.0, 3), "2.5");
        assert_eq!(ds_shifted(1220.0, 3), "1.22");
        assert_eq!(ds_shifted(183.0, 3), "0.183");
        assert_eq!(ds_shifted(5000.0, 3), "5");
        assert_eq!(ds_shifted(5.0, 3), "0.005");
        assert_eq!(ds_shifted(12345.0, 3), "12.345");
        assert!(ds_shifted(1e6 / 1716.0, 3).len() <= 16);
    }

    #[test]
    fn the_report_pdf_joins_the_ecg_study_and_comes_back_byte_exact() {
        use dicom_object::OpenFileOptions;
        use dicom_object::file::ReadPreamble;
        let mut rec = Recording::new(crate::recording::Format::Wfdb, "");
        rec.patient.name = "张伟".into();
        rec.patient.id = "MZ0001".into();
        rec.leads = ["I", "II"]
            .iter()
            .map(|n| Lead {
                name: (*n).into(),
                derived: false,
                sample_rate_hz: 500,
                resolution_nv: 1000.0,
                samples: vec![0, 5, -5, 0],
            })
            .collect();
        let pdf = b"%PDF-1.7 odd length".to_vec();
        assert_eq!(pdf.len() % 2, 1);
        let read = |bytes: &[u8]| {
            OpenFileOptions::new().read_preamble(ReadPreamble::Never).from_reader(&bytes[128..]).expect("parses")
        };
        let text = |o: &dicom_object::DefaultDicomObject, t: Tag| {
            o.element(t).expect("present").to_str().expect("text").trim_end_matches(['\0', ' ']).to_string()
        };
        let ecg = read(&write(&rec).expect("ecg"));
        let doc = read(&encapsulated_pdf(&rec, &pdf, "心电图诊断报告", None).expect("pdf"));
        assert_eq!(text(&doc, tags::SOP_CLASS_UID), uids::ENCAPSULATED_PDF_STORAGE);
        assert_eq!(text(&doc, tags::STUDY_INSTANCE_UID), text(&ecg, tags::STUDY_INSTANCE_UID));
        assert_ne!(text(&doc, tags::SERIES_INSTANCE_UID), text(&ecg, tags::SERIES_INSTANCE_UID));
        assert_eq!(text(&doc, tags::PATIENT_NAME), "张伟");
        assert_eq!(text(&doc, tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT), "application/pdf");
        let len = doc.element(tags::ENCAPSULATED_DOCUMENT_LENGTH).expect("length").to_int::<usize>().expect("int");
        let bytes = doc.element(tags::ENCAPSULATED_DOCUMENT).expect("doc").to_bytes().expect("bytes");
        assert_eq!(&bytes[..len], &pdf[..]);
        assert!(encapsulated_pdf(&rec, b"not a pdf", "x", None).is_err());
    }

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        assert_eq!(ds_value(161.0), "161");
        assert_eq!(ds_value(-61.0), "-61");
        assert!(ds_value(0.1 + 0.2).len() <= 16);
    }
}
