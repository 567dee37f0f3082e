//! The agent's side: load the county repository with `tough` and decide what to install.
//!
//! Trust starts from the root the agent was shipped (or the newest one it has verified since,
//! kept in its datastore). The datastore keeps the newest timestamp, snapshot and targets it has
//! seen, so an older one served after a restart is refused. Expiry is enforced: metadata that
//! lapsed means the hub stopped refreshing it or someone is replaying old files (a freeze
//! attack), and is reported as such. Every download has a size limit; a target is used only
//! once its length and SHA-256 match the signed metadata.

use crate::release::{Kind, ReleaseMeta, Version};
use futures::TryStreamExt;
use std::path::{Path, PathBuf};
/// The verified repository (tough's).
pub use tough::Repository;
use tough::{
    ExpirationEnforcement, FilesystemTransport, IntoVec, Limits, RepositoryLoader, TargetName, Transport,
    TransportError, TransportErrorKind, TransportStream,
};

/// Largest release file an agent downloads (a static agent binary is ~20 MB).
pub const MAX_TARGET_BYTES: u64 = 256 << 20;

/// Metadata size limits: far above what a county's repository holds, far below what would hurt
/// a clinic PC (an endless-data attack).
pub const LIMITS: Limits = Limits {
    max_root_size: 256 << 10,
    max_targets_size: 8 << 20,
    max_timestamp_size: 64 << 10,
    max_snapshot_size: 256 << 10,
    max_root_updates: 64,
};

/// An update check or download failed; each cause says what it means for the clinic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// Metadata past its expiry: the hub stopped refreshing it, or someone serves old files.
    #[error("suspected freeze attack: the {role} metadata has expired (the hub should refresh it daily)")]
    SuspectedFreeze {
        /// Which role lapsed.
        role: String,
    },
    /// Metadata older than what this agent already trusted.
    #[error("rollback refused: {0}")]
    Rollback(String),
    /// A signature missing, wrong, or below its role's threshold.
    #[error("signature check failed: {0}")]
    BadSignature(String),
    /// A downloaded file differs from its signed length or hash.
    #[error("tampered file refused: {0}")]
    Tampered(String),
    /// A file larger than allowed.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The release is older than one installed before, and its signed metadata does not allow
    /// going back.
    #[error(
        "downgrade refused: {offered} offered, {installed} already installed, and the release does not allow a downgrade"
    )]
    Downgrade {
        /// Offered.
        offered: Version,
        /// Highest installed.
        installed: Version,
    },
    /// The release needs a newer version installed first.
    #[error("{name} needs {min} or later installed first ({installed} is)")]
    TooOld {
        /// The release.
        name: String,
        /// Its minimum.
        min: Version,
        /// Installed.
        installed: Version,
    },
    /// The named target is not in the signed targets.
    #[error("no signed release {0}")]
    NoSuchRelease(String),
    /// The hub (or the bundle) could not be reached.
    #[error("repository unreachable: {0}")]
    Unreachable(String),
    /// Local files (datastore, staging).
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Anything else tough reported.
    #[error("update: {0}")]
    Other(String),
}

impl From<tough::error::Error> for UpdateError {
    fn from(e: tough::error::Error) -> Self {
        use tough::error::Error as E;
        let text = e.to_string();
        match e {
            E::ExpiredMetadata { role, .. } => {
                UpdateError::SuspectedFreeze { role: format!("{role:?}").to_lowercase() }
            }
            E::OlderMetadata { .. }
            | E::OlderSnapshotInTimestamp { .. }
            | E::SnapshotRoleRollback { .. }
            | E::SystemTimeSteppedBackward { .. } => UpdateError::Rollback(text),
            E::VerifyMetadata { .. } | E::VerifyTrustedMetadata { .. } | E::VerifyRoleMetadata { .. } => {
                UpdateError::BadSignature(text)
            }
            E::HashMismatch { .. } => UpdateError::Tampered(text),
            E::MaxSizeExceeded { .. } => UpdateError::TooLarge(text),
            // A target is checked while it streams in, so its hash and size failures arrive
            // wrapped in a transport error.
            E::Transport { .. } => match inner_tough(&e) {
                Some(E::HashMismatch { .. }) => UpdateError::Tampered(text),
                Some(E::MaxSizeExceeded { .. }) => UpdateError::TooLarge(text),
                _ => UpdateError::Unreachable(text),
            },
            _ => UpdateError::Other(text),
        }
    }
}

