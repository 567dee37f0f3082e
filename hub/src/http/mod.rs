//! The hub's HTTP server: the JSON API the console and tools use.

pub mod actor;
pub mod api;
pub mod audit_page;
pub mod auth;
pub mod console;
pub mod device_files;
pub mod dicomweb;
pub mod enrol;
pub mod files;
pub mod his;
pub mod imaging;
pub mod priors;
pub mod reading;
pub mod rollouts;
pub mod session;
pub mod tuf;
pub mod viewer;

use crate::images::ImageStore;
use crate::ingest::Rejects;
use crate::publish::Publisher;
use crate::store::Store;
use axum::Router;
use std::sync::Arc;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Signs and publishes reports.
    pub publisher: Publisher,
    /// Rejected-message counters.
    pub rejects: Arc<Rejects>,
    /// How long a claim lasts, ms.
    pub claim_ttl_ms: i64,
    /// How long a study may wait before the worklist marks it overdue, ms, for stat, urgent and
    /// routine.
    pub wait_targets_ms: [i64; 3],
    /// DICOM images (studies from the clinics' modalities).
    pub images: Arc<ImageStore>,
    /// The county CA, which certifies enrolled devices (`None` in plaintext test set-ups).
    pub ca: Option<Arc<crate::ca::CountyCa>>,
    /// The fleet-update repository served at `/tuf/` (`None`: not set up).
    pub tuf: Option<yilian_update::repo::RepoDir>,
    /// Prints reports (`None`: no CJK font found, and the PDF endpoints say so).
    pub printer: Option<crate::report_pdf::Printer>,
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    api::routes()
        .merge(files::routes())
        .merge(console::routes())
        .merge(dicomweb::routes())
        .merge(imaging::routes())
        .merge(enrol::routes())
        .merge(audit_page::routes())
        .merge(tuf::routes())
        .merge(rollouts::routes())
        .merge(his::routes())
        .merge(device_files::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit_page::auditor_fence))
        .with_state(state)
}
