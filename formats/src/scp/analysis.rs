//! The cart's own analysis: Section 7 global measurements, Sections 8 and 11 interpretation.
//!
//! Section 7: number of measurement blocks, number of pacemaker spikes, mean RR and PP (ms), then
//! per block P onset/offset, QRS onset/offset, T offset (ms from the start of the reference beat)
//! and P/QRS/T axes (deg); after spikes and QRS types come ventricular rate, atrial rate, QTc.
//! 29999 means "not computed" (29998 "rejected"), so those are skipped.
//! Sections 8 and 11: confirmed flag, date, time, statement count, then statements (sequence u8,
//! length u16, text; Section 11 puts a type byte before the text).

use super::cursor::Cursor;
use super::demographics::TextDecoder;
use super::error::ScpError;
use super::sections::HEADER_LEN;
use crate::recording::Measurement;

/// Values at or above this mean "not computed" or "rejected".
const UNDEFINED: u16 = 29998;

/// Reads Section 7's first (global) measurement block and the rates/QTc that follow the spikes.
pub(super) fn measurements(body: &[u8], warnings: &mut Vec<String>) -> Vec<Measurement> {
    let mut out = Vec::new();
    if let Err(e) = read_measurements(body, &mut out) {
        warnings.push(format!("SCP-ECG Section 7 read in part: {e}"));
    }
    out
}

fn read_measurements(body: &[u8], out: &mut Vec<Measurement>) -> Result<(), ScpError> {
    let mut c = Cursor::new(body, 7, HEADER_LEN);
    let blocks = c.u8("the number of measurement blocks")?;
    let spikes = c.u8("the number of pacemaker spikes")?;
    let rr = c.u16("the mean RR interval")?;
    let pp = c.u16("the mean PP interval")?;
    push(out, "RR", rr, "ms");
    push(out, "PP", pp, "ms");
    for block in 0..blocks {
        let p_on = c.u16("P onset")?;
        let p_off = c.u16("P offset")?;
        let qrs_on = c.u16("QRS onset")?;
        let qrs_off = c.u16("QRS offset")?;
        let t_off = c.u16("T offset")?;
        let axes = [c.i16("P axis")?, c.i16("QRS axis")?, c.i16("T axis")?];
        // Block 0 is the global measurement; further blocks are per reference beat type.
        if block != 0 {
            continue;
        }
        push_interval(out, "P", p_on, p_off);
        push_interval(out, "PR", p_on, qrs_on);
        push_interval(out, "QRS", qrs_on, qrs_off);
        push_interval(out, "QT", qrs_on, t_off);
        for (name, axis) in ["P axis", "QRS axis", "T axis"].into_iter().zip(axes) {
            if i32::from(axis).unsigned_abs() < u32::from(UNDEFINED) {
                out.push(Measurement { name: name.into(), value: f64::from(axis), unit: "deg".into() });
            }
        }
    }
    // Pacemaker spikes (4 bytes each), then their info (6 bytes each), then QRS types.
    c.skip(usize::from(spikes) * 10, "the pacemaker spike data")?;
    let qrs = c.u16("the number of QRS complexes")?;
    c.skip(usize::from(qrs), "the QRS types")?;
    let ventricular = c.u16("the ventricular rate")?;
    let atrial = c.u16("the atrial rate")?;
    let qtc = c.u16("QTc")?;
    // Some writers put 0 for "not measured" here.
    if ventricular != 0 {
        push(out, "Heart rate", ventricular, "/min");
    }
    if atrial != 0 {
        push(out, "Atrial rate", atrial, "/min");
    }
    if qtc != 0 {
        push(out, "QTc", qtc, "ms");
    }
    Ok(())
}

fn push(out: &mut Vec<Measurement>, name: &str, value: u16, unit: &str) {
    if value < UNDEFINED {
        out.push(Measurement { name: name.into(), value: f64::from(value), unit: unit.into() });
    }
}

fn push_interval(out: &mut Vec<Measurement>, name: &str, from: u16, to: u16) {
    if from < UNDEFINED && to < UNDEFINED && to >= from {
        push(out, name, to - from, "ms");
    }
}

/// The statements of Section 8 (full text) or 11 (universal statements).
pub(super) fn statements(id: u16, body: &[u8], language: u8, warnings: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = read_statements(id, body, language, &mut out, warnings) {
        warnings.push(format!("SCP-ECG Section {id} read in part: {e}"));
    }
    out
}

fn read_statements(
    id: u16,
    body: &[u8],
    language: u8,
    out: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<(), ScpError> {
    let mut c = Cursor::new(body, id, HEADER_LEN);
    c.skip(1 + 4 + 3, "the confirmation flag, date and time")?;
    let count = c.u8("the number of statements")?;
    let mut text = TextDecoder::new(language);
    for _ in 0..count {
        c.u8("a statement's sequence number")?;
        let len = c.u16("a statement's length")?;
        let mut field = c.take(usize::from(len), "a statement")?;
        if id == 11 {
            // Type 1 coded acronym, 2 full text, 3 statement logic: only text is shown.
            let kind = field.first().copied();
            field = field.get(1..).unwrap_or_default();
            if kind == Some(3) {
                continue;
            }
        }
        // Several strings may share one statement, separated by NULs.
        let parts: Vec<String> =
            field.split(|&b| b == 0).map(|p| text.decode(p, warnings)).filter(|s| !s.is_empty()).collect();
        if !parts.is_empty() {
            out.push(parts.join(" "));
        }
    }
    Ok(())
}
