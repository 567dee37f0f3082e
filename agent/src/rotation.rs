//! Device key rotation: `yilian-agent rotate-key` leaves the next key beside the current one
//! (`<key>.next.pk8`); the running agent sends a rotation signed by the current key with the new
//! key's proof, and once the hub has acked it, renames the next key over the current one.
//!
//! The next key file is the whole persisted state: after a crash before the ack, the agent sends
//! the rotation again (the hub applies it once); after the rename, there is nothing left to do.

use std::path::{Path, PathBuf};
use yilian_protocol::keys::SigningKey;

/// Where the next key of `key` waits until the hub has taken it.
pub fn next_key_path(key: &Path) -> PathBuf {
    key.with_extension("next.pk8")
}

/// Makes the next key (owner-only file), or loads the one a previous call made.
pub fn prepare(key: &Path) -> std::io::Result<SigningKey> {
    let next = next_key_path(key);
    match std::fs::read(&next) {
        Ok(bytes) => SigningKey::from_pkcs8(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = SigningKey::generate().map_err(std::io::Error::other)?;
            crate::run::write_private(&next, k.pkcs8())?;
            Ok(k)
        }
        Err(e) => Err(e),
    }
}

/// The next key, if a rotation is waiting.
pub fn pending(key: &Path) -> std::io::Result<Option<SigningKey>> {
    match std::fs::read(next_key_path(key)) {
        Ok(bytes) => SigningKey::from_pkcs8(&bytes).map(Some).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes the next key the current one (an atomic rename keeps the file owner-only).
pub fn commit(key: &Path) -> std::io::Result<()> {
    std::fs::rename(next_key_path(key), key)?;
    match key.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => crate::durable::sync_dir(dir),
        None => crate::durable::sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_key_survives_until_committed_then_replaces_the_current_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("cart.pk8");
        crate::run::write_private(&key, SigningKey::generate().expect("k").pkcs8()).expect("write");
        assert!(pending(&key).expect("read").is_none());
        let next = prepare(&key).expect("prepare");
        assert_eq!(prepare(&key).expect("again").public_key(), next.public_key(), "made once");
        assert_eq!(pending(&key).expect("read").map(|k| k.public_key()), Some(next.public_key()));
        commit(&key).expect("commit");
        let now = SigningKey::from_pkcs8(&std::fs::read(&key).expect("read")).expect("key");
        assert_eq!(now.public_key(), next.public_key());
        assert!(pending(&key).expect("read").is_none());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777, 0o600);
    }
}
