//! Sections 3-6: lead definitions, QRS locations, the reference beat and the rhythm data.
//!
//! Section 3: lead count, flags (bit 0 reference beat subtracted, bit 2 all leads simultaneous,
//! bits 3-7 how many simultaneous), then per lead start and end sample (1-based, inclusive) and
//! the lead code. Section 4: reference beat length (ms), its fiducial sample (1-based), and
//! per QRS the beat type and subtraction zone (start, fiducial, end; absolute 1-based samples).
//! Sections 5 (reference beat) and 6 (rhythm): AVM (nV), sample interval (µs), difference
//! encoding, a flag (Section 6: bimodal compression), per lead a u16 byte count, then the data.

use super::cursor::Cursor;
use super::error::ScpError;
use super::huffman::{self, Coding};
use super::sections::{HEADER_LEN, Record};
use crate::lead;
use crate::recording::{Lead, Limits};

/// One lead of Section 3.
#[derive(Debug, Clone)]
pub(super) struct LeadDef {
    /// Canonical name, or "SCP lead N" for codes Yilian does not know.
    pub name: String,
    /// First sample (1-based as the standard says; some writers put 0).
    pub start: u32,
    /// Last sample, inclusive.
    pub end: u32,
}

impl LeadDef {
    /// Samples the lead declares. A start of 0 is read as a 0-based start with an exclusive end,
    /// which is what the writers that put 0 there mean (the data holds exactly `end` samples).
    fn declared(&self) -> u64 {
        if self.start == 0 {
            u64::from(self.end)
        } else {
            (u64::from(self.end) + 1).saturating_sub(u64::from(self.start))
        }
    }

    /// The 1-based number of the lead's first sample.
    fn first(&self) -> u64 {
        u64::from(self.start.max(1))
    }
}

/// Section 3.
#[derive(Debug)]
pub(super) struct LeadTable {
    /// The flags byte.
    pub flags: u8,
    /// Leads in file order.
    pub leads: Vec<LeadDef>,
}

/// Section 3 flag: the reference beat was subtracted from the rhythm data.
const SUBTRACTED: u8 = 0x01;

/// Reads Section 3.
pub(super) fn parse_section3(body: &[u8], limits: &Limits, warnings: &mut Vec<String>) -> Result<LeadTable, ScpError> {
    let mut c = Cursor::new(body, 3, HEADER_LEN);
    let count = usize::from(c.u8("the number of leads")?);
    let flags = c.u8("the lead flags")?;
    if count > limits.max_leads {
        return Err(ScpError::TooManyLeads { section: 3, count, limit: limits.max_leads });
    }
    let mut leads = Vec::with_capacity(count);
    for _ in 0..count {
        let start = c.u32("a lead's start sample")?;
        let end = c.u32("a lead's end sample")?;
        let code = c.u8("a lead's code")?;
        let name = lead::from_scp(u16::from(code)).map(str::to_string).unwrap_or_else(|| format!("SCP lead {code}"));
        // end = start − 1 is an empty lead; anything earlier makes no sense.
        if u64::from(end) + 1 < u64::from(start) {
            return Err(ScpError::InvalidValue {
                section: 3,
                what: "a lead's end sample (before its start)",
                value: end.into(),
            });
        }
        leads.push(LeadDef { name, start, end });
    }
    if leads.iter().any(|l| l.start == 0) {
        warnings.push(
            "SCP-ECG Section 3 numbers samples from 0 (the standard counts from 1); lead lengths read as end − start"
                .into(),
        );
    }
    if let Some(first) = leads.first()
        && let Some(other) = leads.iter().find(|l| l.first() != first.first())
    {
        warnings.push(format!(
            "SCP-ECG leads were not all recorded at the same time: lead {} starts at sample {}, lead {} at sample {}",
            first.name,
            first.first(),
            other.name,
            other.first()
        ));
    }
    Ok(LeadTable { flags, leads })
}

/// Section 4 as far as the reference beat needs it.
#[derive(Debug)]
struct QrsLocations {
    /// Reference beat length in ms.
    beat_ms: u16,
    /// 1-based fiducial sample inside the reference beat.
    fiducial: u16,
    /// (beat type, subtraction start, fiducial, subtraction end), absolute 1-based samples.
    zones: Vec<(u16, u32, u32, u32)>,
}

