//! Sends complete image studies to the hub: first the signed manifest (every instance's size and
//! SHA-256), then the instances in chunks that fit an MQTT packet, each with its own SHA-256.
//!
//! Only a few chunks per study are on disk in the spool at a time ([`FEED_WINDOW`]); which chunk
//! comes next is kept in `progress.json`, written after each chunk is spooled. After a cut link,
//! a `kill -9` or a reboot the spooled chunks go again and feeding resumes after the last one
//! recorded, so at most one window is sent twice. A study's files stay until the hub has
//! acknowledged every chunk.
//!
//! ```text
//! <dir>/ready/<study>/      complete studies from the DICOM node (study.json + instance files)
//! <dir>/sending/<study>/    being sent (progress.json)
//! <dir>/sent/<study>/       every chunk acknowledged by the hub
//! ```

use crate::dicom_node::{ReadyInstance, ReadyStudy};
use crate::spool::Spool;
use crate::uplink::Outgoing;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yilian_protocol::imaging::{BlobChunk, INSTANCES_PER_PART, ImageManifest, ManifestInstance};
use yilian_protocol::limits::BLOB_CHUNK_PAYLOAD;
use yilian_protocol::message::{DeviceOutput, Lane, Payload, Priority};

/// Chunks of one study spooled and not yet acknowledged, at most.
pub const FEED_WINDOW: usize = 8;

/// Where a study's transfer stands (persisted after every spooled chunk).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    /// Every manifest part is spooled.
    manifest_spooled: bool,
    /// Next instance to feed.
    instance: usize,
    /// Next chunk of that instance.
    chunk: u32,
    /// Seqs spooled and not yet seen acknowledged.
    inflight: Vec<u64>,
}

struct Transfer {
    dir: PathBuf,
    study: ReadyStudy,
    priority: Priority,
    progress: Progress,
}

impl Transfer {
    fn lane(&self) -> Lane {
        match self.priority {
            Priority::Stat => Lane::Stat,
            Priority::Urgent => Lane::BulkUrgent,
            Priority::Routine => Lane::Bulk,
        }
    }

    fn done_feeding(&self) -> bool {
        self.progress.manifest_spooled && self.progress.instance >= self.study.instances.len()
    }
}

/// Runs until `shutdown`, feeding the uplink from `<dir>`.
pub async fn run(dir: PathBuf, tx: mpsc::Sender<Outgoing>, spool: Arc<Mutex<Spool>>, shutdown: CancellationToken) {
    for d in ["ready", "sending", "sent"] {
        if let Err(e) = std::fs::create_dir_all(dir.join(d)) {
            warn!(dir = %dir.display(), error = %e, "image folder cannot be used");
            return;
        }
    }
    let mut transfers: Vec<Transfer> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        pick_up(&dir, &mut transfers);
        if report_conflicts(&dir, &tx).await.is_err() {
            return;
        }
        // Most urgent first, so a STAT study's chunks are spooled before a routine one's.
        transfers.sort_by_key(|t| (t.priority, t.study.received_at_ms));
        for t in &mut transfers {
            // The clinic page may have changed the priority: later chunks take the new lane, and
            // the manifest goes again so the hub's worklist shows it.
            if let Some(s) = read_json::<ReadyStudy>(&t.dir.join("study.json"))
                && s.priority != t.priority
            {
                info!(study = %t.study.study_uid, from = t.priority.as_str(), to = s.priority.as_str(), "image study priority changed");
                t.priority = s.priority;
                t.study.priority = s.priority;
                t.progress.manifest_spooled = false;
            }
            {
                let s = spool.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                t.progress.inflight.retain(|seq| s.contains(*seq));
            }
            if shutdown.is_cancelled() {
                return;
            }
            if feed(t, &tx).await.is_err() {
                return;
            }
        }
        transfers.retain(|t| {
            if t.done_feeding() && t.progress.inflight.is_empty() {
                finish(&dir, t);
                false
            } else {
                true
            }
        });
    }
}

