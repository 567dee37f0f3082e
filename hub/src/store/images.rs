//! Image studies in the store: manifest parts, instances and chunks (see
//! [`yilian_protocol::imaging`]). Chunks are kept until their instance is rebuilt and checked
//! against the manifest's hash by [`crate::imaging`], which then hands the file to the image store.

use super::sealed::StoreKey;
use super::sql::{Conn, OptionalExtension, params};
use super::{Db, StoreError};
use serde::Serialize;
use yilian_protocol::imaging::{BlobChunk, ImageManifest};
use yilian_protocol::limits::BLOB_CHUNK_PAYLOAD;

/// `Some(why)` refuses the manifest part.
pub(super) fn check_manifest(tx: &Conn, device: &str, m: &ImageManifest) -> Result<Option<String>, StoreError> {
    if let Err(why) = m.validate() {
        return Ok(Some(format!("image manifest: {why}")));
    }
    let known: Option<(String, u32)> = tx
        .query_row("SELECT device_id, parts FROM image_studies WHERE study_uid = ?1", [&m.study_uid], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((owner, parts)) = known {
        if owner != device {
            return Ok(Some("image study belongs to another device".into()));
        }
        if parts != m.parts {
            return Ok(Some(format!("image manifest: {} parts, earlier {parts}", m.parts)));
        }
    }
    for i in &m.instances {
        let earlier: Option<Vec<u8>> = tx
            .query_row(
                "SELECT sha256 FROM image_instances WHERE study_uid = ?1 AND sop_uid = ?2",
                params![m.study_uid, i.sop_instance_uid],
                |r| r.get(0),
            )
            .optional()?;
        if earlier.is_some_and(|h| h != i.sha256) {
            return Ok(Some(format!("instance {} listed again with another hash", i.sop_instance_uid)));
        }
    }
    Ok(None)
}

pub(super) fn store_manifest(
    tx: &Conn,
    key: &StoreKey,
    site: &str,
    device: &str,
    m: &ImageManifest,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO image_studies (study_uid, device_id, site_id, priority, modality, patient_name, patient_id,
         calling_ae, parts, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) ON CONFLICT DO NOTHING",
        params![
            m.study_uid,
            device,
            site,
            m.priority.rank(),
            m.modality,
            key.seal_text("image_studies", "patient_name", &m.study_uid, &m.patient_name)?,
            key.seal_text("image_studies", "patient_id", &m.study_uid, &m.patient_id)?,
            m.calling_ae,
            m.parts,
            now_ms
        ],
    )?;
    tx.execute(
        "INSERT INTO image_manifest_parts (study_uid, part, device_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![m.study_uid, m.part, device],
    )?;
    for i in &m.instances {
        tx.execute(
            "INSERT INTO image_instances (study_uid, sop_uid, series_uid, sop_class_uid, transfer_syntax, size, sha256, chunks)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            params![m.study_uid, i.sop_instance_uid, i.series_uid, i.sop_class_uid, i.transfer_syntax, i.size as i64, i.sha256.to_vec(), i.chunks],
        )?;
    }
    // A manifest sent again carries the clinic's new priority.
    tx.execute(
        "UPDATE image_studies SET last_seen_ms = ?2, priority = ?3 WHERE study_uid = ?1",
        params![m.study_uid, now_ms, m.priority.rank()],
    )?;
    Ok(())
}