/// The first tough error in `e`'s chain of causes.
fn inner_tough(e: &tough::error::Error) -> Option<&tough::error::Error> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(t) = c.downcast_ref::<tough::error::Error>() {
            return Some(t);
        }
        cause = c.source();
    }
    None
}

/// Fetches over HTTPS with a client that trusts only the county CA, and `file://` for an
/// offline bundle on a USB stick (verified the same way).
#[derive(Debug, Clone)]
pub struct CountyTransport {
    client: reqwest::Client,
}

impl CountyTransport {
    /// A transport with this reqwest client (built with the county CA as its only root).
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

#[tough::async_trait]
impl Transport for CountyTransport {
    async fn fetch(&self, url: url::Url) -> Result<TransportStream, TransportError> {
        if url.scheme() == "file" {
            return FilesystemTransport.fetch(url).await;
        }
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, &url, e))?;
        let status = response.status().as_u16();
        // tough probes for the next root by fetching N+1.root.json; "not there" must read as such.
        if matches!(status, 403 | 404 | 410) {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, &url));
        }
        if !(200..300).contains(&status) {
            return Err(TransportError::new_with_cause(TransportErrorKind::Other, &url, format!("HTTP {status}")));
        }
        let u = url.clone();
        Ok(Box::pin(
            response.bytes_stream().map_err(move |e| TransportError::new_with_cause(TransportErrorKind::Other, &u, e)),
        ))
    }
}

/// Where an agent's repository is and what it trusts.
#[derive(Debug, Clone)]
pub struct Source {
    /// The root the agent was shipped (`root.json` from county IT).
    pub shipped_root: PathBuf,
    /// The datastore: newest verified metadata, kept across restarts.
    pub datastore: PathBuf,
    /// `https://hub/tuf/metadata/` or a bundle's `file:///…/metadata/`.
    pub metadata_url: url::Url,
    /// `https://hub/tuf/targets/` or a bundle's `file:///…/targets/`.
    pub targets_url: url::Url,
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing newer for this agent.
    UpToDate,
    /// Install this release.
    Install {
        /// Target name.
        name: String,
        /// Its signed metadata.
        meta: ReleaseMeta,
        /// Signed length, bytes.
        length: u64,
    },
}

/// Loads and verifies the repository.
pub async fn load(source: &Source, transport: CountyTransport) -> Result<Repository, UpdateError> {
    let ds = &source.datastore;
    std::fs::create_dir_all(ds).map_err(|e| UpdateError::Io { what: "creating", path: ds.clone(), source: e })?;
    // tough keeps the newest root it verified in the datastore; trust starts there once it
    // exists, so a root rotation is not undone by the shipped file.
    let newest = ds.join("root.json");
    let root_path = if newest.exists() { newest } else { source.shipped_root.clone() };
    let root = std::fs::read(&root_path).map_err(|e| UpdateError::Io {
        what: "reading the trusted root",
        path: root_path,
        source: e,
    })?;
    Ok(RepositoryLoader::new(&root, source.metadata_url.clone(), source.targets_url.clone())
        .transport(transport)
        .datastore(ds.clone())
        .limits(LIMITS)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await?)
}

/// Every Yilian release the repository signs, by target name.
pub fn releases(repo: &Repository) -> Vec<(String, ReleaseMeta, u64)> {
    let mut out: Vec<(String, ReleaseMeta, u64)> = repo
        .targets()
        .signed
        .targets
        .iter()
        .filter_map(|(name, t)| ReleaseMeta::from_custom(&t.custom).map(|m| (name.raw().to_string(), m, t.length)))
        .collect();
    out.sort_by(|a, b| (a.1.kind as u8, &a.1.triple, a.1.version).cmp(&(b.1.kind as u8, &b.1.triple, b.1.version)));
    out
}

