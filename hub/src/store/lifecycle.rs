//! Device lifecycle in the store: bootstrap tokens, pending enrolments, approval, rejection,
//! revocation, key rotation with an overlap, and the quarantine of a pending device's messages.
//!
//! [`Db::device_keys`] is the one place that decides which keys may act for a device now; the
//! ingest stage and the broker's connect check both ask it.

use super::sql::{OptionalExtension, params};
use super::{Db, StoreError};
use serde::Serialize;
use subtle::ConstantTimeEq;
use yilian_protocol::keys::PublicKey;

/// Where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Enrolled with a token, waiting for an admin: its messages are quarantined.
    Pending,
    /// Approved (or pre-provisioned): its messages are clinical data.
    Active,
    /// An admin turned the enrolment down: nothing from it is accepted.
    Rejected,
    /// Revoked (a stolen cart): nothing from it is accepted, nothing is sent to it.
    Revoked,
}

impl DeviceState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Active => "active",
            DeviceState::Rejected => "rejected",
            DeviceState::Revoked => "revoked",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeviceState::Pending,
            "active" => DeviceState::Active,
            "rejected" => DeviceState::Rejected,
            "revoked" => DeviceState::Revoked,
            _ => return None,
        })
    }

    /// True while the device may connect and sign (its messages are stored or quarantined).
    pub fn may_act(self) -> bool {
        matches!(self, DeviceState::Pending | DeviceState::Active)
    }
}

/// A device's site, state and the keys that may sign for it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeys {
    /// Site id.
    pub site: String,
    /// State.
    pub state: DeviceState,
    /// Keys valid now, the current one first (the old one follows during a rotation's
    /// overlap). Empty unless the state [may act](DeviceState::may_act).
    pub keys: Vec<PublicKey>,
}

/// Why a bootstrap token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the `id.secret` shape.
    #[error("the enrolment token is malformed")]
    Malformed,
    /// No such token, or its secret is wrong.
    #[error("the enrolment token is unknown")]
    Unknown,
    /// Past its expiry.
    #[error("the enrolment token expired")]
    Expired,
    /// Already used (single use).
    #[error("the enrolment token was already used")]
    Used,
    /// Issued for another clinic.
    #[error("the enrolment token was issued for another clinic")]
    WrongSite,
    /// The device id is enrolled already (under another key, or not pending).
    #[error("device {0} is already enrolled")]
    DeviceTaken(String),
}

/// Why a lifecycle action is not possible in the device's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No such device.
    #[error("no device {0}")]
    UnknownDevice(String),
    /// The action does not apply to this state (e.g. approving a revoked device).
    #[error("device {device} is {state}; cannot {action} it")]
    WrongState {
        /// Device.
        device: String,
        /// Its state.
        state: &'static str,
        /// The action asked for.
        action: &'static str,
    },
}

/// What an admin can do to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pending → active.
    Approve,
    /// Pending → rejected.
    Reject,
    /// Pending or active → revoked.
    Revoke,
}

impl Action {
    /// Lower-case name, as in the CLI, URLs and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Revoke => "revoke",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "approve" => Action::Approve,
            "reject" => Action::Reject,
            "revoke" => Action::Revoke,
            _ => return None,
        })
    }

    fn applies(self, from: DeviceState) -> Option<DeviceState> {
        match (self, from) {
            (Action::Approve, DeviceState::Pending) => Some(DeviceState::Active),
            (Action::Reject, DeviceState::Pending) => Some(DeviceState::Rejected),
            (Action::Revoke, DeviceState::Pending | DeviceState::Active) => Some(DeviceState::Revoked),
            _ => None,
        }
    }
}