/// Tells the hub (as the device's output, which the console shows) of each instance a modality
/// sent again with the same UID but other content, once: a marker beside it records the report.
async fn report_conflicts(dir: &Path, tx: &mpsc::Sender<Outgoing>) -> Result<(), ()> {
    for c in crate::dicom_node::conflicts(dir) {
        let marker = c.file.with_extension("dcm.reported");
        if marker.exists() {
            continue;
        }
        let line = format!(
            "CONFLICT: {} sent instance {} again with other content (stored {}, received {}); kept aside in {}",
            c.calling_ae,
            c.sop_instance_uid,
            &c.stored_sha256.get(..12).unwrap_or_default(),
            &c.received_sha256.get(..12).unwrap_or_default(),
            c.file.display()
        );
        let out = DeviceOutput { port: "dicom".into(), line, received_at_ms: crate::clock::now_ms() };
        spool_one(tx, Lane::Stream, Payload::DeviceOutput(out)).await?;
        if let Err(e) = std::fs::write(&marker, b"") {
            warn!(file = %marker.display(), error = %e, "cannot mark a conflict as reported");
        }
    }
    Ok(())
}

/// Loads transfers left in `sending/` (after a restart) and starts those in `ready/`.
fn pick_up(dir: &Path, transfers: &mut Vec<Transfer>) {
    for (from, fresh) in [("sending", false), ("ready", true)] {
        let Ok(entries) = std::fs::read_dir(dir.join(from)) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || transfers.iter().any(|t| file_name(&t.dir) == name) {
                continue;
            }
            let mut study_dir = e.path();
            let Some(study) = read_json::<ReadyStudy>(&study_dir.join("study.json")) else { continue };
            if fresh {
                let target = dir.join("sending").join(&name);
                if let Err(e) = std::fs::rename(&study_dir, &target) {
                    warn!(study = %study.study_uid, error = %e, "cannot start sending an image study");
                    continue;
                }
                study_dir = target;
                info!(study = %study.study_uid, instances = study.instances.len(), modality = %study.modality, "sending image study");
            }
            let progress = read_json(&study_dir.join("progress.json")).unwrap_or_default();
            let priority = study.priority;
            transfers.push(Transfer { dir: study_dir, study, priority, progress });
        }
    }
}

/// Spools the manifest, then chunks until the window is full. `Err` when the uplink is gone.
async fn feed(t: &mut Transfer, tx: &mpsc::Sender<Outgoing>) -> Result<(), ()> {
    let lane = t.lane();
    if !t.progress.manifest_spooled {
        for m in manifests(&t.study, t.priority) {
            let seq = spool_one(tx, lane, Payload::ImageManifest(m)).await?;
            t.progress.inflight.push(seq);
        }
        t.progress.manifest_spooled = true;
        save(t);
    }
    while t.progress.inflight.len() < FEED_WINDOW && !t.done_feeding() {
        let Some(inst) = t.study.instances.get(t.progress.instance).cloned() else { break };
        let chunks = ManifestInstance::chunks_for(inst.size);
        if t.progress.chunk >= chunks {
            t.progress.instance += 1;
            t.progress.chunk = 0;
            continue;
        }
        let bytes = match read_chunk(&t.dir.join(&inst.file), inst.size, t.progress.chunk) {
            Ok(b) => b,
            Err(e) => {
                // The file is gone or shorter than listed: the hub will mark the study partial.
                warn!(study = %t.study.study_uid, sop = %inst.sop_instance_uid, error = %e, "cannot read an image chunk; instance skipped");
                t.progress.instance += 1;
                t.progress.chunk = 0;
                continue;
            }
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        let chunk = BlobChunk {
            study_uid: t.study.study_uid.clone(),
            sop_instance_uid: inst.sop_instance_uid.clone(),
            index: t.progress.chunk,
            sha256,
            bytes,
        };
        let seq = spool_one(tx, lane, Payload::BlobChunk(chunk)).await?;
        t.progress.inflight.push(seq);
        t.progress.chunk += 1;
        save(t);
    }
    Ok(())
}

async fn spool_one(tx: &mpsc::Sender<Outgoing>, lane: Lane, payload: Payload) -> Result<u64, ()> {
    let (seq_tx, mut seq_rx) = mpsc::unbounded_channel();
    tx.send(Outgoing { lane, payload, spooled: Some(seq_tx) }).await.map_err(|_| ())?;
    seq_rx.recv().await.ok_or(())
}

/// The manifest, in parts of at most [`INSTANCES_PER_PART`] instances.
fn manifests(s: &ReadyStudy, priority: Priority) -> Vec<ImageManifest> {
    let mut groups: Vec<&[ReadyInstance]> = s.instances.chunks(INSTANCES_PER_PART).collect();
    if groups.is_empty() {
        // A study with no instance still gets its (empty) manifest, so the hub can close it.
        groups.push(&[]);
    }
    let parts = groups.len() as u32;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| ImageManifest {
            study_uid: s.study_uid.clone(),
            priority,
            modality: s.modality.clone(),
            patient_name: s.patient_name.clone(),
            patient_id: s.patient_id.clone(),
            calling_ae: s.calling_ae.clone(),
            received_at_ms: s.received_at_ms,
            part: i as u32,
            parts,
            instances: g
                .iter()
                .map(|x| ManifestInstance {
                    sop_instance_uid: x.sop_instance_uid.clone(),
                    sop_class_uid: x.sop_class_uid.clone(),
                    series_uid: x.series_uid.clone(),
                    transfer_syntax: x.transfer_syntax.clone(),
                    size: x.size,
                    sha256: hex_32(&x.sha256),
                    chunks: ManifestInstance::chunks_for(x.size),
                })
                .collect(),
        })
        .collect()
}

