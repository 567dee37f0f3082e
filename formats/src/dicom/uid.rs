//! UIDs derived from content, so that writing the same recording twice gives the same UIDs.
//!
//! A `2.25.` UID is the decimal form of a 128-bit number (ISO/IEC 9834-8, DICOM PS3.5 B.2);
//! taking those 128 bits from a SHA-256 makes collisions as unlikely as random UUIDs.

use sha2::{Digest, Sha256};

/// A `2.25.<decimal>` UID from the first 128 bits of SHA-256(`role` ‖ 0 ‖ `content`).
pub(crate) fn derived(role: &str, content: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(role.as_bytes());
    h.update([0]);
    h.update(content);
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    format!("2.25.{}", u128::from_be_bytes(first))
}

/// Yilian's Implementation Class UID (stable: derived from a fixed name).
pub(crate) fn implementation_class() -> String {
    derived("implementation", b"yilian-formats dicom writer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_valid_stable_and_distinct_by_role() {
        let a = derived("study", b"x");
        assert_eq!(a, derived("study", b"x"));
        assert_ne!(a, derived("series", b"x"));
        assert!(a.len() <= 64);
        for component in a.split('.') {
            assert!(!component.is_empty());
            assert!(component == "0" || !component.starts_with('0'));
            assert!(component.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