/// The signed SHA-256 of target `name`, if the repository has it.
pub fn target_sha256(repo: &Repository, name: &str) -> Option<[u8; 32]> {
    let tname = TargetName::new(name).ok()?;
    <[u8; 32]>::try_from(repo.targets().signed.targets.get(&tname)?.hashes.sha256.as_ref()).ok()
}

/// The newest agent release for `triple`, if any.
pub fn latest_agent(repo: &Repository, triple: &str) -> Option<String> {
    releases(repo).into_iter().rev().find(|(_, m, _)| m.kind == Kind::Agent && m.triple == triple).map(|(n, _, _)| n)
}

/// The delta that rebuilds release `full` from `base`, if the repository signs one.
pub fn delta_for(repo: &Repository, full: &str, base: Version) -> Option<(String, ReleaseMeta)> {
    releases(repo)
        .into_iter()
        .find(|(_, m, _)| m.kind == Kind::Delta && m.full == full && m.base_version == Some(base))
        .map(|(n, m, _)| (n, m))
}

/// Rebuilds release `full` from `base_binary` with the signed delta `delta` (downloaded with
/// [`fetch_resumable`] into `patch_path`), and checks the result against `full`'s signed length
/// and SHA-256. Nothing is trusted that does not match: the caller falls back to the full file.
pub fn apply_delta(repo: &Repository, full: &str, base_binary: &[u8], patch: &[u8]) -> Result<Vec<u8>, UpdateError> {
    use sha2::Digest;
    let tname = TargetName::new(full).map_err(|e| UpdateError::Other(e.to_string()))?;
    let target = repo.targets().signed.targets.get(&tname).ok_or_else(|| UpdateError::NoSuchRelease(full.into()))?;
    let patcher = qbsdiff::Bspatch::new(patch).map_err(|e| UpdateError::Tampered(format!("delta for {full}: {e}")))?;
    if patcher.hint_target_size() != target.length {
        return Err(UpdateError::Tampered(format!(
            "delta for {full} rebuilds {} bytes, not {}",
            patcher.hint_target_size(),
            target.length
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(target.length).unwrap_or(0));
    patcher
        .apply(base_binary, std::io::Cursor::new(&mut out))
        .map_err(|e| UpdateError::Tampered(format!("delta for {full}: {e}")))?;
    if out.len() as u64 != target.length || sha2::Sha256::digest(&out).as_slice() != target.hashes.sha256.as_ref() {
        return Err(UpdateError::Tampered(format!("{full} rebuilt from its delta does not match its signed hash")));
    }
    Ok(out)
}

/// Decides about release `name` for an agent whose highest installed version (ever) is
/// `highest` and whose running version is `running`.
pub fn decide(repo: &Repository, name: &str, running: Version, highest: Version) -> Result<Decision, UpdateError> {
    let tname = TargetName::new(name).map_err(|e| UpdateError::Other(e.to_string()))?;
    let target = repo.targets().signed.targets.get(&tname).ok_or_else(|| UpdateError::NoSuchRelease(name.into()))?;
    let meta = ReleaseMeta::from_custom(&target.custom)
        .ok_or_else(|| UpdateError::Other(format!("{name} carries no Yilian release metadata")))?;
    if meta.version == running {
        return Ok(Decision::UpToDate);
    }
    if meta.version < highest && !meta.allow_downgrade {
        return Err(UpdateError::Downgrade { offered: meta.version, installed: highest });
    }
    if running < meta.min_version {
        return Err(UpdateError::TooOld { name: name.into(), min: meta.min_version, installed: running });
    }
    if target.length > MAX_TARGET_BYTES {
        return Err(UpdateError::TooLarge(format!("{name} is {} bytes", target.length)));
    }
    Ok(Decision::Install { name: name.into(), length: target.length, meta })
}

/// Downloads target `name`, checks it against its signed length and SHA-256, and writes it to
/// `dest` (through a synced temporary file and a rename); nothing is written unless it matches.
pub async fn fetch(repo: &Repository, name: &str, dest: &Path, executable: bool) -> Result<u64, UpdateError> {
    let tname = TargetName::new(name).map_err(|e| UpdateError::Other(e.to_string()))?;
    let stream = repo.read_target(&tname).await?.ok_or_else(|| UpdateError::NoSuchRelease(name.into()))?;
    let bytes = stream.into_vec().await?;
    write_release(dest, &bytes, executable)?;
    Ok(bytes.len() as u64)
}

/// Writes verified release bytes to `dest`: a synced temporary beside it (`.part`, made with
/// its final mode), then a rename, so `dest` is whole or absent.
pub fn write_release(dest: &Path, bytes: &[u8], executable: bool) -> Result<(), UpdateError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| UpdateError::Io { what, path, source }
    };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let tmp = dest.with_extension("part");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    std::fs::rename(&tmp, dest).map_err(io("renaming into place", dest))
}

/// What a resumable download did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// The release's size, bytes.
    pub length: u64,
    /// Bytes that were already on disk from an earlier, cut attempt.
    pub resumed_from: u64,
}

