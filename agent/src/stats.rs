//! Counters the agent keeps (status messages, logs, tests).

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one agent. All monotonic except `spool_entries`/`spool_bytes` and the
/// in-flight gauges.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Frames or lines decoded from serial ports.
    pub device_events: AtomicU64,
    /// Bytes discarded by drivers (garbage, bad CRC).
    pub bytes_skipped: AtomicU64,
    /// Link sequence gaps seen on serial ports.
    pub link_gaps: AtomicU64,
    /// Serial port (re)opens.
    pub port_opens: AtomicU64,
    /// Studies spooled.
    pub studies: AtomicU64,
    /// Stream chunks spooled.
    pub chunks: AtomicU64,
    /// Samples (all leads) spooled in studies and chunks.
    pub samples: AtomicU64,
    /// Problems the operator must know about (incomplete studies, spool errors).
    pub problems: AtomicU64,
    /// Envelope publishes (including resends).
    pub publishes: AtomicU64,
    /// Envelopes acked by the hub and removed from the spool.
    pub acked: AtomicU64,
    /// Reports received and stored.
    pub reports: AtomicU64,
    /// Critical results received.
    pub critical: AtomicU64,
    /// Messages from the hub that failed verification.
    pub rejected_downlink: AtomicU64,
    /// Envelopes in the spool now.
    pub spool_entries: AtomicU64,
    /// Bytes in the spool now.
    pub spool_bytes: AtomicU64,
    /// Spool records that failed to open (changed, truncated, swapped) and were quarantined.
    pub spool_tampered: AtomicU64,
    /// 1 while connected to the broker.
    pub connected: AtomicU64,
    /// Connections made to the broker (the first and every reconnect).
    pub connects: AtomicU64,
    /// When a verified message last came from the hub, Unix ms (0: never since start).
    pub hub_heard_at_ms: AtomicU64,
    /// Bytes published and not yet acked by the hub now (everything a STAT study published now
    /// arrives after).
    pub inflight_bytes: AtomicU64,
    /// The routine lanes' in-flight byte budget now (see `window`).
    pub inflight_budget: AtomicU64,
    /// Since when messages have been waiting for the hub's ack with no word from the hub, Unix
    /// ms (0: nothing waiting, or the hub answered since). The broker can be up while the hub
    /// is not.
    pub hub_silent_since_ms: AtomicU64,
}

impl AgentStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
