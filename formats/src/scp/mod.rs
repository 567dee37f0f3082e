//! SCP-ECG reader and writer. (Being written.)

use crate::recording::{ReadOptions, Recording};

/// A SCP-ECG file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScpError {
    /// Not implemented yet.
    #[error("SCP-ECG reader is not implemented yet")]
    Unimplemented,
}

/// Reads a SCP-ECG file.
pub fn read(_bytes: &[u8], _opts: &ReadOptions) -> Result<Recording, ScpError> {
    Err(ScpError::Unimplemented)
}
