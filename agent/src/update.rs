//! Fleet updates on the clinic side: check the county's signed repository (over HTTPS from the
//! hub, or an offline bundle on a USB stick, verified the same way) and stage the release meant
//! for this agent under `releases/<version>/`.
//!
//! What is staged here is verified (signatures, expiry, rollback, length and SHA-256) and never
//! older than what this device installed before, unless the signed release allows it. Switching
//! to it is the supervisor's job.

use crate::config::{AgentConfig, UpdateConfig};
use std::path::{Path, PathBuf};
use yilian_update::client::{self, CountyTransport, Decision, Source};
use yilian_update::{UpdateError, Version};

/// This build's target triple (what the repository's agent releases are named by).
pub const TRIPLE: &str = env!("YILIAN_TARGET");

/// This build's version.
pub fn running_version() -> Version {
    env!("CARGO_PKG_VERSION").parse().unwrap_or(Version(0, 0, 0))
}

/// What a check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The repository has no agent release for this platform.
    NoRelease,
    /// The newest release is the running one.
    UpToDate(Version),
    /// The newest release was rolled back here before; it is not tried again.
    RolledBackBefore(Version),
    /// A release was verified and staged.
    Staged {
        /// Its version.
        version: Version,
        /// The staged binary.
        path: PathBuf,
        /// Its size, bytes.
        bytes: u64,
        /// Rebuilt from a delta of this many bytes (instead of downloading the whole file).
        delta_bytes: Option<u64>,
    },
}

/// The update state kept in `dir/state.json`: the highest version ever installed, which
/// anti-rollback compares against (surviving reinstalls of older binaries).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct State {
    highest_installed: Version,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// The highest version this device installed, or the running one if higher or none recorded.
pub fn highest_installed(dir: &Path, running: Version) -> Version {
    std::fs::read(state_path(dir))
        .ok()
        .and_then(|b| serde_json::from_slice::<State>(&b).ok())
        .map_or(running, |s| s.highest_installed.max(running))
}

/// Records `v` as installed (kept if lower than the highest so far).
pub fn record_installed(dir: &Path, v: Version) -> std::io::Result<()> {
    let highest = highest_installed(dir, v);
    std::fs::create_dir_all(dir)?;
    crate::durable::write_json(&state_path(dir), &State { highest_installed: highest })
}

/// The repository of `update`: the hub's `/tuf/`, or `bundle` (a folder holding `metadata/` and
/// `targets/`, e.g. a USB stick).
pub fn source(update: &UpdateConfig, bundle: Option<&Path>) -> Result<Source, UpdateError> {
    let (metadata_url, targets_url) = match bundle {
        Some(b) => {
            let b = std::fs::canonicalize(b).map_err(|e| UpdateError::Io {
                what: "opening the bundle",
                path: b.to_path_buf(),
                source: e,
            })?;
            let dir = |d: &str| {
                url::Url::from_directory_path(b.join(d))
                    .map_err(|()| UpdateError::Other(format!("bundle path {}", b.display())))
            };
            (dir("metadata")?, dir("targets")?)
        }
        None => {
            let base = url::Url::parse(&format!("{}/", update.hub.trim_end_matches('/')))
                .map_err(|e| UpdateError::Other(format!("update.hub {}: {e}", update.hub)))?;
            let join = |p: &str| base.join(p).map_err(|e| UpdateError::Other(e.to_string()));
            (join("tuf/metadata/")?, join("tuf/targets/")?)
        }
    };
    Ok(Source { shipped_root: update.root.clone(), datastore: update.dir.join("tuf"), metadata_url, targets_url })
}

