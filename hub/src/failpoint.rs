//! A test hook for crash tests: `YILIAN_FAILPOINT=NAME:N` makes the hub abort (as abruptly as
//! `kill -9`: no flush, no acks, no goodbye) the Nth time it reaches the point NAME.
//!
//! Points: `before-commit` (messages received and verified, nothing stored yet),
//! `after-commit` (stored and committed, no ack sent yet) and `report-signed` (a report
//! committed, not yet published). Unset, it costs one branch.

use std::sync::atomic::{AtomicU64, Ordering};

/// A parsed failpoint.
#[derive(Debug)]
pub struct Failpoint {
    name: String,
    remaining: AtomicU64,
}

impl Failpoint {
    /// Reads `YILIAN_FAILPOINT`; `None` if unset or not `NAME:N`.
    pub fn from_env() -> Option<Self> {
        let v = std::env::var("YILIAN_FAILPOINT").ok()?;
        let (name, n) = v.split_once(':').unwrap_or((v.as_str(), "1"));
        let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
        tracing::warn!(point = name, at = n, "failpoint armed: the hub will abort there (test hook)");
        Some(Self { name: name.to_string(), remaining: AtomicU64::new(n) })
    }

    /// Aborts the process if this is the armed point's Nth hit.
    pub fn hit(&self, name: &str) {
        if name == self.name && self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            eprintln!("failpoint {name} reached: aborting");
            std::process::abort();
        }
    }
}

/// Hits `name` on the process's failpoint (read from the environment once).
pub fn hit_process(name: &str) {
    static PROCESS: std::sync::OnceLock<Option<Failpoint>> = std::sync::OnceLock::new();
    hit(PROCESS.get_or_init(Failpoint::from_env), name);
}

/// Hits `name` on an optional failpoint.
pub fn hit(fp: &Option<Failpoint>, name: &str) {
    if let Some(fp) = fp {
        fp.hit(name);
    }
}