/// `Some(why)` refuses the chunk.
pub(super) fn check_chunk(tx: &Conn, device: &str, c: &BlobChunk) -> Result<Option<String>, StoreError> {
    if let Err(why) = c.validate() {
        return Ok(Some(format!("blob chunk {} of {}: {why}", c.index, c.sop_instance_uid)));
    }
    let owner: Option<String> = tx
        .query_row("SELECT device_id FROM image_studies WHERE study_uid = ?1", [&c.study_uid], |r| r.get(0))
        .optional()?;
    if owner.is_some_and(|o| o != device) {
        return Ok(Some("image study belongs to another device".into()));
    }
    let instance: Option<(i64, u32)> = tx
        .query_row(
            "SELECT size, chunks FROM image_instances WHERE study_uid = ?1 AND sop_uid = ?2",
            params![c.study_uid, c.sop_instance_uid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((size, chunks)) = instance {
        let expected = chunk_len(size as u64, c.index);
        if c.index >= chunks || c.bytes.len() as u64 != expected {
            return Ok(Some(format!(
                "blob chunk {} of {}: {} bytes, the manifest implies {expected} of {chunks} chunks",
                c.index,
                c.sop_instance_uid,
                c.bytes.len()
            )));
        }
    }
    Ok(None)
}

/// Bytes of chunk `index` of an instance of `size` bytes.
pub fn chunk_len(size: u64, index: u32) -> u64 {
    let start = u64::from(index) * BLOB_CHUNK_PAYLOAD as u64;
    size.saturating_sub(start).min(BLOB_CHUNK_PAYLOAD as u64)
}

pub(super) fn store_chunk(
    tx: &Conn,
    key: &StoreKey,
    device: &str,
    c: &BlobChunk,
    now_ms: i64,
) -> Result<(), StoreError> {
    let row = format!("{}/{}/{}", c.study_uid, c.sop_instance_uid, c.index);
    tx.execute(
        "INSERT INTO image_chunks (study_uid, sop_uid, idx, device_id, bytes) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        params![c.study_uid, c.sop_instance_uid, c.index, device, key.seal("image_chunks", "bytes", &row, &c.bytes)?],
    )?;
    tx.execute("UPDATE image_studies SET last_seen_ms = ?2 WHERE study_uid = ?1", params![c.study_uid, now_ms])?;
    Db::bump(tx, "image_bytes_received", c.bytes.len() as i64)?;
    Ok(())
}

/// An instance whose chunks are all stored and which waits to be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyInstance {
    /// Study Instance UID.
    pub study_uid: String,
    /// SOP Instance UID.
    pub sop_uid: String,
    /// Size from the manifest.
    pub size: u64,
    /// SHA-256 from the manifest.
    pub sha256: Vec<u8>,
    /// Chunk count.
    pub chunks: u32,
}

/// One image study as the imaging centre's worklist shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageStudyRow {
    /// Study Instance UID.
    pub study_uid: String,
    /// Site.
    pub site_id: String,
    /// Device.
    pub device_id: String,
    /// "stat", "urgent" or "routine".
    pub priority: String,
    /// Modality.
    pub modality: String,
    /// Patient name.
    pub patient_name: String,
    /// Patient id.
    pub patient_id: String,
    /// receiving, complete or partial.
    pub state: String,
    /// Instances listed in the manifest so far.
    pub instances: i64,
    /// Instances rebuilt, checked and stored.
    pub instances_stored: i64,
    /// Bytes listed.
    pub bytes: i64,
    /// First seen, Unix ms.
    pub first_seen_ms: i64,
    /// When it became complete.
    pub completed_at_ms: Option<i64>,
    /// What was missing when it was marked partial.
    pub missing: Option<String>,
    /// Who claimed it.
    pub claimed_by: Option<String>,
    /// Its report.
    pub report_id: Option<String>,
    /// When the clinic's agent confirmed the report.
    pub delivered_at_ms: Option<i64>,
}

