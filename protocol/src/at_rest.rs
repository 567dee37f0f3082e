//! Sealing data at rest (the agent's spool records, patient fields and waveforms in the hub's
//! database) with a symmetric key that never leaves the machine.
//!
//! A sealed value is `b"YLE"`, an algorithm id byte, a 16-byte random salt, then the ciphertext
//! and its 16-byte tag. The algorithm id lets a national algorithm (SM4-GCM) be added later;
//! values with an id this build does not know are refused, never guessed at.
//!
//! Nonces: every value is sealed under its own key, HKDF-SHA256(master, salt), with a fixed
//! nonce. A key is used for exactly one message, so a nonce can never repeat under a key, whatever
//! happens to counters on disk: a spool restored from a backup reuses its seqs, a database
//! restored from a backup reuses row ids, and neither can make two messages share a key and
//! nonce unless two random 128-bit salts collide (chance about 2^-64 after 2^32 values). The
//! cost is one HKDF per value, far below the cost of the fsync that follows a spool write.
//!
//! The caller's associated data names where the value belongs (a spool record's epoch, lane and
//! seq; a database table, column and row), so a value copied to another place fails to open.

use ring::{aead, hkdf, hmac};

/// Algorithm id of ChaCha20-Poly1305 with a per-value HKDF-SHA256 key.
pub const ALG_CHACHA20_POLY1305: u8 = 1;
/// The first bytes of every sealed value.
pub const MAGIC: [u8; 3] = *b"YLE";
const SALT_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + 1 + SALT_LEN;
/// Bytes a sealed value has beyond its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + 16;

/// A sealed value could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtRestError {
    /// The bytes do not start like a sealed value (plaintext from before encryption, or damage).
    #[error("not a sealed value")]
    NotSealed,
    /// The algorithm id is not one this build knows.
    #[error("unknown at-rest algorithm id {0}")]
    UnknownAlgorithm(u8),
    /// Shorter than a header and a tag.
    #[error("sealed value truncated to {0} bytes")]
    Truncated(usize),
    /// The tag does not match: a changed byte, a value moved from elsewhere, or another key.
    #[error("sealed value fails authentication (changed, moved, or another key)")]
    Authentication,
    /// The system random source failed.
    #[error("no randomness available")]
    NoRandomness,
}

/// A 256-bit master key for data at rest.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// True if `bytes` start like a sealed value (it may still fail to open).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

fn random<const N: usize>() -> Result<[u8; N], AtRestError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| AtRestError::NoRandomness)?;
    Ok(b)
}

/// Length for HKDF output of 32 bytes.
struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, AtRestError> {
        Ok(Self(random()?))
    }

    /// The key from its 32 bytes (a key file's content).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's bytes, to write its key file.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn value_key(&self, salt: &[u8]) -> Result<aead::LessSafeKey, AtRestError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&self.0);
        let okm = prk
            .expand(&[b"yilian at-rest value v1"], &aead::CHACHA20_POLY1305)
            .map_err(|_| AtRestError::NoRandomness)?;
        Ok(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
    }

    /// A key for another purpose (a blind index, a key check value), derived one-way from this one.
    pub fn derive(&self, purpose: &str) -> Result<[u8; 32], AtRestError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"yilian derive v1").extract(&self.0);
        let info = [purpose.as_bytes()];
        let okm = prk.expand(&info, Len32).map_err(|_| AtRestError::NoRandomness)?;
        let mut out = [0u8; 32];
        okm.fill(&mut out).map_err(|_| AtRestError::NoRandomness)?;
        Ok(out)
    }

    /// Keyed hash (HMAC-SHA256 under a key derived for `purpose`) of `data`: equal inputs give
    /// equal outputs, so it can be searched and joined on, and nobody without the key can test a
    /// guess (a name, an identity number) against it.
    pub fn keyed_hash(&self, purpose: &str, data: &[u8]) -> Result<[u8; 32], AtRestError> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.derive(purpose)?);
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&key, data).as_ref());
        Ok(out)
    }

    /// Seals `plaintext` bound to `aad` (where the value belongs).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let salt: [u8; SALT_LEN] = random()?;
        let key = self.value_key(&salt)?;
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&MAGIC);
        out.push(ALG_CHACHA20_POLY1305);
        out.extend_from_slice(&salt);
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(HEADER_LEN);
        // One message per key (see the module doc), so the fixed nonce is never reused.
        let nonce = aead::Nonce::assume_unique_for_key([0u8; aead::NONCE_LEN]);
        key.seal_in_place_append_tag(nonce, aead::Aad::from(aad), &mut body)
            .map_err(|_| AtRestError::Authentication)?;
        out.append(&mut body);
        Ok(out)
    }

    /// Opens a value sealed by [`DataKey::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AtRestError> {
        if !is_sealed(sealed) {
            return Err(AtRestError::NotSealed);
        }
        if sealed.len() < OVERHEAD {
            return Err(AtRestError::Truncated(sealed.len()));
        }
        let alg = sealed[MAGIC.len()];
        if alg != ALG_CHACHA20_POLY1305 {
            return Err(AtRestError::UnknownAlgorithm(alg));
        }
        let key = self.value_key(&sealed[MAGIC.len() + 1..HEADER_LEN])?;
        let mut body = sealed[HEADER_LEN..].to_vec();
        let nonce = aead::Nonce::assume_unique_for_key([0u8; aead::NONCE_LEN]);
        let plain =
            key.open_in_place(nonce, aead::Aad::from(aad), &mut body).map_err(|_| AtRestError::Authentication)?;
        let n = plain.len();
        body.truncate(n);
        Ok(body)
    }
}

/// The salt of a sealed value (tests check that no two values share one).
pub fn salt_of(sealed: &[u8]) -> Option<&[u8]> {
    sealed.get(MAGIC.len() + 1..HEADER_LEN).filter(|_| is_sealed(sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_damage_is_refused() {
        let key = DataKey::generate().expect("key");
        let sealed = key.seal(b"here", "张卫国".as_bytes()).expect("seal");
        assert_eq!(key.open(b"here", &sealed).expect("open"), "张卫国".as_bytes());
        assert!(!sealed.windows(3).any(|w| w == "张".as_bytes()));
        assert_eq!(key.open(b"there", &sealed), Err(AtRestError::Authentication));
        let other = DataKey::generate().expect("key");
        assert_eq!(other.open(b"here", &sealed), Err(AtRestError::Authentication));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(key.open(b"here", &bad).is_err(), "flip at {i} not detected");
        }
        assert_eq!(key.open(b"here", &sealed[..OVERHEAD - 1]), Err(AtRestError::Truncated(OVERHEAD - 1)));
        assert_eq!(key.open(b"here", &sealed[..sealed.len() - 1]), Err(AtRestError::Authentication));
        let mut sm4 = sealed.clone();
        sm4[3] = 2;
        assert_eq!(key.open(b"here", &sm4), Err(AtRestError::UnknownAlgorithm(2)));
        assert_eq!(key.open(b"here", b"plain"), Err(AtRestError::NotSealed));
    }

    #[test]
    fn keyed_hashes_are_stable_per_key_and_purpose() {
        let key = DataKey::from_bytes([7; 32]);
        let a = key.keyed_hash("patient_id", b"330102").expect("hash");
        assert_eq!(a, key.keyed_hash("patient_id", b"330102").expect("hash"));
        assert_ne!(a, key.keyed_hash("patient_name", b"330102").expect("hash"));
        assert_ne!(a, DataKey::from_bytes([8; 32]).keyed_hash("patient_id", b"330102").expect("hash"));
    }
}