fn hex_32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(b) = hex::decode(s)
        && b.len() == 32
    {
        out.copy_from_slice(&b);
    }
    out
}

fn read_chunk(path: &Path, size: u64, index: u32) -> std::io::Result<Vec<u8>> {
    let start = u64::from(index) * BLOB_CHUNK_PAYLOAD as u64;
    let len = size.saturating_sub(start).min(BLOB_CHUNK_PAYLOAD as u64) as usize;
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

fn save(t: &Transfer) {
    if let Err(e) = crate::durable::write_json(&t.dir.join("progress.json"), &t.progress) {
        warn!(study = %t.study.study_uid, error = %e, "cannot record transfer progress; a restart resends more");
    }
}

fn finish(dir: &Path, t: &Transfer) {
    let target = dir.join("sent").join(file_name(&t.dir));
    match std::fs::rename(&t.dir, &target) {
        Ok(()) => info!(study = %t.study.study_uid, "hub confirmed every chunk of the image study"),
        Err(e) => warn!(study = %t.study.study_uid, error = %e, "cannot move a sent image study"),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Rewrites a study's `study.json` (the clinic page's priority change).
pub fn write_study(dir: &Path, study: &ReadyStudy) -> std::io::Result<()> {
    crate::durable::write_json(&dir.join("study.json"), study)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(n: usize) -> ReadyStudy {
        ReadyStudy {
            study_uid: "1.2.3".into(),
            priority: Priority::Routine,
            modality: "CT".into(),
            patient_name: "张伟".into(),
            patient_id: "p".into(),
            calling_ae: "CT1".into(),
            received_at_ms: 0,
            instances: (0..n)
                .map(|i| ReadyInstance {
                    sop_instance_uid: format!("1.2.3.1.{i}"),
                    sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                    series_uid: "1.2.3.1".into(),
                    transfer_syntax: "1.2.840.10008.1.2.1".into(),
                    file: format!("{i}.dcm"),
                    size: 200_000,
                    sha256: "ab".repeat(32),
                })
                .collect(),
            dir: PathBuf::new(),
        }
    }

    #[test]
    fn a_large_study_has_its_manifest_in_parts_that_each_fit_a_packet() {
        let parts = manifests(&study(450), Priority::Urgent);
        assert_eq!(parts.iter().map(|m| m.instances.len()).collect::<Vec<_>>(), [200, 200, 50]);
        for (i, m) in parts.iter().enumerate() {
            assert_eq!((m.part, m.parts, m.priority), (i as u32, 3, Priority::Urgent));
            m.validate().expect("valid");
            let body = Payload::ImageManifest(m.clone()).encode().expect("fits its limit");
            assert!(body.len() < yilian_protocol::limits::IMAGE_MANIFEST_MAX);
        }
        assert_eq!(parts[0].instances[0].chunks, 3, "200,000 bytes in 96 KiB chunks");
        assert_eq!(parts[0].instances[0].sha256, [0xab; 32]);
        let empty = manifests(&study(0), Priority::Routine);
        assert_eq!((empty.len(), empty[0].parts, empty[0].instances.len()), (1, 1, 0));
    }

    #[test]
    fn chunks_are_read_at_their_offsets_and_the_last_is_short() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("x.dcm");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        let c1 = read_chunk(&path, 200_000, 1).expect("chunk 1");
        assert_eq!(c1, bytes[BLOB_CHUNK_PAYLOAD..2 * BLOB_CHUNK_PAYLOAD]);
        let c2 = read_chunk(&path, 200_000, 2).expect("chunk 2");
        assert_eq!(c2, bytes[2 * BLOB_CHUNK_PAYLOAD..]);
        assert!(read_chunk(&path, 300_000, 3).is_err(), "a file shorter than listed is an error, not a short read");
    }
}
