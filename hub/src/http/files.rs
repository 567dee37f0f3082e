//! A study's files: the cart's original bytes, served back exactly as the clinic's cart wrote
//! them (checked against the signed SHA-256 on the way out).
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/api/studies/{uid}/original/{index}` | original file `index` (0-based), bit-identical |

use super::AppState;
use super::api::{ApiError, audit};
use super::auth::Specialist;
use crate::clock::now_ms;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/studies/{uid}/original/{index}", get(original))
}

/// Loads a study's body or answers 404.
pub(crate) async fn load_study(s: &AppState, uid: &str) -> Result<yilian_protocol::message::Study, ApiError> {
    let u = uid.to_string();
    let found = s.store.call(move |db| db.study(&u, now_ms())).await.map_err(ApiError::from)??;
    found.map(|(_, body)| body).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such study".into()))
}

async fn original(
    State(s): State<AppState>,
    who: Specialist,
    Path((uid, index)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    let study = load_study(&s, &uid).await?;
    let file = study
        .source
        .as_ref()
        .and_then(|src| src.files.get(index))
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this study has no such original file".into()))?;
    let name = file.name.clone();
    let f = file.clone();
    let bytes = tokio::task::spawn_blocking(move || f.unpack())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    audit(&s, &who.id, "download original", &format!("{uid}/{name}")).await?;
    Ok(attachment(&name, "application/octet-stream", bytes))
}

/// A download response with a safe file name.
pub(crate) fn attachment(name: &str, content_type: &'static str, bytes: Vec<u8>) -> Response {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type)), (header::CONTENT_DISPOSITION, disposition)],
        bytes,
    )
        .into_response()
}
