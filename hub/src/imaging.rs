//! Rebuilds image instances from their stored chunks, checks each against the signed manifest's
//! size and SHA-256, and hands the file to the image store; marks studies that stop arriving as
//! partial, with what is missing. The work file is sealed with the store key as it is written,
//! so a rebuilt instance is never on disk in the clear.

use crate::images::{ImageError, ImageStore};
use crate::store::Store;
use crate::store::images::ReadyInstance;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Chunks read from the store per call (6 MiB), so a big instance never holds the store long.
const CHUNKS_PER_READ: u32 = 64;

/// Runs until `shutdown`: rebuilds what is ready every half second.
pub async fn run(
    store: Store,
    work_dir: PathBuf,
    images: Arc<ImageStore>,
    partial_after: Duration,
    shutdown: CancellationToken,
) {
    if let Err(e) = std::fs::create_dir_all(&work_dir) {
        error!(dir = %work_dir.display(), error = %e, "image work folder cannot be created; images are not rebuilt");
        return;
    }
    // Left by a stop mid-rebuild (or, from before sealing, in the clear): every instance is
    // rebuilt from its chunks again, so nothing here is worth keeping.
    if let Ok(entries) = std::fs::read_dir(&work_dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut partial_check = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let ready = match store.call(|db| db.image_ready_instances(16)).await {
                    Ok(Ok(r)) => r,
                    _ => continue,
                };
                for inst in ready {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    rebuild(&store, &work_dir, &images, inst).await;
                }
            }
            _ = partial_check.tick() => {
                let quiet = partial_after.as_millis() as i64;
                if let Ok(Ok(stale)) = store.call(move |db| db.image_mark_partial(crate::clock::now_ms(), quiet)).await {
                    for s in stale {
                        warn!(study = %s, "image study stopped arriving; marked partial");
                    }
                }
            }
        }
    }
}

async fn rebuild(store: &Store, work_dir: &Path, images: &Arc<ImageStore>, inst: ReadyInstance) {
    let label = hex::encode(&inst.sha256);
    let tmp = work_dir.join(format!("{label}.sealed.tmp"));
    let result = write_instance(store, images, &tmp, &label, &inst).await;
    match result {
        Ok(true) => {
            let (im, path) = (images.clone(), tmp.clone());
            let delivered = tokio::task::spawn_blocking(move || match im.insert_work_file(&path, &label) {
                Ok(_) => Ok(()),
                // The same SOP Instance UID with other bytes: the first copy stays, the study goes on.
                Err(ImageError::Conflict { sop_uid, stored }) => {
                    warn!(sop = %sop_uid, stored = %stored, "an instance came again with other bytes; the first copy is kept");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            })
            .await;
            match delivered {
                Ok(Ok(())) => {
                    let (study, sop) = (inst.study_uid.clone(), inst.sop_uid.clone());
                    let now = crate::clock::now_ms();
                    match store.call(move |db| db.image_instance_stored(&study, &sop, now)).await {
                        Ok(Ok(true)) => info!(study = %inst.study_uid, "image study complete"),
                        Ok(Ok(false)) => {}
                        _ => warn!(study = %inst.study_uid, sop = %inst.sop_uid, "could not record a stored instance"),
                    }
                }
                Ok(Err(e)) => error!(sop = %inst.sop_uid, error = %e, "image store refused a rebuilt instance"),
                Err(e) => error!(sop = %inst.sop_uid, error = %e, "image store task failed"),
            }
        }
        Ok(false) => {
            error!(study = %inst.study_uid, sop = %inst.sop_uid, "rebuilt instance does not match the signed manifest; dropped");
            let (study, sop) = (inst.study_uid.clone(), inst.sop_uid.clone());
            let _ = store.call(move |db| db.image_instance_damaged(&study, &sop)).await;
        }
        Err(e) => warn!(sop = %inst.sop_uid, error = %e, "could not rebuild an instance; will retry"),
    }
    let _ = std::fs::remove_file(&tmp);
}

/// Writes the chunks in order, sealed, while hashing; `Ok(true)` when size and SHA-256 match the
/// manifest.
async fn write_instance(
    store: &Store,
    images: &ImageStore,
    tmp: &Path,
    label: &str,
    inst: &ReadyInstance,
) -> Result<bool, String> {
    let mut file = images.work_writer(tmp, label).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut from = 0;
    while from < inst.chunks {
        let (study, sop) = (inst.study_uid.clone(), inst.sop_uid.clone());
        let chunks = store
            .call(move |db| db.image_chunks(&study, &sop, from, CHUNKS_PER_READ))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if chunks.is_empty() {
            return Err("chunks vanished while rebuilding".into());
        }
        for c in &chunks {
            hasher.update(c);
            file.write_all(c).map_err(|e| e.to_string())?;
            size += c.len() as u64;
        }
        from += chunks.len() as u32;
    }
    file.finish().map_err(|e| e.to_string())?;
    Ok(size == inst.size && hasher.finalize().as_slice() == inst.sha256.as_slice())
}
