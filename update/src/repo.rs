//! The county's TUF repository, as files in the hub's `<data>/tuf/`:
//!
//! - `root.json`: the newest root, what agents are shipped and pin;
//! - `metadata/`: `N.root.json`, `N.targets.json`, `N.snapshot.json`, `timestamp.json`
//!   (consistent snapshots);
//! - `targets/`: `<sha256>.<name>`;
//! - `keys/`: the online snapshot and timestamp keys.
//!
//! Root and targets are signed offline ([`init`], [`add_target`] with county IT's key folder).
//! The hub re-signs snapshot and timestamp alone ([`refresh`]), so it can keep metadata fresh
//! but cannot list a target of its own: a hub that is broken into cannot push a binary.

use crate::keys::{self, KeyError};
use crate::release::ReleaseMeta;
use aws_lc_rs::rand::SystemRandom;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::editor::RepositoryEditor;
use tough::editor::signed::{PathExists, SignedRole};
use tough::schema::{Hashes, KeyHolder, Metafile, RoleKeys, RoleType, Root, Signed, Snapshot, Target, Timestamp};
use tough::{ExpirationEnforcement, FilesystemTransport, RepositoryLoader, TargetName};

/// How long each role's signature lasts.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Root (offline; re-signed when keys change).
    pub root_days: i64,
    /// Targets (offline; re-signed with each release).
    pub targets_days: i64,
    /// Snapshot (online).
    pub snapshot_days: i64,
    /// Timestamp (online; the hub refreshes it well before it lapses). An agent that sees it
    /// lapse suspects a freeze attack: someone serving it old metadata.
    pub timestamp_days: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self { root_days: 365, targets_days: 180, snapshot_days: 14, timestamp_days: 2 }
    }
}

/// A repository operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// tough refused (a signature, a version, a file).
    #[error("TUF repository: {0}")]
    Tough(Box<tough::error::Error>),
    /// A role or target is malformed.
    #[error("TUF metadata: {0}")]
    Schema(Box<tough::schema::Error>),
    /// A key file.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// File trouble.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Something the repository or the request does not allow.
    #[error("{0}")]
    Invalid(String),
}

impl From<tough::error::Error> for RepoError {
    fn from(e: tough::error::Error) -> Self {
        RepoError::Tough(Box::new(e))
    }
}

impl From<tough::schema::Error> for RepoError {
    fn from(e: tough::schema::Error) -> Self {
        RepoError::Schema(Box::new(e))
    }
}

/// The repository's folders.
#[derive(Debug, Clone)]
pub struct RepoDir(pub PathBuf);

impl RepoDir {
    /// Metadata served at `/tuf/metadata/`.
    pub fn metadata(&self) -> PathBuf {
        self.0.join("metadata")
    }
    /// Targets served at `/tuf/targets/`.
    pub fn targets(&self) -> PathBuf {
        self.0.join("targets")
    }
    /// The newest root: what agents pin.
    pub fn root(&self) -> PathBuf {
        self.0.join("root.json")
    }
    /// Online keys.
    pub fn snapshot_key(&self) -> PathBuf {
        self.0.join("keys").join("snapshot.pk8")
    }
    /// Online keys.
    pub fn timestamp_key(&self) -> PathBuf {
        self.0.join("keys").join("timestamp.pk8")
    }
    /// True once [`init`] ran.
    pub fn exists(&self) -> bool {
        self.root().exists()
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RepoError + 'a {
    move |source| RepoError::Io { what, path: path.to_path_buf(), source }
}

fn in_days(now: jiff02::Timestamp, days: i64) -> Result<jiff02::Timestamp, RepoError> {
    now.checked_add(jiff02::SignedDuration::from_hours(days * 24)).map_err(|e| RepoError::Invalid(e.to_string()))
}

fn nz(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN)
}

/// The current wall-clock time as tough wants it.
pub fn now() -> jiff02::Timestamp {
    jiff02::Timestamp::now()
}

