//! A DICOMweb subset (PS3.18) over the image store, behind the same sign-in as `/api` (a bearer
//! token or the console session). Enough for the console viewer and for OHIF.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/dicomweb/studies` | QIDO-RS studies (`PatientID=`, `ModalitiesInStudy=`, `StudyInstanceUID=`, `limit=`, `offset=`) |
//! | GET | `/dicomweb/studies/{study}/series` | QIDO-RS series of a study |
//! | GET | `/dicomweb/studies/{study}/series/{series}/instances` | QIDO-RS instances of a series |
//! | GET | `/dicomweb/studies/{study}` | WADO-RS: every instance, `multipart/related; type="application/dicom"` |
//! | GET | `/dicomweb/studies/{study}/series/{series}` | WADO-RS: the series' instances |
//! | GET | `.../instances/{sop}` | WADO-RS: the instance, bytes unchanged (`?accept=application/dicom`: the bare file, as a download) |
//! | GET | `.../metadata` (study, series, instance) | DICOM JSON without bulk data |
//! | GET | `.../instances/{sop}/frames/{n[,m…]}` | the frames' bytes as stored, `multipart/related; type="application/octet-stream"` |
//! | GET | `.../instances/{sop}/rendered`, `.../frames/{n}/rendered` | PNG; `?window=center,width`, `&invert=1` |
//! | GET | `/dicomweb/studies/{study}/series/{series}/thumbnail` | PNG of the series' middle instance |
//!
//! A frame this hub cannot decode answers 415 with JSON naming the transfer syntax; the original
//! is still served by WADO-RS.

use super::AppState;
use super::actor;
use super::auth::{Specialist, new_token};
use crate::images::render::{self, RenderError, RenderOptions, Window};
use crate::images::store::valid_uid;
use crate::images::{ImageError, ImageStore, InstanceMeta, read};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    const I: &str = "/dicomweb/studies/{study}/series/{series}/instances/{sop}";
    Router::new()
        .route("/dicomweb/studies", get(qido_studies))
        .route("/dicomweb/studies/{study}", get(wado_study))
        .route("/dicomweb/studies/{study}/metadata", get(study_metadata))
        .route("/dicomweb/studies/{study}/series", get(qido_series))
        .route("/dicomweb/studies/{study}/series/{series}", get(wado_series))
        .route("/dicomweb/studies/{study}/series/{series}/metadata", get(series_metadata))
        .route("/dicomweb/studies/{study}/series/{series}/thumbnail", get(thumbnail))
        .route("/dicomweb/studies/{study}/series/{series}/instances", get(qido_instances))
        .route(I, get(wado_instance))
        .route(&format!("{I}/metadata"), get(instance_metadata))
        .route(&format!("{I}/rendered"), get(instance_rendered))
        .route(&format!("{I}/frames/{{frames}}"), get(frames))
        .route(&format!("{I}/frames/{{frame}}/rendered"), get(frame_rendered))
}

/// An error answer: status and a JSON body `{error, transfer_syntax?, transfer_syntax_name?}`.
#[derive(Debug)]
pub struct WebError(pub StatusCode, pub Value);

impl WebError {
    fn new(status: StatusCode, msg: impl ToString) -> Self {
        Self(status, json!({ "error": msg.to_string() }))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

impl From<RenderError> for WebError {
    fn from(e: RenderError) -> Self {
        let msg = e.to_string();
        match e {
            RenderError::Unsupported { transfer_syntax, name } => Self(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({ "error": msg, "transfer_syntax": transfer_syntax, "transfer_syntax_name": name }),
            ),
            RenderError::Decode { transfer_syntax, name, .. } => Self(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({ "error": msg, "transfer_syntax": transfer_syntax, "transfer_syntax_name": name }),
            ),
            RenderError::NoPixelData | RenderError::FrameOutOfRange { .. } => Self::new(StatusCode::NOT_FOUND, msg),
            RenderError::Layout(_) => Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg),
            RenderError::Read(_) | RenderError::Encode(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, msg),
        }
    }
}

impl From<ImageError> for WebError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Render(r) => r.into(),
            ImageError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, e),
            ImageError::BadUid { .. } => Self::new(StatusCode::BAD_REQUEST, e),
            ImageError::Read(_) | ImageError::Conflict { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, e),
            // A stored file that no longer opens: damaged on disk, or the wrong store key.
            ImageError::Sealed(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e),
            _ => Self::new(StatusCode::SERVICE_UNAVAILABLE, e),
        }
    }
}

