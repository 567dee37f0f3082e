//! DICOM waveform → [`Recording`].

use dicom_core::dictionary::UidDictionary;
use dicom_core::{PrimitiveValue, Tag};
use dicom_dictionary_std::{StandardSopClassDictionary, tags};
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use super::guard::{self, Meta};
use super::text::{self, Charset};
use super::{DicomError, codes};
use crate::lead;
use crate::recording::{Annotation, Format, Lead, Measurement, ReadOptions, Recording, Sex};

type Obj = InMemDicomObject;

/// Channel label suffix the writer uses for leads the device derived.
pub(crate) const DERIVED_MARK: &str = "(derived)";

pub(super) fn read(bytes: &[u8], opts: &ReadOptions) -> Result<Recording, DicomError> {
    let (meta, obj) = open(bytes, opts)?;
    let description = description(&meta, Some(&obj));
    let groups = obj.get(tags::WAVEFORM_SEQUENCE).and_then(|e| e.items()).unwrap_or(&[]);
    if groups.is_empty() {
        return Err(DicomError::NotEcg { description });
    }
    let sop = sop_class(&meta, &obj);
    let version = StandardSopClassDictionary.by_uid(&sop).map_or(sop.clone(), |e| e.name.to_string());
    let mut rec = Recording::new(Format::Dicom, version);
    let mut notes =
        Notes { charset: Charset::from_terms(&raw_text(&obj, tags::SPECIFIC_CHARACTER_SET)), warnings: vec![] };

    let mut decoded = Vec::with_capacity(groups.len());
    let mut total_leads = 0usize;
    for (i, group) in groups.iter().enumerate() {
        let g = decode_group(group, i + 1, opts, &mut notes)?;
        total_leads = total_leads.saturating_add(g.leads.len());
        if total_leads > opts.limits.max_leads {
            return Err(limit("leads in all multiplex groups", total_leads, opts.limits.max_leads));
        }
        decoded.push(g);
    }
    for g in &decoded {
        let target = if g.median { &mut rec.median_beat } else { &mut rec.leads };
        for (_, l) in &g.leads {
            if target.iter().any(|t| t.name == l.name) {
                notes.warn(format!(
                    "multiplex group {} ({}) repeats lead {}: the later copy is not shown",
                    g.number, g.label, l.name
                ));
            } else {
                target.push(l.clone());
            }
        }
    }
    if rec.leads.is_empty() && rec.median_beat.is_empty() {
        return Err(DicomError::NotEcg { description: format!("{description}, with no ECG lead channels") });
    }
    if rec.leads.is_empty() {
        notes.warn("the file has a median beat but no rhythm leads".to_string());
    }

    patient(&obj, &mut rec, &mut notes);
    annotations(&obj, &decoded, opts, &mut rec, &mut notes)?;
    rec.warnings = notes.warnings;
    Ok(rec)
}

/// What a DICOM file is; `None` when it is not DICOM at all.
pub(super) fn describe(bytes: &[u8], opts: &ReadOptions) -> Option<String> {
    match open(bytes, opts) {
        Ok((meta, obj)) => Some(description(&meta, Some(&obj))),
        Err(DicomError::NotEcg { description }) => Some(description),
        Err(_) => guard::meta(bytes).ok().map(|m| description(&m, None)),
    }
}

