//! The SCP-ECG v2.0 writer: Sections 0, 1, 2 (default Huffman table), 3, 4/5 (reference beat,
//! when the recording has a median beat; never subtracted from the rhythm), 6, 7 (the global
//! measurements the reader understands, when there are any) and 8 (the interpretation statements).

use super::demographics::{LANGUAGE_AT, language, tag};
use super::error::ScpWriteError;
use super::huffman::{self, DEFAULT_MARKER};
use super::sections::{CRC, HEADER_LEN, SECTION0_AT};
use crate::lead;
use crate::recording::{Lead, Measurement, Recording, Sex};

/// Protocol and section version written (2.0).
const VERSION: u8 = 20;

/// Writes a recording as SCP-ECG v2.0.
///
/// # Errors
/// Leads without an SCP-ECG code, leads with differing rates or resolutions (Sections 5 and 6
/// store one of each), rates or resolutions that are not whole µs/nV, samples outside 16 bits,
/// and leads longer than Section 6's u16 byte counts allow.
pub fn write(rec: &Recording) -> Result<Vec<u8>, ScpWriteError> {
    if rec.leads.is_empty() {
        return Err(ScpWriteError::NoLeads);
    }
    if rec.leads.len() > usize::from(u8::MAX) {
        return Err(ScpWriteError::TooManyLeads { count: rec.leads.len() });
    }
    let codes = rec.leads.iter().map(|l| lead_code(&l.name)).collect::<Result<Vec<_>, _>>()?;
    let rhythm = DataParams::of(&rec.leads)?;
    let median = median_in_rhythm_order(rec)?;

    let mut sections: Vec<(u16, Vec<u8>)> =
        vec![(1, section1(rec)?), (2, DEFAULT_MARKER.to_le_bytes().to_vec()), (3, section3(&rec.leads, &codes))];
    if !median.is_empty() {
        let params = DataParams::of(&median)?;
        sections.push((4, section4(&median, params.interval_us)?));
        sections.push((5, data_section(5, &median, params, 0)?));
    }
    sections.push((6, data_section(6, &rec.leads, rhythm, 0)?));
    if let Some(body) = section7(&rec.measurements) {
        sections.push((7, body));
    }
    if !rec.interpretation.is_empty() {
        sections.push((8, section8(rec)?));
    }
    Ok(assemble(&sections))
}

/// The SCP-ECG code of a lead name; "SCP lead N" (how the reader names unknown codes) gives N.
fn lead_code(name: &str) -> Result<u8, ScpWriteError> {
    let code = lead::scp_code(name).or_else(|| name.strip_prefix("SCP lead ")?.parse().ok());
    code.and_then(|c| u8::try_from(c).ok()).ok_or_else(|| ScpWriteError::UnknownLead(name.to_string()))
}

/// The AVM and sample interval shared by a set of leads.
#[derive(Debug, Clone, Copy)]
struct DataParams {
    avm_nv: u16,
    interval_us: u16,
}

impl DataParams {
    fn of(leads: &[Lead]) -> Result<Self, ScpWriteError> {
        let first = leads.first().ok_or(ScpWriteError::NoLeads)?;
        for l in leads {
            if l.sample_rate_hz != first.sample_rate_hz {
                return Err(mixed("sample rate", first, l, |l| format!("{} Hz", l.sample_rate_hz)));
            }
            if l.resolution_nv.to_bits() != first.resolution_nv.to_bits() {
                return Err(mixed("resolution", first, l, |l| format!("{} nV", l.resolution_nv)));
            }
        }
        let rate = first.sample_rate_hz;
        let interval_us = (rate != 0 && 1_000_000 % rate == 0)
            .then(|| u16::try_from(1_000_000 / rate).ok())
            .flatten()
            .ok_or(ScpWriteError::Rate(rate))?;
        let res = first.resolution_nv;
        let avm_nv = (res.fract() == 0.0 && (1.0..=65535.0).contains(&res))
            .then_some(res as u16)
            .ok_or(ScpWriteError::Resolution(res))?;
        Ok(Self { avm_nv, interval_us })
    }
}

