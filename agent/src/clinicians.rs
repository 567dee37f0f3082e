//! The clinicians who may acknowledge a critical result at this clinic: each a name and a PIN,
//! kept as a salted PBKDF2-HMAC-SHA256 hash in the agent's configuration (`yilian-agent
//! clinician-pin` makes the entry). Wrong PINs are counted per name; after
//! [`MAX_FAILURES`] the name is locked for [`LOCKOUT_MS`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ring::pbkdf2;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

/// Wrong PINs in a row before a name is locked.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked name stays locked, ms.
pub const LOCKOUT_MS: i64 = 5 * 60 * 1000;
const ITERATIONS: u32 = 100_000;
const PREFIX: &str = "pbkdf2-sha256";

/// One clinician allowed to acknowledge critical results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clinician {
    /// The name shown and recorded (e.g. `王芳`).
    pub name: String,
    /// `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64), from `yilian-agent clinician-pin`.
    pub pin_hash: String,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The name is not on the clinic's list.
    #[error("{0} is not on this clinic's list of clinicians")]
    UnknownName(String),
    /// Wrong PIN.
    #[error("wrong PIN for {name} ({left} tries left before a 5-minute lock)")]
    Wrong {
        /// The name.
        name: String,
        /// Tries left.
        left: u32,
    },
    /// Too many wrong PINs.
    #[error("{0} is locked for a few minutes after too many wrong PINs")]
    Locked(String),
    /// The stored hash is not one this agent makes.
    #[error("the PIN entry for {0} in the configuration is damaged; make it again with `yilian-agent clinician-pin`")]
    BadEntry(String),
}

/// Hashes a PIN for the configuration.
pub fn hash_pin(pin: &str) -> String {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    // The system RNG only fails on a broken OS; a fixed salt then still gives a working hash.
    let _ = ring::rand::SystemRandom::new().fill(&mut salt);
    let mut out = [0u8; 32];
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, pin.as_bytes(), &mut out);
    format!("{PREFIX}${ITERATIONS}${}${}", B64.encode(salt), B64.encode(out))
}

/// The iterations, salt and hash of an entry.
fn parse(entry: &str) -> Option<(NonZeroU32, Vec<u8>, Vec<u8>)> {
    let mut parts = entry.split('$');
    if parts.next()? != PREFIX {
        return None;
    }
    let iterations = NonZeroU32::new(parts.next()?.parse().ok()?)?;
    let salt = B64.decode(parts.next()?).ok()?;
    let hash = B64.decode(parts.next()?).ok()?;
    (parts.next().is_none() && !hash.is_empty()).then_some((iterations, salt, hash))
}

fn verify_hash(pin: &str, entry: &str) -> Option<bool> {
    let (iterations, salt, hash) = parse(entry)?;
    Some(pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, pin.as_bytes(), &hash).is_ok())
}

/// True when `entry` has the shape [`hash_pin`] makes.
pub fn is_pin_hash(entry: &str) -> bool {
    parse(entry).is_some()
}

/// The clinic's list with its failure counters.
#[derive(Debug, Default)]
pub struct Roster {
    list: Vec<Clinician>,
    /// Name → (wrong tries in a row, locked until ms).
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl Roster {
    /// A roster of `list`.
    pub fn new(list: Vec<Clinician>) -> Self {
        Self { list, failures: Mutex::new(HashMap::new()) }
    }

    /// The names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|c| c.name.as_str())
    }

    /// Checks `name`'s PIN.
    pub fn check(&self, name: &str, pin: &str, now_ms: i64) -> Result<(), PinError> {
        let c = self.list.iter().find(|c| c.name == name).ok_or_else(|| PinError::UnknownName(name.to_string()))?;
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = failures.entry(c.name.clone()).or_insert((0, 0));
        if entry.1 > now_ms {
            return Err(PinError::Locked(c.name.clone()));
        }
        match verify_hash(pin, &c.pin_hash) {
            None => Err(PinError::BadEntry(c.name.clone())),
            Some(true) => {
                *entry = (0, 0);
                Ok(())
            }
            Some(false) => {
                entry.0 += 1;
                if entry.0 >= MAX_FAILURES {
                    *entry = (0, now_ms + LOCKOUT_MS);
                    return Err(PinError::Locked(c.name.clone()));
                }
                Err(PinError::Wrong { name: c.name.clone(), left: MAX_FAILURES - entry.0 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_pin_passes_and_five_wrong_ones_lock_the_name() {
        let roster = Roster::new(vec![Clinician { name: "王芳".into(), pin_hash: hash_pin("2468") }]);
        assert_eq!(roster.check("王芳", "2468", 0), Ok(()));
        assert_eq!(roster.check("赵强", "2468", 0), Err(PinError::UnknownName("赵强".into())));
        for left in (1..MAX_FAILURES).rev() {
            assert_eq!(roster.check("王芳", "1111", 0), Err(PinError::Wrong { name: "王芳".into(), left }));
        }
        assert_eq!(roster.check("王芳", "1111", 0), Err(PinError::Locked("王芳".into())));
        assert_eq!(roster.check("王芳", "2468", 1), Err(PinError::Locked("王芳".into())), "even the right PIN waits");
        assert_eq!(roster.check("王芳", "2468", LOCKOUT_MS + 1), Ok(()));
    }

    #[test]
    fn a_damaged_entry_is_named_not_accepted() {
        let roster = Roster::new(vec![Clinician { name: "a".into(), pin_hash: "plain:1234".into() }]);
        assert_eq!(roster.check("a", "1234", 0), Err(PinError::BadEntry("a".into())));
        assert_eq!(verify_hash("x", "pbkdf2-sha256$0$AA$AA"), None);
    }
}
