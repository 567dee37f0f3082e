//! Enrolment with a bootstrap token: what a new device sends the hub over HTTPS, and the
//! statements it signs to prove that it holds the key it asks to enrol.
//!
//! A statement is domain-separated and length-prefixed, so no field can be shifted into another:
//!
//! ```text
//! b"yilian/v1/enrol\0" ‖ alg ‖ len‖token ‖ len‖site ‖ len‖device ‖ public key (32) ‖ at_ms (i64 BE)
//! b"yilian/v1/enrol-poll\0" ‖ alg ‖ len‖device ‖ public key (32) ‖ at_ms (i64 BE)
//! ```
//!
//! (`len` is a big-endian u32.) The algorithm id is signed too, so a later national algorithm
//! (SM2) can be added without a statement of one being read as the other; unknown ids are refused.

use crate::envelope::ALG_ED25519;
use crate::keys::{PublicKey, SigningKey};
use serde::{Deserialize, Serialize};

const DOMAIN_ENROL: &[u8] = b"yilian/v1/enrol\0";
const DOMAIN_POLL: &[u8] = b"yilian/v1/enrol-poll\0";
const DOMAIN_ROTATE: &[u8] = b"yilian/v1/rotate\0";
/// How far the signing time of an enrolment request or poll may be from the hub's clock.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// A device asks to be enrolled (JSON body of `POST /api/enrol`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// Signature algorithm id ([`ALG_ED25519`]).
    pub alg: u8,
    /// The bootstrap token county IT issued for the clinic.
    pub token: String,
    /// The clinic (site) the token was issued for.
    pub site: String,
    /// The device id asked for.
    pub device: String,
    /// The new device key, 64 hex digits.
    pub public_key: String,
    /// Device clock when signed, Unix ms.
    pub at_ms: i64,
    /// Signature over [`enrol_statement`], hex.
    pub signature: String,
}

/// The hub's answer about one device's enrolment (JSON of `POST /api/enrol` and
/// `GET /api/enrol/{device}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolStatus {
    /// Device id.
    pub device: String,
    /// Site id.
    pub site: String,
    /// `pending`, `active`, `rejected` or `revoked`.
    pub state: String,
    /// Id of the enrolled device key.
    pub key_id: String,
    /// The hub's signing key (hex) while the device is pending or active: the agent pins it.
    pub hub_public_key: Option<String>,
    /// The device's certificate (PEM) from the county CA, once active, when the hub has a CA.
    pub certificate: Option<String>,
    /// The county CA certificate (PEM), once active, when the hub has a CA.
    pub ca_certificate: Option<String>,
}

/// Why an enrolment request or poll is not acceptable on its face.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    /// The algorithm id is not one this build knows.
    #[error("unknown signature algorithm id {0}")]
    UnknownAlgorithm(u8),
    /// The public key is not 64 hex digits.
    #[error("public key is not 64 hex digits")]
    BadKey,
    /// The signature does not verify with the key in the request.
    #[error("the signature does not prove possession of the key")]
    BadSignature,
    /// The signing time is too far from the hub's clock (a replay, or a wrong clock).
    #[error("signed at {at_ms}, {off_ms} ms away from the hub's clock (limit {MAX_SKEW_MS} ms)")]
    Stale {
        /// Signing time.
        at_ms: i64,
        /// Distance from now.
        off_ms: i64,
    },
    /// A site or device id is not a slug.
    #[error(transparent)]
    Id(#[from] crate::TopicError),
}

fn push_field(m: &mut Vec<u8>, field: &[u8]) {
    m.extend_from_slice(&(field.len() as u32).to_be_bytes());
    m.extend_from_slice(field);
}