fn mixed(what: &'static str, first: &Lead, other: &Lead, show: impl Fn(&Lead) -> String) -> ScpWriteError {
    ScpWriteError::Mixed {
        what,
        first: first.name.clone(),
        expected: show(first),
        lead: other.name.clone(),
        found: show(other),
    }
}

/// The median beat with one lead per rhythm lead, in rhythm order (Section 5 parallels Section 3).
fn median_in_rhythm_order(rec: &Recording) -> Result<Vec<Lead>, ScpWriteError> {
    if rec.median_beat.is_empty() {
        return Ok(Vec::new());
    }
    if rec.median_beat.len() != rec.leads.len() {
        return Err(ScpWriteError::Median(format!(
            "{} median leads for {} rhythm leads; SCP-ECG stores one per rhythm lead",
            rec.median_beat.len(),
            rec.leads.len()
        )));
    }
    let mut out = Vec::with_capacity(rec.leads.len());
    for l in &rec.leads {
        let m =
            rec.median(&l.name).ok_or_else(|| ScpWriteError::Median(format!("no median beat for lead {}", l.name)))?;
        out.push(m.clone());
    }
    let len = out.first().map_or(0, |l| l.samples.len());
    if let Some(l) = out.iter().find(|l| l.samples.len() != len) {
        return Err(ScpWriteError::Median(format!(
            "lead {} has {} samples, others {len}; Section 4 gives one length",
            l.name,
            l.samples.len()
        )));
    }
    Ok(out)
}

/// Text in one charset for the whole of Section 1: ASCII, Latin-1, or GB 18030 (declared as GB 2312,
/// its subset, which is what Chinese readers expect; every character survives the round trip).
struct TextEncoder {
    language: u8,
}

impl TextEncoder {
    fn for_texts<'a>(texts: impl Iterator<Item = &'a str> + Clone) -> Self {
        let language = if texts.clone().all(str::is_ascii) {
            language::ASCII
        } else if texts.flat_map(str::chars).all(|c| c.is_ascii() || ('\u{A0}'..='\u{FF}').contains(&c)) {
            language::LATIN1
        } else {
            language::GB2312
        };
        Self { language }
    }

    fn encode(&self, text: &str) -> Vec<u8> {
        let mut out: Vec<u8> = match self.language {
            language::ASCII => text.as_bytes().to_vec(),
            language::LATIN1 => text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect(),
            _ => encoding_rs::GB18030.encode(text).0.into_owned(),
        };
        out.push(0);
        out
    }
}

/// Section 1: the patient, the device, the acquisition time and the clinic's question.
fn section1(rec: &Recording) -> Result<Vec<u8>, ScpWriteError> {
    let p = &rec.patient;
    let question_lines: Vec<&str> =
        rec.question.iter().flat_map(|q| q.lines()).map(str::trim).filter(|l| !l.is_empty()).collect();
    let texts = [p.id.as_str(), p.name.as_str(), rec.device.as_str()].into_iter().chain(question_lines.iter().copied());
    let enc = TextEncoder::for_texts(texts);

    let mut out = Vec::new();
    put_field(&mut out, tag::PATIENT_ID, &enc.encode(&p.id), "patient id")?;
    if !p.name.is_empty() {
        put_field(&mut out, tag::LAST_NAME, &enc.encode(&p.name), "patient name")?;
    }
    if let Some(age) = p.age_years {
        let mut v = age.to_le_bytes().to_vec();
        v.push(1);
        put_field(&mut out, tag::AGE, &v, "age")?;
    }
    if let Some(d) = p.birth_date {
        put_field(&mut out, tag::BIRTH_DATE, &date_bytes(d.year(), d.month(), d.day()), "date of birth")?;
    }
    let sex = match p.sex {
        Sex::Unknown => 0,
        Sex::Male => 1,
        Sex::Female => 2,
    };
    put_field(&mut out, tag::SEX, &[sex], "sex")?;
    for line in &question_lines {
        put_field(&mut out, tag::REFERRAL, &enc.encode(line), "question")?;
    }
    put_field(&mut out, tag::ACQUIRING_DEVICE, &device_field(&rec.device, &enc), "device")?;
    if let Some(t) = rec.acquired_at {
        put_field(&mut out, tag::DATE, &date_bytes(t.year(), t.month(), t.day()), "acquisition date")?;
        let time = [t.hour(), t.minute(), t.second()].map(|v| u8::try_from(v).unwrap_or(0));
        put_field(&mut out, tag::TIME, &time, "acquisition time")?;
    }
    out.extend_from_slice(&[tag::END, 0, 0]);
    Ok(out)
}

