//! Fleet updates: the county's TUF repository and the agent's verifying client, on `tough`.
//!
//! - [`repo`]: county IT's side. Root and targets keys are offline (a USB key); snapshot and
//!   timestamp keys live at the hub, which refreshes those two roles and can only *serve* the
//!   targets the offline keys signed.
//! - [`client`]: the agent's side. Loads the repository with a persistent datastore (an old
//!   timestamp is refused after a restart), expiry enforced, size limits on every download, over
//!   a transport that trusts only the county CA; picks the release for its platform and refuses a
//!   downgrade unless the signed target allows one.
//! - [`release`]: what a target says about itself (its custom metadata) and version order.
//! - [`overlay`]: configuration bundles, and what they may not change.

pub mod client;
pub mod keys;
pub mod overlay;
pub mod release;
pub mod repo;

pub use client::{Decision, UpdateError};
pub use release::{Kind, ReleaseMeta, Version};
