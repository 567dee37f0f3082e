//! Yilian: remote ECG consultation for county medical communities (医共体).
//!
//! This facade crate re-exports the three parts and holds what the demos and end-to-end tests
//! share: a simulated ECG cart on a real pseudo-terminal ([`sim`]), a whole county started in
//! one process ([`county`]), a small client of the hub's HTTP API ([`client`]), and the load
//! generator ([`load`]).

pub use yilian_agent as agent;
pub use yilian_hub as hub;
pub use yilian_protocol as protocol;

pub mod client;
pub mod county;
pub mod fault;
pub mod load;
pub mod procs;
pub mod records;
pub mod sim;