/// Creates the repository: `root_keys` offline root keys (signing threshold `threshold`) and a
/// targets key in `offline` (made if missing), online snapshot and timestamp keys in the hub's
/// repository, root version 1 signed by `threshold` root keys, and empty signed targets.
pub async fn init(
    repo: &RepoDir,
    offline: &Path,
    root_keys: usize,
    threshold: usize,
    life: Lifetimes,
    now: jiff02::Timestamp,
) -> Result<(), RepoError> {
    if repo.exists() {
        return Err(RepoError::Invalid(format!("{} already holds a repository", repo.0.display())));
    }
    if threshold == 0 || threshold > root_keys {
        return Err(RepoError::Invalid(format!("root threshold {threshold} of {root_keys} keys")));
    }
    let root_paths = keys::root_key_paths(offline, root_keys);
    let targets_path = offline.join("targets.pk8");
    for p in root_paths.iter().chain([&targets_path, &repo.snapshot_key(), &repo.timestamp_key()]) {
        if !p.exists() {
            keys::generate(p)?;
        }
    }
    let mut root = Root {
        spec_version: "1.0.0".into(),
        consistent_snapshot: true,
        version: nz(1),
        expires: in_days(now, life.root_days)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    let roles: Vec<(RoleType, Vec<PathBuf>, usize)> = vec![
        (RoleType::Root, root_paths.clone(), threshold),
        (RoleType::Targets, vec![targets_path.clone()], 1),
        (RoleType::Snapshot, vec![repo.snapshot_key()], 1),
        (RoleType::Timestamp, vec![repo.timestamp_key()], 1),
    ];
    for (role, paths, thr) in roles {
        let mut ids = Vec::new();
        for p in paths {
            let key = keys::source(&p)?.as_sign().await.map_err(|e| RepoError::Invalid(e.to_string()))?.tuf_key();
            let id = key.key_id()?;
            root.keys.insert(id.clone(), key);
            ids.push(id);
        }
        root.roles.insert(role, RoleKeys { keyids: ids, threshold: nz(thr as u64), _extra: HashMap::new() });
    }
    let signers = root_paths[..threshold].iter().map(|p| keys::source(p)).collect::<Result<Vec<_>, _>>()?;
    let signed = SignedRole::new(root.clone(), &KeyHolder::Root(root), &signers, &SystemRandom::new()).await?;
    let meta = repo.metadata();
    std::fs::create_dir_all(&meta).map_err(io("creating", &meta))?;
    std::fs::create_dir_all(repo.targets()).map_err(io("creating", &repo.targets()))?;
    signed.write(&meta, true).await?;
    std::fs::write(repo.root(), signed.buffer()).map_err(io("writing", &repo.root()))?;
    let mut editor = RepositoryEditor::new(repo.root()).await?;
    editor
        .targets_version(nz(1))?
        .targets_expires(in_days(now, life.targets_days)?)?
        .snapshot_version(nz(1))
        .snapshot_expires(in_days(now, life.snapshot_days)?)
        .timestamp_version(nz(1))
        .timestamp_expires(in_days(now, life.timestamp_days)?);
    let keys =
        [keys::source(&targets_path)?, keys::source(&repo.snapshot_key())?, keys::source(&repo.timestamp_key())?];
    let signed = editor.sign(&keys).await?;
    signed.write(&meta).await?;
    Ok(())
}

fn dir_url(dir: &Path) -> Result<url::Url, RepoError> {
    url::Url::from_directory_path(dir)
        .map_err(|()| RepoError::Invalid(format!("{} is not an absolute path", dir.display())))
}

/// Loads the repository from its own files (for county IT's tools; expiry not enforced, since
/// re-signing is how a lapsed role is renewed).
async fn load_local(repo: &RepoDir) -> Result<tough::Repository, RepoError> {
    let root = std::fs::read(repo.root()).map_err(io("reading", &repo.root()))?;
    let meta = std::fs::canonicalize(repo.metadata()).map_err(io("resolving", &repo.metadata()))?;
    let targets = std::fs::canonicalize(repo.targets()).map_err(io("resolving", &repo.targets()))?;
    Ok(RepositoryLoader::new(&root, dir_url(&meta)?, dir_url(&targets)?)
        .transport(FilesystemTransport)
        .expiration_enforcement(ExpirationEnforcement::Unsafe)
        .load()
        .await?)
}

/// Adds `file` as the release `meta` describes, signed with the offline targets key in
/// `offline` (and the hub's snapshot and timestamp keys); returns the target name.
pub async fn add_target(
    repo: &RepoDir,
    offline: &Path,
    file: &Path,
    meta: &ReleaseMeta,
    life: Lifetimes,
    now: jiff02::Timestamp,
) -> Result<String, RepoError> {
    if meta.min_version > meta.version {
        return Err(RepoError::Invalid(format!("min_version {} is above version {}", meta.min_version, meta.version)));
    }
    let current = load_local(repo).await?;
    let name = meta.target_name();
    let target_name = TargetName::new(name.clone())?;
    if current.targets().signed.targets.contains_key(&target_name) {
        return Err(RepoError::Invalid(format!("{name} is already released; a release is never replaced")));
    }
    let versions = (
        current.targets().signed.version.get(),
        current.snapshot().signed.version.get(),
        current.timestamp().signed.version.get(),
    );
    let mut target = Target::from_path(file).await?;
    target.custom = meta.to_custom();
    // An agent release also gets a delta from the release below it, for carts that run that one.
    let delta =
        if meta.kind == crate::release::Kind::Agent { delta_from_previous(repo, &current, file, meta)? } else { None };
    let mut editor = RepositoryEditor::from_repo(repo.root(), current).await?;
    editor.add_target(target_name.clone(), target)?;
    if let Some((patch, dmeta)) = &delta {
        let mut t = Target::from_path(patch).await?;
        t.custom = dmeta.to_custom();
        editor.add_target(TargetName::new(dmeta.target_name())?, t)?;
    }
    editor
        .targets_version(nz(versions.0 + 1))?
        .targets_expires(in_days(now, life.targets_days)?)?
        .snapshot_version(nz(versions.1 + 1))
        .snapshot_expires(in_days(now, life.snapshot_days)?)
        .timestamp_version(nz(versions.2 + 1))
        .timestamp_expires(in_days(now, life.timestamp_days)?);
    let keys = [
        keys::source(&offline.join("targets.pk8"))?,
        keys::source(&repo.snapshot_key())?,
        keys::source(&repo.timestamp_key())?,
    ];
    let signed = editor.sign(&keys).await?;
    // Targets first: metadata that names a file must never be served before the file is there.
    signed.copy_target(file, &repo.targets(), PathExists::Skip, Some(&target_name)).await?;
    if let Some((patch, dmeta)) = &delta {
        signed
            .copy_target(patch, &repo.targets(), PathExists::Skip, Some(&TargetName::new(dmeta.target_name())?))
            .await?;
        let _ = std::fs::remove_file(patch);
    }
    signed.write(repo.metadata()).await?;
    Ok(name)
}

/// A bsdiff patch from the highest agent release below `meta` (same triple) to `file`, written
/// beside the targets, and its metadata; `None` if there is no such release.
fn delta_from_previous(
    repo: &RepoDir,
    current: &tough::Repository,
    file: &Path,
    meta: &ReleaseMeta,
) -> Result<Option<(PathBuf, ReleaseMeta)>, RepoError> {
    let base = crate::client::releases(current)
        .into_iter()
        .filter(|(_, m, _)| {
            m.kind == crate::release::Kind::Agent && m.triple == meta.triple && m.version < meta.version
        })
        .max_by_key(|(_, m, _)| m.version);
    let Some((base_name, base_meta, _)) = base else { return Ok(None) };
    let tname = TargetName::new(base_name.clone())?;
    let Some(t) = current.targets().signed.targets.get(&tname) else { return Ok(None) };
    let base_sha = hex::encode(t.hashes.sha256.as_ref());
    let base_path = repo.targets().join(format!("{base_sha}.{base_name}"));
    let old = std::fs::read(&base_path).map_err(io("reading the base release", &base_path))?;
    let new = std::fs::read(file).map_err(io("reading", file))?;
    let mut patch = Vec::new();
    qbsdiff::Bsdiff::new(&old, &new)
        .compare(std::io::Cursor::new(&mut patch))
        .map_err(io("diffing against", &base_path))?;
    let dmeta = ReleaseMeta {
        kind: crate::release::Kind::Delta,
        version: meta.version,
        min_version: base_meta.version,
        allow_downgrade: meta.allow_downgrade,
        triple: meta.triple.clone(),
        base_version: Some(base_meta.version),
        base_sha256: base_sha,
        full: meta.target_name(),
    };
    let path = repo.0.join(format!(".{}", dmeta.target_name()));
    std::fs::write(&path, &patch).map_err(io("writing", &path))?;
    Ok(Some((path, dmeta)))
}

/// The releases the repository signs (name, metadata, length), as county IT's tools see them.
pub async fn releases(repo: &RepoDir) -> Result<Vec<(String, ReleaseMeta, u64)>, RepoError> {
    Ok(crate::client::releases(&load_local(repo).await?))
}

/// The signed release of `kind`, `version` (and `triple`, for agent binaries) in the local
/// repository: its target name, metadata and signed SHA-256.
pub async fn find_release(
    repo: &RepoDir,
    kind: crate::Kind,
    version: crate::Version,
    triple: &str,
) -> Result<Option<(String, ReleaseMeta, [u8; 32])>, RepoError> {
    let local = load_local(repo).await?;
    Ok(crate::client::releases(&local).into_iter().find_map(|(name, meta, _)| {
        let wanted =
            meta.kind == kind && meta.version == version && (kind != crate::Kind::Agent || meta.triple == triple);
        if !wanted {
            return None;
        }
        let sha = crate::client::target_sha256(&local, &name)?;
        Some((name, meta, sha))
    }))
}

/// Replaces offline root key `slot` (`root-<slot>.pk8`) with a new one: root version N+1 lists
/// the new key instead of the old, and is signed by the remaining old keys and the new one, so it
/// meets both the old root's threshold and its own (TUF's rule for a root update). Agents follow
/// it by themselves (`N+1.root.json`); the old key file is kept as `root-<slot>.retired-<N>.pk8`
/// for county IT to destroy. Returns the new root version.
pub async fn rotate_root_key(
    repo: &RepoDir,
    offline: &Path,
    slot: usize,
    life: Lifetimes,
    now: jiff02::Timestamp,
) -> Result<u64, RepoError> {
    let old: Signed<Root> = read_signed(&repo.root())?;
    let version = old.signed.version.get();
    let slot_path = offline.join(format!("root-{slot}.pk8"));
    let old_id =
        keys::source(&slot_path)?.as_sign().await.map_err(|e| RepoError::Invalid(e.to_string()))?.tuf_key().key_id()?;
    let root_role =
        old.signed.roles.get(&RoleType::Root).ok_or_else(|| RepoError::Invalid("root lists no root role".into()))?;
    if !root_role.keyids.contains(&old_id) {
        return Err(RepoError::Invalid(format!("{} is not a key of the current root", slot_path.display())));
    }
    let threshold = root_role.threshold.get() as usize;
    // The other old keys present must meet the old threshold by themselves.
    let others: Vec<PathBuf> = keys::present_root_keys(offline).into_iter().filter(|p| *p != slot_path).collect();
    if others.len() < threshold {
        return Err(RepoError::Invalid(format!(
            "rotating needs {threshold} other root keys in {} (found {})",
            offline.display(),
            others.len()
        )));
    }
    let fresh = offline.join(format!("root-{slot}.new.pk8"));
    let _ = std::fs::remove_file(&fresh);
    keys::generate(&fresh)?;
    let new_key = keys::source(&fresh)?.as_sign().await.map_err(|e| RepoError::Invalid(e.to_string()))?.tuf_key();
    let new_id = new_key.key_id()?;
    let mut root = old.signed.clone();
    root.version = nz(version + 1);
    root.expires = in_days(now, life.root_days)?;
    root.keys.remove(&old_id);
    root.keys.insert(new_id.clone(), new_key);
    if let Some(role) = root.roles.get_mut(&RoleType::Root) {
        role.keyids.retain(|k| *k != old_id);
        role.keyids.push(new_id);
    }
    let mut signers = others.iter().take(threshold).map(|p| keys::source(p)).collect::<Result<Vec<_>, _>>()?;
    signers.push(keys::source(&fresh)?);
    let signed = SignedRole::new(root.clone(), &KeyHolder::Root(root), &signers, &SystemRandom::new()).await?;
    signed.write(repo.metadata(), true).await?;
    let tmp = repo.root().with_extension("tmp");
    std::fs::write(&tmp, signed.buffer()).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, repo.root()).map_err(io("renaming", &repo.root()))?;
    let retired = offline.join(format!("root-{slot}.retired-{version}.pk8"));
    std::fs::rename(&slot_path, &retired).map_err(io("retiring", &slot_path))?;
    std::fs::rename(&fresh, &slot_path).map_err(io("installing", &slot_path))?;
    Ok(version + 1)
}