/// An HTTPS client trusting only the county CA of `cfg`.
pub fn http_client(cfg: &AgentConfig) -> Result<reqwest::Client, UpdateError> {
    let pem = match &cfg.ca_certificate {
        Some(ca) => {
            Some(std::fs::read(ca).map_err(|e| UpdateError::Io { what: "reading", path: ca.clone(), source: e })?)
        }
        None => None,
    };
    crate::enrol::county_client(pem.as_deref())
        .map_err(|e| UpdateError::Other(format!("county CA: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(20))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| UpdateError::Other(e.to_string()))
}

/// Checks for this agent's newest release and stages it if it should be installed.
pub async fn check(cfg: &AgentConfig, bundle: Option<&Path>, running: Version) -> Result<Outcome, UpdateError> {
    let update =
        cfg.update.as_ref().ok_or_else(|| UpdateError::Other("no [update] section in the configuration".into()))?;
    // The installed release is what runs once the supervisor has switched to it.
    let running = crate::install::linked(&update.dir, "current").and_then(|v| v.parse().ok()).unwrap_or(running);
    let src = source(update, bundle)?;
    let http = http_client(cfg)?;
    let repo = client::load(&src, CountyTransport::new(http.clone())).await?;
    let Some(name) = client::latest_agent(&repo, TRIPLE) else { return Ok(Outcome::NoRelease) };
    match client::decide(&repo, &name, running, highest_installed(&update.dir, running))? {
        Decision::UpToDate => Ok(Outcome::UpToDate(running)),
        Decision::Install { meta, .. } if crate::supervise::rolled_back(&update.dir, &meta.version.to_string()) => {
            Ok(Outcome::RolledBackBefore(meta.version))
        }
        Decision::Install { meta, .. } => {
            let path = update.dir.join("releases").join(meta.version.to_string()).join("yilian-agent");
            if bundle.is_some() {
                let bytes = client::fetch(&repo, &name, &path, true).await?;
                return Ok(Outcome::Staged { version: meta.version, path, bytes, delta_bytes: None });
            }
            match by_delta(&repo, &src, &http, &update.dir, &name, running, &path).await {
                Ok(Some((bytes, delta))) => {
                    return Ok(Outcome::Staged { version: meta.version, path, bytes, delta_bytes: Some(delta) });
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "delta update failed; downloading the whole release"),
            }
            // Over a clinic's link: resumable, so a cut costs only what was not yet received.
            let f = client::fetch_resumable(&repo, &src.targets_url, &http, &name, &path, true).await?;
            if f.resumed_from > 0 {
                tracing::info!(resumed_from = f.resumed_from, length = f.length, "release download resumed");
            }
            Ok(Outcome::Staged { version: meta.version, path, bytes: f.length, delta_bytes: None })
        }
    }
}

/// Stages release `name` by patching the installed `running` release with its signed delta,
/// when the repository has one for that base and the installed binary is that base exactly.
/// `Ok(None)`: no delta applies. Returns the release's size and the delta's.
async fn by_delta(
    repo: &client::Repository,
    src: &Source,
    http: &reqwest::Client,
    dir: &Path,
    name: &str,
    running: Version,
    dest: &Path,
) -> Result<Option<(u64, u64)>, UpdateError> {
    use sha2::Digest;
    let Some((delta_name, delta)) = client::delta_for(repo, name, running) else { return Ok(None) };
    let base_path = crate::install::binary(&crate::install::release_dir(dir, &running.to_string()));
    let Ok(base) = std::fs::read(&base_path) else { return Ok(None) };
    if hex::encode(sha2::Sha256::digest(&base)) != delta.base_sha256 {
        tracing::warn!(base = %base_path.display(), "the installed release differs from the delta's base; downloading the whole release");
        return Ok(None);
    }
    let patch_path = dest.with_file_name("delta.bsdiff");
    let f = client::fetch_resumable(repo, &src.targets_url, http, &delta_name, &patch_path, false).await?;
    let patch = std::fs::read(&patch_path).map_err(|e| UpdateError::Io {
        what: "reading",
        path: patch_path.clone(),
        source: e,
    })?;
    let _ = std::fs::remove_file(&patch_path);
    let rebuilt = client::apply_delta(repo, name, &base, &patch)?;
    client::write_release(dest, &rebuilt, true)?;
    tracing::info!(delta_bytes = f.length, release_bytes = rebuilt.len(), "release rebuilt from its delta");
    Ok(Some((rebuilt.len() as u64, f.length)))
}