/// Checks the bytes, then parses them with dicom-rs.
fn open(bytes: &[u8], opts: &ReadOptions) -> Result<(Meta, Obj), DicomError> {
    if bytes.len() > opts.limits.max_input_bytes {
        return Err(DicomError::TooLarge { size: bytes.len(), limit: opts.limits.max_input_bytes });
    }
    let meta = guard::meta(bytes)?;
    if let Err(e) = guard::check_dataset(bytes, &meta) {
        // A CT image in a transfer syntax we do not walk is still "not an ECG", which is the
        // more useful answer.
        if matches!(e, DicomError::UnsupportedTransferSyntax { .. }) && !is_waveform_class(&meta.sop_class) {
            return Err(DicomError::NotEcg { description: description(&meta, None) });
        }
        return Err(e);
    }
    let options = OpenFileOptions::new();
    let parsed = match meta.magic_at {
        Some(128) => options.read_preamble(ReadPreamble::Always).from_reader(bytes),
        Some(_) => options.read_preamble(ReadPreamble::Never).from_reader(bytes),
        None => {
            let mut with_magic = Vec::with_capacity(bytes.len().saturating_add(4));
            with_magic.extend_from_slice(b"DICM");
            with_magic.extend_from_slice(bytes);
            options.read_preamble(ReadPreamble::Never).from_reader(&with_magic[..])
        }
    };
    let file = parsed.map_err(|e| DicomError::Parse(e.to_string()))?;
    Ok((meta, file.into_inner()))
}

/// Waveform storage SOP classes all live under 1.2.840.10008.5.1.4.1.1.9.
fn is_waveform_class(uid: &str) -> bool {
    uid.starts_with("1.2.840.10008.5.1.4.1.1.9.")
}

fn sop_class(meta: &Meta, obj: &Obj) -> String {
    let from_data = raw_text(obj, tags::SOP_CLASS_UID);
    if from_data.is_empty() { meta.sop_class.clone() } else { from_data }
}

/// "DICOM CT Image Storage (1.2.840.10008.5.1.4.1.1.2), modality CT".
fn description(meta: &Meta, obj: Option<&Obj>) -> String {
    let uid = obj.map_or_else(|| meta.sop_class.clone(), |o| sop_class(meta, o));
    let mut out = match StandardSopClassDictionary.by_uid(&uid) {
        Some(entry) => format!("DICOM {} ({uid})", entry.name),
        None if uid.is_empty() => "DICOM object without a SOP class".to_string(),
        None => format!("DICOM object of SOP class {uid}"),
    };
    let modality = obj.map(|o| raw_text(o, tags::MODALITY)).unwrap_or_default();
    if !modality.is_empty() {
        out.push_str(", modality ");
        out.push_str(&modality);
    }
    out
}

/// Warnings collected while reading, and the charset to decode text with.
struct Notes {
    charset: Charset,
    warnings: Vec<String>,
}

impl Notes {
    fn warn(&mut self, w: String) {
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// A text attribute decoded to UTF-8 through the file's charset.
    fn text(&mut self, obj: &Obj, tag: Tag) -> String {
        let raw = raw_text(obj, tag);
        let (fixed, note) = self.charset.fix(&raw);
        if let Some(note) = note {
            self.warn(note.to_string());
        }
        fixed.trim().to_string()
    }
}

/// A string attribute as dicom-rs decoded it, trimmed; empty when absent or not text.
fn raw_text(obj: &Obj, tag: Tag) -> String {
    let Some(e) = obj.get(tag) else { return String::new() };
    match e.value().primitive() {
        Some(PrimitiveValue::Str(s)) => s.trim_matches(['\0', ' ']).to_string(),
        Some(PrimitiveValue::Strs(v)) => v.join("\\").trim_matches(['\0', ' ']).to_string(),
        Some(p @ (PrimitiveValue::Date(_) | PrimitiveValue::Time(_) | PrimitiveValue::DateTime(_))) => {
            p.to_str().trim().to_string()
        }
        _ => String::new(),
    }
}

/// The first item of a code sequence as (value, scheme, meaning).
fn code(obj: &Obj, seq: Tag, notes: &mut Notes) -> Option<(String, String, String)> {
    let item = obj.get(seq)?.items()?.first()?;
    Some((
        raw_text(item, tags::CODE_VALUE),
        raw_text(item, tags::CODING_SCHEME_DESIGNATOR),
        notes.text(item, tags::CODE_MEANING),
    ))
}

/// An unsigned integer attribute (US, UL, IS).
fn uint(obj: &Obj, tag: Tag) -> Option<u64> {
    obj.get(tag)?.to_int::<u64>().ok()
}

/// All values of an unsigned integer attribute.
fn uints(obj: &Obj, tag: Tag) -> Vec<u64> {
    obj.get(tag).and_then(|e| e.to_multi_int::<u64>().ok()).unwrap_or_default()
}

fn limit(what: &str, found: usize, limit: usize) -> DicomError {
    DicomError::Limit { what: what.to_string(), found: found as u64, limit: limit as u64 }
}

/// One decoded multiplex group.
struct Group {
    number: usize,
    label: String,
    median: bool,
    rate: u32,
    /// (channel number, 1-based as annotations reference it; lead).
    leads: Vec<(usize, Lead)>,
}

/// How stored samples are encoded.
#[derive(Clone, Copy)]
enum SampleKind {
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
}

impl SampleKind {
    fn bytes(self) -> usize {
        match self {
            Self::S8 | Self::U8 => 1,
            Self::S16 | Self::U16 => 2,
            Self::S32 | Self::U32 => 4,
        }
    }

