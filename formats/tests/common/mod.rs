//! Where the shared third-party test files live.
#![allow(dead_code)]

use std::path::PathBuf;

/// The test-data folder: `$YILIAN_SHARED_DATA`, else `../shared/data` beside the workspace.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("YILIAN_SHARED_DATA") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// The bytes of a test file, by path relative to the data folder.
pub fn data(rel: &str) -> Vec<u8> {
    let path = data_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("test data {}: {e}", path.display()))
}