/// Runs blocking image-store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&ImageStore) -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    let images: Arc<ImageStore> = s.images.clone();
    tokio::task::spawn_blocking(move || f(&images))
        .await
        .map_err(|e| WebError::new(StatusCode::SERVICE_UNAVAILABLE, e))?
}

fn not_found(what: &str) -> WebError {
    WebError::new(StatusCode::NOT_FOUND, format!("no such {what}"))
}

/// A DICOM JSON attribute; empty values carry no `Value` (PS3.18 F.2.5).
fn attr(vr: &str, value: Option<Value>) -> Value {
    match value {
        Some(v) => json!({ "vr": vr, "Value": [v] }),
        None => json!({ "vr": vr }),
    }
}

fn s(v: &str) -> Option<Value> {
    (!v.is_empty()).then(|| Value::String(v.to_string()))
}

fn pn(v: &str) -> Option<Value> {
    (!v.is_empty()).then(|| json!({ "Alphabetic": v }))
}

fn n<T: Into<Value>>(v: Option<T>) -> Option<Value> {
    v.map(Into::into)
}

fn dicom_json(body: Value) -> Response {
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/dicom+json"));
    resp
}

/// QIDO-RS study attributes of one study.
pub fn study_json(st: &crate::images::StudySummary) -> Value {
    let mods: Vec<Value> = st.modalities.iter().map(|m| Value::String(m.clone())).collect();
    json!({
        "00080020": attr("DA", s(&st.study_date)),
        "00080030": attr("TM", s(&st.study_time)),
        "00080050": attr("SH", s(&st.accession_number)),
        "00080061": if mods.is_empty() { json!({"vr": "CS"}) } else { json!({"vr": "CS", "Value": mods}) },
        "00081030": attr("LO", s(&st.study_description)),
        "00100010": attr("PN", pn(&st.patient_name)),
        "00100020": attr("LO", s(&st.patient_id)),
        "0020000D": attr("UI", s(&st.study_uid)),
        "00201206": attr("IS", n(Some(st.series_count))),
        "00201208": attr("IS", n(Some(st.instance_count))),
    })
}

/// QIDO-RS instance attributes of one instance.
pub fn instance_json(m: &InstanceMeta) -> Value {
    json!({
        "00080016": attr("UI", s(&m.sop_class)),
        "00080018": attr("UI", s(&m.sop_uid)),
        "00080060": attr("CS", s(&m.modality)),
        "00100010": attr("PN", pn(&m.patient_name)),
        "00100020": attr("LO", s(&m.patient_id)),
        "0020000D": attr("UI", s(&m.study_uid)),
        "0020000E": attr("UI", s(&m.series_uid)),
        "00200011": attr("IS", n(m.series_number)),
        "00200013": attr("IS", n(m.instance_number)),
        "00280008": attr("IS", n(Some(m.frames))),
        "00280010": attr("US", n(m.rows)),
        "00280011": attr("US", n(m.columns)),
        "00083002": attr("UI", s(&m.transfer_syntax)),
    })
}

/// A QIDO string match: exact, or a prefix when the pattern ends in `*`.
fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

fn page<T>(items: Vec<T>, q: &HashMap<String, String>) -> Vec<T> {
    let offset = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0usize);
    let limit = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    items.into_iter().skip(offset).take(limit).collect()
}

