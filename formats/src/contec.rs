//! Contec ECG90A `.ECG` reader. (Being written.)

use crate::recording::{ReadOptions, Recording};

/// A Contec file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContecError {
    /// Not implemented yet.
    #[error("Contec reader is not implemented yet")]
    Unimplemented,
}

/// Reads a Contec ECG90A `.ECG` file.
pub fn read(_bytes: &[u8], _opts: &ReadOptions) -> Result<Recording, ContecError> {
    Err(ContecError::Unimplemented)
}