fn parse_section4(body: &[u8]) -> Result<QrsLocations, ScpError> {
    let mut c = Cursor::new(body, 4, HEADER_LEN);
    let beat_ms = c.u16("the reference beat length")?;
    let fiducial = c.u16("the reference beat fiducial")?;
    let count = c.u16("the number of QRS complexes")?;
    if usize::from(count).saturating_mul(14) > c.remaining() {
        return Err(ScpError::Truncated { section: 4, offset: HEADER_LEN + 6, what: "the QRS subtraction zones" });
    }
    let mut zones = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let kind = c.u16("a QRS beat type")?;
        let start = c.u32("a subtraction zone start")?;
        let fid = c.u32("a QRS fiducial")?;
        let end = c.u32("a subtraction zone end")?;
        zones.push((kind, start, fid, end));
    }
    Ok(QrsLocations { beat_ms, fiducial, zones })
}

/// The common head of Sections 5 and 6.
#[derive(Debug)]
struct DataSection<'a> {
    id: u16,
    avm_nv: u16,
    interval_us: u16,
    encoding: u8,
    flag: u8,
    /// Each lead's bytes (possibly fewer than its byte count says, with a warning).
    data: Vec<&'a [u8]>,
}

fn parse_data_section<'a>(
    id: u16,
    body: &'a [u8],
    leads: &[LeadDef],
    warnings: &mut Vec<String>,
) -> Result<DataSection<'a>, ScpError> {
    let mut c = Cursor::new(body, id, HEADER_LEN);
    let avm_nv = c.u16("the amplitude value multiplier")?;
    let interval_us = c.u16("the sample interval")?;
    let encoding = c.u8("the difference encoding")?;
    let flag = c.u8(if id == 6 { "the bimodal compression flag" } else { "a reserved byte" })?;
    if avm_nv == 0 {
        return Err(ScpError::InvalidValue { section: id, what: "the amplitude value multiplier (nV)", value: 0 });
    }
    if interval_us == 0 {
        return Err(ScpError::InvalidValue { section: id, what: "the sample interval (µs)", value: 0 });
    }
    if encoding > 2 {
        return Err(ScpError::InvalidValue { section: id, what: "the difference encoding", value: encoding.into() });
    }
    let mut counts = Vec::with_capacity(leads.len());
    for _ in leads {
        counts.push(usize::from(c.u16("a lead's byte count")?));
    }
    let mut data = Vec::with_capacity(leads.len());
    for (def, &count) in leads.iter().zip(&counts) {
        let present = count.min(c.remaining());
        if present < count {
            warnings.push(format!("Section {id} lead {}: byte count {count}, only {present} bytes present", def.name));
        }
        data.push(c.take(present, "lead data")?);
    }
    Ok(DataSection { id, avm_nv, interval_us, encoding, flag, data })
}

/// Samples per second of a sample interval in µs, warning when it is not a whole number.
fn rate_of(section: &DataSection<'_>, warnings: &mut Vec<String>) -> u32 {
    let interval = u32::from(section.interval_us);
    let rate = (1_000_000 + interval / 2) / interval;
    if 1_000_000 % interval != 0 {
        warnings.push(format!(
            "Section {} sample interval {interval} µs is not a whole number of Hz; rate given as {rate} Hz",
            section.id
        ));
    }
    rate
}

/// One lead decoded from its bytes, difference encoding undone.
struct LeadSamples {
    samples: Vec<i32>,
    /// How many samples the bytes hold (more than `samples` only for raw data longer than declared).
    held: usize,
}

