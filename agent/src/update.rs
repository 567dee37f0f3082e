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
    /// Managed by rollouts, and no rollout assigns this device an agent release now.
    NotAssigned,
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

/// The largest assignment answer read (an envelope of a few targets).
const ASSIGNMENT_MAX: usize = 64 * 1024;

#[derive(serde::Serialize, serde::Deserialize)]
struct AssignmentSeen {
    issued_at_ms: i64,
}

/// Fetches this device's release assignment from the hub and checks it with
/// [`verify_assignment`].
pub async fn assignment(
    cfg: &AgentConfig,
    update: &UpdateConfig,
    http: &reqwest::Client,
) -> Result<yilian_protocol::message::UpdateAssignment, UpdateError> {
    let url = format!("{}/fleet/assignment/{}", update.hub.trim_end_matches('/'), cfg.device);
    let resp = http.get(&url).send().await.map_err(|e| UpdateError::Unreachable(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(UpdateError::Other(format!("{url}: HTTP {}", resp.status())));
    }
    if resp.content_length().is_some_and(|n| n > ASSIGNMENT_MAX as u64) {
        return Err(UpdateError::TooLarge(format!("the assignment from {url}")));
    }
    let bytes = resp.bytes().await.map_err(|e| UpdateError::Unreachable(format!("{url}: {e}")))?;
    let (_, hub_key) = crate::run::load_keys(cfg).map_err(|e| UpdateError::Other(e.to_string()))?;
    verify_assignment(&bytes, &hub_key, &cfg.site, &cfg.device, &update.dir)
}

/// Checks an assignment's wire bytes: signed by `hub_key` for `device`'s ack topic (so it is
/// for this device only), and not older than the last one accepted, which `dir/assignment.json`
/// keeps (a replayed old assignment is refused).
pub fn verify_assignment(
    bytes: &[u8],
    hub_key: &yilian_protocol::keys::PublicKey,
    site: &str,
    device: &str,
    dir: &Path,
) -> Result<yilian_protocol::message::UpdateAssignment, UpdateError> {
    use yilian_protocol::envelope::Envelope;
    use yilian_protocol::message::Payload;
    use yilian_protocol::topic::{Channel, Topic};
    if bytes.len() > ASSIGNMENT_MAX {
        return Err(UpdateError::TooLarge(format!("an assignment of {} bytes", bytes.len())));
    }
    let topic = Topic::new(site, device, Channel::Ack).map_err(|e| UpdateError::Other(e.to_string()))?;
    let verified = Envelope::decode(bytes)
        .map_err(|e| UpdateError::BadSignature(format!("assignment: {e}")))?
        .verify(hub_key, &topic, None)
        .map_err(|e| UpdateError::BadSignature(format!("assignment: {e}")))?;
    let Payload::UpdateAssignment(a) = verified.into_parts().1 else {
        return Err(UpdateError::BadSignature("the hub's answer is not an assignment".into()));
    };
    let seen_path = dir.join("assignment.json");
    let seen = std::fs::read(&seen_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<AssignmentSeen>(&b).ok())
        .map_or(i64::MIN, |s| s.issued_at_ms);
    if a.issued_at_ms < seen {
        return Err(UpdateError::Rollback(format!(
            "assignment issued at {} ms is older than one already accepted ({seen} ms)",
            a.issued_at_ms
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| UpdateError::Io {
        what: "creating",
        path: dir.to_path_buf(),
        source: e,
    })?;
    crate::durable::write_json(&seen_path, &AssignmentSeen { issued_at_ms: a.issued_at_ms })
        .map_err(|e| UpdateError::Io { what: "writing", path: seen_path.clone(), source: e })?;
    Ok(a)
}

/// The assigned target of `kind` (and this platform, for agent binaries) that the verified
/// repository signs with exactly the hash the hub named. A hub can only point at what county
/// IT signed: a name the repository lacks, or another hash, is refused.
pub fn assigned_target(
    repo: &client::Repository,
    a: &yilian_protocol::message::UpdateAssignment,
    kind: yilian_update::Kind,
) -> Result<Option<String>, UpdateError> {
    let releases = client::releases(repo);
    for t in &a.targets {
        let Some((_, meta, _)) = releases.iter().find(|(n, _, _)| *n == t.name) else {
            if t.name.starts_with(&format!("{}-", kind_prefix(kind))) {
                return Err(UpdateError::NoSuchRelease(format!("{} (assigned by the hub)", t.name)));
            }
            continue;
        };
        if meta.kind != kind || (kind == yilian_update::Kind::Agent && meta.triple != TRIPLE) {
            continue;
        }
        if client::target_sha256(repo, &t.name) != Some(t.sha256) {
            return Err(UpdateError::Tampered(format!(
                "the hub assigned {} with a hash the signed repository does not give it",
                t.name
            )));
        }
        return Ok(Some(t.name.clone()));
    }
    Ok(None)
}

fn kind_prefix(kind: yilian_update::Kind) -> &'static str {
    match kind {
        yilian_update::Kind::Agent => "agent",
        yilian_update::Kind::Config => "config",
        yilian_update::Kind::Delta => "delta",
    }
}

/// Checks for this agent's newest release (or, when managed, the one assigned to this device)
/// and stages it if it should be installed.
pub async fn check(cfg: &AgentConfig, bundle: Option<&Path>, running: Version) -> Result<Outcome, UpdateError> {
    let update =
        cfg.update.as_ref().ok_or_else(|| UpdateError::Other("no [update] section in the configuration".into()))?;
    // The installed release is what runs once the supervisor has switched to it.
    let running = crate::install::linked(&update.dir, "current").and_then(|v| v.parse().ok()).unwrap_or(running);
    let src = source(update, bundle)?;
    let http = http_client(cfg)?;
    let repo = client::load(&src, CountyTransport::new(http.clone())).await?;
    // An offline bundle is county IT's own choice on site; managed agents take assignments only
    // from the hub.
    let name = if update.managed && bundle.is_none() {
        let a = assignment(cfg, update, &http).await?;
        match assigned_target(&repo, &a, yilian_update::Kind::Agent)? {
            Some(name) => name,
            None => return Ok(Outcome::NotAssigned),
        }
    } else {
        match client::latest_agent(&repo, TRIPLE) {
            Some(name) => name,
            None => return Ok(Outcome::NoRelease),
        }
    };
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

/// What a configuration-bundle check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleOutcome {
    /// The repository has no configuration bundle.
    NoBundle,
    /// Managed by rollouts, and no rollout assigns this device a bundle now.
    NotAssigned,
    /// The bundle is the one in effect.
    UpToDate(Version),
    /// The bundle was rolled back or refused here before; it is not tried again.
    RefusedBefore(Version),
    /// The bundle would not run here (`check-config` on it found problems); not installed.
    Refused {
        /// Its version.
        version: Version,
        /// What is wrong.
        problems: Vec<String>,
    },
    /// A bundle was verified, checked with this device's file and staged.
    Staged {
        /// Its version.
        version: Version,
        /// The staged overlay.
        path: PathBuf,
    },
}

/// Checks for the configuration bundle meant for this agent (the newest, or when managed the
/// assigned one), stages it under `config/releases/<version>/agent.toml`, and runs the checks
/// of `check-config` on this device's file with it laid over: one that would not run is
/// recorded as refused and removed, so it never replaces the configuration in effect.
pub async fn check_bundle(
    cfg: &AgentConfig,
    config_path: &Path,
    bundle: Option<&Path>,
) -> Result<BundleOutcome, UpdateError> {
    use yilian_update::Kind;
    let update =
        cfg.update.as_ref().ok_or_else(|| UpdateError::Other("no [update] section in the configuration".into()))?;
    let dir = crate::config::bundles_dir(&update.dir);
    let src = source(update, bundle)?;
    let http = http_client(cfg)?;
    let repo = client::load(&src, CountyTransport::new(http.clone())).await?;
    let name = if update.managed && bundle.is_none() {
        let a = assignment(cfg, update, &http).await?;
        match assigned_target(&repo, &a, Kind::Config)? {
            Some(name) => name,
            None => return Ok(BundleOutcome::NotAssigned),
        }
    } else {
        match client::releases(&repo).into_iter().rev().find(|(_, m, _)| m.kind == Kind::Config) {
            Some((name, _, _)) => name,
            None => return Ok(BundleOutcome::NoBundle),
        }
    };
    let current = crate::install::linked(&dir, "current").and_then(|v| v.parse().ok()).unwrap_or(Version(0, 0, 0));
    let meta = match client::decide(&repo, &name, current, highest_installed(&dir, current))? {
        Decision::UpToDate => return Ok(BundleOutcome::UpToDate(current)),
        Decision::Install { meta, .. } => meta,
    };
    let label = crate::supervise::bundle_label(&meta.version.to_string());
    if crate::supervise::rolled_back(&update.dir, &label) {
        return Ok(BundleOutcome::RefusedBefore(meta.version));
    }
    let release = crate::install::release_dir(&dir, &meta.version.to_string());
    let path = release.join(crate::config::BUNDLE_FILE);
    client::fetch(&repo, &name, &path, false).await?;
    let problems = match AgentConfig::load_with(config_path, crate::config::Bundle::Candidate(&path)) {
        Ok(candidate) => candidate.problems(),
        Err(e) => vec![e.to_string()],
    };
    if !problems.is_empty() {
        let _ = std::fs::remove_dir_all(&release);
        crate::supervise::record(
            &update.dir,
            crate::supervise::TrialResult {
                version: label,
                result: "refused".into(),
                reason: problems.join("; "),
                at_ms: crate::clock::now_ms(),
            },
        );
        return Ok(BundleOutcome::Refused { version: meta.version, problems });
    }
    Ok(BundleOutcome::Staged { version: meta.version, path })
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

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_protocol::envelope::{Header, seal};
    use yilian_protocol::keys::SigningKey;
    use yilian_protocol::message::{AssignedTarget, Lane, Payload, UpdateAssignment};
    use yilian_protocol::topic::{Channel, Topic};

    fn signed(key: &SigningKey, site: &str, device: &str, at_ms: i64) -> Vec<u8> {
        let a = UpdateAssignment {
            issued_at_ms: at_ms,
            targets: vec![AssignedTarget {
                rollout_id: 1,
                name: "agent-x-1.0.0".into(),
                version: "1.0.0".into(),
                sha256: [1; 32],
            }],
        };
        let topic = Topic::new(site, device, Channel::Ack).expect("topic");
        seal(key, Header::new(key, "hub", 0, at_ms, Lane::Stat), &topic, &Payload::UpdateAssignment(a)).expect("seal")
    }

    #[test]
    fn an_assignment_is_taken_only_from_the_hub_for_this_device_and_never_older() {
        let tmp = tempfile::tempdir().expect("tmp");
        let hub = SigningKey::generate().expect("key");
        let other = SigningKey::generate().expect("key");
        let ok = verify_assignment(&signed(&hub, "s", "cart-1", 2_000), &hub.public_key(), "s", "cart-1", tmp.path());
        assert_eq!(ok.expect("valid").targets.len(), 1);
        // Signed by someone else, or for another device: refused as a bad signature.
        let forged =
            verify_assignment(&signed(&other, "s", "cart-1", 3_000), &hub.public_key(), "s", "cart-1", tmp.path());
        assert!(matches!(forged, Err(UpdateError::BadSignature(_))), "{forged:?}");
        let theirs =
            verify_assignment(&signed(&hub, "s", "cart-2", 3_000), &hub.public_key(), "s", "cart-1", tmp.path());
        assert!(matches!(theirs, Err(UpdateError::BadSignature(_))), "{theirs:?}");
        // An older one replayed: refused; the same or a newer one: taken.
        let old = verify_assignment(&signed(&hub, "s", "cart-1", 1_000), &hub.public_key(), "s", "cart-1", tmp.path());
        assert!(matches!(old, Err(UpdateError::Rollback(_))), "{old:?}");
        assert!(
            verify_assignment(&signed(&hub, "s", "cart-1", 2_000), &hub.public_key(), "s", "cart-1", tmp.path())
                .is_ok()
        );
        let garbage = verify_assignment(b"\x01\x02garbage", &hub.public_key(), "s", "cart-1", tmp.path());
        assert!(matches!(garbage, Err(UpdateError::BadSignature(_))), "{garbage:?}");
    }
}
