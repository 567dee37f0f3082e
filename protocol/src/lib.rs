//! The Yilian wire contract, shared by the clinic agent and the county hub.
//!
//! No I/O happens in this crate: every function takes bytes (and the time, where it matters)
//! and returns values or typed errors.
//!
//! # Layout
//! - [`message`]: the bodies that travel inside envelopes (stream chunks, studies, acks, reports).
//! - [`imaging`]: image study manifests and blob chunks.
//! - [`envelope`]: signed envelopes, domain separation, and the [`envelope::Verified`] type.
//! - [`enrol`]: enrolment requests with a bootstrap token and proof of key possession.
//! - [`keys`]: Ed25519 keys (PKCS#8 files, hex public keys, key ids).
//! - [`connect`]: the MQTT CONNECT password (a fresh signature over client id and time).
//! - [`codec`]: lossless ECG sample compression (fixed linear prediction, a sign-sign LMS stage,
//!   adaptive Rice coding; format-1 streams still decode).
//! - [`topic`]: the MQTT topic layout `yl/v1/{site}/{device}/{up|ack|report|status}`.
//! - [`frame`]: the serial framing spoken by ECG front ends (COBS + CRC-32), documented there.
//! - `tls` (feature `tls`): rustls client settings pinned to the county CA.
//! - [`lead`]: lead names and their SCP-ECG codes.
//! - [`limits`]: the byte limits applied to every decode.
//! - [`redact`]: keyed hashes that stand in for patient identifiers in operational logs.
//! - [`wire`]: bincode configuration and limited decoding.
//! - [`at_rest`]: sealing data at rest (spool records, database values) with a local key.
//!
//! # Example
//! ```
//! use yilian_protocol::{codec, envelope, keys, message, topic};
//!
//! let key = keys::SigningKey::generate()?;
//! let topic = topic::Topic::new("clinic-a", "cart-1", topic::Channel::Up)?;
//! let chunk = message::StreamChunk {
//!     stream_id: 0,
//!     sample_rate_hz: 500,
//!     resolution_nv: 1000,
//!     first_sample: 0,
//!     start_time_ms: 1_700_000_000_000,
//!     leads: vec![message::LeadSamples::encode("II", &[1, 2, 3, 2, 1])],
//! };
//! let header = envelope::Header::new(&key, "cart-1", 7, 1_700_000_000_000, message::Lane::Stream);
//! let bytes = envelope::seal(&key, header, &topic, &message::Payload::StreamChunk(chunk))?;
//!
//! let received = envelope::Envelope::decode(&bytes)?;
//! let verified = received.verify(&key.public_key(), &topic, Some(1_700_000_000_500))?;
//! assert_eq!(verified.header().seq, 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod at_rest;
pub mod codec;
pub mod connect;
pub mod document;
pub mod enrol;
pub mod envelope;
pub mod error;
pub mod frame;
pub mod imaging;
pub mod keys;
pub mod lead;
pub mod limits;
pub mod message;
pub mod redact;
#[cfg(feature = "tls")]
pub mod tls;
pub mod topic;
pub mod wire;

pub use error::{CodecError, DecodeError, EncodeError, FrameError, KeyError, TopicError, VerifyError};