async fn qido_studies(
    State(st): State<AppState>,
    who: Specialist,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    // A search by patient is a look-up of that patient: recorded, with the keys searched on (the
    // values stay out of the log).
    let mut keys: Vec<&str> = q.keys().map(String::as_str).collect();
    keys.sort_unstable();
    actor::record(&st, &who.actor(), "search images", "studies", "ok", &keys.join(","))
        .await
        .map_err(|e| WebError::new(e.0, e.1))?;
    let all = blocking(&st, |im| Ok(im.studies()?)).await?;
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|x| q.get("PatientID").is_none_or(|p| matches(p, &x.patient_id)))
        .filter(|x| q.get("StudyInstanceUID").is_none_or(|u| u.split(',').any(|u| u == x.study_uid)))
        .filter(|x| {
            q.get("ModalitiesInStudy").is_none_or(|m| m.split(',').any(|m| x.modalities.iter().any(|y| y == m)))
        })
        .collect();
    Ok(dicom_json(Value::Array(page(chosen, &q).iter().map(study_json).collect())))
}

async fn qido_series(
    State(st): State<AppState>,
    _who: Specialist,
    Path(study): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let all = blocking(&st, move |im| Ok(im.series(&study)?)).await?;
    let chosen: Vec<_> =
        all.into_iter().filter(|x| q.get("Modality").is_none_or(|m| m.split(',').any(|m| m == x.modality))).collect();
    let body = page(chosen, &q)
        .iter()
        .map(|x| {
            json!({
                "0008103E": attr("LO", s(&x.series_description)),
                "00080060": attr("CS", s(&x.modality)),
                "0020000D": attr("UI", s(&x.study_uid)),
                "0020000E": attr("UI", s(&x.series_uid)),
                "00200011": attr("IS", n(x.series_number)),
                "00201209": attr("IS", n(Some(x.instance_count))),
            })
        })
        .collect();
    Ok(dicom_json(Value::Array(body)))
}

async fn qido_instances(
    State(st): State<AppState>,
    _who: Specialist,
    Path((study, series)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let all = blocking(&st, move |im| Ok(im.instances(&study, &series)?)).await?;
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|x| q.get("SOPInstanceUID").is_none_or(|u| u.split(',').any(|u| u == x.sop_uid)))
        .collect();
    Ok(dicom_json(Value::Array(page(chosen, &q).iter().map(instance_json).collect())))
}

/// `multipart/related` with one part per body.
fn multipart(kind: &str, parts: Vec<(String, Vec<u8>)>) -> Response {
    let boundary = format!("yilian-{}", new_token().unwrap_or_else(|_| "0f3c9a2e7b41d8566e".into()));
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.1.len() + 128).sum());
    for (ctype, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ctype}\r\n\r\n").as_bytes());
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ctype = format!("multipart/related; type=\"{kind}\"; boundary={boundary}");
    let mut resp = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&ctype) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// The instance's file, 404 when it is not in that study and series.
async fn instance_of(s: &AppState, study: String, series: String, sop: String) -> Result<InstanceMeta, WebError> {
    blocking(s, move |im| {
        im.instance(&sop)?
            .filter(|m| m.study_uid == study && m.series_uid == series)
            .ok_or_else(|| not_found("instance"))
    })
    .await
}

async fn retrieve(s: &AppState, who: &Specialist, what: &str, list: Vec<InstanceMeta>) -> Result<Response, WebError> {
    if list.is_empty() {
        return Err(not_found(what));
    }
    actor::ok(s, &who.actor(), "retrieve images", what).await.map_err(|e| WebError::new(e.0, e.1))?;
    let parts = blocking(s, move |im| {
        list.iter()
            .map(|m| Ok(("application/dicom".to_string(), im.read_instance(m)?)))
            .collect::<Result<Vec<_>, WebError>>()
    })
    .await?;
    Ok(multipart("application/dicom", parts))
}

