//! The error any reader can give, by format.

/// A cart file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// SCP-ECG.
    #[error("SCP-ECG: {0}")]
    Scp(#[from] crate::scp::ScpError),
    /// DICOM.
    #[error("DICOM: {0}")]
    Dicom(#[from] crate::dicom::DicomError),
    /// HL7 aECG.
    #[error("HL7 aECG: {0}")]
    Aecg(#[from] crate::aecg::AecgError),
    /// WFDB.
    #[error("WFDB: {0}")]
    Wfdb(#[from] crate::wfdb::WfdbError),
    /// Contec.
    #[error("Contec ECG: {0}")]
    Contec(#[from] crate::contec::ContecError),
    /// No reader recognises the bytes; the text says what they look like.
    #[error("not a cart file Yilian reads: {0}")]
    Unrecognised(String),
    /// Larger than the reader's limit.
    #[error("file is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
}
