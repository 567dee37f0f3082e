//! Signed envelopes.
//!
//! An envelope is `{ header, body, signature }` encoded with bincode. The Ed25519 signature covers
//! a domain-separated message:
//!
//! ```text
//! b"yilian/v1/up\0" (device → hub) or b"yilian/v1/down\0" (hub → device)
//! ‖ topic ‖ 0x00 ‖ bincode(header) ‖ body
//! ```
//!
//! Because the topic is signed, a valid message replayed on another device's topic fails, and a
//! hub message can never be passed off as a device message. The body stays opaque bytes until the
//! signature has been checked; only then is it decoded, with its kind's size limit.

use crate::error::{DecodeError, EncodeError, VerifyError};
use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::limits;
use crate::message::{Lane, Payload};
use crate::topic::{Channel, Topic};
use crate::wire;
use serde::{Deserialize, Serialize};

/// Algorithm id of Ed25519, the only one today.
pub const ALG_ED25519: u8 = 1;
const DOMAIN_UP: &[u8] = b"yilian/v1/up\0";
const DOMAIN_DOWN: &[u8] = b"yilian/v1/down\0";

/// The signed header of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Signature algorithm id ([`ALG_ED25519`]).
    pub alg: u8,
    /// The signer: a device id, or the hub's id for hub → device messages.
    pub device_id: String,
    /// Id of the signing key.
    pub key_id: KeyId,
    /// The signer's spool epoch: random, made when an agent's spool is created. Acks echo it,
    /// so an ack can never remove envelopes of another installation of the same device (a wiped
    /// or restored spool). 0 for the hub.
    pub epoch: u64,
    /// Per-signer sequence number: monotonic, persisted, never reused.
    pub seq: u64,
    /// Signer's clock at creation, Unix ms.
    pub created_at_ms: i64,
    /// Priority lane.
    pub lane: Lane,
    /// Body kind (see [`crate::message::kind`]); an open number, so new kinds do not break old
    /// decoders of the header.
    pub kind: u16,
}

impl Header {
    /// A header for `key`'s signer (epoch 0); `kind` is filled in by [`seal`].
    pub fn new(key: &SigningKey, device_id: &str, seq: u64, created_at_ms: i64, lane: Lane) -> Self {
        Self {
            alg: ALG_ED25519,
            device_id: device_id.to_string(),
            key_id: key.key_id(),
            epoch: 0,
            seq,
            created_at_ms,
            lane,
            kind: 0,
        }
    }
}

/// An envelope as it travels: the body is still undecoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Signed header.
    pub header: Header,
    /// Encoded body of `header.kind`.
    pub body: Vec<u8>,
    /// Ed25519 signature over the domain-separated message.
    pub signature: Vec<u8>,
}

/// A payload whose envelope passed every check. Only this crate can make one.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    header: Header,
    payload: T,
    digest: [u8; 32],
}

impl<T> Verified<T> {
    /// The signed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The decoded payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// SHA-256 of the signed message: equal digests mean the same content, for deduplication.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Splits into header and payload.
    pub fn into_parts(self) -> (Header, T) {
        (self.header, self.payload)
    }
}

fn domain(channel: Channel) -> &'static [u8] {
    if channel.is_uplink() { DOMAIN_UP } else { DOMAIN_DOWN }
}

fn signed_message(topic: &Topic, header_bytes: &[u8], body: &[u8]) -> Vec<u8> {
    let dom = domain(topic.channel());
    let topic = topic.to_string();
    let mut m = Vec::with_capacity(dom.len() + topic.len() + 1 + header_bytes.len() + body.len());
    m.extend_from_slice(dom);
    m.extend_from_slice(topic.as_bytes());
    m.push(0);
    m.extend_from_slice(header_bytes);
    m.extend_from_slice(body);
    m
}

