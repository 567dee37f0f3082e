//! The record frame: record CRC and length, Section 0's pointer table, each section's header and CRC.
//!
//! EN 1064 §5.2-5.3: bytes 0-1 CRC-CCITT over bytes 2..end, bytes 2-5 record length, then sections,
//! each with a 16-byte header (CRC over the section from its byte 2, id u16, length u32 including
//! the header, section version, protocol version, 6 reserved bytes — "SCPECG" from v2.0 on).

use super::cursor::{le_u16, le_u32};
use super::error::ScpError;
use crate::recording::ReadOptions;

/// CRC-CCITT as EN 1064 defines it (poly 0x1021, init 0xFFFF, no reflection).
pub(super) const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// Length of every section header.
pub(super) const HEADER_LEN: usize = 16;

/// Offset of Section 0 in the record.
pub(super) const SECTION0_AT: usize = 6;

/// One section whose bounds and CRC were checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Section<'a> {
    /// Section id.
    pub id: u16,
    /// Protocol version byte of its header (e.g. 20 for 2.0).
    pub protocol: u8,
    /// The bytes after the 16-byte header.
    pub body: &'a [u8],
}

/// The sections of one record, in Section 0's order.
#[derive(Debug)]
pub(super) struct Record<'a> {
    /// Protocol version from Section 0's header.
    pub protocol: u8,
    /// Present (non-empty) sections, Section 0 first.
    pub sections: Vec<Section<'a>>,
}

impl<'a> Record<'a> {
    /// The section with `id`, if present.
    pub(super) fn get(&self, id: u16) -> Option<&Section<'a>> {
        self.sections.iter().find(|s| s.id == id)
    }
}

/// Checks the record frame and every section's CRC, and returns the sections.
pub(super) fn parse<'a>(
    bytes: &'a [u8],
    opts: &ReadOptions,
    warnings: &mut Vec<String>,
) -> Result<Record<'a>, ScpError> {
    let limit = opts.limits.max_input_bytes;
    if bytes.len() > limit {
        return Err(ScpError::TooLarge { size: bytes.len(), limit });
    }
    let min = SECTION0_AT + HEADER_LEN;
    if bytes.len() < min {
        return Err(ScpError::TooShort { len: bytes.len() });
    }
    let declared = le_u32(bytes, 2).ok_or(ScpError::TooShort { len: bytes.len() })?;
    let declared_len = usize::try_from(declared).unwrap_or(usize::MAX);
    if declared_len < min {
        return Err(ScpError::RecordLength { declared: u64::from(declared), actual: bytes.len() });
    }
    let record = if declared_len > bytes.len() {
        if !opts.accept_bad_checksums {
            return Err(ScpError::RecordLength { declared: u64::from(declared), actual: bytes.len() });
        }
        warnings.push(format!(
            "SCP-ECG record says {declared} bytes but the file has {}: the file is truncated",
            bytes.len()
        ));
        bytes
    } else {
        if declared_len < bytes.len() {
            warnings.push(format!(
                "SCP-ECG: {} bytes after the {declared}-byte record were ignored",
                bytes.len() - declared_len
            ));
        }
        bytes.get(..declared_len).unwrap_or(bytes)
    };

    let section0 = section_at(record, SECTION0_AT, 0, opts, warnings)?;
    let protocol = section0.protocol;
    let mut sections = vec![section0];
    for entry in section0.body.chunks_exact(10) {
        let (Some(id), Some(length), Some(index)) = (le_u16(entry, 0), le_u32(entry, 2), le_u32(entry, 6)) else {
            continue;
        };
        if id == 0 || length == 0 {
            continue;
        }
        if sections.iter().any(|s| s.id == id) {
            warnings.push(format!("SCP-ECG Section 0 lists Section {id} twice; the first is used"));
            continue;
        }
        if index == 0 {
            return Err(bad(id, "Section 0 gives index 0 (indexes count from 1)".into()));
        }
        let at = usize::try_from(index - 1).unwrap_or(usize::MAX);
        let section = section_at(record, at, id, opts, warnings)?;
        let actual = section.body.len().saturating_add(HEADER_LEN);
        if u64::from(length) != actual as u64 {
            warnings.push(format!(
                "SCP-ECG Section 0 gives Section {id} {length} bytes, its header says {actual}; the header is used"
            ));
        }
        sections.push(section);
    }
    // The record CRC last: a damaged byte is better reported with the section that holds it.
    let stored = le_u16(record, 0).unwrap_or(0);
    let computed = CRC.checksum(record.get(2..).unwrap_or_default());
    if stored != computed {
        if !opts.accept_bad_checksums {
            return Err(ScpError::RecordCrc { stored, computed });
        }
        warnings.push(format!(
            "SCP-ECG record CRC is 0x{stored:04X}, the bytes give 0x{computed:04X}: accepted, but the bytes may not be what the cart wrote"
        ));
    }

    Ok(Record { protocol, sections })
}