/// One device as the enrolment page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleRow {
    /// Device id.
    pub device_id: String,
    /// Site id.
    pub site_id: String,
    /// State.
    pub state: DeviceState,
    /// Current key id.
    pub key_id: String,
    /// Current public key (hex), to compare with what the clinic reads off the device.
    pub public_key: String,
    /// When enrolled (pending or pre-provisioned), Unix ms.
    pub enrolled_at_ms: i64,
    /// When the state last changed, Unix ms.
    pub state_at_ms: Option<i64>,
    /// Why (rejection or revocation reason).
    pub state_reason: Option<String>,
    /// Source address of the enrolment request.
    pub enrol_addr: Option<String>,
    /// Messages held in quarantine.
    pub quarantined: i64,
    /// The previous key's id while a rotation's overlap lasts.
    pub old_key_id: Option<String>,
    /// End of the rotation overlap, Unix ms.
    pub old_key_until_ms: Option<i64>,
}

/// One quarantined message to keep.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// Signer.
    pub device_id: String,
    /// Its seq.
    pub seq: u64,
    /// SHA-256 of the signed message.
    pub digest: [u8; 32],
    /// Body kind.
    pub kind: u16,
    /// The envelope as received.
    pub envelope: Vec<u8>,
}

fn state_of(device: &str, s: &str) -> Result<DeviceState, StoreError> {
    DeviceState::parse(s).ok_or_else(|| StoreError::Damaged(format!("state {s:?} of device {device}")))
}

fn key_of(device: &str, hex: &str) -> Result<PublicKey, StoreError> {
    PublicKey::from_hex(hex).map_err(|_| StoreError::Damaged(format!("key of device {device}")))
}

impl Db {
    /// The device's site, state and the keys valid at `now_ms`; `None` if it was never enrolled.
    pub fn device_keys(&self, device: &str, now_ms: i64) -> Result<Option<DeviceKeys>, StoreError> {
        type Row = (String, String, String, Option<String>, Option<i64>);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT site_id, state, public_key, old_public_key, old_key_until_ms FROM devices WHERE device_id = ?1",
                [device],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((site, state, current, old, until)) = row else { return Ok(None) };
        let state = state_of(device, &state)?;
        let mut keys = Vec::new();
        if state.may_act() {
            keys.push(key_of(device, &current)?);
            if let (Some(old), Some(until)) = (old, until)
                && now_ms < until
            {
                keys.push(key_of(device, &old)?);
            }
        }
        Ok(Some(DeviceKeys { site, state, keys }))
    }

    /// Stores a new bootstrap token (its secret only as SHA-256) for `site`.
    pub fn add_enrol_token(
        &mut self,
        token_id: &str,
        secret_sha256: &[u8; 32],
        site: &str,
        created_by: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO enrol_tokens (token_id, secret_sha256, site_id, created_by, created_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![token_id, &secret_sha256[..], site, created_by, now_ms, expires_at_ms],
        )?;
        self.audit(created_by, "enrol-token", site, &format!("token {token_id} expires {expires_at_ms}"), now_ms)
    }

