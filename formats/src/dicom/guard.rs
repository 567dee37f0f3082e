//! A structural pre-scan of a DICOM file, run before dicom-rs sees the bytes.
//!
//! dicom-rs allocates each value from its length field before reading it
//! (`resize_with(len)` in its stateful decoder), so a hostile 4 GiB length would allocate
//! 4 GiB. This walk checks every length against the bytes its container actually holds, and
//! bounds nesting depth, so that dicom-rs only ever parses a file whose lengths are honest.
//! It also pulls the few file-meta facts the reader needs before a full parse.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use super::DicomError;

/// Deepest sequence nesting accepted (ECG files use 3; dicom-rs recurses per level).
const MAX_DEPTH: usize = 16;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQ_END: (u16, u16) = (0xFFFE, 0xE0DD);

/// Transfer syntaxes by UID.
pub(crate) const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub(crate) const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// Where the file meta group starts and what it says.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// Offset of "DICM" (128 with a preamble, 0 without), or `None` when the file starts
    /// directly with the group-0002 elements.
    pub magic_at: Option<usize>,
    /// Media Storage SOP Class UID.
    pub sop_class: String,
    /// Transfer Syntax UID.
    pub transfer_syntax: String,
    /// Offset of the first data set element.
    pub dataset_start: usize,
}

/// True when `bytes` start like a DICOM file: "DICM" at 128 or 0, or a group-0002 length element.
pub(crate) fn looks_like(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM") || bytes.get(..4) == Some(b"DICM") || starts_with_group_length(bytes)
}

/// `(0002,0000) UL 4`, explicit VR little endian, as every file meta group begins.
fn starts_with_group_length(bytes: &[u8]) -> bool {
    bytes.get(..8) == Some(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00])
}

/// Reads the file meta group (always explicit VR little endian) without a full parse.
pub(crate) fn meta(bytes: &[u8]) -> Result<Meta, DicomError> {
    let (magic_at, start) = if bytes.get(128..132) == Some(b"DICM") {
        (Some(128), 132)
    } else if bytes.get(..4) == Some(b"DICM") {
        (Some(0), 4)
    } else if starts_with_group_length(bytes) {
        (None, 0)
    } else {
        return Err(DicomError::NotDicom);
    };
    let mut cur = Cursor { bytes, pos: start, end: bytes.len() };
    let first = cur.header(true)?;
    if first.tag != (0x0002, 0x0000) || first.len != 4 {
        return Err(DicomError::Malformed {
            offset: start,
            reason: format!(
                "the file meta group must start with (0002,0000) UL of length 4, found ({:04X},{:04X}) of length {}",
                first.tag.0, first.tag.1, first.len
            ),
        });
    }
    let group_length = cur.u32()?;
    let group_start = cur.pos;
    let mut sop_class = String::new();
    let mut transfer_syntax = String::new();
    while cur.pos < cur.end {
        let at = cur.pos;
        if !matches!(cur.peek_tag(), Ok((0x0002, _))) {
            break;
        }
        let h = cur.header(true)?;
        if h.len == UNDEFINED {
            return Err(DicomError::Malformed {
                offset: at,
                reason: "a file meta element has an undefined length".into(),
            });
        }
        let value = cur.take(h.len, at)?;
        let text = || String::from_utf8_lossy(value).trim_end_matches(['\0', ' ']).trim().to_string();
        match h.tag {
            (0x0002, 0x0002) => sop_class = text(),
            (0x0002, 0x0010) => transfer_syntax = text(),
            _ => {}
        }
    }
    let actual = cur.pos - group_start;
    if u64::from(group_length) != actual as u64 {
        // dicom-rs reads the meta group by this count; a wrong one would make it misread.
        return Err(DicomError::Malformed {
            offset: start,
            reason: format!("the file meta group length says {group_length} bytes, the group holds {actual}"),
        });
    }
    if transfer_syntax.is_empty() {
        return Err(DicomError::Malformed { offset: group_start, reason: "no Transfer Syntax UID (0002,0010)".into() });
    }
    Ok(Meta { magic_at, sop_class, transfer_syntax, dataset_start: cur.pos })
}

