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
    let trial_version = crate::install::trial(dir).map(|t| t.version);
    let last = crate::supervise::results(dir).pop();
    let downloading = std::fs::read_dir(dir.join("releases"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("yilian-agent.part").exists());
    let state = if trial_version.is_some() {
        "on trial".to_string()
    } else if downloading {
        "downloading".to_string()
    } else {
        last.as_ref().map_or_else(|| "idle".to_string(), |r| r.result.clone())
    };
    FleetReport {
        installed_version,
        installed_sha256,
        config_version: String::new(),
        trial_version,
        state,
        download_per_mille: 0,
        last_version: last.as_ref().map(|r| r.version.clone()).unwrap_or_default(),
        last_reason: last.as_ref().map(|r| r.reason.clone()).unwrap_or_default(),
        last_at_ms: last.as_ref().map_or(0, |r| r.at_ms),
    }
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
