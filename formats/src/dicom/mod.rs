//! DICOM waveform ECGs: 12-lead ECG, General ECG, and ECG leads inside other waveform IODs
//! (e.g. Hemodynamic Waveform Storage), read with dicom-rs and written as 12-lead or General
//! ECG Waveform Storage in explicit VR little endian with UTF-8 text.
//!
//! Layout: `guard` checks every length of the file before dicom-rs allocates from it, `read`
//! turns the parsed object into a [`Recording`], `write` builds one, `codes` holds the coded
//! concepts both share, `text` decodes character sets, names and dates, and `uid` derives
//! stable UIDs.

mod codes;
mod guard;
mod read;
mod text;
mod uid;
mod write;

use crate::recording::{ReadOptions, Recording};

pub use write::{PDF_MAX, encapsulated_pdf, write};

/// A DICOM waveform file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DicomError {
    /// Larger than `ReadOptions.limits.max_input_bytes`.
    #[error("file is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No "DICM" marker at byte 128 or 0, and no file meta group at the start.
    #[error("not a DICOM file: no \"DICM\" marker at byte 128 or 0, and no file meta group at the start")]
    NotDicom,
    /// The element structure is broken (a length past its container, a missing delimiter...).
    #[error("malformed DICOM at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset of the element concerned.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The transfer syntax is one this reader does not decode.
    #[error("transfer syntax {uid} is not supported: {why}")]
    UnsupportedTransferSyntax {
        /// Transfer Syntax UID.
        uid: String,
        /// Why.
        why: String,
    },
    /// dicom-rs refused the data set.
    #[error("DICOM parser: {0}")]
    Parse(String),
    /// A valid DICOM file that holds no ECG waveform; the text says what it is instead.
    #[error("not an ECG: {description}")]
    NotEcg {
        /// What the file is, e.g. "DICOM CT Image Storage (1.2.840.10008.5.1.4.1.1.2), modality CT".
        description: String,
    },
    /// A waveform feature this reader does not decode (sample interpretation, units...).
    #[error("multiplex group {group}: unsupported {what}")]
    Unsupported {
        /// Multiplex group number (1-based, as annotations reference it).
        group: usize,
        /// What is unsupported, with the value found.
        what: String,
    },
    /// A required waveform attribute is missing or has an impossible value.
    #[error("multiplex group {group}: {what}")]
    Invalid {
        /// Multiplex group number (1-based).
        group: usize,
        /// What is wrong, with the value found.
        what: String,
    },
    /// A count in the file exceeds `ReadOptions.limits`.
    #[error("{what}: {found} exceeds the limit of {limit}")]
    Limit {
        /// What was counted.
        what: String,
        /// Count in the file.
        found: u64,
        /// The limit.
        limit: u64,
    },
}

/// A recording could not be written as DICOM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DicomWriteError {
    /// The recording has no rhythm leads.
    #[error("the recording has no rhythm leads to write")]
    NoLeads,
    /// A sample does not fit the 16-bit signed (SS) samples the ECG IODs require.
    #[error("lead {lead}{beat}, sample {index}: value {value} does not fit a 16-bit signed sample", beat = if *.median { " (median beat)" } else { "" })]
    SampleOutOfRange {
        /// Lead name.
        lead: String,
        /// True for a median-beat lead.
        median: bool,
        /// Sample index.
        index: usize,
        /// The value.
        value: i32,
    },
    /// The leads do not fit any ECG waveform IOD (rate, channel count or length).
    #[error("the leads do not fit a DICOM ECG IOD: {0}")]
    DoesNotFit(String),
    /// A lead has an unusable rate or resolution.
    #[error("lead {lead}: {what}")]
    BadLead {
        /// Lead name.
        lead: String,
        /// What is wrong.
        what: String,
    },
    /// A text is too long for its DICOM value representation.
    #[error("{what} is {len} characters, DICOM allows {max}")]
    TextTooLong {
        /// Which text.
        what: String,
        /// Its length in characters.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// dicom-rs could not encode the object.
    #[error("DICOM encoder: {0}")]
    Encode(String),
}

/// Reads a DICOM waveform ECG from the bytes of a `.dcm` file (with or without the preamble).
pub fn read(bytes: &[u8], opts: &ReadOptions) -> Result<Recording, DicomError> {
    read::read(bytes, opts)
}

/// True when the bytes look like DICOM: "DICM" at byte 128 (or 0), or a file meta group start.
pub fn looks_like(bytes: &[u8]) -> bool {
    guard::looks_like(bytes)
}

/// What a DICOM file is, e.g. "DICOM CT Image Storage (1.2.840.10008.5.1.4.1.1.2), modality CT";
/// `None` when the bytes are not a readable DICOM file.
pub fn describe(bytes: &[u8]) -> Option<String> {
    read::describe(bytes, &ReadOptions::default())
}
