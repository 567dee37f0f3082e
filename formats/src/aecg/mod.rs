//! HL7 aECG reader and writer. (Being written.)

use crate::recording::{ReadOptions, Recording};

/// A HL7 aECG file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AecgError {
    /// Not implemented yet.
    #[error("HL7 aECG reader is not implemented yet")]
    Unimplemented,
}

/// Reads a HL7 aECG file.
pub fn read(_bytes: &[u8], _opts: &ReadOptions) -> Result<Recording, AecgError> {
    Err(AecgError::Unimplemented)
}