/// The bytes a device signs to ask for enrolment.
pub fn enrol_statement(alg: u8, token: &str, site: &str, device: &str, key: &PublicKey, at_ms: i64) -> Vec<u8> {
    let mut m = DOMAIN_ENROL.to_vec();
    m.push(alg);
    push_field(&mut m, token.as_bytes());
    push_field(&mut m, site.as_bytes());
    push_field(&mut m, device.as_bytes());
    m.extend_from_slice(&key.0);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

/// The bytes a device signs to ask how its enrolment stands.
pub fn poll_statement(alg: u8, device: &str, key: &PublicKey, at_ms: i64) -> Vec<u8> {
    let mut m = DOMAIN_POLL.to_vec();
    m.push(alg);
    push_field(&mut m, device.as_bytes());
    m.extend_from_slice(&key.0);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

impl EnrolRequest {
    /// A request signed by the new device key.
    pub fn sign(token: &str, site: &str, device: &str, key: &SigningKey, at_ms: i64) -> Self {
        let public = key.public_key();
        let statement = enrol_statement(ALG_ED25519, token, site, device, &public, at_ms);
        Self {
            alg: ALG_ED25519,
            token: token.to_string(),
            site: site.to_string(),
            device: device.to_string(),
            public_key: public.to_hex(),
            at_ms,
            signature: hex::encode(key.sign(&statement)),
        }
    }

    /// Checks ids, algorithm, freshness against `now_ms` and proof of possession; returns the
    /// key. The token itself is the hub's to check.
    pub fn verify(&self, now_ms: i64) -> Result<PublicKey, EnrolError> {
        crate::topic::check_slug("site", &self.site)?;
        crate::topic::check_slug("device", &self.device)?;
        check_alg_and_time(self.alg, self.at_ms, now_ms)?;
        let key = PublicKey::from_hex(&self.public_key).map_err(|_| EnrolError::BadKey)?;
        let statement = enrol_statement(self.alg, &self.token, &self.site, &self.device, &key, self.at_ms);
        let sig = hex::decode(&self.signature).map_err(|_| EnrolError::BadSignature)?;
        if !key.verify(&statement, &sig) {
            return Err(EnrolError::BadSignature);
        }
        Ok(key)
    }
}

fn check_alg_and_time(alg: u8, at_ms: i64, now_ms: i64) -> Result<(), EnrolError> {
    if alg != ALG_ED25519 {
        return Err(EnrolError::UnknownAlgorithm(alg));
    }
    let off_ms = at_ms.saturating_sub(now_ms).saturating_abs();
    if off_ms > MAX_SKEW_MS {
        return Err(EnrolError::Stale { at_ms, off_ms });
    }
    Ok(())
}

/// The bytes a device's new key signs when the device rotates to it (the envelope carrying the
/// rotation is signed by the old key, so both keys vouch for the move).
pub fn rotation_statement(alg: u8, device: &str, old: &PublicKey, new: &PublicKey, at_ms: i64) -> Vec<u8> {
    let mut m = DOMAIN_ROTATE.to_vec();
    m.push(alg);
    push_field(&mut m, device.as_bytes());
    m.extend_from_slice(&old.0);
    m.extend_from_slice(&new.0);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

impl crate::message::KeyRotation {
    /// A rotation of `device` from `old` to `new`, with the new key's proof of possession.
    pub fn sign(device: &str, old: &PublicKey, new: &SigningKey, at_ms: i64) -> Self {
        let new_public_key = new.public_key();
        let statement = rotation_statement(ALG_ED25519, device, old, &new_public_key, at_ms);
        Self { alg: ALG_ED25519, new_public_key, at_ms, new_key_signature: new.sign(&statement) }
    }

    /// Checks the new key's proof for `device` rotating away from `old` (the key that signed
    /// the envelope).
    pub fn check(&self, device: &str, old: &PublicKey) -> Result<(), EnrolError> {
        if self.alg != ALG_ED25519 {
            return Err(EnrolError::UnknownAlgorithm(self.alg));
        }
        let statement = rotation_statement(self.alg, device, old, &self.new_public_key, self.at_ms);
        if self.new_public_key.verify(&statement, &self.new_key_signature) {
            Ok(())
        } else {
            Err(EnrolError::BadSignature)
        }
    }
}

/// The signer name in a hub key rotation's statement: `hub:` cannot begin a device id (a slug),
/// so a hub's statement can never pass for a device's.
pub fn hub_signer(hub_id: &str) -> String {
    format!("hub:{hub_id}")
}

/// A signed poll: `(alg, at_ms, signature hex)` for the query of `GET /api/enrol/{device}`.
pub fn sign_poll(device: &str, key: &SigningKey, at_ms: i64) -> (u8, i64, String) {
    let statement = poll_statement(ALG_ED25519, device, &key.public_key(), at_ms);
    (ALG_ED25519, at_ms, hex::encode(key.sign(&statement)))
}

/// Checks a poll's signature by one of `keys` (the device's enrolled keys) and its freshness.
pub fn verify_poll(
    device: &str,
    keys: &[PublicKey],
    alg: u8,
    at_ms: i64,
    signature_hex: &str,
    now_ms: i64,
) -> Result<PublicKey, EnrolError> {
    check_alg_and_time(alg, at_ms, now_ms)?;
    let sig = hex::decode(signature_hex).map_err(|_| EnrolError::BadSignature)?;
    keys.iter()
        .find(|k| k.verify(&poll_statement(alg, device, k, at_ms), &sig))
        .copied()
        .ok_or(EnrolError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_765_000_000_000;

    #[test]
    fn a_signed_request_proves_possession_and_nothing_in_it_can_change() {
        let key = SigningKey::generate().expect("key");
        let req = EnrolRequest::sign("tok", "clinic-a", "cart-1", &key, NOW);
        assert_eq!(req.verify(NOW + 1000).expect("valid"), key.public_key());
        for tamper in [
            EnrolRequest { token: "tok2".into(), ..req.clone() },
            EnrolRequest { site: "clinic-b".into(), ..req.clone() },
            EnrolRequest { device: "cart-2".into(), ..req.clone() },
            EnrolRequest { at_ms: NOW + 1, ..req.clone() },
            EnrolRequest { public_key: SigningKey::generate().expect("key").public_key().to_hex(), ..req.clone() },
        ] {
            assert_eq!(tamper.verify(NOW), Err(EnrolError::BadSignature), "{tamper:?}");
        }
        assert_eq!(EnrolRequest { alg: 9, ..req.clone() }.verify(NOW), Err(EnrolError::UnknownAlgorithm(9)));
        assert!(matches!(req.verify(NOW + MAX_SKEW_MS + 1), Err(EnrolError::Stale { .. })));
        assert!(matches!(EnrolRequest { device: "a/b".into(), ..req }.verify(NOW), Err(EnrolError::Id(_))));
    }

    #[test]
    fn a_rotation_is_proven_by_the_new_key_for_this_device_and_old_key_only() {
        let (old, new) = (SigningKey::generate().expect("key"), SigningKey::generate().expect("key"));
        let r = crate::message::KeyRotation::sign("cart-1", &old.public_key(), &new, NOW);
        assert_eq!(r.check("cart-1", &old.public_key()), Ok(()));
        assert_eq!(r.check("cart-2", &old.public_key()), Err(EnrolError::BadSignature));
        assert_eq!(r.check("cart-1", &new.public_key()), Err(EnrolError::BadSignature));
        let forged = crate::message::KeyRotation { new_public_key: old.public_key(), ..r.clone() };
        assert_eq!(forged.check("cart-1", &old.public_key()), Err(EnrolError::BadSignature));
    }

    #[test]
    fn a_poll_verifies_only_with_the_devices_own_key_and_device_id() {
        let key = SigningKey::generate().expect("key");
        let other = SigningKey::generate().expect("key");
        let (alg, at, sig) = sign_poll("cart-1", &key, NOW);
        let keys = [other.public_key(), key.public_key()];
        assert_eq!(verify_poll("cart-1", &keys, alg, at, &sig, NOW).expect("ok"), key.public_key());
        assert_eq!(verify_poll("cart-2", &keys, alg, at, &sig, NOW), Err(EnrolError::BadSignature));
        assert_eq!(verify_poll("cart-1", &keys[..1], alg, at, &sig, NOW), Err(EnrolError::BadSignature));
        assert!(matches!(
            verify_poll("cart-1", &keys, alg, at, &sig, NOW - MAX_SKEW_MS - 1),
            Err(EnrolError::Stale { .. })
        ));
    }
}
