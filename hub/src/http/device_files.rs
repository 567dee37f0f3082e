//! Files a clinic's agent fetches for itself, authenticated by the device's own key: the
//! printable PDF of each report it received, with the hub's signature over it.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/api/device-reports/{device}/{report_id}?at_ms=&sig=` | `{ "pdf": base64, "signature": PdfSignature }`; `sig` is the device's signature over [`fetch_statement`] |

use super::AppState;
use crate::clock::now_ms;
use crate::store::StoreError;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use tracing::info;
use yilian_protocol::document::{FETCH_SKEW_MS, fetch_statement};

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/device-reports/{device}/{report_id}", get(report_pdf))
}

#[derive(Deserialize)]
struct Signed {
    at_ms: i64,
    sig: String,
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

async fn report_pdf(
    State(s): State<AppState>,
    Path((device, report_id)): Path<(String, String)>,
    Query(q): Query<Signed>,
) -> Response {
    if (now_ms() - q.at_ms).abs() > FETCH_SKEW_MS {
        return refuse(StatusCode::FORBIDDEN, "request time too far from the hub's clock");
    }
    let Ok(sig) = hex::decode(&q.sig) else { return refuse(StatusCode::BAD_REQUEST, "sig is not hex") };
    let (d, r) = (device.clone(), report_id.clone());
    let found = s
        .store
        .call(move |db| -> Result<_, StoreError> {
            let keys = db.device_keys(&d, now_ms())?;
            let target = db.report_target(&r)?;
            let signed = match &target {
                Some((_, _, uid)) => db.study(uid, now_ms())?.zip(db.signed_report_of(uid)?),
                None => None,
            };
            Ok((keys, target, signed))
        })
        .await;
    let (keys, target, signed) = match found {
        Ok(Ok(v)) => v,
        Ok(Err(e)) | Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let statement = fetch_statement(&device, &report_id, q.at_ms);
    let authentic =
        keys.as_ref().is_some_and(|k| k.state.may_act() && k.keys.iter().any(|k| k.verify(&statement, &sig)));
    // The same answer for an unknown device, a bad signature and someone else's report.
    let Some((owner, site, _)) = target.filter(|(owner, _, _)| authentic && *owner == device) else {
        return refuse(StatusCode::FORBIDDEN, "not this device's report, or not signed by it");
    };
    let Some(((row, study), (report, envelope))) = signed else {
        return refuse(StatusCode::NOT_FOUND, "the report's study is gone");
    };
    let Some(printer) = s.printer.clone() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "printable reports are off at the hub (no CJK font)");
    };
    let pdf = match printer.render(row, study, report, envelope).await {
        Ok(pdf) => pdf,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let signature = s.publisher.sign_pdf(&site, &owner, &report_id, &pdf);
    info!(device = %owner, report = %report_id, bytes = pdf.len(), "report PDF sent to its clinic");
    Json(json!({ "pdf": base64::engine::general_purpose::STANDARD.encode(&pdf), "signature": signature }))
        .into_response()
}
