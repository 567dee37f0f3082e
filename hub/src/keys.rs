//! The hub's signing key: made on first start in the data folder, pinned by every agent.

use std::path::{Path, PathBuf};
use yilian_protocol::keys::SigningKey;

/// The hub key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum HubKeyError {
    /// File trouble.
    #[error("hub key {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a key.
    #[error("hub key {path}: {source}")]
    Key {
        /// File.
        path: PathBuf,
        /// Cause.
        source: yilian_protocol::KeyError,
    },
}

/// Path of the hub's public key file (hex), to hand to agents.
pub fn public_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("hub.pub")
}

/// Loads `hub.pk8` from the data folder, creating it (and `hub.pub`) on first use.
pub fn load_or_create(data_dir: &Path) -> Result<SigningKey, HubKeyError> {
    let path = data_dir.join("hub.pk8");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HubKeyError::Io { path, source }
    };
    let key = match std::fs::read(&path) {
        Ok(bytes) => {
            SigningKey::from_pkcs8(&bytes).map_err(|source| HubKeyError::Key { path: path.clone(), source })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
            let key = SigningKey::generate().map_err(|source| HubKeyError::Key { path: path.clone(), source })?;
            write_private(&path, key.pkcs8()).map_err(io(&path))?;
            key
        }
        Err(e) => return Err(HubKeyError::Io { path, source: e }),
    };
    let public = public_key_path(data_dir);
    std::fs::write(&public, format!("{}\n", key.public_key().to_hex())).map_err(io(&public))?;
    Ok(key)
}

/// Path of the hub's previous key while agents follow a rotation.
pub fn previous_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("hub.prev.pk8")
}

/// Rotates the hub key (run with the hub stopped): the current key becomes `hub.prev.pk8`, a new
/// `hub.pk8` and `hub.pub` are made. On its next start the hub signs only with the new key and
/// tells each agent, in a message signed by the old key that carries the new key's proof, to
/// follow. Delete `hub.prev.pk8` once every agent has followed. Returns (old, new).
pub fn rotate(data_dir: &Path) -> Result<(SigningKey, SigningKey), HubKeyError> {
    let prev = previous_key_path(data_dir);
    if prev.exists() {
        return Err(HubKeyError::Io {
            path: prev,
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a rotation is still being followed; delete it once every agent has the new key",
            ),
        });
    }
    let old = load_or_create(data_dir)?;
    let current = data_dir.join("hub.pk8");
    std::fs::rename(&current, &prev).map_err(|source| HubKeyError::Io { path: prev.clone(), source })?;
    let new = load_or_create(data_dir)?;
    Ok((old, new))
}

/// The previous hub key while a rotation is being followed.
pub fn load_previous(data_dir: &Path) -> Result<Option<SigningKey>, HubKeyError> {
    let path = previous_key_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => SigningKey::from_pkcs8(&bytes).map(Some).map_err(|source| HubKeyError::Key { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HubKeyError::Io { path, source }),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