    /// Decodes one little-endian sample; `None` for an unsigned 32-bit value beyond i32.
    fn decode(self, b: &[u8]) -> Option<i32> {
        let a = |i: usize| b.get(i).copied();
        Some(match self {
            Self::S8 => i32::from(i8::from_le_bytes([a(0)?])),
            Self::U8 => i32::from(a(0)?),
            Self::S16 => i32::from(i16::from_le_bytes([a(0)?, a(1)?])),
            Self::U16 => i32::from(u16::from_le_bytes([a(0)?, a(1)?])),
            Self::S32 => i32::from_le_bytes([a(0)?, a(1)?, a(2)?, a(3)?]),
            Self::U32 => i32::try_from(u32::from_le_bytes([a(0)?, a(1)?, a(2)?, a(3)?])).ok()?,
        })
    }
}

fn decode_group(item: &Obj, number: usize, opts: &ReadOptions, notes: &mut Notes) -> Result<Group, DicomError> {
    let invalid = |what: String| DicomError::Invalid { group: number, what };
    let label = raw_text(item, tags::MULTIPLEX_GROUP_LABEL);
    let upper = label.to_ascii_uppercase();
    let median = ["MEDIAN", "REPRESENTATIVE", "AVERAGE", "TEMPLATE"].iter().any(|k| upper.contains(k));
    let shown = if label.is_empty() { "unlabelled".to_string() } else { label.clone() };

    let channels = uint(item, tags::NUMBER_OF_WAVEFORM_CHANNELS)
        .ok_or_else(|| invalid("no Number of Waveform Channels".into()))?;
    let channels = usize::try_from(channels).map_err(|_| invalid(format!("{channels} channels")))?;
    if channels == 0 {
        return Err(invalid("Number of Waveform Channels is 0".into()));
    }
    if channels > opts.limits.max_leads {
        return Err(limit(&format!("channels in multiplex group {number}"), channels, opts.limits.max_leads));
    }
    let samples =
        uint(item, tags::NUMBER_OF_WAVEFORM_SAMPLES).ok_or_else(|| invalid("no Number of Waveform Samples".into()))?;
    let samples = usize::try_from(samples).map_err(|_| invalid(format!("{samples} samples")))?;
    if samples > opts.limits.max_samples_per_lead {
        return Err(limit(
            &format!("samples per channel in multiplex group {number}"),
            samples,
            opts.limits.max_samples_per_lead,
        ));
    }
    let rate_text = raw_text(item, tags::SAMPLING_FREQUENCY);
    let rate = text::decimal(&rate_text, 0)
        .filter(|r| *r >= 0.5 && *r < f64::from(u32::MAX))
        .ok_or_else(|| invalid(format!("Sampling Frequency \"{rate_text}\" is not a usable rate")))?;
    if rate.fract() != 0.0 {
        notes.warn(format!("multiplex group {number} ({shown}): sampling frequency {rate} Hz rounded to whole Hz"));
    }
    // In range by the filter above.
    let rate = rate.round() as u32;

    let kind = sample_kind(item, number)?;
    let data = waveform_bytes(item).ok_or_else(|| invalid("no Waveform Data".into()))?;
    let frame_bytes = channels.checked_mul(kind.bytes()).ok_or_else(|| invalid("frame size overflows".into()))?;
    let expected = frame_bytes.checked_mul(samples).ok_or_else(|| invalid("data size overflows".into()))?;
    let frames = if data.len() < expected {
        let have = data.len() / frame_bytes;
        notes.warn(format!(
            "multiplex group {number} ({shown}): Waveform Data holds {have} of the {samples} samples per channel it declares"
        ));
        have
    } else {
        // One byte more is OB/OW padding to an even length.
        if data.len() > expected.saturating_add(1) {
            notes.warn(format!(
                "multiplex group {number} ({shown}): {} bytes after the declared samples are ignored",
                data.len() - expected
            ));
        }
        samples
    };

    let mut columns: Vec<Vec<i32>> = (0..channels).map(|_| Vec::with_capacity(frames)).collect();
    for (f, frame) in data.chunks_exact(frame_bytes).take(frames).enumerate() {
        for (column, raw) in columns.iter_mut().zip(frame.chunks_exact(kind.bytes())) {
            let v = kind.decode(raw).ok_or_else(|| DicomError::Unsupported {
                group: number,
                what: format!("sample {f} is beyond the 32-bit signed range"),
            })?;
            column.push(v);
        }
    }
    let absent = mask_padding(item, kind, number, &shown, &mut columns, notes);

    let defs = item.get(tags::CHANNEL_DEFINITION_SEQUENCE).and_then(|e| e.items()).unwrap_or(&[]);
    if defs.len() != channels {
        return Err(invalid(format!("{} channel definitions for {channels} channels", defs.len())));
    }
    let mut leads = Vec::new();
    let mut skipped = Vec::new();
    for (c, (def, column)) in defs.iter().zip(columns).enumerate() {
        let Some(lead) = channel(def, number, c + 1, rate, column, notes)? else {
            let (value, scheme, meaning) = code(def, tags::CHANNEL_SOURCE_SEQUENCE, notes).unwrap_or_default();
            skipped.push(if meaning.is_empty() { format!("{scheme} {value}") } else { meaning });
            continue;
        };
        if absent.contains(&c) {
            notes.warn(format!(
                "multiplex group {number} ({shown}): lead {} holds only the padding value; treated as absent",
                lead.name
            ));
            continue;
        }
        if leads.iter().any(|(_, l): &(usize, Lead)| l.name == lead.name) {
            notes.warn(format!(
                "multiplex group {number} ({shown}): lead {} appears twice; the second is not shown",
                lead.name
            ));
            continue;
        }
        leads.push((c + 1, lead));
    }
    if !skipped.is_empty() {
        notes.warn(format!(
            "multiplex group {number} ({shown}): {} channel(s) are not ECG leads and are not shown: {}",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    Ok(Group { number, label: shown, median, rate, leads })
}

fn sample_kind(item: &Obj, group: usize) -> Result<SampleKind, DicomError> {
    let bits = uint(item, tags::WAVEFORM_BITS_ALLOCATED);
    let interp = raw_text(item, tags::WAVEFORM_SAMPLE_INTERPRETATION).to_ascii_uppercase();
    let kind = match interp.as_str() {
        "SB" => SampleKind::S8,
        "UB" => SampleKind::U8,
        "SS" => SampleKind::S16,
        "US" => SampleKind::U16,
        "SL" => SampleKind::S32,
        "UL" => SampleKind::U32,
        _ => {
            return Err(DicomError::Unsupported {
                group,
                what: format!("Waveform Sample Interpretation \"{interp}\" (SB, UB, SS, US, SL and UL are read)"),
            });
        }
    };
    let want = (kind.bytes() * 8) as u64;
    match bits {
        Some(b) if b == want => Ok(kind),
        Some(b) => Err(DicomError::Unsupported {
            group,
            what: format!("Waveform Bits Allocated {b} with sample interpretation {interp} (expected {want})"),
        }),
        None => Err(DicomError::Invalid { group, what: "no Waveform Bits Allocated".into() }),
    }
}

/// The Waveform Data bytes in little-endian order, whatever VR dicom-rs gave them (OW from an
/// implicit VR file comes back as u16 words).
fn waveform_bytes(item: &Obj) -> Option<Vec<u8>> {
    Some(match item.get(tags::WAVEFORM_DATA)?.value().primitive()? {
        PrimitiveValue::U8(v) => v.to_vec(),
        PrimitiveValue::U16(v) => v.iter().flat_map(|w| w.to_le_bytes()).collect(),
        PrimitiveValue::I16(v) => v.iter().flat_map(|w| w.to_le_bytes()).collect(),
        PrimitiveValue::U32(v) => v.iter().flat_map(|w| w.to_le_bytes()).collect(),
        PrimitiveValue::I32(v) => v.iter().flat_map(|w| w.to_le_bytes()).collect(),
        PrimitiveValue::Empty => Vec::new(),
        _ => return None,
    })
}

/// The padding value of a group, and whether the file declared it.
fn padding_value(item: &Obj, kind: SampleKind) -> Option<(i32, bool)> {
    if let Some(bytes) = waveform_bytes_of(item, tags::WAVEFORM_PADDING_VALUE) {
        return kind.decode(&bytes).map(|v| (v, true));
    }
    // Carts that pad without declaring it (ECG Toolkit's median beat) use the most negative
    // 16-bit value, which no ECG amplifier produces.
    matches!(kind, SampleKind::S16).then_some((i32::from(i16::MIN), false))
}

fn waveform_bytes_of(item: &Obj, tag: Tag) -> Option<Vec<u8>> {
    Some(match item.get(tag)?.value().primitive()? {
        PrimitiveValue::U8(v) => v.to_vec(),
        PrimitiveValue::U16(v) => v.iter().flat_map(|w| w.to_le_bytes()).collect(),
        PrimitiveValue::I16(v) => v.iter().flat_map(|w| w.to_le_bytes()).collect(),
        _ => return None,
    })
}

/// Drops trailing padding frames, replaces padding frames inside the recording with 0 (the
/// channel's stored zero) with a warning, and returns the channels that hold nothing but
/// padding. A frame counts as padding only when every channel holds the padding value: ECG
/// Toolkit declares padding 0, and a single channel crossing zero is not padding.
fn mask_padding(
    item: &Obj,
    kind: SampleKind,
    group: usize,
    shown: &str,
    columns: &mut [Vec<i32>],
    notes: &mut Notes,
) -> Vec<usize> {
    let Some((pad, declared)) = padding_value(item, kind) else { return vec![] };
    let frames = columns.first().map_or(0, Vec::len);
    let is_pad = |f: usize, cols: &[Vec<i32>]| cols.iter().all(|c| c.get(f) == Some(&pad));
    let mut keep = frames;
    while keep > 0 && is_pad(keep - 1, columns) {
        keep -= 1;
    }
    let trailing = frames - keep;
    if trailing > 0 {
        for c in columns.iter_mut() {
            c.truncate(keep);
        }
        if !declared {
            notes.warn(format!(
                "multiplex group {group} ({shown}): the last {trailing} sample(s) of every channel are {pad} with no \
                 Waveform Padding Value declared; treated as padding and dropped"
            ));
        }
    }
    let absent: Vec<usize> = if declared && keep > 0 {
        columns.iter().enumerate().filter(|(_, c)| c.iter().all(|&s| s == pad)).map(|(i, _)| i).collect()
    } else {
        vec![]
    };
    let interior: Vec<usize> = (0..keep).filter(|&f| is_pad(f, columns)).collect();
    if !interior.is_empty() {
        for c in columns.iter_mut() {
            for &f in &interior {
                if let Some(s) = c.get_mut(f) {
                    *s = 0;
                }
            }
        }
        notes.warn(format!(
            "multiplex group {group} ({shown}): {} sample(s) per channel inside the recording are padding (value {pad}) \
             and are drawn at the baseline",
            interior.len()
        ));
    }
    absent
}

/// One channel as a lead, or `None` when it is not an ECG lead (pressure, respiration...).
fn channel(
    def: &Obj,
    group: usize,
    number: usize,
    rate: u32,
    stored: Vec<i32>,
    notes: &mut Notes,
) -> Result<Option<Lead>, DicomError> {
    let (value, scheme, meaning) = code(def, tags::CHANNEL_SOURCE_SEQUENCE, notes).unwrap_or_default();
    let units = code(def, tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE, notes);
    let label = notes.text(def, tags::CHANNEL_LABEL);
    let name = match lead::from_dicom_code(&scheme, &value) {
        Some(n) => n.to_string(),
        None => match lead_from_meaning(&scheme, &value, &meaning) {
            Some(n) => {
                if scheme != codes::PRIVATE_SCHEME {
                    notes.warn(format!(
                        "multiplex group {group}, channel {number}: source code {scheme} \"{value}\" is not a lead code; \
                         lead {n} taken from its meaning \"{meaning}\""
                    ));
                }
                n
            }
            None => return Ok(None),
        },
    };
    let Some((unit_value, _, unit_meaning)) = units else {
        return Err(DicomError::Invalid {
            group,
            what: format!("lead {name} has no Channel Sensitivity Units; its amplitude would be a guess"),
        });
    };
    let Some(power) = codes::volt_power_to_nv(&unit_value, &unit_meaning) else {
        return Err(DicomError::Unsupported {
            group,
            what: format!("sensitivity unit \"{unit_value}\" ({unit_meaning}) for lead {name}"),
        });
    };
    let sens_text = raw_text(def, tags::CHANNEL_SENSITIVITY);
    let corr_text = raw_text(def, tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR);
    let sensitivity = text::decimal(&sens_text, power).ok_or_else(|| DicomError::Invalid {
        group,
        what: format!("lead {name}: Channel Sensitivity \"{sens_text}\" is not a number"),
    })?;
    let correction = if corr_text.is_empty() {
        1.0
    } else {
        text::decimal(&corr_text, 0).ok_or_else(|| DicomError::Invalid {
            group,
            what: format!("lead {name}: Channel Sensitivity Correction Factor \"{corr_text}\" is not a number"),
        })?
    };
    let resolution_nv = if correction == 1.0 { sensitivity } else { sensitivity * correction };
    if !(resolution_nv.is_finite() && resolution_nv > 0.0) {
        return Err(DicomError::Invalid {
            group,
            what: format!("lead {name}: sensitivity {sens_text} × {corr_text} is not a positive resolution"),
        });
    }
    let baseline_text = raw_text(def, tags::CHANNEL_BASELINE);
    let baseline_nv = if baseline_text.is_empty() { 0.0 } else { text::decimal(&baseline_text, power).unwrap_or(0.0) };
    // Stored 0 means `baseline` in the sensitivity units, so the baseline-free sample is
    // stored + baseline / resolution.
    let offset = baseline_nv / resolution_nv;
    let whole = offset.round();
    if (offset - whole).abs() > 1e-6 {
        notes.warn(format!(
            "multiplex group {group}, lead {name}: Channel Baseline {baseline_text} is {offset:.3} LSB, not a whole \
             number; rounded to {whole}"
        ));
    }
    if whole.abs() > f64::from(i32::MAX) {
        return Err(DicomError::Invalid {
            group,
            what: format!("lead {name}: Channel Baseline {baseline_text} is out of range"),
        });
    }
    // In range by the check above.
    let offset = whole as i64;
    let samples = if offset == 0 {
        stored
    } else {
        stored.into_iter().map(|s| i32::try_from(i64::from(s) + offset)).collect::<Result<Vec<i32>, _>>().map_err(
            |_| DicomError::Invalid {
                group,
                what: format!("lead {name}: a sample plus the baseline leaves the 32-bit range"),
            },
        )?
    };
    let derived = label.to_ascii_lowercase().ends_with(DERIVED_MARK);
    Ok(Some(Lead { name, derived, sample_rate_hz: rate, resolution_nv, samples }))
}

/// A lead from a code meaning such as "Lead V7" or (Yilian's private scheme) the code itself.
fn lead_from_meaning(scheme: &str, value: &str, meaning: &str) -> Option<String> {
    if scheme == codes::PRIVATE_SCHEME && !value.trim().is_empty() {
        return Some(lead::canonical(meaning.trim().strip_prefix("Lead ").unwrap_or(value)));
    }
    let rest = meaning.trim().strip_prefix("Lead ")?;
    let first = rest.split([' ', '(']).next()?;
    lead::scp_code(first).map(|_| lead::canonical(first))
}

fn patient(obj: &Obj, rec: &mut Recording, notes: &mut Notes) {
    rec.patient.name = text::person_name(&notes.text(obj, tags::PATIENT_NAME));
    rec.patient.id = notes.text(obj, tags::PATIENT_ID);
    rec.patient.birth_date = text::date(&raw_text(obj, tags::PATIENT_BIRTH_DATE));
    rec.patient.sex = match raw_text(obj, tags::PATIENT_SEX).to_ascii_uppercase().as_str() {
        "M" => Sex::Male,
        "F" => Sex::Female,
        _ => Sex::Unknown,
    };
    rec.patient.age_years = text::age_years(&raw_text(obj, tags::PATIENT_AGE));
    let tm = |t| Some(raw_text(obj, t)).filter(|s| !s.is_empty());
    rec.acquired_at = text::date_time(&raw_text(obj, tags::ACQUISITION_DATE_TIME))
        .or_else(|| text::date_and_time(&raw_text(obj, tags::CONTENT_DATE), tm(tags::CONTENT_TIME).as_deref()))
        .or_else(|| text::date_and_time(&raw_text(obj, tags::STUDY_DATE), tm(tags::STUDY_TIME).as_deref()));
    let manufacturer = notes.text(obj, tags::MANUFACTURER);
    let model = notes.text(obj, tags::MANUFACTURER_MODEL_NAME);
    rec.device = [manufacturer, model].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
}

/// WaveformAnnotationSequence → measurements, interpretation and annotations.
fn annotations(
    obj: &Obj,
    groups: &[Group],
    opts: &ReadOptions,
    rec: &mut Recording,
    notes: &mut Notes,
) -> Result<(), DicomError> {
    let items = obj.get(tags::WAVEFORM_ANNOTATION_SEQUENCE).and_then(|e| e.items()).unwrap_or(&[]);
    let first_rhythm = groups.iter().find(|g| !g.median && !g.leads.is_empty());
    let mut on_median = 0usize;
    let mut unplaced = 0usize;
    let mut axis_in_ms = false;
    for item in items {
        let refs = uints(item, tags::REFERENCED_WAVEFORM_CHANNELS);
        let text_value = notes.text(item, tags::UNFORMATTED_TEXT_VALUE);
        let concept = code(item, tags::CONCEPT_NAME_CODE_SEQUENCE, notes);
        let numeric = raw_text(item, tags::NUMERIC_VALUE);
        let positions = uints(item, tags::REFERENCED_SAMPLE_POSITIONS);
        let offsets: Vec<f64> = obj_floats(item, tags::REFERENCED_TIME_OFFSETS);

        if let (Some((value, scheme, meaning)), false) = (&concept, numeric.is_empty()) {
            let Some(v) = text::decimal(&numeric, 0) else {
                notes.warn(format!("measurement {meaning}: value \"{numeric}\" is not a number; not shown"));
                continue;
            };
            let (name, is_axis) = codes::measurement_name(value, scheme, meaning);
            let unit_code = code(item, tags::MEASUREMENT_UNITS_CODE_SEQUENCE, notes).map(|c| c.0).unwrap_or_default();
            let mut unit = codes::unit_from_ucum(&unit_code);
            if is_axis && unit != "deg" {
                axis_in_ms |= unit == "ms";
                unit = "deg".into();
            }
            rec.measurements.push(Measurement { name, value: v, unit });
            continue;
        }
        if !positions.is_empty() || !offsets.is_empty() {
            let group = refs.first().and_then(|&g| usize::try_from(g).ok());
            let target = match group {
                Some(n) => groups.iter().find(|g| g.number == n),
                None => first_rhythm,
            };
            let (Some(target), Some(base)) = (target, first_rhythm) else {
                unplaced += 1;
                continue;
            };
            if target.median {
                on_median += 1;
                continue;
            }
            let channel = refs.get(1).and_then(|&c| usize::try_from(c).ok()).filter(|&c| c > 0);
            let lead = channel.and_then(|c| target.leads.iter().find(|(n, _)| *n == c)).map(|(_, l)| l.name.clone());
            let label = match &concept {
                Some((_, _, meaning)) if !meaning.is_empty() => meaning.clone(),
                Some((value, _, _)) if !value.is_empty() => value.clone(),
                _ => "annotation".to_string(),
            };
            let text = Some(text_value.clone()).filter(|t| !t.is_empty());
            // Positions are 1-based; time offsets are seconds from the group start.
            let indices = positions
                .iter()
                .map(|&p| p.saturating_sub(1) as f64)
                .chain(offsets.iter().map(|&s| s * f64::from(target.rate)));
            for index in indices {
                let on_base = (index * f64::from(base.rate) / f64::from(target.rate)).round();
                if !(on_base.is_finite() && on_base >= 0.0) {
                    unplaced += 1;
                    continue;
                }
                if rec.annotations.len() >= opts.limits.max_annotations {
                    return Err(limit("annotations", rec.annotations.len() + 1, opts.limits.max_annotations));
                }
                // Finite and non-negative, so the cast saturates at worst.
                rec.annotations.push(Annotation {
                    sample: on_base as u64,
                    lead: lead.clone(),
                    label: label.clone(),
                    text: text.clone(),
                });
            }
            continue;
        }
        if !text_value.is_empty() {
            rec.interpretation.push(text_value);
        } else if let Some((_, _, meaning)) = code(item, tags::CONCEPT_CODE_SEQUENCE, notes)
            && !meaning.is_empty()
        {
            rec.interpretation.push(meaning);
        }
    }
    if axis_in_ms {
        notes.warn("the file gives the electrical axes in \"ms\"; they are shown in degrees".into());
    }
    if on_median > 0 {
        notes.warn(format!("{on_median} annotation(s) mark points on the median beat and are not shown"));
    }
    if unplaced > 0 {
        notes.warn(format!("{unplaced} annotation(s) reference no rhythm multiplex group and are not shown"));
    }
    Ok(())
}

fn obj_floats(obj: &Obj, tag: Tag) -> Vec<f64> {
    let raw = raw_text(obj, tag);
    if raw.is_empty() {
        return vec![];
    }
    raw.split('\\').filter_map(|s| text::decimal(s, 0)).collect()
}
