//! The installation's log key (`log.key`, 32 random bytes, mode 0600): the key of the keyed
//! hashes that stand in for patient names and file names in the logs
//! ([`yilian_protocol::redact`]). Kept beside the other keys, never in the logs or the database.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use yilian_protocol::redact::{self, KEY_LEN};

/// File name of the log key.
pub const FILE: &str = "log.key";

/// Loads `dir/log.key`, creating it on first use, and installs it for this process.
pub fn install(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join(FILE);
    let key = match std::fs::read(&path) {
        Ok(bytes) => <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not a {KEY_LEN}-byte key", path.display()),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            let key = redact::new_key().map_err(|_| std::io::Error::other("no randomness for the log key"))?;
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
            f.write_all(&key)?;
            f.sync_all()?;
            key
        }
        Err(e) => return Err(e),
    };
    redact::install(&key);
    Ok(path)
}