async fn wado_study(
    State(s): State<AppState>,
    who: Specialist,
    Path(study): Path<String>,
) -> Result<Response, WebError> {
    let st = study.clone();
    let list = blocking(&s, move |im| Ok(im.study_instances(&st)?)).await?;
    retrieve(&s, &who, &format!("study {study}"), list).await
}

async fn wado_series(
    State(s): State<AppState>,
    who: Specialist,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let se = series.clone();
    let list = blocking(&s, move |im| Ok(im.instances(&study, &se)?)).await?;
    retrieve(&s, &who, &format!("series {series}"), list).await
}

#[derive(Deserialize)]
struct WadoQuery {
    accept: Option<String>,
}

async fn wado_instance(
    State(s): State<AppState>,
    who: Specialist,
    Path((study, series, sop)): Path<(String, String, String)>,
    Query(q): Query<WadoQuery>,
) -> Result<Response, WebError> {
    let m = instance_of(&s, study, series, sop).await?;
    if q.accept.as_deref() == Some("application/dicom") {
        actor::ok(&s, &who.actor(), "download image", &m.sop_uid).await.map_err(|e| WebError::new(e.0, e.1))?;
        let meta = m.clone();
        let bytes = blocking(&s, move |im| Ok(im.read_instance(&meta)?)).await?;
        return Ok(super::files::attachment(&format!("{}.dcm", m.sop_uid), "application/dicom", bytes));
    }
    let what = format!("instance {}", m.sop_uid);
    retrieve(&s, &who, &what, vec![m]).await
}

/// Binary values longer than this (base64 characters) are left out of metadata as bulk data.
const MAX_INLINE_BINARY: usize = 4096;

