//! SCP-ECG (EN 1064 / ISO 11073-91064) reader and writer, versions 1.x and 2.x.
//!
//! Layout of the module:
//! - `sections`: record and section frames, CRCs, Section 0's pointers;
//! - `demographics`: Section 1 tags and text charsets;
//! - `huffman`: Section 2 tables and the per-lead bit streams;
//! - `signal`: Sections 3-6 (leads, QRS locations, reference beat, rhythm);
//! - `analysis`: Sections 7, 8 and 11 (the cart's measurements and statements);
//! - `write`: the writer.
//!
//! Not decoded (a clear [`ScpError::Unsupported`]): bimodal compression and SCP-ECG v3.

mod analysis;
mod cursor;
mod demographics;
mod error;
mod huffman;
mod sections;
mod signal;
mod write;

pub use error::{ScpError, ScpWriteError};
pub use write::write;

use crate::recording::{Format, ReadOptions, Recording};

/// Protocol versions from this one on are SCP-ECG v3, which Yilian does not decode.
const V3: u8 = 30;

/// True when the bytes look like a SCP-ECG record (a cheap sniff, not a validation).
pub fn looks_like(bytes: &[u8]) -> bool {
    sections::looks_like(bytes)
}

/// Reads a SCP-ECG file.
///
/// # Errors
/// A bad record or section CRC (unless `opts.accept_bad_checksums`), sections that point outside
/// the record, fields cut short, sizes over `opts.limits`, and unsupported encodings.
pub fn read(bytes: &[u8], opts: &ReadOptions) -> Result<Recording, ScpError> {
    let mut warnings = Vec::new();
    let record = sections::parse(bytes, opts, &mut warnings)?;
    if record.protocol >= V3 {
        return Err(ScpError::Unsupported(format!("SCP-ECG version {}", version_text(record.protocol))));
    }
    if record.get(12).is_some() {
        return Err(ScpError::Unsupported("Section 12 (SCP-ECG v3 long-term rhythm data)".into()));
    }

    let demographics = match record.get(1) {
        Some(s) => demographics::parse(s.body, &mut warnings),
        None => {
            warnings.push("SCP-ECG file has no patient section (Section 1)".into());
            demographics::Demographics::default()
        }
    };
    let protocol = match record.protocol {
        0 => demographics.device_protocol.or(record.get(1).map(|s| s.protocol)).unwrap_or(0),
        v => v,
    };

    let table = match record.get(3) {
        Some(s) => signal::parse_section3(s.body, &opts.limits, &mut warnings)?,
        None => return Err(ScpError::MissingSection { section: 3, needed_for: "reading any lead" }),
    };
    let coding = match record.get(2) {
        Some(s) => huffman::parse_section2(s.body)?,
        None => huffman::Coding::Raw,
    };
    let signals = signal::decode(&record, &table, &coding, &opts.limits, &mut warnings)?;

    let mut rec = Recording::new(Format::ScpEcg, version_text(protocol));
    rec.patient = demographics.patient;
    rec.acquired_at = demographics.acquired_at;
    rec.device = demographics.device;
    rec.question = demographics.question;
    rec.leads = signals.leads;
    rec.median_beat = signals.median;
    if let Some(s) = record.get(7) {
        rec.measurements = analysis::measurements(s.body, &mut warnings);
    }
    // Section 8 is the full text; Section 11 the universal statements, used when 8 is absent.
    if let Some(s) = record.get(8).or(record.get(11)) {
        rec.interpretation = analysis::statements(s.id, s.body, demographics.language, &mut warnings);
    }
    rec.warnings = warnings;
    Ok(rec)
}

/// "2.0" for protocol version byte 20.
fn version_text(protocol: u8) -> String {
    if protocol == 0 { "unknown".into() } else { format!("{}.{}", protocol / 10, protocol % 10) }
}