    /// Uses a bootstrap token to enrol `device` at `site` with `key` as *pending*.
    ///
    /// Sending the same request again (same token, device and key: an agent that crashed
    /// before it saw the answer) gives the device's state again instead of "used".
    #[allow(clippy::too_many_arguments)]
    pub fn enrol_with_token(
        &mut self,
        token_id: &str,
        secret_sha256: &[u8; 32],
        site: &str,
        device: &str,
        key: &PublicKey,
        addr: &str,
        now_ms: i64,
    ) -> Result<Result<DeviceState, TokenError>, StoreError> {
        type Row = (Vec<u8>, String, i64, Option<i64>, Option<String>);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT secret_sha256, site_id, expires_at_ms, used_at_ms, used_by_device FROM enrol_tokens WHERE token_id = ?1",
                [token_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((stored, token_site, expires, used_at, used_by)) = row else { return Ok(Err(TokenError::Unknown)) };
        if !bool::from(stored.as_slice().ct_eq(&secret_sha256[..])) {
            return Ok(Err(TokenError::Unknown));
        }
        let existing = self.device_key_and_state(device)?;
        if used_at.is_some() {
            if used_by.as_deref() == Some(device)
                && let Some((k, state)) = &existing
                && *k == key.to_hex()
            {
                return Ok(Ok(state_of(device, state)?));
            }
            return Ok(Err(TokenError::Used));
        }
        if now_ms >= expires {
            return Ok(Err(TokenError::Expired));
        }
        if token_site != site {
            return Ok(Err(TokenError::WrongSite));
        }
        if existing.is_some() {
            return Ok(Err(TokenError::DeviceTaken(device.to_string())));
        }
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE enrol_tokens SET used_at_ms = ?2, used_by_device = ?3 WHERE token_id = ?1 AND used_at_ms IS NULL",
            params![token_id, now_ms, device],
        )?;
        if n != 1 {
            return Ok(Err(TokenError::Used));
        }
        tx.execute(
            "INSERT INTO devices (device_id, site_id, public_key, key_id, enrolled_at_ms, state, state_at_ms, enrol_addr)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?5, ?6)",
            params![device, site, key.to_hex(), key.id().to_string(), now_ms, addr],
        )?;
        tx.commit()?;
        self.audit(
            device,
            "enrol-request",
            device,
            &format!("site {site}, key id {}, token {token_id}, from {addr}", key.id()),
            now_ms,
        )?;
        Ok(Ok(DeviceState::Pending))
    }

    /// Approves, rejects or revokes a device, by `user`, with an audit entry. Approving or
    /// rejecting empties the device's quarantine: an approved agent sends it all again (it kept
    /// everything in its spool), and a rejected device's data is not clinical data.
    pub fn device_action(
        &mut self,
        device: &str,
        action: Action,
        user: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Result<DeviceState, ActionError>, StoreError> {
        let state: Option<String> =
            self.conn.query_row("SELECT state FROM devices WHERE device_id = ?1", [device], |r| r.get(0)).optional()?;
        let Some(state) = state else { return Ok(Err(ActionError::UnknownDevice(device.to_string()))) };
        let from = state_of(device, &state)?;
        let Some(to) = action.applies(from) else {
            return Ok(Err(ActionError::WrongState {
                device: device.to_string(),
                state: from.as_str(),
                action: action.as_str(),
            }));
        };
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE devices SET state = ?2, state_reason = ?3, state_at_ms = ?4 WHERE device_id = ?1",
            params![device, to.as_str(), reason, now_ms],
        )?;
        let dropped = if action == Action::Revoke {
            0
        } else {
            tx.execute("DELETE FROM quarantine WHERE device_id = ?1", [device])?
        };
        tx.commit()?;
        let mut detail = format!("{} → {}", from.as_str(), to.as_str());
        if !reason.is_empty() {
            detail.push_str(&format!(", reason: {reason}"));
        }
        if dropped > 0 {
            detail.push_str(&format!(", {dropped} quarantined messages released"));
        }
        self.audit(user, &format!("device-{}", action.as_str()), device, &detail, now_ms)?;
        Ok(Ok(to))
    }

