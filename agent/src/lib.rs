//! The Yilian clinic agent: reads ECG carts over serial, signs what they produce, spools it to
//! disk and streams it to the county hub over MQTT; receives and keeps the hub's reports.
//!
//! # Layout
//! - [`config`]: the TOML configuration.
//! - [`driver`]: sans-I/O device decoders ([`driver::ylf`] framing, [`driver::text`] lines).
//! - [`serial`]: the port task (open, read, reopen).
//! - [`assemble`]: frames → studies and stream chunks.
//! - [`cartfile`]: a cart file's recording → a study with its original bytes.
//! - [`gate`]: the signal-quality gate every study passes before it is sent.
//! - [`durable`]: crash-safe file replacement.
//! - [`enrol`]: enrolment with a bootstrap token, proof of possession, waiting for approval.
//! - [`spool`]: the durable spool and seq leases.
//! - [`quota`]: what gives way when the spool's disk is full.
//! - [`uplink`]: sealing, publishing, acks, reports and receipts.
//! - [`window`]: how much is in flight on the link, so a STAT study never waits behind a backlog.
//! - [`rotation`]: device key rotation (next key file, hand-over after the hub acks).
//! - [`reports`]: received reports on disk.
//! - [`image_uplink`]: complete image studies → signed manifest + chunks on the bulk lanes.
//! - [`clinic_page`]: the local page for clinic staff; [`journey`]: each study's way from the
//!   cart to the printed report; [`clinicians`]: who may acknowledge a critical result.
//! - [`inbox`]: the watched folder for cart files; [`inspect`]: what a file holds.
//! - [`capture`]: raw serial capture of undocumented carts.
//! - [`dicom_node`]: the clinic's DICOM node (C-STORE SCP) that modalities send studies to.
//! - [`logkey`]: the key of the hashes that stand in for patient and file names in logs.
//! - [`run`]: wiring and shutdown.

pub mod assemble;
pub mod capture;
pub mod cartfile;
pub mod clinic_page;
pub mod clinicians;
pub mod clock;
pub mod config;
pub mod dicom_node;
pub mod driver;
pub mod durable;
pub mod enrol;
pub mod fleet_report;
pub mod gate;
pub mod image_uplink;
pub mod inbox;
pub mod inspect;
pub mod install;
pub mod journey;
pub mod logkey;
pub mod quota;
pub mod report_pdf;
pub mod reports;
pub mod rotation;
pub mod run;
pub mod serial;
pub mod spool;
pub mod stats;
pub mod supervise;
pub mod update;
pub mod uplink;
pub mod window;

pub use config::AgentConfig;
pub use run::run;
pub use stats::AgentStats;
