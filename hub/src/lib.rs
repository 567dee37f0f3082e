//! The Yilian county hub: verifies and stores what clinic agents send, queues consultation
//! requests by urgency, serves the specialists' API, and returns signed reports to clinics.
//!
//! # Layout
//! - [`broker`]: the embedded rumqttd broker (TLS, per-device auth hook).
//! - [`ca`]: the county CA: server, hub and device certificates.
//! - [`tls`]: rustls configurations for HTTPS and MQTT clients.
//! - [`ingest`]: verification, idempotent storage, acks, device status.
//! - [`publish`]: signed acks and reports out.
//! - [`store`]: SQLite, owned by one thread.
//! - [`queue`]: claim and report rules.
//! - [`ratelimit`]: per-device rate and size limits.
//! - [`retention`]: how long each kind of data is kept, and the sweep.
//! - [`http`]: the JSON API.
//! - [`images`]: DICOM image store and rendering.
//! - [`mosquitto`]: `broker-config mosquitto`: TLS listener, certificate identities, ACL.
//! - [`keys`]: the hub's signing key.
//! - [`logkey`]: the key of the hashes that stand in for patient names in logs.
//! - [`lifecycle`]: enrolment tokens, device certificates, disconnecting revoked devices.
//! - [`run`]: wiring and shutdown.

pub mod broker;
pub mod ca;
pub mod clock;
pub mod critical;
pub mod export;
pub mod failpoint;
pub mod fhir;
pub mod fleet;
pub mod hl7;
pub mod http;
pub mod images;
pub mod imaging;
pub mod ingest;
pub mod keys;
pub mod lifecycle;
pub mod logkey;
pub mod mosquitto;
pub mod pacs;
pub mod preread;
pub mod publish;
pub mod queue;
pub mod ratelimit;
pub mod report_pdf;
pub mod retention;
pub mod run;
pub mod store;
pub mod tls;

pub use run::{BrokerMode, HubConfig, run};
