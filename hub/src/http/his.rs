//! The hospital outboxes over HTTP, for tools: which reports the HIS has acknowledged and which
//! studies the PACS has stored, which are still being retried, and why.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/api/his/outbox[?undelivered=1]` | HL7 messages to the HIS, newest first (JSON) |
//! | GET | `/api/pacs/outbox[?undelivered=1]` | studies for the PACS, newest first (JSON) |
//! | GET | `/api/critical[?undelivered=1]` | critical results, newest first (`undelivered`: not yet acknowledged) |

use super::AppState;
use super::auth::Specialist;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

/// The HIS routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/his/outbox", get(outbox))
        .route("/api/pacs/outbox", get(pacs_outbox))
        .route("/api/critical", get(critical))
}

#[derive(Deserialize)]
struct OutboxQuery {
    #[serde(default)]
    undelivered: Option<u8>,
}

async fn outbox(State(s): State<AppState>, _who: Specialist, Query(q): Query<OutboxQuery>) -> Response {
    let undelivered = q.undelivered.unwrap_or(0) != 0;
    match s.store.call(move |db| db.hl7_outbox(undelivered, 500)).await {
        Ok(Ok(rows)) => Json(rows).into_response(),
        Ok(Err(e)) | Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn pacs_outbox(State(s): State<AppState>, _who: Specialist, Query(q): Query<OutboxQuery>) -> Response {
    let pending = q.undelivered.unwrap_or(0) != 0;
    match s.store.call(move |db| db.pacs_outbox(pending, 500)).await {
        Ok(Ok(rows)) => Json(rows).into_response(),
        Ok(Err(e)) | Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn critical(State(s): State<AppState>, _who: Specialist, Query(q): Query<OutboxQuery>) -> Response {
    let open = q.undelivered.unwrap_or(0) != 0;
    match s.store.call(move |db| db.critical_results(open)).await {
        Ok(Ok(rows)) => Json(rows).into_response(),
        Ok(Err(e)) | Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