impl Db {
    /// Instances with every chunk stored, not yet rebuilt.
    pub fn image_ready_instances(&mut self, max: usize) -> Result<Vec<ReadyInstance>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT i.study_uid, i.sop_uid, i.size, i.sha256, i.chunks FROM image_instances i
             WHERE i.stored_at_ms IS NULL
               AND (SELECT COUNT(*) FROM image_chunks c WHERE c.study_uid = i.study_uid AND c.sop_uid = i.sop_uid) = i.chunks
             LIMIT ?1",
        )?;
        let rows = stmt.query_map([max as i64], |r| {
            Ok(ReadyInstance {
                study_uid: r.get(0)?,
                sop_uid: r.get(1)?,
                size: r.get::<i64>(2)? as u64,
                sha256: r.get(3)?,
                chunks: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Chunks `from..from + n` of an instance, in order.
    pub fn image_chunks(&mut self, study: &str, sop: &str, from: u32, n: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT bytes, idx FROM image_chunks WHERE study_uid = ?1 AND sop_uid = ?2 AND idx >= ?3 AND idx < ?4 ORDER BY idx",
        )?;
        let rows = stmt.query_map(params![study, sop, from, from.saturating_add(n)], |r| {
            let idx: i64 = r.get(1)?;
            super::sealed_bytes(&self.key, r, 0, "image_chunks", "bytes", &format!("{study}/{sop}/{idx}"))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The instance is in the image store: its chunks go, and the study completes with its last.
    pub fn image_instance_stored(&mut self, study: &str, sop: &str, now_ms: i64) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE image_instances SET stored_at_ms = ?3 WHERE study_uid = ?1 AND sop_uid = ?2",
            params![study, sop, now_ms],
        )?;
        tx.execute("DELETE FROM image_chunks WHERE study_uid = ?1 AND sop_uid = ?2", params![study, sop])?;
        let complete = Self::image_study_complete(&tx, study)?;
        if complete {
            tx.execute(
                "UPDATE image_studies SET state = 'complete', completed_at_ms = ?2, missing = NULL WHERE study_uid = ?1",
                params![study, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(complete)
    }

    /// An instance whose rebuilt bytes do not match the manifest: its chunks are dropped so the
    /// study shows it as missing (the agent's copy stays until acked, but acks went out already).
    pub fn image_instance_damaged(&mut self, study: &str, sop: &str) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM image_chunks WHERE study_uid = ?1 AND sop_uid = ?2", params![study, sop])?;
        Ok(())
    }

    fn image_study_complete(tx: &Conn, study: &str) -> Result<bool, StoreError> {
        let (parts, have_parts): (i64, i64) = tx.query_row(
            "SELECT s.parts, (SELECT COUNT(*) FROM image_manifest_parts p WHERE p.study_uid = s.study_uid)
             FROM image_studies s WHERE s.study_uid = ?1",
            [study],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let unstored: i64 = tx.query_row(
            "SELECT COUNT(*) FROM image_instances WHERE study_uid = ?1 AND stored_at_ms IS NULL",
            [study],
            |r| r.get(0),
        )?;
        Ok(parts == have_parts && unstored == 0)
    }

    /// Studies still receiving with nothing new for `quiet_ms` become "partial", with what is missing.
    pub fn image_mark_partial(&mut self, now_ms: i64, quiet_ms: i64) -> Result<Vec<String>, StoreError> {
        self.in_transaction(|db| {
            let stale: Vec<String> = {
                let mut stmt = db
                    .conn
                    .prepare("SELECT study_uid FROM image_studies WHERE state = 'receiving' AND last_seen_ms < ?1")?;
                stmt.query_map([now_ms - quiet_ms], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            for study in &stale {
                let (parts, have): (i64, i64) = db.conn.query_row(
                    "SELECT s.parts, (SELECT COUNT(*) FROM image_manifest_parts p WHERE p.study_uid = s.study_uid)
                     FROM image_studies s WHERE s.study_uid = ?1",
                    [study],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let (instances, chunks_missing): (i64, i64) = db.conn.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(i.chunks - (SELECT COUNT(*) FROM image_chunks c
                         WHERE c.study_uid = i.study_uid AND c.sop_uid = i.sop_uid)), 0)
                     FROM image_instances i WHERE i.study_uid = ?1 AND i.stored_at_ms IS NULL",
                    [study],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let missing = format!(
                    "{} of {parts} manifest parts missing; {instances} instances incomplete ({chunks_missing} chunks missing)",
                    parts - have
                );
                db.conn.execute(
                    "UPDATE image_studies SET state = 'partial', missing = ?2 WHERE study_uid = ?1",
                    params![study, missing],
                )?;
            }
            Ok(stale)
        })
    }

    /// Image studies, most urgent then oldest first.
    pub fn image_studies(&mut self, limit: usize) -> Result<Vec<ImageStudyRow>, StoreError> {
        self.image_studies_where(None, limit)
    }

    /// One image study.
    pub fn image_study(&mut self, uid: &str) -> Result<Option<ImageStudyRow>, StoreError> {
        Ok(self.image_studies_where(Some(uid), 1)?.pop())
    }

    fn image_studies_where(&mut self, uid: Option<&str>, limit: usize) -> Result<Vec<ImageStudyRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT s.study_uid, s.site_id, s.device_id, s.priority, s.modality, s.patient_name, s.patient_id, s.state,
                    (SELECT COUNT(*) FROM image_instances i WHERE i.study_uid = s.study_uid),
                    (SELECT COUNT(*) FROM image_instances i WHERE i.study_uid = s.study_uid AND i.stored_at_ms IS NOT NULL),
                    (SELECT COALESCE(SUM(size), 0) FROM image_instances i WHERE i.study_uid = s.study_uid),
                    s.first_seen_ms, s.completed_at_ms, s.missing, s.claimed_by, s.report_id, s.delivered_at_ms
             FROM image_studies s WHERE (CAST(?2 AS TEXT) IS NULL OR s.study_uid = ?2) ORDER BY s.priority, s.first_seen_ms LIMIT ?1",
        )?;
        let key = &self.key;
        let rows = stmt.query_map(params![limit as i64, uid], |r| {
            let rank: u8 = r.get(3)?;
            let study_uid: String = r.get(0)?;
            Ok(ImageStudyRow {
                patient_name: super::sealed_text(key, r, 5, "image_studies", "patient_name", &study_uid)?,
                patient_id: super::sealed_text(key, r, 6, "image_studies", "patient_id", &study_uid)?,
                study_uid,
                site_id: r.get(1)?,
                device_id: r.get(2)?,
                priority: ["stat", "urgent", "routine"].get(usize::from(rank)).copied().unwrap_or("routine").into(),
                modality: r.get(4)?,
                state: r.get(7)?,
                instances: r.get(8)?,
                instances_stored: r.get(9)?,
                bytes: r.get(10)?,
                first_seen_ms: r.get(11)?,
                completed_at_ms: r.get(12)?,
                missing: r.get(13)?,
                claimed_by: r.get(14)?,
                report_id: r.get(15)?,
                delivered_at_ms: r.get(16)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