/// DICOM JSON of one instance's header (no Pixel Data, no large binaries).
fn metadata_of(im: &ImageStore, m: &InstanceMeta) -> Result<Value, WebError> {
    let parsed = im.parse_instance(m, false)?;
    let mut v = dicom_json::to_value(&parsed.obj).map_err(|e| WebError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    if let Some(map) = v.as_object_mut() {
        map.retain(|_, a| a.get("InlineBinary").and_then(Value::as_str).is_none_or(|b| b.len() <= MAX_INLINE_BINARY));
        // A deflated file is read inflated; say what is stored.
        map.insert("00020010".into(), attr("UI", s(&m.transfer_syntax)));
    }
    Ok(v)
}

async fn metadata(s: &AppState, who: &Specialist, list: Vec<InstanceMeta>, what: &str) -> Result<Response, WebError> {
    if list.is_empty() {
        return Err(not_found(what));
    }
    actor::ok(s, &who.actor(), "read image metadata", what).await.map_err(|e| WebError::new(e.0, e.1))?;
    let all = blocking(s, move |im| list.iter().map(|m| metadata_of(im, m)).collect::<Result<Vec<_>, _>>()).await?;
    Ok(dicom_json(Value::Array(all)))
}

async fn study_metadata(
    State(s): State<AppState>,
    who: Specialist,
    Path(study): Path<String>,
) -> Result<Response, WebError> {
    let what = format!("study {study}");
    let list = blocking(&s, move |im| Ok(im.study_instances(&study)?)).await?;
    metadata(&s, &who, list, &what).await
}

async fn series_metadata(
    State(s): State<AppState>,
    who: Specialist,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let what = format!("series {series}");
    let list = blocking(&s, move |im| Ok(im.instances(&study, &series)?)).await?;
    metadata(&s, &who, list, &what).await
}

async fn instance_metadata(
    State(s): State<AppState>,
    who: Specialist,
    Path((study, series, sop)): Path<(String, String, String)>,
) -> Result<Response, WebError> {
    let m = instance_of(&s, study, series, sop).await?;
    let what = format!("instance {}", m.sop_uid);
    metadata(&s, &who, vec![m], &what).await
}

async fn frames(
    State(s): State<AppState>,
    _who: Specialist,
    Path((study, series, sop, list)): Path<(String, String, String, String)>,
) -> Result<Response, WebError> {
    let wanted: Vec<u32> = list
        .split(',')
        .map(|f| f.trim().parse::<u32>().ok().filter(|f| *f >= 1))
        .collect::<Option<_>>()
        .ok_or_else(|| WebError::new(StatusCode::BAD_REQUEST, "frame numbers are 1, 2, …"))?;
    let m = instance_of(&s, study, series, sop).await?;
    let ts = m.transfer_syntax.clone();
    let parts = blocking(&s, move |im| {
        let parsed = im.parse_instance(&m, true)?;
        wanted
            .iter()
            .map(|f| {
                read::frame_bytes(&parsed.obj, f - 1)
                    .map(|b| (format!("application/octet-stream; transfer-syntax={ts}"), b))
                    .map_err(|e| WebError::new(StatusCode::NOT_FOUND, e))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(multipart("application/octet-stream", parts))
}

/// Query of the rendered resources.
#[derive(Deserialize, Default)]
pub struct RenderQuery {
    /// `center,width`.
    pub window: Option<String>,
    /// `1` or `true` to invert.
    pub invert: Option<String>,
}

impl RenderQuery {
    fn options(&self, frame: u32) -> Result<RenderOptions, WebError> {
        let window = match &self.window {
            None => None,
            Some(w) => {
                let bad = || WebError::new(StatusCode::BAD_REQUEST, "window is center,width");
                let (c, w) = w.split_once(',').ok_or_else(bad)?;
                let center: f64 = c.trim().parse().map_err(|_| bad())?;
                let width: f64 = w.trim().parse().map_err(|_| bad())?;
                if !center.is_finite() || !width.is_finite() || width <= 0.0 {
                    return Err(bad());
                }
                Some(Window { center, width })
            }
        };
        let invert = matches!(self.invert.as_deref(), Some("1" | "true" | "yes"));
        Ok(RenderOptions { frame, window, invert, max_side: None })
    }
}

fn png(rendered: render::Rendered) -> Response {
    let mut resp = rendered.png.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    if let Some(w) = rendered.window
        && let Ok(v) = HeaderValue::from_str(&format!("{},{}", w.center, w.width))
    {
        // The viewer starts window/level drags from the window the server chose.
        h.insert("x-window", v);
    }
    resp
}

async fn rendered(
    s: &AppState,
    (study, series, sop): (String, String, String),
    opts: RenderOptions,
) -> Result<Response, WebError> {
    let m = instance_of(s, study, series, sop).await?;
    let out = blocking(s, move |im| Ok(im.render_instance(&m, &opts)?)).await?;
    Ok(png(out))
}

async fn instance_rendered(
    State(s): State<AppState>,
    _who: Specialist,
    Path(ids): Path<(String, String, String)>,
    Query(q): Query<RenderQuery>,
) -> Result<Response, WebError> {
    let opts = q.options(0)?;
    rendered(&s, ids, opts).await
}

async fn frame_rendered(
    State(s): State<AppState>,
    _who: Specialist,
    Path((study, series, sop, frame)): Path<(String, String, String, u32)>,
    Query(q): Query<RenderQuery>,
) -> Result<Response, WebError> {
    let frame = frame.checked_sub(1).ok_or_else(|| WebError::new(StatusCode::BAD_REQUEST, "frames count from 1"))?;
    let opts = q.options(frame)?;
    rendered(&s, (study, series, sop), opts).await
}

async fn thumbnail(
    State(s): State<AppState>,
    _who: Specialist,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, WebError> {
    if !valid_uid(&study) || !valid_uid(&series) {
        return Err(not_found("series"));
    }
    let bytes = blocking(&s, move |im| Ok(im.thumbnail(&study, &series)?)).await?;
    Ok(png(render::Rendered { png: bytes, size: (0, 0), window: None }))
}
