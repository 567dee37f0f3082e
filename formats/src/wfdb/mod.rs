//! WFDB reader and writer. (Being written.)

use crate::recording::{ReadOptions, Recording};

/// A WFDB file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WfdbError {
    /// Not implemented yet.
    #[error("WFDB reader is not implemented yet")]
    Unimplemented,
}

/// Reads a WFDB file.
pub fn read(
    _header: &[u8],
    _files: &std::collections::BTreeMap<String, Vec<u8>>,
    _opts: &ReadOptions,
) -> Result<Recording, WfdbError> {
    Err(WfdbError::Unimplemented)
}
