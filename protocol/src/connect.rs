//! The MQTT CONNECT password: a fresh signature by the connecting party's key.
//!
//! Username = client id = device id (or the hub's reserved name); the password is
//! `ed25519.<unix ms>.<hex signature>` where the signature covers
//! `b"yilian/v1/connect\0" ‖ client id ‖ 0 ‖ unix ms as 8 big-endian bytes`. The broker's auth
//! hook checks it against the enrolled key, so nobody without a device's key can connect under
//! its client id, and a duplicate client id cannot take a real device's session over.
//!
//! The time bounds a replay of a captured password (TLS to a pinned server keeps it from being
//! captured on the wire in the first place). The window is wide, ±24 hours, because township
//! clinic PCs are set by hand and run hours off (the end-to-end suite runs agents 5 h ahead and
//! 7 h behind); a stricter window would lock real devices out to stop an attacker who could only
//! have read the password where the device key itself lies.

use crate::keys::{PublicKey, SigningKey};
use thiserror::Error;

/// The only algorithm today; the prefix keeps room for SM2 later.
pub const ALG_ED25519: &str = "ed25519";
/// How far a password's time may be from the broker's clock, in ms (24 hours).
pub const CLOCK_WINDOW_MS: i64 = 24 * 3600 * 1000;
const DOMAIN: &[u8] = b"yilian/v1/connect\0";

/// A CONNECT password was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// Not `alg.ms.hex`, or the hex is not a 64-byte signature.
    #[error("connect password is not ed25519.<unix ms>.<128 hex digits>")]
    Malformed,
    /// An algorithm id other than the ones known.
    #[error("connect password algorithm {0:?} is unknown")]
    UnknownAlgorithm(String),
    /// The password's time is outside the clock window.
    #[error("connect password time {at_ms} ms is {skew_ms} ms away from now (allowed ±{CLOCK_WINDOW_MS} ms)")]
    Stale {
        /// Time in the password, unix ms.
        at_ms: i64,
        /// Distance from now, ms.
        skew_ms: i64,
    },
    /// The signature does not verify with the enrolled key.
    #[error("connect password signature does not verify for client {0:?}")]
    BadSignature(String),
}

fn signed_bytes(client_id: &str, at_ms: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + client_id.len() + 9);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(client_id.as_bytes());
    m.push(0);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

/// The password a client with `key` sends when connecting as `client_id` at `now_ms`.
pub fn connect_password(key: &SigningKey, client_id: &str, now_ms: i64) -> String {
    let sig = key.sign(&signed_bytes(client_id, now_ms));
    format!("{ALG_ED25519}.{now_ms}.{}", hex::encode(sig))
}

/// Checks a CONNECT password for `client_id` against `key` at the broker's `now_ms`.
///
/// # Errors
/// [`ConnectError`] says which check failed.
pub fn check_connect_password(
    key: &PublicKey,
    client_id: &str,
    password: &str,
    now_ms: i64,
) -> Result<(), ConnectError> {
    let mut parts = password.splitn(3, '.');
    let (Some(alg), Some(at), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ConnectError::Malformed);
    };
    if alg != ALG_ED25519 {
        return Err(ConnectError::UnknownAlgorithm(alg.chars().take(16).collect()));
    }
    let at_ms: i64 = at.parse().map_err(|_| ConnectError::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| ConnectError::Malformed)?;
    if sig.len() != 64 {
        return Err(ConnectError::Malformed);
    }
    let skew_ms = now_ms.saturating_sub(at_ms).saturating_abs();
    if skew_ms > CLOCK_WINDOW_MS {
        return Err(ConnectError::Stale { at_ms, skew_ms });
    }
    if !key.verify(&signed_bytes(client_id, at_ms), &sig) {
        return Err(ConnectError::BadSignature(client_id.chars().take(64).collect()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_765_000_000_000;

    #[test]
    fn a_fresh_password_for_the_same_client_id_verifies() {
        let key = SigningKey::generate().expect("rng");
        let p = connect_password(&key, "cart-01", NOW);
        assert_eq!(check_connect_password(&key.public_key(), "cart-01", &p, NOW + 1000), Ok(()));
        // Clinic clocks run hours off: 7 hours either way still connects.
        assert_eq!(check_connect_password(&key.public_key(), "cart-01", &p, NOW - 7 * 3_600_000), Ok(()));
        assert_eq!(check_connect_password(&key.public_key(), "cart-01", &p, NOW + 7 * 3_600_000), Ok(()));
    }

    #[test]
    fn another_client_id_another_key_or_an_old_password_is_refused() {
        let key = SigningKey::generate().expect("rng");
        let other = SigningKey::generate().expect("rng");
        let p = connect_password(&key, "cart-01", NOW);
        assert!(matches!(
            check_connect_password(&key.public_key(), "cart-02", &p, NOW),
            Err(ConnectError::BadSignature(_))
        ));
        assert!(matches!(
            check_connect_password(&other.public_key(), "cart-01", &p, NOW),
            Err(ConnectError::BadSignature(_))
        ));
        assert!(matches!(
            check_connect_password(&key.public_key(), "cart-01", &p, NOW + 25 * 3_600_000),
            Err(ConnectError::Stale { .. })
        ));
    }

    #[test]
    fn garbage_passwords_are_typed_errors() {
        let key = SigningKey::generate().expect("rng");
        let pk = key.public_key();
        for bad in ["", "x", "ed25519.1", "ed25519.nope.00", "ed25519.1.zz", "ed25519.1.00"] {
            assert_eq!(check_connect_password(&pk, "c", bad, NOW), Err(ConnectError::Malformed), "{bad:?}");
        }
        let p = connect_password(&key, "c", NOW).replacen("ed25519", "sm2", 1);
        assert_eq!(check_connect_password(&pk, "c", &p, NOW), Err(ConnectError::UnknownAlgorithm("sm2".into())));
    }
}
