//! The agent's signed fleet report: where this device stands with updates (installed release
//! and its hash, the trial in progress, the last result), sent through the spool whenever it
//! changes, so county IT sees every clinic's state on the hub's fleet page.

use crate::config::UpdateConfig;
use crate::uplink::Outgoing;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use yilian_protocol::message::{FleetReport, Lane, Payload};

/// How often the update folder is looked at.
pub const EVERY: Duration = Duration::from_secs(5);

/// The report as the update folder `dir` describes it now. `hash_of` caches the installed
/// binary's hash by version (it is read once per release, not every few seconds).
pub fn report(dir: &Path, hash_of: &mut Option<(String, [u8; 32])>) -> FleetReport {
    let current = crate::install::linked(dir, "current");
    let installed_version = current.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    let installed_sha256 = match &current {
        Some(v) => match hash_of {
            Some((cached, h)) if cached == v => *h,
            _ => {
                let h: [u8; 32] = std::fs::read(crate::install::binary(&crate::install::release_dir(dir, v)))
                    .map(|b| Sha256::digest(&b).into())
                    .unwrap_or([0; 32]);
                *hash_of = Some((v.clone(), h));
                h
            }
        },
        None => [0; 32],
    };
    let bundles = crate::config::bundles_dir(dir);
    let trial_version = crate::install::trial(dir)
        .map(|t| t.version)
        .or_else(|| crate::install::trial(&bundles).map(|t| crate::supervise::bundle_label(&t.version)));
    let last = crate::supervise::results(dir).pop();
    let downloading = download_progress(dir);
    let state = if trial_version.is_some() {
        "on trial".to_string()
    } else if downloading.is_some() {
        "downloading".to_string()
    } else {
        last.as_ref().map_or_else(|| "idle".to_string(), |r| r.result.clone())
    };
    FleetReport {
        installed_version,
        installed_sha256,
        config_version: crate::install::linked(&bundles, "current").unwrap_or_default(),
        trial_version,
        state,
        download_per_mille: downloading.unwrap_or(0),
        last_version: last.as_ref().map(|r| r.version.clone()).unwrap_or_default(),
        last_reason: last.as_ref().map(|r| r.reason.clone()).unwrap_or_default(),
        last_at_ms: last.as_ref().map_or(0, |r| r.at_ms),
    }
}

/// A download in progress, in per mille of its signed length (the `.part` beside a `.length`).
fn download_progress(dir: &Path) -> Option<u16> {
    std::fs::read_dir(dir.join("releases")).ok()?.flatten().find_map(|e| {
        let part = std::fs::metadata(e.path().join("yilian-agent.part")).ok()?.len();
        let length: u64 = std::fs::read_to_string(e.path().join("yilian-agent.length")).ok()?.trim().parse().ok()?;
        Some(u16::try_from(part.saturating_mul(1000) / length.max(1)).unwrap_or(1000).min(1000))
    })
}

/// Sends a report at start and whenever it changes, until `shutdown`.
pub async fn run(update: UpdateConfig, tx: mpsc::Sender<Outgoing>, shutdown: CancellationToken) {
    let mut last: Option<FleetReport> = None;
    let mut hash_of = None;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = report(&update.dir, &mut hash_of);
        if last.as_ref() != Some(&now) {
            if tx.send(Outgoing::new(Lane::Stream, Payload::FleetReport(now.clone()))).await.is_err() {
                return;
            }
            last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_follows_the_update_folder() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        let mut cache = None;
        let r = report(dir, &mut cache);
        assert_eq!(
            (r.installed_version.as_str(), r.state.as_str(), r.installed_sha256),
            (env!("CARGO_PKG_VERSION"), "idle", [0; 32])
        );
        // A cut download of 0.3.0: 40 % of 1000 bytes on disk.
        let rel = dir.join("releases/0.3.0");
        std::fs::create_dir_all(&rel).expect("mkdir");
        std::fs::write(rel.join("yilian-agent.part"), vec![0u8; 400]).expect("part");
        std::fs::write(rel.join("yilian-agent.length"), "1000").expect("length");
        let r = report(dir, &mut cache);
        assert_eq!((r.state.as_str(), r.download_per_mille), ("downloading", 400));
        // Installed and on trial.
        std::fs::remove_file(rel.join("yilian-agent.part")).expect("rm");
        std::fs::write(rel.join("yilian-agent"), b"#!/bin/sh\n").expect("bin");
        std::fs::set_permissions(rel.join("yilian-agent"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        crate::install::activate(dir, "0.3.0", 1).expect("activate");
        let r = report(dir, &mut cache);
        assert_eq!(
            (r.installed_version.as_str(), r.state.as_str(), r.trial_version.as_deref()),
            ("0.3.0", "on trial", Some("0.3.0"))
        );
        assert_eq!(r.installed_sha256, <[u8; 32]>::from(Sha256::digest(b"#!/bin/sh\n")));
    }
}
