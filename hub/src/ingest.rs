//! Verifies every uplink message, stores it idempotently, acks what is stored, and tracks device
//! status. Nothing reaches the store without a [`Verified`] envelope.

use crate::clock::now_ms;
use crate::publish::Publisher;
use crate::ratelimit::{Limits, RateLimiter, Verdict};
use crate::store::lifecycle::{DeviceKeys, DeviceState, Quarantined};
use crate::store::{Incoming, Store, Stored};
use rumqttc::Publish;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use yilian_protocol::envelope::{Envelope, Verified};
use yilian_protocol::keys::PublicKey;
use yilian_protocol::message::{LinkState, Payload, Refusal, RefusalReason};
use yilian_protocol::topic::{Channel, Topic};
use yilian_protocol::{DecodeError, VerifyError};

/// How long an unenrolled device id is remembered as such (enrolment takes effect after it).
const UNKNOWN_TTL: std::time::Duration = std::time::Duration::from_secs(3);
/// How long a device's old key stays valid after it rotated, unless configured.
pub const DEFAULT_KEY_OVERLAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// How long a device's state and keys are trusted from memory: an approval, rotation or a
/// revocation made by another process (the CLI) takes effect after at most this long.
const KEYS_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Rejected messages counted per reason.
#[derive(Debug, Default)]
pub struct Rejects(Mutex<BTreeMap<&'static str, u64>>);

impl Rejects {
    fn count(&self, reason: &'static str) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(reason).or_default() += 1;
    }

    /// A snapshot of the counts.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Total rejected.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// The reason label of a verification failure.
pub fn reason_of(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::UnknownAlgorithm(_) => "unknown algorithm",
        VerifyError::WrongKey { .. } => "wrong key",
        VerifyError::BadSignature => "bad signature",
        VerifyError::DeviceMismatch { .. } => "device mismatch",
        VerifyError::FromTheFuture { .. } => "from the future",
        VerifyError::UnknownKind(_) => "unknown kind",
        VerifyError::WrongChannel { .. } => "wrong channel",
        VerifyError::Body(DecodeError::TooLarge { .. }) => "oversized body",
        VerifyError::Body(_) => "malformed body",
        _ => "invalid",
    }
}

/// The ingest task's state.
pub struct Ingest {
    failpoint: Option<crate::failpoint::Failpoint>,
    limiter: RateLimiter,
    /// Device ids recently found unenrolled, so a flood of strangers does not hit the store.
    unknown: HashMap<String, std::time::Instant>,
    store: Store,
    publisher: Publisher,
    rejects: Arc<Rejects>,
    keys: HashMap<String, (DeviceKeys, std::time::Instant)>,
    /// Revoked devices seen sending: the disconnect task takes them off the broker again.
    revoked_seen: Option<mpsc::Sender<String>>,
    /// How long a device's old key stays valid after it rotated to a new one.
    key_overlap: std::time::Duration,
}

enum Checked {
    Ignored,
    Up(Incoming),
    Status(String, String, Verified<Payload>),
    /// A pending device's validly signed message: kept aside, not stored, not acked.
    Quarantine(Quarantined),
    Rejected,
}

impl Ingest {
    /// An ingest stage over `store`, acking and republishing through `publisher`.
    pub fn new(store: Store, publisher: Publisher, rejects: Arc<Rejects>, limits: Limits) -> Self {
        Self {
            failpoint: crate::failpoint::Failpoint::from_env(),
            limiter: RateLimiter::new(limits),
            unknown: HashMap::new(),
            store,
            publisher,
            rejects,
            keys: HashMap::new(),
            revoked_seen: None,
            key_overlap: DEFAULT_KEY_OVERLAP,
        }
    }

    /// Sets how long a device's old key stays valid after a rotation.
    pub fn with_key_overlap(mut self, overlap: std::time::Duration) -> Self {
        self.key_overlap = overlap;
        self
    }

    /// Reports revoked devices that are still sending to `tx` (see
    /// [`crate::lifecycle::run_disconnects`]).
    pub fn with_revoked_sink(mut self, tx: mpsc::Sender<String>) -> Self {
        self.revoked_seen = Some(tx);
        self
    }

    fn reject(&self, p: &Publish, reason: &'static str, detail: &str) {
        warn!(topic = %p.topic, reason, detail, bytes = p.payload.len(), "message rejected");
        self.rejects.count(reason);
    }

    async fn key_of(&mut self, device: &str) -> Option<DeviceKeys> {
        let now = std::time::Instant::now();
        if let Some((k, at)) = self.keys.get(device)
            && now.duration_since(*at) < KEYS_TTL
        {
            return Some(k.clone());
        }
        if self.unknown.get(device).is_some_and(|t| now.duration_since(*t) < UNKNOWN_TTL) {
            return None;
        }
        let d = device.to_string();
        let found = self.store.call(move |db| db.device_keys(&d, now_ms())).await.ok()?.ok()?;
        match found {
            Some(found) => {
                self.unknown.remove(device);
                if self.keys.len() >= 100_000 {
                    self.keys.retain(|_, (_, t)| now.duration_since(*t) < KEYS_TTL);
                }
                self.keys.insert(device.to_string(), (found.clone(), now));
                Some(found)
            }
            None => {
                if self.unknown.len() >= 10_000 {
                    self.unknown.retain(|_, t| now.duration_since(*t) < UNKNOWN_TTL);
                }
                if self.unknown.len() < 10_000 {
                    self.unknown.insert(device.to_string(), now);
                }
                None
            }
        }
    }

    async fn check(&mut self, p: Publish) -> Checked {
        let topic = match Topic::parse(&p.topic) {
            Ok(t) if t.channel().is_uplink() => t,
            Ok(_) | Err(_) => {
                self.reject(&p, "bad topic", "");
                return Checked::Rejected;
            }
        };
        if let Verdict::Drop { log, dropped } =
            self.limiter.check(topic.device(), p.payload.len(), std::time::Instant::now())
        {
            self.rejects.count("rate limited");
            if log {
                warn!(device = topic.device(), dropped, "device over its rate limit; messages dropped unacknowledged");
            }
            return Checked::Rejected;
        }
        if topic.channel() == Channel::Status && p.payload.is_empty() {
            // An empty retained publish is how MQTT clears a retained message (an operator
            // removing a decommissioned cart's last status): nothing to verify or store.
            debug!(topic = %p.topic, "retained status cleared");
            return Checked::Ignored;
        }
        let env = match Envelope::decode(&p.payload) {
            Ok(e) => e,
            Err(e) => {
                let reason =
                    if matches!(e, DecodeError::TooLarge { .. }) { "oversized envelope" } else { "malformed envelope" };
                self.reject(&p, reason, &e.to_string());
                return Checked::Rejected;
            }
        };
        let Some(found) = self.key_of(topic.device()).await else {
            self.reject(&p, "unknown device", topic.device());
            return Checked::Rejected;
        };
        let site = found.site.clone();
        if site != topic.site() {
            self.reject(&p, "wrong site", &format!("{} is enrolled at {site}", topic.device()));
            return Checked::Rejected;
        }
        if !found.state.may_act() {
            let reason = if found.state == DeviceState::Revoked { "revoked device" } else { "rejected device" };
            self.reject(&p, reason, topic.device());
            if let Some(tx) = &self.revoked_seen {
                let _ = tx.try_send(topic.device().to_string());
            }
            return Checked::Rejected;
        }
        let mut result = verify_any(&env, &found.keys, &topic);
        if matches!(result, Err(VerifyError::WrongKey { .. })) {
            // The device may have been re-enrolled or rotated to a new key since we cached it.
            self.keys.remove(topic.device());
            if let Some(fresh) = self.key_of(topic.device()).await
                && fresh.keys != found.keys
            {
                result = verify_any(&env, &fresh.keys, &topic);
            }
        }
        let verified = match result {
            Ok(v) => v,
            Err(e) => {
                self.reject(&p, reason_of(&e), &e.to_string());
                return Checked::Rejected;
            }
        };
        if let Payload::KeyRotation(r) = verified.payload() {
            // Only the current key may hand over (or a resend of the hand-over already made),
            // and the new key must prove itself.
            let signer = found.keys.iter().find(|k| k.id() == verified.header().key_id).copied();
            let current = found.keys.first().copied();
            let ok = signer.is_some_and(|old| {
                r.check(topic.device(), &old).is_ok() && (Some(old) == current || Some(r.new_public_key) == current)
            });
            if !ok {
                self.reject(&p, "bad key rotation", topic.device());
                return Checked::Rejected;
            }
        }
        match topic.channel() {
            Channel::Status => Checked::Status(site, topic.device().to_string(), verified),
            _ if found.state == DeviceState::Pending => Checked::Quarantine(Quarantined {
                device_id: topic.device().to_string(),
                seq: verified.header().seq,
                digest: verified.digest(),
                kind: verified.header().kind,
                envelope: p.payload.to_vec(),
            }),
            _ => Checked::Up(Incoming { site, verified, envelope: p.payload.to_vec() }),
        }
    }

    async fn on_status(&mut self, site: String, device: String, v: Verified<Payload>) {
        let Payload::Status(s) = v.payload() else {
            return;
        };
        let (state, at) = (s.state, v.header().created_at_ms);
        let (d, s2) = (device.clone(), s.clone());
        let newer = match self.store.call(move |db| db.update_status(&d, &s2, at)).await.and_then(|r| r) {
            Ok(newer) => newer,
            Err(e) => {
                warn!(error = %e, "cannot record device status");
                false
            }
        };
        if !newer {
            debug!(device, "status not newer than the stored one; ignored");
            return;
        }
        if state == LinkState::Online {
            info!(device, spool = s.spool_entries, "device online");
            // First, so an agent pinning the old hub key follows before anything signed by the new one.
            self.publisher.publish_hub_rotation(&site, &device);
            // The broker may have lost queued reports (rumqttd keeps sessions in memory only).
            self.publisher.republish_reports(&self.store, Some(device.clone())).await;
            self.publisher.republish_critical(&self.store, Some(device)).await;
        } else if state == LinkState::Offline {
            info!(device, "device offline");
        }
    }

    /// Handles a batch of publishes: verify each, store the good ones in one transaction, ack.
    pub async fn handle_batch(&mut self, batch: Vec<Publish>) {
        let mut incoming = Vec::new();
        let mut held = Vec::new();
        for p in batch {
            match self.check(p).await {
                Checked::Up(i) => incoming.push(i),
                Checked::Status(site, device, v) => self.on_status(site, device, v).await,
                Checked::Quarantine(q) => held.push(q),
                Checked::Rejected | Checked::Ignored => {}
            }
        }
        if !held.is_empty() {
            self.quarantine(held).await;
        }
        if incoming.is_empty() {
            return;
        }
        crate::failpoint::hit(&self.failpoint, "before-commit");
        let now = now_ms();
        let (result, incoming) = match self
            .store
            .call(move |db| {
                let r = db.ingest(&incoming, now);
                (r, incoming)
            })
            .await
        {
            Ok(x) => x,
            Err(e) => {
                // No application ack: the agent sends it again after its ack timeout.
                warn!(error = %e, "store unavailable; batch not acked");
                return;
            }
        };
        let outcomes = match result {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "store commit failed; batch not acked");
                return;
            }
        };
        crate::failpoint::hit(&self.failpoint, "after-commit");
        self.apply_rotations(&incoming, &outcomes).await;
        type Key = (String, String, u64);
        let mut acks: BTreeMap<Key, (Vec<u64>, Vec<Refusal>)> = BTreeMap::new();
        for (item, outcome) in incoming.iter().zip(outcomes) {
            let h = item.verified.header();
            let entry = acks.entry((item.site.clone(), h.device_id.clone(), h.epoch)).or_default();
            match outcome {
                Stored::New | Stored::Duplicate => {
                    debug!(device = %h.device_id, seq = h.seq, dup = matches!(outcome, Stored::Duplicate), "stored");
                    entry.0.push(h.seq);
                }
                Stored::Refused(reason) => {
                    let label = match &reason {
                        RefusalReason::SeqReused { .. } => "seq reused",
                        RefusalReason::Inconsistent(_) => "inconsistent body",
                    };
                    warn!(device = %h.device_id, seq = h.seq, ?reason, "message refused");
                    self.rejects.count(label);
                    entry.1.push(Refusal { seq: h.seq, reason });
                }
                Stored::Failed(e) => {
                    // Neither acked nor refused: the agent sends it again after its ack timeout.
                    warn!(device = %h.device_id, seq = h.seq, error = %e, "store failed on this message");
                }
            }
        }
        for ((site, device, epoch), (seqs, refused)) in acks {
            if !seqs.is_empty() || !refused.is_empty() {
                self.publisher.ack_stored(&site, &device, epoch, &seqs, refused);
            }
        }
    }
}

