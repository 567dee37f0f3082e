//! Device drivers: sans-I/O decoders that turn serial bytes into typed device events.
//!
//! A driver never touches a port or a clock of its own; [`crate::serial`] feeds it bytes with
//! the time, then drains [`Driver::poll_event`].

pub mod text;
pub mod ylf;

use yilian_protocol::frame::Frame;

/// What a driver makes of the bytes it was fed.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    /// A frame that passed its CRC and layout checks.
    Frame(Frame),
    /// A complete line of device text output (already converted to UTF-8).
    Text(String),
    /// Bytes that were discarded, and why (garbage, failed CRC, over-long frame).
    Skipped {
        /// Bytes discarded, delimiter included.
        bytes: usize,
        /// Why.
        reason: String,
    },
    /// Link sequence numbers jumped: frames were lost on the cable.
    LinkGap {
        /// The sequence number expected next.
        expected: u16,
        /// The one that arrived.
        got: u16,
    },
}

/// Counters every driver keeps, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Good frames or lines.
    pub events: u64,
    /// Bytes discarded.
    pub bytes_skipped: u64,
    /// Discards (each [`DeviceEvent::Skipped`]).
    pub skips: u64,
    /// Link sequence gaps.
    pub gaps: u64,
}

/// A decoder of one device protocol.
pub trait Driver: Send {
    /// Feeds bytes read from the port.
    fn push(&mut self, bytes: &[u8]);
    /// The next decoded event, if any.
    fn poll_event(&mut self) -> Option<DeviceEvent>;
    /// Forgets any partial frame (the port was closed and reopened).
    fn reset(&mut self);
    /// Counters so far.
    fn stats(&self) -> DriverStats;
}

/// Which driver a port uses (config `driver = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriverKind {
    /// The Yilian framing ([`yilian_protocol::frame`]).
    Ylf,
    /// Line-oriented text output.
    Text,
}

/// Makes a driver of `kind`; `encoding` applies to text drivers (`utf-8`, `gbk`, `gb18030`).
pub fn new_driver(kind: DriverKind, encoding: &'static encoding_rs::Encoding) -> Box<dyn Driver> {
    match kind {
        DriverKind::Ylf => Box::new(ylf::YlfDecoder::new()),
        DriverKind::Text => Box::new(text::TextDecoder::new(encoding)),
    }
}