fn put_field(out: &mut Vec<u8>, t: u8, value: &[u8], field: &'static str) -> Result<(), ScpWriteError> {
    let len = u16::try_from(value.len()).map_err(|_| ScpWriteError::TextTooLong { field, len: value.len() })?;
    out.push(t);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
    Ok(())
}

fn date_bytes(year: i16, month: i8, day: i8) -> [u8; 4] {
    let y = u16::try_from(year).unwrap_or(0).to_le_bytes();
    [y[0], y[1], u8::try_from(month).unwrap_or(0), u8::try_from(day).unwrap_or(0)]
}

/// Tag 14. The free-text device goes in the manufacturer trade name with manufacturer code 0
/// (unknown), which is how the reader gives it back unchanged.
fn device_field(device: &str, enc: &TextEncoder) -> Vec<u8> {
    let mut v = vec![0u8; 36];
    if let Some(b) = v.get_mut(14) {
        *b = VERSION;
    }
    if let Some(b) = v.get_mut(LANGUAGE_AT) {
        *b = enc.language;
    }
    if let Some(b) = v.get_mut(35) {
        // Length of the analysing program revision string that follows (just its NUL).
        *b = 1;
    }
    // Analysing program revision, serial number, system software, SCP software, trade name.
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(b"Yilian\0");
    v.extend_from_slice(&enc.encode(device));
    v
}

/// Section 3: every lead from sample 1 to its length.
fn section3(leads: &[Lead], codes: &[u8]) -> Vec<u8> {
    let count = u8::try_from(leads.len()).unwrap_or(u8::MAX);
    let len = leads.first().map_or(0, |l| l.samples.len());
    let simultaneous = leads.iter().all(|l| l.samples.len() == len);
    let flags = if simultaneous && count < 32 { 0x04 | (count << 3) } else { 0 };
    let mut out = vec![count, flags];
    for (l, &code) in leads.iter().zip(codes) {
        let end = u32::try_from(l.samples.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&end.to_le_bytes());
        out.push(code);
    }
    out
}

/// Section 4: the reference beat length, no QRS locations (nothing is subtracted).
fn section4(median: &[Lead], interval_us: u16) -> Result<Vec<u8>, ScpWriteError> {
    let samples = median.first().map_or(0, |l| l.samples.len()) as u64;
    // Round up so the reader's ms × 1000 / interval gives the full beat back.
    let ms = (samples * u64::from(interval_us)).div_ceil(1000);
    let ms = u16::try_from(ms).map_err(|_| ScpWriteError::Median(format!("{ms} ms is longer than Section 4 holds")))?;
    let mut out = ms.to_le_bytes().to_vec();
    out.extend_from_slice(&[0, 0, 0, 0]);
    Ok(out)
}