impl Ingest {
    /// Makes stored key rotations take effect before they are acked (a resent one again: it
    /// changes nothing the second time), so an acked rotation is always in force.
    async fn apply_rotations(&mut self, incoming: &[Incoming], outcomes: &[Stored]) {
        for (item, outcome) in incoming.iter().zip(outcomes) {
            let Payload::KeyRotation(r) = item.verified.payload() else { continue };
            if !matches!(outcome, Stored::New | Stored::Duplicate) {
                continue;
            }
            let device = item.verified.header().device_id.clone();
            let (d, new, now) = (device.clone(), r.new_public_key, now_ms());
            let until = now.saturating_add(self.key_overlap.as_millis() as i64);
            match self.store.call(move |db| db.rotate_device_key(&d, &new, until, &d, now)).await {
                Ok(Ok(Ok(()))) => {
                    info!(device, key_id = %new.id(), "device key rotated; the old key is valid until {until}")
                }
                Ok(Ok(Err(e))) => warn!(device, error = %e, "key rotation not applied"),
                Ok(Err(e)) | Err(e) => {
                    warn!(device, error = %e, "cannot apply a key rotation; it is applied when sent again")
                }
            }
            self.keys.remove(&device);
        }
    }

    /// Keeps a pending device's messages aside. They are not acked: the agent keeps them in its
    /// spool and sends them again, and once an admin approves the device they are stored as
    /// they come.
    async fn quarantine(&mut self, held: Vec<Quarantined>) {
        let n = held.len() as u64;
        for q in &held {
            debug!(device = %q.device_id, seq = q.seq, "message of a pending device quarantined");
        }
        match self.store.call(move |db| db.quarantine(&held, "device pending approval", now_ms())).await {
            Ok(Ok(new)) if new > 0 => info!(new, "messages of pending devices quarantined until approval"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) | Err(e) => warn!(error = %e, "cannot quarantine messages; the agent sends them again"),
        }
        for _ in 0..n {
            self.rejects.count("pending device (quarantined)");
        }
    }
}

/// Verifies `env` with whichever of the device's valid keys signed it (the header names the key
/// id, so at most one signature check runs).
fn verify_any(env: &Envelope, keys: &[PublicKey], topic: &Topic) -> Result<Verified<Payload>, VerifyError> {
    let key = keys.iter().find(|k| k.id() == env.header.key_id).or(keys.first());
    match key {
        Some(k) => env.verify(k, topic, Some(now_ms())),
        None => Err(VerifyError::BadSignature),
    }
}

/// Runs ingest over publishes from the MQTT poll task, in batches of what is already waiting.
pub async fn run(mut ingest: Ingest, mut rx: mpsc::Receiver<Publish>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        ingest.handle_batch(batch).await;
    }
}