/// The section whose header starts at byte `at` of the record, checked against `expected_id`.
fn section_at<'a>(
    record: &'a [u8],
    at: usize,
    expected_id: u16,
    opts: &ReadOptions,
    warnings: &mut Vec<String>,
) -> Result<Section<'a>, ScpError> {
    let header_end = at.checked_add(HEADER_LEN).filter(|&e| e <= record.len());
    let Some(header_end) = header_end else {
        return Err(bad(expected_id, format!("starts at byte {at}, past the end of the {}-byte record", record.len())));
    };
    let (Some(stored), Some(id), Some(length)) = (le_u16(record, at), le_u16(record, at + 2), le_u32(record, at + 4))
    else {
        return Err(bad(expected_id, "header cut short".into()));
    };
    if id != expected_id {
        return Err(bad(expected_id, format!("the header at byte {at} says Section {id}")));
    }
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    if length < HEADER_LEN {
        return Err(bad(id, format!("length {length} is shorter than its 16-byte header")));
    }
    let end = at.checked_add(length).filter(|&e| e <= record.len());
    let Some(end) = end else {
        return Err(bad(
            id,
            format!("{length} bytes from byte {at} run past the end of the {}-byte record", record.len()),
        ));
    };
    let computed = CRC.checksum(record.get(at + 2..end).unwrap_or_default());
    if stored != computed {
        if !opts.accept_bad_checksums {
            return Err(ScpError::SectionCrc { section: id, stored, computed });
        }
        warnings.push(format!(
            "SCP-ECG Section {id} CRC is 0x{stored:04X}, the bytes give 0x{computed:04X}: accepted, but the bytes may not be what the cart wrote"
        ));
    }
    let protocol = record.get(at + 9).copied().unwrap_or(0);
    Ok(Section { id, protocol, body: record.get(header_end..end).unwrap_or_default() })
}

fn bad(section: u16, reason: String) -> ScpError {
    ScpError::BadSection { section, reason }
}

/// The cheap sniff: a plausible record length and Section 0's header at byte 6.
pub(super) fn looks_like(bytes: &[u8]) -> bool {
    let Some(declared) = le_u32(bytes, 2) else {
        return false;
    };
    // A record is at least its header plus Section 0's header and one pointer; 1 GiB is no ECG.
    if !(32..=(1 << 30)).contains(&declared) {
        return false;
    }
    if le_u16(bytes, SECTION0_AT + 2) != Some(0) {
        return false;
    }
    let marker = bytes.get(SECTION0_AT + 10..SECTION0_AT + 16) == Some(b"SCPECG".as_slice());
    // v1.x carts may leave the reserved bytes empty; their first pointer is still Section 0 at index 7.
    let first_pointer_is_section0 = le_u16(bytes, SECTION0_AT + HEADER_LEN) == Some(0)
        && le_u32(bytes, SECTION0_AT + HEADER_LEN + 6) == Some(SECTION0_AT as u32 + 1);
    marker || first_pointer_is_section0
}
