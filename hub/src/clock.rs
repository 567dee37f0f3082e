//! The wall clock, read only by the async shell; store and queue logic take time as arguments.

/// Now, as Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How long to wait before the next attempt after `attempts` failed ones: 1 s, doubling, at most
/// `max`, in ms.
pub fn backoff_ms(attempts: i64, max: std::time::Duration) -> i64 {
    ((1i64 << attempts.clamp(0, 20)) * 1000).min(max.as_millis() as i64)
}
