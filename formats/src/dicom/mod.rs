//! DICOM waveform reader and writer. (Being written.)

use crate::recording::{ReadOptions, Recording};

/// A DICOM waveform file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DicomError {
    /// Not implemented yet.
    #[error("DICOM waveform reader is not implemented yet")]
    Unimplemented,
}

/// Reads a DICOM waveform file.
pub fn read(_bytes: &[u8], _opts: &ReadOptions) -> Result<Recording, DicomError> {
    Err(DicomError::Unimplemented)
}