fn decode_lead(
    coding: &Coding,
    section: &DataSection<'_>,
    bytes: &[u8],
    want: usize,
    name: &str,
) -> Result<LeadSamples, ScpError> {
    let (mut values, held) = match coding {
        Coding::Raw => {
            let held = bytes.len() / 2;
            let values = bytes
                .chunks_exact(2)
                .take(want)
                .map(|p| {
                    i32::from(i16::from_le_bytes([p.first().copied().unwrap_or(0), p.get(1).copied().unwrap_or(0)]))
                })
                .collect::<Vec<_>>();
            (values, held)
        }
        Coding::Huffman(tables) => {
            let values = huffman::decode(tables, bytes, want).map_err(|bit| ScpError::HuffmanCode {
                section: section.id,
                lead: name.to_string(),
                bit,
            })?;
            let held = values.len();
            (values, held)
        }
    };
    undo_differences(&mut values, section.encoding).map_err(|index| ScpError::SampleOverflow {
        section: section.id,
        lead: name.to_string(),
        index,
    })?;
    Ok(LeadSamples { samples: values, held })
}

/// Undoes first (x[n] = d[n] + x[n-1]) or second (x[n] = d[n] + 2x[n-1] − x[n-2]) differences;
/// the first one or two values are stored as they are. `Err(index)` on overflow.
fn undo_differences(values: &mut [i32], encoding: u8) -> Result<(), usize> {
    match encoding {
        1 => {
            for i in 1..values.len() {
                let prev = values.get(i - 1).copied().unwrap_or(0);
                let v = values.get_mut(i).ok_or(i)?;
                *v = v.checked_add(prev).ok_or(i)?;
            }
        }
        2 => {
            for i in 2..values.len() {
                let p1 = i64::from(values.get(i - 1).copied().unwrap_or(0));
                let p2 = i64::from(values.get(i - 2).copied().unwrap_or(0));
                let v = values.get_mut(i).ok_or(i)?;
                *v = i32::try_from(i64::from(*v) + 2 * p1 - p2).map_err(|_| i)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Rhythm leads and the reference beat.
#[derive(Debug, Default)]
pub(super) struct Signals {
    /// Rhythm leads (Section 6).
    pub leads: Vec<Lead>,
    /// Reference beat (Section 5).
    pub median: Vec<Lead>,
}

/// Decodes Sections 5 and 6 with the lead table of Section 3.
pub(super) fn decode(
    record: &Record<'_>,
    table: &LeadTable,
    coding: &Coding,
    limits: &Limits,
    warnings: &mut Vec<String>,
) -> Result<Signals, ScpError> {
    let subtracted = table.flags & SUBTRACTED != 0;
    let qrs = record.get(4).map(|s| parse_section4(s.body)).transpose()?;
    let median_section = record.get(5).map(|s| parse_data_section(5, s.body, &table.leads, warnings)).transpose()?;

    let mut median_raw: Vec<Vec<i32>> = Vec::new();
    let mut out = Signals::default();
    if let Some(s5) = &median_section {
        match &qrs {
            Some(q) => {
                let want = u64::from(q.beat_ms) * 1000 / u64::from(s5.interval_us);
                let rate = rate_of(s5, warnings);
                for (def, bytes) in table.leads.iter().zip(&s5.data) {
                    let want = checked_len(want, &def.name, limits)?;
                    let lead = decode_lead(coding, s5, bytes, want, &def.name)?;
                    if lead.samples.len() < want {
                        warnings.push(format!(
                            "reference beat lead {}: Section 4 gives {want} samples, Section 5 holds {}",
                            def.name,
                            lead.samples.len()
                        ));
                    }
                    median_raw.push(lead.samples.clone());
                    out.median.push(Lead {
                        name: def.name.clone(),
                        derived: false,
                        sample_rate_hz: rate,
                        resolution_nv: f64::from(s5.avm_nv),
                        samples: lead.samples,
                    });
                }
            }
            None => warnings.push("SCP-ECG Section 5 (reference beat) without Section 4 (its length): skipped".into()),
        }
    }

    let Some(s6) = record.get(6) else {
        if subtracted {
            return Err(ScpError::MissingSection { section: 6, needed_for: "Section 3's reference beat subtraction" });
        }
        warnings.push("SCP-ECG file has no rhythm data (Section 6)".into());
        return Ok(out);
    };
    let s6 = parse_data_section(6, s6.body, &table.leads, warnings)?;
    if s6.flag != 0 {
        return Err(ScpError::Unsupported("bimodal compression (Section 6 byte 5 is set)".into()));
    }
    let rate = rate_of(&s6, warnings);
    for (def, bytes) in table.leads.iter().zip(&s6.data) {
        let declared = def.declared();
        let want = checked_len(declared, &def.name, limits)?;
        let lead = decode_lead(coding, &s6, bytes, want, &def.name)?;
        if lead.held != want {
            warnings.push(format!("lead {}: declares {declared} samples, holds {}", def.name, lead.held));
        }
        if !lead.samples.is_empty() && lead.samples.iter().all(|&v| v == 0) {
            warnings.push(format!("lead {}: every sample is 0 (electrode not connected?)", def.name));
        }
        out.leads.push(Lead {
            name: def.name.clone(),
            derived: false,
            sample_rate_hz: rate,
            resolution_nv: f64::from(s6.avm_nv),
            samples: lead.samples,
        });
    }

    if subtracted {
        let q = qrs.ok_or(ScpError::MissingSection { section: 4, needed_for: "reference beat subtraction" })?;
        let s5 =
            median_section.ok_or(ScpError::MissingSection { section: 5, needed_for: "reference beat subtraction" })?;
        if s5.interval_us != s6.interval_us || s5.avm_nv != s6.avm_nv {
            return Err(ScpError::Unsupported(format!(
                "reference beat subtraction with a reference beat at {} µs/{} nV and rhythm at {} µs/{} nV",
                s5.interval_us, s5.avm_nv, s6.interval_us, s6.avm_nv
            )));
        }
        add_reference_beat(&mut out.leads, &table.leads, &median_raw, &q)?;
    }
    Ok(out)
}

/// A declared sample count, checked against the limit before anything is allocated for it.
fn checked_len(count: u64, name: &str, limits: &Limits) -> Result<usize, ScpError> {
    usize::try_from(count).ok().filter(|&n| n <= limits.max_samples_per_lead).ok_or_else(|| ScpError::TooManySamples {
        lead: name.to_string(),
        count,
        limit: limits.max_samples_per_lead,
    })
}

/// Adds the reference beat back into the residual rhythm in every type-0 subtraction zone,
/// aligning the beat's fiducial with each QRS's fiducial.
fn add_reference_beat(
    leads: &mut [Lead],
    defs: &[LeadDef],
    median: &[Vec<i32>],
    q: &QrsLocations,
) -> Result<(), ScpError> {
    let mut previous_end = 0u64;
    for &(kind, start, fid, end) in &q.zones {
        let (start, end) = (u64::from(start), u64::from(end));
        // Zones that overlap would add the beat twice; they also bound the work a hostile file can ask for.
        if start <= previous_end || end < start {
            return Err(ScpError::InvalidValue {
                section: 4,
                what: "a subtraction zone start (zones must be ordered and not overlap)",
                value: start.try_into().unwrap_or(i64::MAX),
            });
        }
        previous_end = end;
        if kind != 0 {
            continue;
        }
        for ((lead, def), beat) in leads.iter_mut().zip(defs).zip(median) {
            // The first sample that lies both in the lead and in the beat (fiducials aligned).
            let in_beat = (u64::from(fid) + 1).saturating_sub(u64::from(q.fiducial));
            for sample in start.max(def.first()).max(in_beat)..=end {
                let at = sample - def.first();
                let m = u64::from(q.fiducial) + sample - u64::from(fid) - 1;
                let (Ok(at), Ok(m)) = (usize::try_from(at), usize::try_from(m)) else { break };
                let (Some(v), Some(&b)) = (lead.samples.get_mut(at), beat.get(m)) else { break };
                *v = v.checked_add(b).ok_or_else(|| ScpError::SampleOverflow {
                    section: 6,
                    lead: def.name.clone(),
                    index: at,
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_differences_keep_the_first_two_values() {
        let mut v = vec![-2, -2, 0, 0, -1];
        undo_differences(&mut v, 2).expect("fits");
        assert_eq!(v, vec![-2, -2, -2, -2, -3]);
        let mut w = vec![5, 1, 1, -2];
        undo_differences(&mut w, 1).expect("fits");
        assert_eq!(w, vec![5, 6, 7, 5]);
        let mut big = vec![0, i32::MAX, i32::MAX];
        assert_eq!(undo_differences(&mut big, 2), Err(2));
    }
}