/// Checks that every length in the data set fits the bytes of its container, and that
/// nesting stays shallow, in the encoding the transfer syntax names.
pub(crate) fn check_dataset(bytes: &[u8], meta: &Meta) -> Result<(), DicomError> {
    let explicit = match meta.transfer_syntax.as_str() {
        IMPLICIT_LE => false,
        EXPLICIT_BE => {
            return Err(DicomError::UnsupportedTransferSyntax {
                uid: meta.transfer_syntax.clone(),
                why: "explicit VR big endian (retired) is not read".into(),
            });
        }
        DEFLATED => {
            return Err(DicomError::UnsupportedTransferSyntax {
                uid: meta.transfer_syntax.clone(),
                why: "deflated data sets are not read".into(),
            });
        }
        // Every other standard transfer syntax encodes the data set in explicit VR LE; only
        // pixel data differs (encapsulated), which the walk below understands.
        _ => true,
    };
    let mut cur = Cursor { bytes, pos: meta.dataset_start, end: bytes.len() };
    walk_dataset(&mut cur, explicit, false, 0)
}

/// Walks data set elements until the container ends (defined length) or an item delimiter
/// (`in_undefined_item`).
fn walk_dataset(cur: &mut Cursor<'_>, explicit: bool, in_undefined_item: bool, depth: usize) -> Result<(), DicomError> {
    if depth > MAX_DEPTH {
        return Err(DicomError::Malformed {
            offset: cur.pos,
            reason: format!("sequences nested deeper than {MAX_DEPTH} levels"),
        });
    }
    loop {
        if cur.pos >= cur.end {
            if in_undefined_item {
                return Err(DicomError::Malformed {
                    offset: cur.pos,
                    reason: "an item of undefined length has no item delimiter".into(),
                });
            }
            return Ok(());
        }
        let at = cur.pos;
        let tag = cur.peek_tag()?;
        if tag == ITEM_END {
            if !in_undefined_item {
                return Err(DicomError::Malformed { offset: at, reason: "an item delimiter outside an item".into() });
            }
            cur.pos = at.checked_add(8).ok_or_else(|| truncated(at))?;
            if cur.pos > cur.end {
                return Err(truncated(at));
            }
            return Ok(());
        }
        if tag.0 == 0xFFFE {
            return Err(DicomError::Malformed {
                offset: at,
                reason: format!("unexpected ({:04X},{:04X}) among data elements", tag.0, tag.1),
            });
        }
        let h = cur.header(explicit)?;
        if h.len == UNDEFINED {
            if h.tag == (0x7FE0, 0x0010) {
                walk_fragments(cur)?;
            } else {
                walk_items(cur, explicit, None, depth + 1)?;
            }
        } else if h.vr == VR::SQ {
            let end =
                cur.pos.checked_add(h.len as usize).filter(|&e| e <= cur.end).ok_or_else(|| too_long(at, h.len))?;
            let outer = cur.end;
            walk_items(cur, explicit, Some(end), depth + 1)?;
            cur.end = outer;
        } else {
            whole_values(&h, at)?;
            cur.take(h.len, at)?;
        }
    }
}

/// Refuses a binary value whose length is not a whole number of values: dicom-rs reads
/// `len / size` values and so would stop short of the length, then parse the rest of the value
/// as element headers, believing whatever length it finds there (a fuzzed FL of 2 bytes made it
/// allocate 4 GiB).
fn whole_values(h: &Header, at: usize) -> Result<(), DicomError> {
    let size = match h.vr {
        VR::US | VR::SS | VR::OW => 2,
        VR::UL | VR::SL | VR::FL | VR::AT | VR::OL | VR::OF => 4,
        VR::FD | VR::SV | VR::UV | VR::OD | VR::OV => 8,
        _ => return Ok(()),
    };
    if h.len.is_multiple_of(size) {
        return Ok(());
    }
    Err(DicomError::Malformed {
        offset: at,
        reason: format!(
            "({:04X},{:04X}) {} of {} bytes is not a whole number of {size}-byte values",
            h.tag.0, h.tag.1, h.vr, h.len
        ),
    })
}

