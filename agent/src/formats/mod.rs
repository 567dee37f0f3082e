//! Readers of ECG recording files: pure functions over bytes, no I/O.

pub mod wfdb;
