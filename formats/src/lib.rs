//! Cart file formats: readers turn the bytes a clinic's cart produces into one canonical
//! [`Recording`]; writers turn a recording back into each format. Pure functions over bytes,
//! no I/O, every size bounded by [`Limits`].

pub mod aecg;
pub mod contec;
pub mod dicom;
mod error;
pub mod lead;
pub mod recording;
pub mod scp;
pub mod sniff;
pub mod wfdb;

pub use error::ReadError;
pub use recording::{Annotation, Format, Lead, Limits, Measurement, Patient, ReadOptions, Recording, Sex};