/// Walks the items of a sequence, up to `end` (defined length) or the sequence delimiter.
fn walk_items(cur: &mut Cursor<'_>, explicit: bool, end: Option<usize>, depth: usize) -> Result<(), DicomError> {
    if let Some(end) = end {
        cur.end = end;
    }
    loop {
        if end.is_some() && cur.pos >= cur.end {
            return Ok(());
        }
        let at = cur.pos;
        let tag = cur.peek_tag()?;
        let len = cur.item_len()?;
        match tag {
            SEQ_END if end.is_none() => return Ok(()),
            ITEM if len == UNDEFINED => {
                walk_dataset(cur, explicit, true, depth)?;
            }
            ITEM => {
                let item_end =
                    cur.pos.checked_add(len as usize).filter(|&e| e <= cur.end).ok_or_else(|| too_long(at, len))?;
                let outer = cur.end;
                cur.end = item_end;
                walk_dataset(cur, explicit, false, depth)?;
                cur.end = outer;
                cur.pos = item_end;
            }
            _ => {
                return Err(DicomError::Malformed {
                    offset: at,
                    reason: format!("expected a sequence item, found ({:04X},{:04X})", tag.0, tag.1),
                });
            }
        }
    }
}

/// Walks the fragments of encapsulated pixel data (images only; ECG waveforms never use it).
fn walk_fragments(cur: &mut Cursor<'_>) -> Result<(), DicomError> {
    loop {
        let at = cur.pos;
        let tag = cur.peek_tag()?;
        let len = cur.item_len()?;
        match tag {
            SEQ_END => return Ok(()),
            ITEM if len != UNDEFINED => {
                cur.take(len, at)?;
            }
            _ => {
                return Err(DicomError::Malformed {
                    offset: at,
                    reason: format!("expected a pixel data fragment, found ({:04X},{:04X})", tag.0, tag.1),
                });
            }
        }
    }
}

/// An element header.
struct Header {
    tag: (u16, u16),
    vr: VR,
    len: u32,
}

/// A read position with the end of the current container.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn u16(&mut self) -> Result<u16, DicomError> {
        let b = self.fixed::<2>()?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, DicomError> {
        let b = self.fixed::<4>()?;
        Ok(u32::from_le_bytes(b))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DicomError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.end).ok_or_else(|| truncated(self.pos))?;
        let slice = self.bytes.get(self.pos..end).ok_or_else(|| truncated(self.pos))?;
        let out = <[u8; N]>::try_from(slice).map_err(|_| truncated(self.pos))?;
        self.pos = end;
        Ok(out)
    }

    fn peek_tag(&self) -> Result<(u16, u16), DicomError> {
        let mut probe = Cursor { bytes: self.bytes, pos: self.pos, end: self.end };
        Ok((probe.u16()?, probe.u16()?))
    }

    /// Reads an item or delimiter tag and its 4-byte length.
    fn item_len(&mut self) -> Result<u32, DicomError> {
        self.u32()?;
        self.u32()
    }

    /// Skips `len` value bytes, which must lie inside the container.
    fn take(&mut self, len: u32, at: usize) -> Result<&'a [u8], DicomError> {
        let end = self.pos.checked_add(len as usize).filter(|&e| e <= self.end).ok_or_else(|| too_long(at, len))?;
        let value = self.bytes.get(self.pos..end).ok_or_else(|| too_long(at, len))?;
        self.pos = end;
        Ok(value)
    }

    fn header(&mut self, explicit: bool) -> Result<Header, DicomError> {
        let at = self.pos;
        let tag = (self.u16()?, self.u16()?);
        if explicit {
            let code = self.fixed::<2>()?;
            let vr = VR::from_binary(code).ok_or_else(|| DicomError::Malformed {
                offset: at,
                reason: format!(
                    "({:04X},{:04X}) has no valid value representation ({:02X} {:02X})",
                    tag.0, tag.1, code[0], code[1]
                ),
            })?;
            let len = if long_length(vr) {
                self.u16()?;
                self.u32()?
            } else {
                u32::from(self.u16()?)
            };
            Ok(Header { tag, vr, len })
        } else {
            let len = self.u32()?;
            // Same rule as dicom-rs's implicit VR decoder, so both see the same structure.
            let vr = if tag == (0x7FE0, 0x0010) || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
                VR::OW
            } else {
                StandardDataDictionary.by_tag(Tag(tag.0, tag.1)).map(|e| e.vr().relaxed()).unwrap_or(VR::UN)
            };
            Ok(Header { tag, vr, len })
        }
    }
}

/// Value representations whose explicit-VR header has 2 reserved bytes and a 4-byte length.
fn long_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

fn truncated(offset: usize) -> DicomError {
    DicomError::Malformed { offset, reason: "the file ends inside an element header".into() }
}

fn too_long(offset: usize, len: u32) -> DicomError {
    DicomError::Malformed { offset, reason: format!("an element of {len} bytes runs past the end of its container") }
}
