//! Imaging: the hub's store of DICOM instances (files on disk under
//! `<data>/images/<study>/<series>/<sop>.sealed`, indexed in their own SQLite file `images.db`),
//! and server-side rendering of frames to PNG for the console viewer and DICOMweb.
//!
//! - [`store`]: [`ImageStore`]: insert a received Part-10 file, query studies, series and
//!   instances, series thumbnails.
//! - [`render`]: decode a frame with `dicom-pixeldata` and window it to an 8-bit PNG.
//! - [`read`]: read a Part-10 file (header only or whole; deflated files inflated here).
//! - [`sealed`]: files sealed at rest with the store key (instances, thumbnails, the rebuild
//!   folder's work files).
//!
//! ```no_run
//! # fn main() -> Result<(), yilian_hub::images::ImageError> {
//! let store = yilian_hub::images::ImageStore::open(std::path::Path::new("/srv/yilian/images"))?;
//! let meta = store.insert_file(std::path::Path::new("/tmp/incoming/CT_small.dcm"))?;
//! println!("{} {}", meta.patient_name, meta.sop_uid);
//! # Ok(())
//! # }
//! ```

pub mod read;
pub mod render;
pub mod sealed;
pub mod store;

pub use render::{RenderError, RenderOptions, Rendered, Window};
pub use store::{ImageStore, InstanceMeta, SeriesSummary, StudySummary};

/// An image-store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The file is not a readable Part-10 file.
    #[error(transparent)]
    Read(#[from] read::ReadError),
    /// A UID that cannot name a file (empty, over 64 characters, not digits and dots).
    #[error("{what} {uid:?} is not a valid UID")]
    BadUid {
        /// Which UID.
        what: &'static str,
        /// The value.
        uid: String,
    },
    /// The same SOP Instance UID is already stored with other bytes.
    #[error("instance {sop_uid} is already stored with different content (SHA-256 {stored})")]
    Conflict {
        /// The instance.
        sop_uid: String,
        /// SHA-256 of what is stored.
        stored: String,
    },
    /// File-system trouble.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The index database.
    #[error("image index: {0}")]
    Db(#[from] rusqlite::Error),
    /// No such study, series or instance.
    #[error("not found: {0}")]
    NotFound(String),
    /// A thumbnail could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A stored file could not be sealed or opened (damaged, or another key).
    #[error(transparent)]
    Sealed(#[from] sealed::SealedFileError),
}
