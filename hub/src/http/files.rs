//! A study's files: the cart's original bytes, served back exactly as the clinic's cart wrote
//! them (checked against the signed SHA-256 on the way out), and the study written out in the
//! standard formats, for the hospital's ECG management system, a research export or a second
//! opinion elsewhere.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/api/studies/{uid}/original/{index}` | original file `index` (0-based), bit-identical |
//! | GET | `/api/studies/{uid}/export/{name}` | the study as `NAME.dcm` (DICOM 12-lead/General ECG), `NAME.xml` (HL7 aECG), `NAME.scp` (SCP-ECG v2), `NAME.ECG` (Contec ECG90A, for a study at 800 Hz, 5000 nV), or the WFDB record `NAME.hea` + `NAME.dat` (+ `NAME.atr`, `NAME.<lead>`) |
//! | GET | `/api/studies/{uid}/report.pdf` | the signed report, printable: A4, the 12-lead tracing at 25 mm/s and 10 mm/mV |
//! | GET | `/api/studies/{uid}/fhir` | the study (and its report) as a FHIR R4 Bundle: Patient, ECG Observation with SampledData per lead, measurement Observations, DiagnosticReport |

use super::AppState;
use super::actor;
use super::api::ApiError;
use super::auth::Specialist;
use crate::clock::now_ms;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/studies/{uid}/original/{index}", get(original))
        .route("/api/studies/{uid}/export/{name}", get(export))
        .route("/api/studies/{uid}/fhir", get(fhir))
        .route("/api/studies/{uid}/report.pdf", get(report_pdf))
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
    actor::ok(&s, &who.actor(), "download original", &format!("{uid}/{index}")).await?;
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

async fn export(
    State(s): State<AppState>,
    who: Specialist,
    Path((uid, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (record, ext) = name
        .rsplit_once('.')
        .filter(|(r, _)| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(|| {
            ApiError(StatusCode::BAD_REQUEST, "name must be RECORD.EXT, RECORD of letters, digits, _".into())
        })?;
    let (record, ext) = (record.to_string(), ext.to_ascii_lowercase());
    let study = load_study(&s, &uid).await?;
    let rec =
        crate::export::to_recording(&study).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let unprocessable = |e: String| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e);
    let file_name = name.clone();
    let (content_type, bytes) = tokio::task::spawn_blocking(move || -> Result<(&'static str, Vec<u8>), ApiError> {
        Ok(match ext.as_str() {
            "dcm" => {
                ("application/dicom", yilian_formats::dicom::write(&rec).map_err(|e| unprocessable(e.to_string()))?)
            }
            "xml" => ("application/xml", yilian_formats::aecg::write(&rec).map_err(|e| unprocessable(e.to_string()))?),
            "scp" => (
                "application/octet-stream",
                yilian_formats::scp::write(&rec).map_err(|e| unprocessable(e.to_string()))?,
            ),
            "ecg" => (
                "application/octet-stream",
                yilian_formats::contec::write(&rec).map_err(|e| unprocessable(e.to_string()))?,
            ),
            _ => {
                let files = yilian_formats::wfdb::write(&rec, &record).map_err(|e| unprocessable(e.to_string()))?;
                let bytes =
                    files.into_iter().find(|(n, _)| n.eq_ignore_ascii_case(&file_name)).map(|(_, b)| b).ok_or_else(
                        || ApiError(StatusCode::NOT_FOUND, format!("the WFDB record has no file {file_name}")),
                    )?;
                let text = file_name.to_ascii_lowercase().ends_with(".hea");
                (if text { "text/plain; charset=utf-8" } else { "application/octet-stream" }, bytes)
            }
        })
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    actor::ok(&s, &who.actor(), "export", &format!("{uid}/{name}")).await?;
    Ok(attachment(&name, content_type, bytes))
}

async fn fhir(State(s): State<AppState>, who: Specialist, Path(uid): Path<String>) -> Result<Response, ApiError> {
    let u = uid.clone();
    let found = s
        .store
        .call(move |db| -> Result<_, crate::store::StoreError> {
            let Some((row, study)) = db.study(&u, now_ms())? else { return Ok(None) };
            Ok(Some((row, study, db.report_of(&u)?)))
        })
        .await
        .map_err(ApiError::from)??;
    let (row, study, report) = found.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such study".into()))?;
    let bundle = tokio::task::spawn_blocking(move || crate::fhir::bundle(&row, &study, report.as_ref()))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    actor::ok(&s, &who.actor(), "export fhir", &uid).await?;
    let mut resp = axum::Json(bundle).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    Ok(resp)
}

async fn report_pdf(State(s): State<AppState>, who: Specialist, Path(uid): Path<String>) -> Result<Response, ApiError> {
    let printer = s.printer.clone().ok_or_else(|| {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, crate::report_pdf::PdfError::Font("none found".into()).to_string())
    })?;
    let u = uid.clone();
    let found = s
        .store
        .call(move |db| -> Result<_, crate::store::StoreError> {
            let Some((row, study)) = db.study(&u, now_ms())? else { return Ok(None) };
            Ok(Some((row, study, db.signed_report_of(&u)?)))
        })
        .await
        .map_err(ApiError::from)??;
    let (row, study, signed) = found.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such study".into()))?;
    let (report, envelope) =
        signed.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this study has no signed report yet".into()))?;
    let pdf = printer
        .render(row, study, report, envelope)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    actor::ok(&s, &who.actor(), "print report", &uid).await?;
    let mut resp = pdf.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
    Ok(resp)
}
