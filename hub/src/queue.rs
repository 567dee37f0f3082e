//! Consultation queue rules: who may claim, release and report a study, and when a claim lapses.
//!
//! Pure functions of the stored claim and the time; the store applies them inside its
//! transactions. Ordering (stat > urgent > routine, then longest waiting) is the store's query.

/// A study's claim as of `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState<'a> {
    /// Nobody holds it (never claimed, released, or the claim lapsed).
    Free,
    /// Held until the given time.
    Held {
        /// Who.
        by: &'a str,
        /// Until, Unix ms.
        until_ms: i64,
    },
}

/// Why a queue operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// No such study.
    #[error("no such study")]
    NotFound,
    /// Another specialist holds the claim.
    #[error("claimed by {by} until {until_ms}")]
    ClaimedByOther {
        /// Who holds it.
        by: String,
        /// Until, Unix ms.
        until_ms: i64,
    },
    /// The study already has a report.
    #[error("already reported")]
    AlreadyReported,
    /// Release by someone who does not hold the claim.
    #[error("not claimed by you")]
    NotYours,
}

/// The claim as of `now`: a claim past its expiry is free.
pub fn claim_state(by: Option<&str>, until_ms: Option<i64>, now_ms: i64) -> ClaimState<'_> {
    match (by, until_ms) {
        (Some(by), Some(until_ms)) if until_ms > now_ms => ClaimState::Held { by, until_ms },
        _ => ClaimState::Free,
    }
}

/// `who` may claim if the study is unreported and not held by someone else (re-claiming
/// extends one's own claim).
pub fn can_claim(
    by: Option<&str>,
    until: Option<i64>,
    reported: bool,
    who: &str,
    now_ms: i64,
) -> Result<(), ClaimError> {
    if reported {
        return Err(ClaimError::AlreadyReported);
    }
    match claim_state(by, until, now_ms) {
        ClaimState::Held { by, until_ms } if by != who => {
            Err(ClaimError::ClaimedByOther { by: by.to_string(), until_ms })
        }
        _ => Ok(()),
    }
}

/// Only the holder may release a live claim.
pub fn can_release(
    by: Option<&str>,
    until: Option<i64>,
    reported: bool,
    who: &str,
    now_ms: i64,
) -> Result<(), ClaimError> {
    if reported {
        return Err(ClaimError::AlreadyReported);
    }
    match claim_state(by, until, now_ms) {
        ClaimState::Held { by, .. } if by == who => Ok(()),
        _ => Err(ClaimError::NotYours),
    }
}

/// `who` may report an unreported study nobody else holds.
pub fn can_report(
    by: Option<&str>,
    until: Option<i64>,
    reported: bool,
    who: &str,
    now_ms: i64,
) -> Result<(), ClaimError> {
    can_claim(by, until, reported, who, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_blocks_others_until_it_expires() {
        assert!(can_claim(None, None, false, "li", 0).is_ok());
        assert_eq!(
            can_claim(Some("wang"), Some(100), false, "li", 50),
            Err(ClaimError::ClaimedByOther { by: "wang".into(), until_ms: 100 })
        );
        assert!(can_claim(Some("wang"), Some(100), false, "wang", 50).is_ok(), "own claim can be extended");
        assert!(can_claim(Some("wang"), Some(100), false, "li", 100).is_ok(), "expired claim is free");
        assert_eq!(
            can_report(Some("wang"), Some(100), false, "li", 50).err(),
            Some(ClaimError::ClaimedByOther { by: "wang".into(), until_ms: 100 })
        );
    }

    #[test]
    fn reported_studies_are_closed_and_only_the_holder_releases() {
        assert_eq!(can_claim(None, None, true, "li", 0), Err(ClaimError::AlreadyReported));
        assert_eq!(can_report(Some("li"), Some(100), true, "li", 0), Err(ClaimError::AlreadyReported));
        assert_eq!(can_release(Some("wang"), Some(100), false, "li", 0), Err(ClaimError::NotYours));
        assert!(can_release(Some("li"), Some(100), false, "li", 0).is_ok());
        assert_eq!(can_release(Some("li"), Some(100), false, "li", 200), Err(ClaimError::NotYours));
    }
}
