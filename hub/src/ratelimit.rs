//! Per-device rate and size limits, so one device flooding the hub (a firmware bug, or an
//! attacker with a stolen key) cannot starve the others.
//!
//! A token bucket per device id, for messages and for bytes, checked on the topic's device id
//! before any signature work. A message over the limit is dropped unacknowledged: a genuine
//! agent sends it again later, so nothing is lost, only slowed. Pure: time is an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Limits per device.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sustained messages per second.
    pub msgs_per_s: f64,
    /// Messages allowed in a burst.
    pub msg_burst: f64,
    /// Sustained bytes per second.
    pub bytes_per_s: f64,
    /// Bytes allowed in a burst.
    pub byte_burst: f64,
}

impl Default for Limits {
    /// Roomy for a cart (a 1 s chunk stream is 1 message/s) and for draining a long backlog.
    fn default() -> Self {
        Self { msgs_per_s: 200.0, msg_burst: 2000.0, bytes_per_s: 4.0e6, byte_burst: 32.0e6 }
    }
}

#[derive(Debug)]
struct Bucket {
    msgs: f64,
    bytes: f64,
    last: Instant,
    dropped_since_log: u64,
    last_log: Option<Instant>,
}

/// The verdict on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within limits.
    Allow,
    /// Over the limit: drop it. `log` is true at most once a second per device, carrying how
    /// many were dropped since the last log line.
    Drop {
        /// Whether to log now.
        log: bool,
        /// Drops since the last log line, this one included.
        dropped: u64,
    },
}

/// Buckets for every device seen recently.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    buckets: HashMap<String, Bucket>,
}

/// Buckets kept at most; idle ones are forgotten past this (a flood of made-up device ids).
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    /// A limiter with `limits` for every device.
    pub fn new(limits: Limits) -> Self {
        Self { limits, buckets: HashMap::new() }
    }

    /// Decides on a message of `bytes` from `device` at `now`.
    pub fn check(&mut self, device: &str, bytes: usize, now: Instant) -> Verdict {
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(device) {
            self.buckets.retain(|_, b| now.duration_since(b.last) < Duration::from_secs(60));
            if self.buckets.len() >= MAX_BUCKETS {
                return Verdict::Drop { log: false, dropped: 1 };
            }
        }
        let l = self.limits;
        let b = self.buckets.entry(device.to_string()).or_insert(Bucket {
            msgs: l.msg_burst,
            bytes: l.byte_burst,
            last: now,
            dropped_since_log: 0,
            last_log: None,
        });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = now;
        b.msgs = (b.msgs + dt * l.msgs_per_s).min(l.msg_burst);
        b.bytes = (b.bytes + dt * l.bytes_per_s).min(l.byte_burst);
        let size = bytes as f64;
        if b.msgs >= 1.0 && b.bytes >= size {
            b.msgs -= 1.0;
            b.bytes -= size;
            return Verdict::Allow;
        }
        b.dropped_since_log += 1;
        let log = b.last_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        let dropped = b.dropped_since_log;
        if log {
            b.last_log = Some(now);
            b.dropped_since_log = 0;
        }
        Verdict::Drop { log, dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { msgs_per_s: 10.0, msg_burst: 5.0, bytes_per_s: 1000.0, byte_burst: 2000.0 }
    }

    #[test]
    fn a_burst_passes_then_the_sustained_rate_applies_per_device() {
        let mut r = RateLimiter::new(limits());
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| r.check("flood", 10, t0) == Verdict::Allow).count();
        assert_eq!(allowed, 5, "the burst");
        assert_eq!(r.check("quiet", 10, t0), Verdict::Allow, "another device is not affected");
        let later = t0 + Duration::from_millis(500);
        let allowed = (0..20).filter(|_| r.check("flood", 10, later) == Verdict::Allow).count();
        assert_eq!(allowed, 5, "10 per second refill half a second's worth");
    }

    #[test]
    fn bytes_are_limited_too_and_drops_are_logged_once_a_second() {
        let mut r = RateLimiter::new(limits());
        let t0 = Instant::now();
        assert_eq!(r.check("big", 1500, t0), Verdict::Allow);
        assert_eq!(r.check("big", 1500, t0), Verdict::Drop { log: true, dropped: 1 });
        assert_eq!(r.check("big", 1500, t0), Verdict::Drop { log: false, dropped: 1 });
        assert_eq!(r.check("big", 1500, t0 + Duration::from_millis(1100)), Verdict::Allow);
        assert_eq!(r.check("big", 1500, t0 + Duration::from_millis(1200)), Verdict::Drop { log: true, dropped: 2 });
    }

    #[test]
    fn made_up_device_ids_cannot_grow_the_table_without_bound() {
        let mut r = RateLimiter::new(limits());
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS + 50 {
            r.check(&format!("fake-{i}"), 1, t0);
        }
        assert!(r.buckets.len() <= MAX_BUCKETS);
    }
}
