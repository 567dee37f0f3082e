//! Error types, one per operation.

use thiserror::Error;

/// Decoding bytes from the wire into a typed value failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than the limit for what was being decoded.
    #[error("{what}: {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// Input length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The bytes are not a valid encoding (truncated, bad enum tag, bad UTF-8, length over limit).
    #[error("{what}: malformed: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What bincode or the check said.
        reason: String,
    },
    /// The value decoded but bytes were left over after it.
    #[error("{what}: {extra} trailing bytes after the value")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// Number of bytes left.
        extra: usize,
    },
}

/// Encoding a value for the wire failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded value is larger than the wire allows for its kind.
    #[error("{what}: encoded size {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was being encoded.
        what: &'static str,
        /// Encoded length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// bincode refused the value.
    #[error("{what}: {reason}")]
    Bincode {
        /// What was being encoded.
        what: &'static str,
        /// What bincode said.
        reason: String,
    },
}

/// Checking a signed envelope failed; the message must be rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The envelope names a signature algorithm this build does not know.
    #[error("unknown signature algorithm id {0}")]
    UnknownAlgorithm(u8),
    /// The envelope was signed with a different key than the one enrolled.
    #[error("key id {got} does not match the enrolled key {expected}")]
    WrongKey {
        /// Key id in the envelope.
        got: String,
        /// Key id of the key we verify with.
        expected: String,
    },
    /// The Ed25519 signature does not verify over the domain, topic, header and body.
    #[error("bad signature")]
    BadSignature,
    /// The device id in the envelope is not the device of the topic it arrived on.
    #[error("envelope device {envelope} arrived on the topic of device {topic}")]
    DeviceMismatch {
        /// Device id in the signed header.
        envelope: String,
        /// Device id in the topic.
        topic: String,
    },
    /// The envelope claims to be created too far in the future.
    #[error("created_at {created_at_ms} ms is {ahead_ms} ms ahead of now")]
    FromTheFuture {
        /// Claimed creation time.
        created_at_ms: i64,
        /// How far ahead of the receiver's clock.
        ahead_ms: i64,
    },
    /// The kind number is not known to this build.
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    /// The kind is known but not allowed on this topic channel.
    #[error("message kind {kind} is not allowed on the {channel} channel")]
    WrongChannel {
        /// The kind's name.
        kind: &'static str,
        /// The channel's name.
        channel: &'static str,
    },
    /// The body did not decode (or exceeded its kind's size limit) after the signature passed.
    #[error("body: {0}")]
    Body(#[from] DecodeError),
}

/// A sample block could not be decompressed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The declared sample count is over the caller's limit.
    #[error("declared {count} samples exceeds the limit of {limit}")]
    TooManySamples {
        /// Declared count.
        count: u32,
        /// The limit.
        limit: u32,
    },
    /// The bit stream ended before all declared samples were read.
    #[error("compressed data truncated after {decoded} of {count} samples")]
    Truncated {
        /// Samples decoded before the end.
        decoded: u32,
        /// Declared count.
        count: u32,
    },
    /// A reconstructed sample does not fit in 32 bits, so the data is corrupt.
    #[error("sample {index} overflows i32: corrupt data")]
    Overflow {
        /// Sample index.
        index: u32,
    },
    /// A block header holds a value no encoder writes.
    #[error("block at sample {index}: invalid {field} {value}")]
    BadBlockHeader {
        /// Sample index of the block.
        index: u32,
        /// The field.
        field: &'static str,
        /// Its value.
        value: u32,
    },
    /// Bytes were left over after the declared samples.
    #[error("{extra} bytes of trailing data after the samples")]
    TrailingData {
        /// Extra whole bytes.
        extra: usize,
    },
    /// The first byte names no sample format this build can read.
    #[error("unknown sample format: first byte {marker:#04x}")]
    UnknownFormat {
        /// The first byte of the data.
        marker: u8,
    },
    /// The range-coded data holds a value no encoder writes.
    #[error("corrupt compressed data at sample {index}: {reason}")]
    Corrupt {
        /// Index of the sample being decoded.
        index: u32,
        /// What was wrong.
        reason: &'static str,
    },
}

/// An MQTT topic or id is not of the Yilian layout.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// An id is not a short ASCII slug.
    #[error("{what} {id:?} is not a slug (1-32 of a-z, A-Z, 0-9, '-', '_', starting alphanumeric)")]
    BadId {
        /// Which id (site, device).
        what: &'static str,
        /// The offending id, cut to 64 chars.
        id: String,
    },
    /// The topic does not have the Yilian shape.
    #[error("topic {0:?} is not yl/v1/{{site}}/{{device}}/{{up|ack|report|status}}")]
    BadShape(String),
    /// The site id is reserved (e.g. `fleet`).
    #[error("site id {0:?} is reserved")]
    Reserved(String),
}

/// A serial frame failed its checks.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame is longer than the framing allows.
    #[error("frame of {len} bytes exceeds {limit} bytes")]
    TooLong {
        /// Bytes seen before the delimiter.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// COBS decoding failed (a zero byte inside, or a code pointing past the end).
    #[error("COBS decoding failed")]
    Cobs,
    /// The frame is shorter than header plus CRC.
    #[error("frame of {0} bytes is too short")]
    TooShort(usize),
    /// The CRC-32 does not match.
    #[error("CRC mismatch: frame says {stated:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC in the frame.
        stated: u32,
        /// CRC computed over the frame.
        computed: u32,
    },
    /// Unsupported framing version.
    #[error("unsupported framing version {0}")]
    Version(u8),
    /// Unknown frame type.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// The payload does not match its type's layout.
    #[error("frame type {frame_type:#04x}: {reason}")]
    Payload {
        /// Frame type.
        frame_type: u8,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A key file or key bytes could not be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The PKCS#8 document is not an Ed25519 private key.
    #[error("not an Ed25519 PKCS#8 private key")]
    BadPkcs8,
    /// The public key text is not 64 hex digits.
    #[error("public key is not 64 hex digits")]
    BadPublicKey,
    /// The system random generator failed.
    #[error("random number generator failed")]
    Rng,
}
