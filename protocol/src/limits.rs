//! Byte limits. Every decode in Yilian is bounded by one of these.
//!
//! They are `const` because bincode 2 takes its limit as a const generic. The MQTT packet limit
//! is set to the same value on the broker and on every client (see `notes/mqtt-facts.md`:
//! rumqttc's default is 10 KiB, and an oversized packet drops the connection).

/// Maximum MQTT packet size used by agents, the hub and the embedded broker.
pub const MQTT_MAX_PACKET: usize = 128 * 1024;
/// Maximum encoded envelope (header + body + signature); must fit in an MQTT packet with topic.
pub const ENVELOPE_MAX: usize = 120 * 1024;
/// Maximum encoded envelope header.
pub const HEADER_MAX: usize = 256;
/// Maximum body of a stream chunk.
pub const STREAM_CHUNK_MAX: usize = 100 * 1024;
/// Maximum body of one study part.
pub const STUDY_PART_MAX: usize = 100 * 1024;
/// Payload bytes carried per study part (the rest of the part is small metadata).
pub const STUDY_PART_PAYLOAD: usize = 96 * 1024;
/// Maximum assembled study (all parts), encoded.
pub const STUDY_MAX: usize = 16 * 1024 * 1024;
/// Maximum number of parts a study may be split into.
pub const STUDY_PARTS_MAX: u32 = (STUDY_MAX / STUDY_PART_PAYLOAD) as u32 + 1;
/// Maximum body of device text output.
pub const DEVICE_OUTPUT_MAX: usize = 16 * 1024;
/// Maximum body of a report.
pub const REPORT_MAX: usize = 64 * 1024;
/// Maximum body of a report receipt.
pub const RECEIPT_MAX: usize = 1024;
/// Maximum body of a status message.
pub const STATUS_MAX: usize = 4 * 1024;
/// Maximum body of an ack.
pub const ACK_MAX: usize = 32 * 1024;
/// Maximum samples per lead in one decoded block (30 min at 1000 Hz: a MIT-BIH record at
/// 360 Hz has 650,000).
pub const SAMPLES_PER_LEAD_MAX: u32 = 1_800_000;
/// Maximum annotations carried with a study.
pub const ANNOTATIONS_MAX: usize = 200_000;
/// Maximum total size of a study's original files, uncompressed.
pub const ORIGINAL_MAX: usize = 64 * 1024 * 1024;
/// Maximum leads in one study or chunk.
pub const LEADS_MAX: usize = 16;
/// How far ahead of the receiver's clock a message's creation time may be.
pub const MAX_FUTURE_SKEW_MS: i64 = 24 * 3600 * 1000;
/// Maximum body of one image manifest part.
pub const IMAGE_MANIFEST_MAX: usize = 100 * 1024;
/// Maximum body of one blob chunk.
pub const BLOB_CHUNK_MAX: usize = 100 * 1024;
/// Bytes of an instance carried per chunk.
pub const BLOB_CHUNK_PAYLOAD: usize = 96 * 1024;
/// Largest single DICOM instance accepted (a long multi-frame ultrasound or a big CT volume).
pub const IMAGE_INSTANCE_MAX: u64 = 4 * 1024 * 1024 * 1024;