/// Section 5 or 6: Huffman-coded with the default table, second differences when they fit.
fn data_section(id: u16, leads: &[Lead], params: DataParams, flag: u8) -> Result<Vec<u8>, ScpWriteError> {
    for l in leads {
        if let Some((index, &value)) = l.samples.iter().enumerate().find(|(_, v)| i16::try_from(**v).is_err()) {
            return Err(ScpWriteError::SampleRange { lead: l.name.clone(), index, value });
        }
    }
    // Second differences of 16-bit samples can leave 16 bits; fall back to first, then none.
    let (encoding, streams) = [2u8, 1, 0]
        .into_iter()
        .find_map(|e| leads.iter().map(|l| encode_lead(&l.samples, e)).collect::<Option<Vec<_>>>().map(|s| (e, s)))
        .ok_or(ScpWriteError::NoLeads)?;
    let mut out = Vec::new();
    out.extend_from_slice(&params.avm_nv.to_le_bytes());
    out.extend_from_slice(&params.interval_us.to_le_bytes());
    out.push(encoding);
    out.push(flag);
    for (l, s) in leads.iter().zip(&streams) {
        let n = u16::try_from(s.len()).map_err(|_| ScpWriteError::LeadTooLong {
            section: id,
            lead: l.name.clone(),
            bytes: s.len(),
        })?;
        out.extend_from_slice(&n.to_le_bytes());
    }
    for s in &streams {
        out.extend_from_slice(s);
    }
    Ok(out)
}

fn encode_lead(samples: &[i32], encoding: u8) -> Option<Vec<u8>> {
    let diffs: Vec<i32> = samples
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let p1 = i.checked_sub(1).and_then(|j| samples.get(j)).copied().unwrap_or(0);
            let p2 = i.checked_sub(2).and_then(|j| samples.get(j)).copied().unwrap_or(0);
            match (encoding, i) {
                (1, 1..) => x - p1,
                (2, 2..) => x - 2 * p1 + p2,
                _ => x,
            }
        })
        .collect();
    huffman::encode_default(&diffs).ok()
}

/// "Not computed" in Section 7.
const UNDEFINED: u16 = 29999;

/// Section 7 with one global measurement block, or `None` when no measurement fits it.
///
/// SCP-ECG stores wave boundaries, not intervals: P onset is put at 0 ms and the other
/// boundaries follow from P, PR, QRS and QT, which is what the reader turns back into intervals.
/// Values are whole ms and degrees; anything else is rounded.
fn section7(measurements: &[Measurement]) -> Option<Vec<u8>> {
    let find = |name: &str, unit: &str| {
        measurements.iter().find(|m| m.name == name && m.unit == unit).map(|m| m.value.round())
    };
    let ms = |name: &str| find(name, "ms").filter(|v| (0.0..29998.0).contains(v)).map(|v| v as u16);
    let rate = |name: &str| find(name, "/min").filter(|v| (1.0..29998.0).contains(v)).map(|v| v as u16);
    let axis = |name: &str| find(name, "deg").filter(|v| v.abs() < 29998.0).map(|v| v as i16);
    let (p, pr, qrs, qt) = (ms("P"), ms("PR"), ms("QRS"), ms("QT"));
    let (p_on, qrs_on) = match pr {
        Some(pr) => (Some(0), Some(pr)),
        None => (None, (qrs.is_some() || qt.is_some()).then_some(0)),
    };
    let after =
        |base: Option<u16>, d: Option<u16>| base.zip(d).and_then(|(b, d)| b.checked_add(d)).filter(|&v| v < 29998);
    let onsets = [p_on, after(p_on, p), qrs_on, after(qrs_on, qrs), after(qrs_on, qt)];
    let axes = [axis("P axis"), axis("QRS axis"), axis("T axis")];
    let extra = [rate("Heart rate"), rate("Atrial rate"), ms("QTc")];
    let (rr, pp) = (ms("RR"), ms("PP"));
    let any = onsets.iter().chain(&extra).chain([&rr, &pp]).any(Option::is_some) || axes.iter().any(Option::is_some);
    if !any {
        return None;
    }
    let mut out = vec![1u8, 0];
    for v in [rr, pp].into_iter().chain(onsets) {
        out.extend_from_slice(&v.unwrap_or(UNDEFINED).to_le_bytes());
    }
    for a in axes {
        out.extend_from_slice(&a.unwrap_or(UNDEFINED as i16).to_le_bytes());
    }
    // No QRS types; then ventricular rate, atrial rate, QTc (0 = not given), formula 0, no tagged fields.
    out.extend_from_slice(&[0, 0]);
    for v in extra {
        out.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
    }
    out.extend_from_slice(&[0, 0, 0]);
    Some(out)
}

