//! DICOM Part 10 files: the file meta group written in front of a received dataset, and the few
//! header attributes the node needs, read without touching pixel data.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, OpenFileOptions, file::ReadPreamble};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// This implementation's class UID in the file meta group (a UUID-derived `2.25` UID, PS3.5 B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.328190372216240864753910798148492348600";
/// This implementation's version name in the file meta group (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = "YILIAN_AGENT_1";
/// Deflated Explicit VR Little Endian: the dataset after the meta group is raw deflate.
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// The header of a file is read up to here at most: no sane header attribute group before
/// Study/Series UIDs is larger, and pixel data is never reached.
const HEADER_READ_LIMIT: u64 = 16 * 1024 * 1024;

/// A header could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Part10Error {
    /// The file meta group could not be built from these UIDs.
    #[error("building the file meta group: {0}")]
    Meta(String),
    /// The stored file could not be opened or read.
    #[error("reading {path}: {source}")]
    Io {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The dataset does not parse up to the attributes the node needs.
    #[error("the dataset does not parse: {0}")]
    Parse(String),
    /// A required attribute is missing or empty.
    #[error("the dataset has no {0}")]
    Missing(&'static str),
}

/// `preamble (128 zero bytes) + "DICM" + file meta group` for an instance of this class, UID and
/// transfer syntax.
pub fn file_header(sop_class_uid: &str, sop_instance_uid: &str, transfer_syntax: &str) -> Result<Vec<u8>, Part10Error> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class_uid)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| Part10Error::Meta(e.to_string()))?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out).map_err(|e| Part10Error::Meta(e.to_string()))?;
    Ok(out)
}

/// What the node reads from an instance's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// SOP Class UID (0008,0016).
    pub sop_class_uid: String,
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_uid: String,
    /// Series Instance UID (0020,000E), empty if absent.
    pub series_uid: String,
    /// Modality (0008,0060), empty if absent.
    pub modality: String,
    /// Patient's Name (0010,0010) as decoded text, empty if absent.
    pub patient_name: String,
    /// Patient ID (0010,0020), empty if absent.
    pub patient_id: String,
}

/// Reads the header of a Part-10 file written by [`file_header`] whose dataset starts at
/// `dataset_offset`, stopping before anything after Series Instance UID (so before pixel data)
/// and never reading more than 16 MiB. A deflated dataset is inflated on the fly.
pub fn read_header(path: &Path, transfer_syntax: &str, dataset_offset: u64) -> Result<Header, Part10Error> {
    let io = |source| Part10Error::Io { path: path.into(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    // Re-create the meta group with a transfer syntax dicom-object can parse: deflate is only a
    // stub in its registry, so the deflated dataset is inflated here and read as explicit VR LE.
    let deflated = transfer_syntax == DEFLATED_EXPLICIT_VR_LE;
    let ts = if deflated { EXPLICIT_VR_LE } else { transfer_syntax };
    let mut head = file_header("1.2", "1.2", ts)?;
    head.drain(..128);
    file.seek(SeekFrom::Start(dataset_offset)).map_err(io)?;
    let body = std::io::BufReader::new(file);
    let body: Box<dyn Read> = if deflated { Box::new(flate2::read::DeflateDecoder::new(body)) } else { Box::new(body) };
    let source = std::io::Cursor::new(head).chain(body).take(HEADER_READ_LIMIT);
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(Tag(0x0020, 0x000F))
        .from_reader(source)
        .map_err(|e| Part10Error::Parse(e.to_string()))?;
    let text = |tag: Tag| -> String {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).trim_start().to_string())
            .unwrap_or_default()
    };
    let header = Header {
        sop_class_uid: text(tags::SOP_CLASS_UID),
        sop_instance_uid: text(tags::SOP_INSTANCE_UID),
        study_uid: text(tags::STUDY_INSTANCE_UID),
        series_uid: text(tags::SERIES_INSTANCE_UID),
        modality: text(tags::MODALITY),
        patient_name: text(tags::PATIENT_NAME),
        patient_id: text(tags::PATIENT_ID),
    };
    if header.study_uid.is_empty() {
        return Err(Part10Error::Missing("Study Instance UID"));
    }
    Ok(header)
}

/// A UID (or any peer-supplied name) as a safe file name: characters outside `[0-9A-Za-z._-]`
/// become `_`, a leading dot becomes `_` (no hidden files, no `..`), at most 64 characters
/// (the longest valid UID), never empty.
pub fn sanitize(uid: &str) -> String {
    let mut s: String = uid
        .trim_end_matches(['\0', ' '])
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    if s.starts_with('.') {
        s.replace_range(..1, "_");
    }
    if s.is_empty() {
        s.push('_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_uids_and_defuses_paths() {
        assert_eq!(sanitize("1.2.840.10008.5.1.4.1.1.2"), "1.2.840.10008.5.1.4.1.1.2");
        assert_eq!(
            sanitize("1.2.826.0.1.34471.2.44.6.20021122091000..1\0"),
            "1.2.826.0.1.34471.2.44.6.20021122091000..1"
        );
        assert_eq!(sanitize(".."), "_.");
        assert_eq!(sanitize("../etc/passwd"), "_._etc_passwd");
        assert_eq!(sanitize(""), "_");
        assert_eq!(sanitize(&"9".repeat(100)).len(), 64);
    }

    #[test]
    fn file_header_is_preamble_magic_and_meta_group() {
        let h = file_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1").expect("header");
        assert!(h[..128].iter().all(|&b| b == 0));
        assert_eq!(&h[128..132], b"DICM");
        // (0002,0000) UL 4: the group length counts every byte after it.
        assert_eq!(&h[132..140], &[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        let len = u32::from_le_bytes([h[140], h[141], h[142], h[143]]) as usize;
        assert_eq!(h.len(), 144 + len);
    }
}
