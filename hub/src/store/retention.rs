//! Deleting expired data (see [`crate::retention`] for the policy and why envelope rows stay).

use super::sql::{Conn, params};
use super::{Db, StoreError};
use crate::retention::Kind;
use yilian_protocol::message::kind;

/// An emptied envelope (a literal would be written differently by each database).
const EMPTY: [u8; 0] = [];

/// Empties the envelope of `(device, seq)`; the row stays as the dedupe key.
fn blank(tx: &Conn, device: &str, seq: i64) -> super::sql::Result<usize> {
    tx.execute("UPDATE messages SET envelope = ?3 WHERE device_id = ?1 AND seq = ?2", params![device, seq, EMPTY])
}

fn keys(tx: &Conn, sql: &str, cutoff: i64, batch: usize) -> super::sql::Result<Vec<(String, i64)>> {
    let mut stmt = tx.prepare(sql)?;
    let rows = stmt.query_map(params![cutoff, batch as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

fn uids(tx: &Conn, sql: &str, cutoff: i64, batch: usize) -> super::sql::Result<Vec<String>> {
    let mut stmt = tx.prepare(sql)?;
    let rows = stmt.query_map(params![cutoff, batch as i64], |r| r.get(0))?;
    rows.collect()
}

/// Deletes an ECG study (complete or still in parts) with its parts' envelopes and its report.
fn delete_study(tx: &Conn, uid: &str) -> super::sql::Result<()> {
    let parts: Vec<(String, i64)> = {
        let mut stmt = tx.prepare("SELECT device_id, seq FROM study_parts WHERE study_uid = ?1")?;
        stmt.query_map([uid], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    for (device, seq) in parts {
        blank(tx, &device, seq)?;
    }
    tx.execute("DELETE FROM study_parts WHERE study_uid = ?1", [uid])?;
    tx.execute("DELETE FROM reports WHERE study_uid = ?1", [uid])?;
    tx.execute("DELETE FROM quality_overrides WHERE study_uid = ?1", [uid])?;
    tx.execute("DELETE FROM studies WHERE study_uid = ?1", [uid])?;
    Ok(())
}

fn delete_image_study(tx: &Conn, uid: &str) -> super::sql::Result<()> {
    for table in ["image_chunks", "image_instances", "image_manifest_parts", "reports", "image_studies"] {
        tx.execute(&format!("DELETE FROM {table} WHERE study_uid = ?1"), [uid])?;
    }
    Ok(())
}

impl Db {
    /// Deletes at most `batch` items of `kind` that arrived before `cutoff_ms`, in one
    /// transaction. Returns how many, and the image studies whose files must go too.
    pub fn delete_expired(
        &mut self,
        what: Kind,
        cutoff_ms: i64,
        batch: usize,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let tx = self.conn.transaction()?;
        let mut images = Vec::new();
        let n = match what {
            Kind::Stream => {
                let rows = keys(
                    &tx,
                    "SELECT c.device_id, c.seq FROM stream_chunks c
                     JOIN messages m ON m.device_id = c.device_id AND m.seq = c.seq
                     WHERE m.received_at_ms < ?1 LIMIT ?2",
                    cutoff_ms,
                    batch,
                )?;
                for (device, seq) in &rows {
                    tx.execute("DELETE FROM stream_chunks WHERE device_id = ?1 AND seq = ?2", params![device, seq])?;
                    blank(&tx, device, *seq)?;
                }
                if rows.len() < batch {
                    // Declared gaps describe chunks; they go with the last of them.
                    tx.execute("DELETE FROM stream_gaps WHERE received_at_ms < ?1", [cutoff_ms])?;
                }
                rows.len()
            }
            Kind::DeviceOutput => {
                let rows = keys(
                    &tx,
                    "SELECT device_id, seq FROM device_output WHERE received_at_ms < ?1 LIMIT ?2",
                    cutoff_ms,
                    batch,
                )?;
                for (device, seq) in &rows {
                    tx.execute("DELETE FROM device_output WHERE device_id = ?1 AND seq = ?2", params![device, seq])?;
                    blank(&tx, device, *seq)?;
                }
                rows.len()
            }
            Kind::Studies => {
                let mut list =
                    uids(&tx, "SELECT study_uid FROM studies WHERE received_at_ms < ?1 LIMIT ?2", cutoff_ms, batch)?;
                if list.len() < batch {
                    // Parts of studies that never completed, by when their parts arrived.
                    list.extend(uids(
                        &tx,
                        "SELECT DISTINCT p.study_uid FROM study_parts p
                         JOIN messages m ON m.device_id = p.device_id AND m.seq = p.seq
                         WHERE m.received_at_ms < ?1 AND p.study_uid NOT IN (SELECT study_uid FROM studies) LIMIT ?2",
                        cutoff_ms,
                        batch - list.len(),
                    )?);
                }
                for uid in &list {
                    delete_study(&tx, uid)?;
                }
                list.len()
            }
            Kind::Images => {
                let list = uids(
                    &tx,
                    "SELECT study_uid FROM image_studies WHERE first_seen_ms < ?1 LIMIT ?2",
                    cutoff_ms,
                    batch,
                )?;
                for uid in &list {
                    delete_image_study(&tx, uid)?;
                }
                if list.len() < batch {
                    // The signed manifests name the patient; they are as old as their studies.
                    tx.execute(
                        "UPDATE messages SET envelope = ?3 WHERE kind = ?1 AND received_at_ms < ?2 AND length(envelope) > 0",
                        params![kind::IMAGE_MANIFEST, cutoff_ms, EMPTY],
                    )?;
                }
                images = list;
                images.len()
            }
            Kind::Quarantine => tx.execute(
                "DELETE FROM quarantine WHERE (device_id, seq, digest) IN
                 (SELECT device_id, seq, digest FROM quarantine WHERE received_at_ms < ?1 LIMIT ?2)",
                params![cutoff_ms, batch as i64],
            )?,
        };
        tx.commit()?;
        Ok((n as u64, images))
    }
}