/// Which channel a kind may travel on.
fn channel_allows(channel: Channel, kind: u16) -> bool {
    use crate::message::kind as k;
    match channel {
        Channel::Up => {
            matches!(
                kind,
                k::STREAM_CHUNK
                    | k::STUDY_PART
                    | k::DEVICE_OUTPUT
                    | k::REPORT_RECEIPT
                    | k::STREAM_GAP
                    | k::IMAGE_MANIFEST
                    | k::BLOB_CHUNK
                    | k::KEY_ROTATION
                    | k::FLEET_REPORT
                    | k::CRITICAL_ACK
                    | k::QUALITY_OVERRIDE
            )
        }
        Channel::Status => kind == k::STATUS,
        Channel::Ack => matches!(kind, k::ACK | k::HUB_KEY_ROTATION | k::UPDATE_ASSIGNMENT),
        Channel::Report => matches!(kind, k::REPORT | k::STUDY_CLAIM | k::CRITICAL_NOTICE),
    }
}

/// Signs `payload` for `topic` and returns the envelope's wire bytes.
///
/// # Errors
/// The body or the whole envelope is over its size limit, or the kind may not travel on the
/// topic's channel.
pub fn seal(key: &SigningKey, mut header: Header, topic: &Topic, payload: &Payload) -> Result<Vec<u8>, EncodeError> {
    header.kind = payload.kind();
    header.key_id = key.key_id();
    if !channel_allows(topic.channel(), header.kind) {
        return Err(EncodeError::Bincode {
            what: "envelope",
            reason: format!("kind {} not allowed on {}", header.kind, topic),
        });
    }
    let body = payload.encode()?;
    let header_bytes = wire::encode("envelope header", &header, limits::HEADER_MAX)?;
    let signature = key.sign(&signed_message(topic, &header_bytes, &body));
    wire::encode("envelope", &Envelope { header, body, signature }, limits::ENVELOPE_MAX)
}

