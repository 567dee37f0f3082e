//! The Yilian county hub: verifies and stores what clinic agents send, queues consultation
//! requests by urgency, serves the specialists' API, and returns signed reports to clinics.
//!
//! # Layout
//! - [`broker`]: the embedded rumqttd broker.
//! - [`ingest`]: verification, idempotent storage, acks, device status.
//! - [`publish`]: signed acks and reports out.
//! - [`store`]: SQLite, owned by one thread.
//! - [`queue`]: claim and report rules.
//! - [`ratelimit`]: per-device rate and size limits.
//! - [`retention`]: how long each kind of data is kept, and the sweep.
//! - [`http`]: the JSON API.
//! - [`images`]: DICOM image store and rendering.
//! - [`keys`]: the hub's signing key.
//! - [`logkey`]: the key of the hashes that stand in for patient names in logs.
//! - [`lifecycle`]: enrolment tokens, device certificates, disconnecting revoked devices.
//! - [`run`]: wiring and shutdown.

pub mod broker;
pub mod clock;
pub mod export;
pub mod failpoint;
pub mod http;
pub mod images;
pub mod imaging;
pub mod ingest;
pub mod keys;
pub mod logkey;
pub mod lifecycle;
pub mod publish;
pub mod queue;
pub mod ratelimit;
pub mod retention;
pub mod run;
pub mod store;

pub use run::{BrokerMode, HubConfig, run};