/// Copies the repository's `metadata/` and `targets/` into `out` (an offline bundle); returns
/// how many files. Nothing in it needs protecting: it is all signed.
pub fn bundle(repo: &RepoDir, out: &Path) -> Result<usize, RepoError> {
    let mut n = 0;
    for (from, to) in [(repo.metadata(), out.join("metadata")), (repo.targets(), out.join("targets"))] {
        std::fs::create_dir_all(&to).map_err(io("creating", &to))?;
        for e in std::fs::read_dir(&from).map_err(io("listing", &from))? {
            let e = e.map_err(io("listing", &from))?;
            if e.path().is_file() {
                let dest = to.join(e.file_name());
                std::fs::copy(e.path(), &dest).map_err(io("copying to", &dest))?;
                n += 1;
            }
        }
    }
    Ok(n)
}

fn read_signed<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Signed<T>, RepoError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|e| RepoError::Invalid(format!("{}: {e}", path.display())))
}

/// Re-signs snapshot and timestamp with the hub's online keys when the timestamp has less than
/// half its life left (or always, with `force`); returns whether it did. Targets are untouched:
/// the hub has no key for them.
pub async fn refresh(repo: &RepoDir, life: Lifetimes, now: jiff02::Timestamp, force: bool) -> Result<bool, RepoError> {
    let meta = repo.metadata();
    let ts: Signed<Timestamp> = read_signed(&meta.join("timestamp.json"))?;
    let half = jiff02::SignedDuration::from_hours(life.timestamp_days * 12);
    if !force && ts.signed.expires.duration_since(now) > half {
        return Ok(false);
    }
    let root: Signed<Root> = read_signed(&repo.root())?;
    let snap_version = ts
        .signed
        .meta
        .get("snapshot.json")
        .map(|m| m.version.get())
        .ok_or_else(|| RepoError::Invalid("timestamp lists no snapshot".into()))?;
    let old_snap: Signed<Snapshot> = read_signed(&meta.join(format!("{snap_version}.snapshot.json")))?;
    let mut snap = Snapshot::new("1.0.0".into(), nz(snap_version + 1), in_days(now, life.snapshot_days)?);
    snap.meta = old_snap.signed.meta;
    let holder = KeyHolder::Root(root.signed.clone());
    let rng = SystemRandom::new();
    let snap = SignedRole::new(snap, &holder, &[keys::source(&repo.snapshot_key())?], &rng).await?;
    let mut stamp = Timestamp::new("1.0.0".into(), nz(ts.signed.version.get() + 1), in_days(now, life.timestamp_days)?);
    stamp.meta.insert(
        "snapshot.json".into(),
        Metafile {
            length: Some(*snap.length()),
            hashes: Some(Hashes { sha256: snap.sha256().to_vec().into(), _extra: HashMap::new() }),
            version: snap.signed().signed.version,
            _extra: HashMap::new(),
        },
    );
    let stamp = SignedRole::new(stamp, &holder, &[keys::source(&repo.timestamp_key())?], &rng).await?;
    // The snapshot the new timestamp names must be there before the timestamp is.
    snap.write(&meta, true).await?;
    stamp.write(&meta, true).await?;
    Ok(true)
}