impl Envelope {
    /// Decodes an envelope's wire bytes, bounded by [`limits::ENVELOPE_MAX`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        wire::decode::<Self, { limits::ENVELOPE_MAX }>("envelope", bytes)
    }

    /// Checks algorithm, key, topic, signature, clock and kind, then decodes the body.
    ///
    /// `now_ms` is the receiver's clock (Unix ms), to refuse messages created far in its future;
    /// `None` skips that check (agents verifying the hub: a clinic PC with a wrong clock must
    /// still accept acks and reports, and freshness is not what protects them). For uplink
    /// channels the header's device must be the topic's device.
    pub fn verify(
        &self,
        key: &PublicKey,
        topic: &Topic,
        now_ms: Option<i64>,
    ) -> Result<Verified<Payload>, VerifyError> {
        let h = &self.header;
        if h.alg != ALG_ED25519 {
            return Err(VerifyError::UnknownAlgorithm(h.alg));
        }
        // A signer that is not the topic's device is named as such (whatever key it used), so
        // the hub counts "device mismatch" for a device publishing on another's topic.
        if topic.channel().is_uplink() && h.device_id != topic.device() {
            return Err(VerifyError::DeviceMismatch {
                envelope: h.device_id.chars().take(64).collect(),
                topic: topic.device().to_string(),
            });
        }
        if h.key_id != key.id() {
            return Err(VerifyError::WrongKey { got: h.key_id.to_string(), expected: key.id().to_string() });
        }
        let header_bytes = wire::encode("envelope header", h, limits::HEADER_MAX).map_err(|_| {
            VerifyError::Body(DecodeError::Malformed { what: "envelope header", reason: "too large".into() })
        })?;
        let message = signed_message(topic, &header_bytes, &self.body);
        if !key.verify(&message, &self.signature) {
            return Err(VerifyError::BadSignature);
        }
        if let Some(now_ms) = now_ms {
            let ahead_ms = h.created_at_ms.saturating_sub(now_ms);
            if ahead_ms > limits::MAX_FUTURE_SKEW_MS {
                return Err(VerifyError::FromTheFuture { created_at_ms: h.created_at_ms, ahead_ms });
            }
        }
        let name = Payload::kind_name(h.kind).ok_or(VerifyError::UnknownKind(h.kind))?;
        if !channel_allows(topic.channel(), h.kind) {
            return Err(VerifyError::WrongChannel { kind: name, channel: topic.channel().as_str() });
        }
        let payload = Payload::decode(h.kind, &self.body).ok_or(VerifyError::UnknownKind(h.kind))??;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &message).as_ref());
        Ok(Verified { header: h.clone(), payload, digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DeviceOutput, LinkState, Status};

    const NOW: i64 = 1_750_000_000_000;

    fn output() -> Payload {
        Payload::DeviceOutput(DeviceOutput {
            port: "cart".into(), line: "HR 72 bpm 心率".into(), received_at_ms: NOW
        })
    }

    fn sealed(key: &SigningKey, topic: &Topic, seq: u64) -> Vec<u8> {
        seal(key, Header::new(key, topic.device(), seq, NOW, Lane::Stream), topic, &output()).expect("seal")
    }

    #[test]
    fn sealed_envelope_verifies_and_decodes() {
        let key = SigningKey::generate().expect("key");
        let topic = Topic::new("s1", "d1", Channel::Up).expect("topic");
        let env = Envelope::decode(&sealed(&key, &topic, 3)).expect("decode");
        let v = env.verify(&key.public_key(), &topic, Some(NOW)).expect("verify");
        assert_eq!(v.header().seq, 3);
        assert_eq!(v.payload(), &output());
    }

    #[test]
    fn replay_on_another_devices_topic_fails() {
        let key = SigningKey::generate().expect("key");
        let topic = Topic::new("s1", "d1", Channel::Up).expect("topic");
        let env = Envelope::decode(&sealed(&key, &topic, 3)).expect("decode");
        let other = Topic::new("s1", "d2", Channel::Up).expect("topic");
        assert!(matches!(env.verify(&key.public_key(), &other, Some(NOW)), Err(VerifyError::DeviceMismatch { .. })));
        // Same device id, other site: the signature covers the topic.
        let other_site = Topic::new("s2", "d1", Channel::Up).expect("topic");
        assert_eq!(env.verify(&key.public_key(), &other_site, Some(NOW)).err(), Some(VerifyError::BadSignature));
    }

    #[test]
    fn forged_and_tampered_envelopes_fail() {
        let key = SigningKey::generate().expect("key");
        let forger = SigningKey::generate().expect("key");
        let topic = Topic::new("s1", "d1", Channel::Up).expect("topic");
        let env = Envelope::decode(&sealed(&forger, &topic, 1)).expect("decode");
        assert!(matches!(env.verify(&key.public_key(), &topic, Some(NOW)), Err(VerifyError::WrongKey { .. })));
        let mut env = Envelope::decode(&sealed(&key, &topic, 1)).expect("decode");
        env.header.seq = 2;
        assert_eq!(env.verify(&key.public_key(), &topic, Some(NOW)).err(), Some(VerifyError::BadSignature));
        let mut env = Envelope::decode(&sealed(&key, &topic, 1)).expect("decode");
        env.header.key_id = key.key_id();
        env.header.alg = 9;
        assert_eq!(env.verify(&key.public_key(), &topic, Some(NOW)).err(), Some(VerifyError::UnknownAlgorithm(9)));
    }

    #[test]
    fn kinds_are_held_to_their_channel_and_clock() {
        let key = SigningKey::generate().expect("key");
        let up = Topic::new("s1", "d1", Channel::Up).expect("topic");
        let status = Payload::Status(Status {
            state: LinkState::Online,
            agent_version: "0".into(),
            spool_entries: 0,
            spool_bytes: 0,
            detail: String::new(),
        });
        assert!(seal(&key, Header::new(&key, "d1", 1, NOW, Lane::Stream), &up, &status).is_err());
        let far = Header::new(&key, "d1", 1, NOW + limits::MAX_FUTURE_SKEW_MS + 1, Lane::Stream);
        let env = Envelope::decode(&seal(&key, far, &up, &output()).expect("seal")).expect("decode");
        assert!(matches!(env.verify(&key.public_key(), &up, Some(NOW)), Err(VerifyError::FromTheFuture { .. })));
        assert!(env.verify(&key.public_key(), &up, None).is_ok(), "no clock, no freshness check");
    }

    #[test]
    fn truncated_and_oversized_bytes_are_typed_errors() {
        let key = SigningKey::generate().expect("key");
        let topic = Topic::new("s1", "d1", Channel::Up).expect("topic");
        let bytes = sealed(&key, &topic, 1);
        for cut in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let big = vec![0u8; limits::ENVELOPE_MAX + 1];
        assert!(matches!(Envelope::decode(&big), Err(DecodeError::TooLarge { .. })));
    }
}