/// Section 8: unconfirmed statements dated at acquisition.
fn section8(rec: &Recording) -> Result<Vec<u8>, ScpWriteError> {
    let enc = TextEncoder::for_texts(rec.interpretation.iter().map(String::as_str));
    let mut out = vec![0u8];
    match rec.acquired_at {
        Some(t) => {
            out.extend_from_slice(&date_bytes(t.year(), t.month(), t.day()));
            out.extend_from_slice(&[t.hour(), t.minute(), t.second()].map(|v| u8::try_from(v).unwrap_or(0)));
        }
        None => out.extend_from_slice(&[0; 7]),
    }
    let statements: Vec<&String> = rec.interpretation.iter().take(usize::from(u8::MAX)).collect();
    out.push(u8::try_from(statements.len()).unwrap_or(u8::MAX));
    for (i, s) in statements.iter().enumerate() {
        let text = enc.encode(s);
        let len = u16::try_from(text.len())
            .map_err(|_| ScpWriteError::TextTooLong { field: "interpretation statement", len: text.len() })?;
        out.push(u8::try_from(i + 1).unwrap_or(u8::MAX));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&text);
    }
    Ok(out)
}

/// Frames the section bodies, builds Section 0's pointers (sections 0-11 always listed) and the CRCs.
fn assemble(bodies: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let ids: Vec<u16> = (0..=11).chain(bodies.iter().map(|(id, _)| *id).filter(|&id| id > 11)).collect();
    let section0_len = HEADER_LEN + 10 * ids.len();
    let framed: Vec<(u16, Vec<u8>)> = bodies.iter().map(|(id, body)| (*id, frame(*id, body))).collect();

    let mut pointers = Vec::with_capacity(10 * ids.len());
    let mut at = SECTION0_AT + section0_len;
    for &id in &ids {
        let (len, index) = if id == 0 {
            (section0_len, SECTION0_AT + 1)
        } else if let Some((_, bytes)) = framed.iter().find(|(i, _)| *i == id) {
            let here = at;
            at += bytes.len();
            (bytes.len(), here + 1)
        } else {
            (0, 0)
        };
        pointers.extend_from_slice(&id.to_le_bytes());
        pointers.extend_from_slice(&(len as u32).to_le_bytes());
        pointers.extend_from_slice(&(index as u32).to_le_bytes());
    }

    let mut out = vec![0u8; SECTION0_AT];
    out.extend_from_slice(&frame(0, &pointers));
    for &id in &ids {
        if let Some((_, bytes)) = framed.iter().find(|(i, _)| *i == id) {
            out.extend_from_slice(bytes);
        }
    }
    let total = (out.len() as u32).to_le_bytes();
    if let Some(dst) = out.get_mut(2..6) {
        dst.copy_from_slice(&total);
    }
    let crc = CRC.checksum(out.get(2..).unwrap_or_default()).to_le_bytes();
    if let Some(dst) = out.get_mut(0..2) {
        dst.copy_from_slice(&crc);
    }
    out
}

/// A section with its 16-byte header, padded to an even length, CRC filled in.
fn frame(id: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 1);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&[VERSION, VERSION]);
    out.extend_from_slice(b"SCPECG");
    out.extend_from_slice(body);
    if out.len() % 2 == 1 {
        out.push(0);
    }
    let len = (out.len() as u32).to_le_bytes();
    if let Some(dst) = out.get_mut(4..8) {
        dst.copy_from_slice(&len);
    }
    let crc = CRC.checksum(out.get(2..).unwrap_or_default()).to_le_bytes();
    if let Some(dst) = out.get_mut(0..2) {
        dst.copy_from_slice(&crc);
    }
    out
}
