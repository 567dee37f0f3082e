//! TUF signing keys as files: Ed25519, PKCS#8 DER (`.pk8`, what `tough`'s `LocalKeySource`
//! reads), mode 0600, never overwritten.
//!
//! Offline (county IT's USB key): `root-1.pk8` … `root-N.pk8` and `targets.pk8`. Online (the
//! hub's `<data>/tuf/keys/`): `snapshot.pk8` and `timestamp.pk8`.

use std::path::{Path, PathBuf};
use tough::key_source::{KeySource, LocalKeySource};

/// A key file could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// File trouble.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The random generator failed.
    #[error("no randomness for a new key")]
    Random,
    /// Missing.
    #[error("no key file {0} (is the offline key folder the right one?)")]
    Missing(PathBuf),
}

/// The offline root key files in `dir`, `root-1.pk8` … `root-n.pk8`.
pub fn root_key_paths(dir: &Path, n: usize) -> Vec<PathBuf> {
    (1..=n).map(|i| dir.join(format!("root-{i}.pk8"))).collect()
}

/// Root keys present in `dir` (`root-1.pk8`, `root-2.pk8`, … until one is missing).
pub fn present_root_keys(dir: &Path) -> Vec<PathBuf> {
    (1..).map(|i| dir.join(format!("root-{i}.pk8"))).take_while(|p| p.exists()).collect()
}

/// Makes a new Ed25519 key file at `path` (refusing to overwrite one).
pub fn generate(path: &Path) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| KeyError::Random)?;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    f.write_all(pkcs8.as_ref()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// A key file as `tough` signs with it.
pub fn source(path: &Path) -> Result<Box<dyn KeySource>, KeyError> {
    if !path.exists() {
        return Err(KeyError::Missing(path.to_path_buf()));
    }
    Ok(Box::new(LocalKeySource { path: path.to_path_buf() }))
}
