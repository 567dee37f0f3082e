//! Reading aids for the ECG specialist: QRS detection first, the pre-read built on it. Pure and
//! deterministic: the same samples give the same answer on the cart and at the hub.
//!
//! - [`filter`]: second-order IIR sections and zero-phase filtering.
//! - [`qrs`]: the multi-lead QRS detector.
//! - [`classify`]: beat classes (normal, ventricular, paced) and pacing spikes.
//! - [`quality`]: the signal-quality gate (lead off, clipping, mains, wander, muscle noise,
//!   limb-lead reversal, missing chest leads).
//! - [`rhythm`]: rhythm segments (sinus, AF, paced, other), ventricular ectopy and pauses.
//! - [`beat`]: the median beat: PR, QRS, QT, QTc and ST deviation per lead.
//! - [`flags`]: what raises a study's priority (ST elevation, extreme rates, pauses, long QTc,
//!   ventricular runs, sustained rapid AF).
//! - [`preread`]: the pre-read of a recording, its summary and the changes between two summaries.

pub mod beat;
pub mod classify;
pub mod filter;
pub mod flags;
pub mod preread;
pub mod qrs;
pub mod quality;
pub mod rhythm;
