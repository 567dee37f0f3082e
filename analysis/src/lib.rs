//! Reading aids for the ECG specialist: QRS detection first, the pre-read built on it. Pure and
//! deterministic: the same samples give the same answer on the cart and at the hub.
//!
//! - [`filter`]: second-order IIR sections and zero-phase filtering.
//! - [`qrs`]: the multi-lead QRS detector.
//! - [`preread`]: the pre-read of a recording (QRS positions, heart rate, RR statistics).

pub mod filter;
pub mod preread;
pub mod qrs;