    /// Keeps messages of pending devices aside; returns how many were new (a resent envelope
    /// is kept once).
    pub fn quarantine(&mut self, items: &[Quarantined], reason: &str, now_ms: i64) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut new = 0;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO quarantine (device_id, seq, digest, kind, reason, received_at_ms, envelope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?;
            for q in items {
                // The envelope holds the whole signed study: sealed like `messages.envelope`.
                let row = format!("{}/{}/{}", q.device_id, q.seq, hex::encode(q.digest));
                let envelope = self.key.seal("quarantine", "envelope", &row, &q.envelope)?;
                new += stmt.execute(params![
                    q.device_id,
                    q.seq.min(i64::MAX as u64) as i64,
                    &q.digest[..],
                    q.kind,
                    reason,
                    now_ms,
                    envelope
                ])?;
            }
        }
        if new > 0 {
            Self::bump(&tx, "quarantined", new as i64)?;
        }
        tx.commit()?;
        Ok(new)
    }

    /// Messages held in quarantine for `device`.
    pub fn quarantined(&self, device: &str) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM quarantine WHERE device_id = ?1", [device], |r| r.get(0))?)
    }

    /// Every device with its lifecycle state, pending ones first.
    pub fn lifecycle_devices(&self) -> Result<Vec<LifecycleRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT d.device_id, d.site_id, d.state, d.key_id, d.public_key, d.enrolled_at_ms, d.state_at_ms,
                    d.state_reason, d.enrol_addr,
                    (SELECT COUNT(*) FROM quarantine q WHERE q.device_id = d.device_id),
                    d.old_public_key, d.old_key_until_ms
             FROM devices d
             ORDER BY d.state != 'pending', d.site_id, d.device_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<String>(4)?,
                    r.get::<i64>(5)?,
                    r.get::<Option<i64>>(6)?,
                    r.get::<Option<String>>(7)?,
                    r.get::<Option<String>>(8)?,
                    r.get::<i64>(9)?,
                    r.get::<Option<String>>(10)?,
                    r.get::<Option<i64>>(11)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(device_id, site_id, state, key_id, public_key, enrolled, state_at, reason, addr, q, old, until)| {
                let state = state_of(&device_id, &state)?;
                let old_key_id =
                    old.as_deref().map(|h| key_of(&device_id, h).map(|k| k.id().to_string())).transpose()?;
                Ok(LifecycleRow {
                    device_id,
                    site_id,
                    state,
                    key_id,
                    public_key,
                    enrolled_at_ms: enrolled,
                    state_at_ms: state_at,
                    state_reason: reason,
                    enrol_addr: addr,
                    quarantined: q,
                    old_key_id,
                    old_key_until_ms: until,
                })
            })
            .collect()
    }

    /// Revoked or rejected devices not yet disconnected from the broker since their state
    /// changed: `(site, device)`.
    pub fn disconnects_due(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT site_id, device_id FROM devices
             WHERE state IN ('revoked', 'rejected') AND (kicked_at_ms IS NULL OR kicked_at_ms < state_at_ms)",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records that the hub took a device's connection over (disconnecting it).
    pub fn mark_disconnected(&mut self, device: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE devices SET kicked_at_ms = ?2 WHERE device_id = ?1", params![device, now_ms])?;
        Ok(())
    }

    /// Every device key the broker must refuse at `now_ms`: all keys of revoked and rejected
    /// devices, and keys rotated or replaced away (once a rotation's overlap is over). What the
    /// county CRL lists; the complement of [`Db::device_keys`] over every key ever enrolled.
    pub fn revoked_keys(&self, now_ms: i64) -> Result<Vec<crate::ca::RevokedKey>, StoreError> {
        type Row = (String, String, String, Option<i64>, String, i64, Option<String>, Option<i64>);
        let mut stmt = self.conn.prepare(
            "SELECT h.device_id, h.public_key, d.state, d.state_at_ms, d.public_key, d.enrolled_at_ms,
                    d.old_public_key, d.old_key_until_ms
             FROM device_key_history h JOIN devices d ON d.device_id = h.device_id
             ORDER BY h.device_id, h.public_key",
        )?;
        let rows: Vec<Row> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (device, key, state, state_at, current, enrolled_at, old, old_until) in rows {
            let since = if !state_of(&device, &state)?.may_act() {
                Some((state_at.unwrap_or(enrolled_at), true))
            } else if key == current {
                None
            } else if old.as_deref() == Some(key.as_str()) {
                // Rotated away: valid to the end of the overlap.
                old_until.filter(|until| now_ms >= *until).map(|until| (until, false))
            } else {
                // An earlier key, superseded when a later one was enrolled.
                Some((enrolled_at, false))
            };
            if let Some((since_ms, compromised)) = since {
                out.push(crate::ca::RevokedKey { key: key_of(&device, &key)?, device, since_ms, compromised });
            }
        }
        Ok(out)
    }

    /// Makes `new_key` the device's key; the current one stays valid until `old_until_ms`
    /// (the rotation's overlap). Rotating to the key it already has changes nothing.
    pub fn rotate_device_key(
        &mut self,
        device: &str,
        new_key: &PublicKey,
        old_until_ms: i64,
        user: &str,
        now_ms: i64,
    ) -> Result<Result<(), ActionError>, StoreError> {
        self.in_transaction(|db| {
            let row = db.device_key_and_state(device)?;
            let Some((current, state)) = row else { return Ok(Err(ActionError::UnknownDevice(device.to_string()))) };
            let state = state_of(device, &state)?;
            if !state.may_act() {
                return Ok(Err(ActionError::WrongState {
                    device: device.to_string(),
                    state: state.as_str(),
                    action: "rotate the key of",
                }));
            }
            if current == new_key.to_hex() {
                return Ok(Ok(()));
            }
            db.conn.execute(
                "UPDATE devices SET old_public_key = public_key, old_key_until_ms = ?3, public_key = ?2, key_id = ?4
                 WHERE device_id = ?1",
                params![device, new_key.to_hex(), old_until_ms, new_key.id().to_string()],
            )?;
            let old = key_of(device, &current)?;
            db.audit(
                user,
                "device-rotate-key",
                device,
                &format!("key id {} → {}, old key valid until {old_until_ms}", old.id(), new_key.id()),
                now_ms,
            )?;
            Ok(Ok(()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_protocol::keys::SigningKey;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Db::open(&dir.path().join("t.db")).expect("db");
        (dir, db)
    }

    #[test]
    fn a_token_enrols_one_pending_device_whose_keys_follow_its_state() {
        let (_d, mut db) = db();
        let t = crate::lifecycle::new_token().expect("rng");
        db.add_enrol_token(&t.id, &t.secret_sha256, "s1", "it", 1_000, 0).expect("token");
        let key = SigningKey::generate().expect("key").public_key();
        let enrol = |db: &mut Db, device: &str, now| {
            db.enrol_with_token(&t.id, &t.secret_sha256, "s1", device, &key, "10.0.0.9", now).expect("store")
        };
        assert_eq!(enrol(&mut db, "d1", 1_000), Err(TokenError::Expired));
        assert_eq!(enrol(&mut db, "d1", 10), Ok(DeviceState::Pending));
        assert_eq!(enrol(&mut db, "d1", 11), Ok(DeviceState::Pending), "the same request again");
        assert_eq!(enrol(&mut db, "d2", 12), Err(TokenError::Used));
        let keys = db.device_keys("d1", 20).expect("store").expect("known");
        assert_eq!((keys.state, keys.keys.as_slice()), (DeviceState::Pending, &[key][..]));
        assert_eq!(db.device_key("d1").expect("store"), Some(("s1".into(), key)));

        assert_eq!(
            db.device_action("d1", Action::Revoke, "it", "stolen", 30).expect("store"),
            Ok(DeviceState::Revoked)
        );
        let keys = db.device_keys("d1", 40).expect("store").expect("known");
        assert_eq!((keys.state, keys.keys.len()), (DeviceState::Revoked, 0));
        assert!(db.device_key("d1").expect("store").is_none(), "the broker's connect check refuses it");
        assert!(matches!(
            db.device_action("d1", Action::Approve, "it", "", 50).expect("store"),
            Err(ActionError::WrongState { .. })
        ));
        assert!(matches!(db.enroll("s1", "d1", &key, true, 60), Err(StoreError::Revoked(_))), "never the same key");
        let log = db.audit_log(10).expect("audit");
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["device-revoke", "enrol-request", "enrol-token"]);
        assert_eq!(db.disconnects_due().expect("store"), [("s1".to_string(), "d1".to_string())]);
        db.mark_disconnected("d1", 70).expect("store");
        assert!(db.disconnects_due().expect("store").is_empty());
    }

    #[test]
    fn the_broker_refuses_every_key_that_no_longer_acts_and_no_other() {
        let (_d, mut db) = db();
        let keys: Vec<PublicKey> = (0..4).map(|_| SigningKey::generate().expect("k").public_key()).collect();
        db.enroll("s1", "d1", &keys[0], false, 0).expect("enrol");
        db.enroll("s1", "d2", &keys[3], false, 0).expect("enrol");
        assert!(db.revoked_keys(5).expect("store").is_empty());
        db.rotate_device_key("d1", &keys[1], 1_000, "d1", 10).expect("store").expect("rotated");
        assert!(db.revoked_keys(999).expect("store").is_empty(), "the old key acts during the overlap");
        let after = db.revoked_keys(1_000).expect("store");
        assert_eq!(
            after.iter().map(|r| (r.device.as_str(), r.key, r.since_ms)).collect::<Vec<_>>(),
            [("d1", keys[0], 1_000)]
        );
        assert!(!after[0].compromised);
        // A second rotation overwrites the old-key column; the first key stays refused.
        db.rotate_device_key("d1", &keys[2], 3_000, "d1", 2_000).expect("store").expect("rotated");
        let mid: Vec<PublicKey> = db.revoked_keys(2_500).expect("store").iter().map(|r| r.key).collect();
        assert_eq!(mid, [keys[0]]);
        db.device_action("d1", Action::Revoke, "it", "stolen", 4_000).expect("store").expect("revoked");
        let mut all: Vec<(PublicKey, bool)> =
            db.revoked_keys(4_001).expect("store").iter().map(|r| (r.key, r.compromised)).collect();
        all.sort_by_key(|(k, _)| k.0);
        let mut want = vec![(keys[0], true), (keys[1], true), (keys[2], true)];
        want.sort_by_key(|(k, _)| k.0);
        assert_eq!(all, want, "a revoked device's every key, as compromised; d2 untouched");
    }

    #[test]
    fn a_rotated_key_keeps_the_old_one_valid_only_during_the_overlap() {
        let (_d, mut db) = db();
        let (old, new) =
            (SigningKey::generate().expect("k").public_key(), SigningKey::generate().expect("k").public_key());
        db.enroll("s1", "d1", &old, false, 0).expect("enrol");
        db.rotate_device_key("d1", &new, 1_000, "d1", 10).expect("store").expect("rotated");
        assert_eq!(db.device_keys("d1", 999).expect("store").expect("known").keys, [new, old]);
        assert_eq!(db.device_keys("d1", 1_000).expect("store").expect("known").keys, [new]);
    }

    #[test]
    fn quarantine_keeps_a_resent_message_once_and_approval_releases_it() {
        let (_d, mut db) = db();
        let t = crate::lifecycle::new_token().expect("rng");
        db.add_enrol_token(&t.id, &t.secret_sha256, "s1", "it", 1_000, 0).expect("token");
        let key = SigningKey::generate().expect("key").public_key();
        db.enrol_with_token(&t.id, &t.secret_sha256, "s1", "d1", &key, "x", 1).expect("store").expect("pending");
        let q = Quarantined { device_id: "d1".into(), seq: 1, digest: [7; 32], kind: 3, envelope: vec![1, 2] };
        assert_eq!(db.quarantine(&[q.clone(), q.clone()], "pending", 2).expect("store"), 1);
        assert_eq!(db.quarantine(&[q], "pending", 3).expect("store"), 0);
        assert_eq!(db.quarantined("d1").expect("store"), 1);
        db.device_action("d1", Action::Approve, "it", "", 4).expect("store").expect("approved");
        assert_eq!(db.quarantined("d1").expect("store"), 0);
        assert_eq!(db.device_keys("d1", 5).expect("store").expect("known").state, DeviceState::Active);
    }
}