/// Downloads target `name` over HTTPS with `client`, resuming a cut attempt (the `.part` file
/// beside `dest` is the progress kept on disk, `.length` its signed size; `Range: bytes=N-`
/// asks for the rest), then checks
/// the whole file against the signed length and SHA-256 before it becomes `dest`. A file that
/// does not match is deleted, so the next attempt starts clean.
pub async fn fetch_resumable(
    repo: &Repository,
    targets_url: &url::Url,
    client: &reqwest::Client,
    name: &str,
    dest: &Path,
    executable: bool,
) -> Result<Fetched, UpdateError> {
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let tname = TargetName::new(name).map_err(|e| UpdateError::Other(e.to_string()))?;
    let target = repo.targets().signed.targets.get(&tname).ok_or_else(|| UpdateError::NoSuchRelease(name.into()))?;
    let (length, sha256) = (target.length, target.hashes.sha256.as_ref().to_vec());
    if length > MAX_TARGET_BYTES {
        return Err(UpdateError::TooLarge(format!("{name} is {length} bytes")));
    }
    let file_name = if repo.root().signed.consistent_snapshot {
        format!("{}.{name}", hex::encode(&sha256))
    } else {
        name.to_string()
    };
    let url = targets_url.join(&file_name).map_err(|e| UpdateError::Other(e.to_string()))?;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| UpdateError::Io { what, path, source }
    };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let part = dest.with_extension("part");
    // The signed length beside the part, so progress can be told without the metadata.
    let length_file = dest.with_extension("length");
    std::fs::write(&length_file, length.to_string()).map_err(io("writing", &length_file))?;
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if have > length {
        have = 0;
    }
    let resumed_from = have;
    if have < length {
        let mut req = client.get(url.clone());
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut resp = req.send().await.map_err(|e| UpdateError::Unreachable(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let append = match status {
            206 => true,
            200 => false,
            s => return Err(UpdateError::Unreachable(format!("{url}: HTTP {s}"))),
        };
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&part)
            .await
            .map_err(io("opening", &part))?;
        let mut got = if append { have } else { 0 };
        while let Some(chunk) = resp.chunk().await.map_err(|e| UpdateError::Unreachable(format!("{url}: {e}")))? {
            got += chunk.len() as u64;
            if got > length {
                drop(f);
                let _ = std::fs::remove_file(&part);
                return Err(UpdateError::TooLarge(format!(
                    "{name}: the server sent more than its signed {length} bytes"
                )));
            }
            f.write_all(&chunk).await.map_err(io("writing", &part))?;
        }
        f.sync_all().await.map_err(io("syncing", &part))?;
    }
    let bytes = std::fs::read(&part).map_err(io("reading", &part))?;
    if bytes.len() as u64 != length || sha2::Sha256::digest(&bytes).as_slice() != sha256.as_slice() {
        let _ = std::fs::remove_file(&part);
        return Err(UpdateError::Tampered(format!(
            "{name}: {} bytes do not match the signed length and SHA-256",
            bytes.len()
        )));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 }))
        .map_err(io("setting the mode of", &part))?;
    std::fs::rename(&part, dest).map_err(io("renaming into place", dest))?;
    let _ = std::fs::remove_file(&length_file);
    Ok(Fetched { length, resumed_from })
}
